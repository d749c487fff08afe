"""Screenshots of the pages people read, taken by headless Chromium."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from publish.server import start_in_thread

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--hide-scrollbars"]


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if found := shutil.which(name):
            return found
    raise FileNotFoundError("no Chromium found (Debian: apt-get install chromium)")


def screenshot(url: str, out: Path, width: int = 1280, height: int = 1400) -> Path:
    """A PNG of `url` as a fresh Chromium profile, with JavaScript off, renders it."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="wheelwright-chromium-") as profile:
        subprocess.run(
            [chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
             "--disable-javascript", f"--window-size={width},{height}",
             f"--screenshot={out}", url],
            check=True, capture_output=True, timeout=120)
    if not out.exists():
        raise RuntimeError(f"Chromium wrote no screenshot of {url}")
    return out


def busiest_project(www: Path) -> str:
    """The project whose page is largest: the one with the most to show."""
    pages = sorted((www / "project").glob("*/index.html"), key=lambda p: p.stat().st_size)
    if not pages:
        raise FileNotFoundError(f"no project pages in {www}; run `publish write` first")
    return pages[-1].parent.name


def screenshot_site(www: Path, out: Path, project: str | None = None) -> list[Path]:
    """Screenshots of the home page and of one project page, served from www/."""
    project = project or busiest_project(www)
    server = start_in_thread(www, access_log=None)
    try:
        return [screenshot(server.url, out / "home.png"),
                screenshot(f"{server.url}project/{project}/", out / f"project-{project}.png")]
    finally:
        server.stop()
