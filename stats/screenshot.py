"""The dashboard as headless Chromium draws it: its rendered DOM and a screenshot.

Datasette runs in a thread on a free loopback port; Chromium (the Debian `chromium`
package) loads the page with a fresh profile and a virtual-time budget, so the page's
fetches and Vega's drawing finish before the DOM is dumped or the picture taken.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from stats.metadata import DASHBOARD
from stats.site import make_datasette

DASHBOARD_PATH = "/-/dashboards/wheelwright"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--hide-scrollbars"]


class ChromiumMissing(RuntimeError):
    pass


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    raise ChromiumMissing("no chromium on PATH (Debian: apt-get install chromium)")


@contextmanager
def running(stats_path: Path, catalogue_path: Path) -> Iterator[str]:
    """Datasette over the two databases on 127.0.0.1; yields its base URL."""
    import uvicorn

    app = make_datasette(stats_path, catalogue_path).app()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0,
                                           log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("Datasette did not start")
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def run_chromium(url: str, *extra: str, budget_ms: int = 20000) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory(prefix="stats-chromium-") as profile:
        return subprocess.run(
            [chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
             f"--virtual-time-budget={budget_ms}", *extra, url],
            capture_output=True, text=True, timeout=120, check=False)


def drawn_charts(dom: str) -> set[str]:
    """Slugs of the dashboard's charts whose card holds a drawn Vega canvas or SVG."""
    drawn = set()
    cards = re.split(r'(?=<div id="card-)', dom)
    for card in cards:
        slug = re.match(r'<div id="card-([^"]+)"', card)
        if slug and re.search(r'<(canvas|svg)[^>]*class="marks"', card):
            drawn.add(slug.group(1))
    return drawn & set(DASHBOARD["charts"])


def dashboard_dom(base_url: str, width: int = 1400, height: int = 2000) -> str:
    result = run_chromium(base_url + DASHBOARD_PATH, "--dump-dom",
                          f"--window-size={width},{height}")
    if result.returncode != 0 or "<html" not in result.stdout:
        raise RuntimeError(f"chromium failed: {result.stderr[-2000:]}")
    return result.stdout


def screenshot(stats_path: Path, catalogue_path: Path, output: Path, width: int = 1400,
               height: int = 2000) -> set[str]:
    """Save the dashboard as a PNG; return the charts that drew. Raises if any did not."""
    output = output.resolve()
    output.parent.mkdir(parents=True, exist_ok=True)
    with running(stats_path, catalogue_path) as base:
        drawn = drawn_charts(dashboard_dom(base, width, height))
        result = run_chromium(base + DASHBOARD_PATH, f"--screenshot={output}",
                              f"--window-size={width},{height}")
    if result.returncode != 0 or not output.is_file():
        raise RuntimeError(f"chromium failed: {result.stderr[-2000:]}")
    missing = set(DASHBOARD["charts"]) - drawn
    if missing:
        raise RuntimeError(f"charts that did not draw: {', '.join(sorted(missing))}")
    return drawn
