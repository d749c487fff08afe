"""`python -m publish screenshot`: real headless Chromium renders the home page and a
project page with yanked and pre-release badges and a failed build, JavaScript off."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

from ingest import catalogue
from publish import index
from publish.pages import Site
from tests.publishing import make_catalogue

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


@pytest.mark.skipif(not (shutil.which("chromium") or shutil.which("chromium-browser")),
                    reason="Debian's chromium package is not installed")
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
