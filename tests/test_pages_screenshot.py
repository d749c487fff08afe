"""`python -m publish screenshot`: real headless Chromium renders the home page and a
project page with yanked and pre-release badges and a failed build, JavaScript off;
and the page of a project built on two targets (issue 13), as Chromium renders it."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import sys
import tempfile
import zlib
from html.parser import HTMLParser
from pathlib import Path

import pytest

from ingest import catalogue
from publish import index
from publish.pages import Site
from publish.screenshot import CHROMIUM_FLAGS, chromium, screenshot
from publish.server import start_in_thread
from tests.publishing import add_builds, apply_events, make_catalogue

ROOT = Path(__file__).resolve().parent.parent


def png_pixels(path: Path) -> tuple[int, int, bytes]:
    """Width, height and the decompressed scanlines of a PNG."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    chunks, offset = [], 8
    while offset < len(data):
        length, kind = struct.unpack(">I4s", data[offset:offset + 8])
        if kind == b"IDAT":
            chunks.append(data[offset + 8:offset + 8 + length])
        offset += 12 + length
    return width, height, zlib.decompress(b"".join(chunks))


NEEDS_CHROMIUM = pytest.mark.skipif(
    not (shutil.which("chromium") or shutil.which("chromium-browser")),
    reason="Debian's chromium package is not installed")


@NEEDS_CHROMIUM
def test_screenshot_command(tmp_path):
    data = tmp_path / "var"
    conn = catalogue.connect(data / "catalogue.db")
    make_catalogue(conn, data / "www")
    index.publish_all(conn, data / "www", Site(("cp311", "cp39"), "http://pi.example/", None))
    conn.close()
    page = (data / "www" / "project" / "alpha" / "index.html").read_text()
    assert all(mark in page for mark in ("pre-release</span>", "yanked</span>", "✗ failed"))
    env = {**os.environ, "WHEELWRIGHT_DATA": str(data)}
    out = subprocess.run([sys.executable, "-m", "publish", "screenshot", "--out",
                          str(tmp_path / "shots"), "--project", "alpha"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=300, check=True)
    shots = sorted(p.name for p in (tmp_path / "shots").iterdir())
    assert shots == ["home.png", "project-alpha.png"], out.stdout
    for name in shots:
        width, height, pixels = png_pixels(tmp_path / "shots" / name)
        assert (width, height) == (1280, 1400)
        # A page that rendered has text and colour: far from one flat background.
        assert len(set(pixels)) > 64, name


class TableRows(HTMLParser):
    """The text of each table row of a page, cell by cell: what a reader sees."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self.cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self.cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self.cell is not None and self.rows:
            self.rows[-1].append(" ".join("".join(self.cell).split()))
            self.cell = None

    def handle_data(self, data: str) -> None:
        if self.cell is not None:
            self.cell.append(data)


def rendered_rows(url: str) -> list[list[str]]:
    """The table rows of `url` in the DOM Chromium built from it (JavaScript off)."""
    with tempfile.TemporaryDirectory(prefix="wheelwright-chromium-") as profile:
        done = subprocess.run([chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
                               "--disable-javascript", "--dump-dom", url],
                              capture_output=True, text=True, timeout=120, check=True)
    parser = TableRows()
    parser.feed(done.stdout)
    return parser.rows


ARMV7L = "ww_two-1.0-cp311-cp311-linux_armv7l.whl"
AARCH64 = "ww_two-1.0-cp311-cp311-linux_aarch64.whl"
# Built on both of Bookworm's images: the 32-bit build links libatomic (armhf has no
# 64-bit atomics of its own), the 64-bit one does not; libc6 is preinstalled on both.
TWO_TARGETS = [
    ("ww-two", "1.0", "cp311", "success", [
        (ARMV7L, ">=3.9", ["libgpiod2", "libatomic1", "libc6"], ["libc6"], [], [])]),
    ("ww-two", "1.0", "cp311-aarch64", "success", [
        (AARCH64, ">=3.9", ["libgpiod2", "libc6"], ["libc6"], [], [])]),
]


@NEEDS_CHROMIUM
def test_a_project_built_on_two_targets_shows_both(tmp_path):
    www = tmp_path / "www"
    conn = catalogue.connect(tmp_path / "catalogue.db")
    apply_events(conn, [("ww-two", "1.0", "new release"),
                        ("ww-two", "1.0", "add source file ww-two-1.0.tar.gz")])
    add_builds(conn, www, TWO_TARGETS)
    index.publish_all(conn, www, Site(("cp311", "cp311-aarch64"), "http://pi.example/", None))
    conn.close()
    server = start_in_thread(www, access_log=None)
    try:
        url = f"{server.url}project/ww-two/"
        rows = rendered_rows(url)
        png = screenshot(url, tmp_path / "project-ww-two.png")
    finally:
        server.stop()
    # The build matrix: a column per target, each build in its own.
    assert ["Version", "Released", "cp311", "cp311 64-bit"] in rows
    [release] = [row for row in rows if row[:1] == ["1.0"]]
    assert release[2:] == ["✓ built", "✓ built"]
    # The files: each with its own apt dependencies (the preinstalled one last).
    # (A file's cell holds its name, then its badges.)
    files = {row[0].split()[0]: row[3] for row in rows
             if row and row[0].split()[0].endswith(".whl")}
    assert files == {ARMV7L: "libatomic1, libgpiod2, libc6", AARCH64: "libgpiod2, libc6"}
    # The install lines: each image is told what its own wheel needs, and no more.
    page = (www / "project" / "ww-two" / "index.html").read_text()
    assert ('<p class="muted">cp311:</p><pre>sudo apt install libatomic1 libgpiod2</pre>'
            in page)
    assert '<p class="muted">cp311 64-bit:</p><pre>sudo apt install libgpiod2</pre>' in page
    width, height, pixels = png_pixels(png)
    assert (width, height) == (1280, 1400) and len(set(pixels)) > 64
