"""`publish serve` over real HTTP: negotiation, redirects, caching, ranges, types, log."""

from __future__ import annotations

import os
import re
import selectors
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from ingest import catalogue
from publish import index
from publish.negotiation import choose
from publish.pages import Site
from publish.server import start_in_thread
from tests.publishing import make_catalogue

PIP_ACCEPT = ("application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html; "
              "q=0.1, text/html; q=0.01")
BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
JSON = "application/vnd.pypi.simple.v1+json"
ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("accept,expected", [
    (None, "text/html; charset=utf-8"),
    ("", "text/html; charset=utf-8"),
    ("*/*", "text/html; charset=utf-8"),
    (BROWSER_ACCEPT, "text/html; charset=utf-8"),
    (PIP_ACCEPT, JSON),
    ("application/vnd.pypi.simple.latest+json", JSON),
    ("application/vnd.pypi.simple.v1+html", "application/vnd.pypi.simple.v1+html"),
    ("text/html, application/vnd.pypi.simple.v1+json;q=0.5", "text/html; charset=utf-8"),
    ("application/*", JSON),
    ("application/vnd.pypi.simple.v1+json;q=0, text/html", "text/html; charset=utf-8"),
    ("application/xml", None),
    ("application/vnd.pypi.simple.v1+json;q=0", None),
])
def test_negotiation(accept, expected):
    choice = choose(accept)
    assert (choice.content_type if choice else None) == expected


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("served")
    conn = catalogue.connect(root / "catalogue.db")
    make_catalogue(conn, root / "www")
    index.publish_all(conn, root / "www", Site(("cp311", "cp39"), "http://pi.example/", None))
    conn.close()
    server = start_in_thread(root / "www", root / "logs" / "access.log")
    yield server, root
    server.stop()


def get(server, path, **headers):
    return requests.get(server.url.rstrip("/") + path, headers=headers,
                        allow_redirects=False, timeout=10)


def test_simple_pages_are_negotiated(served):
    server, _ = served
    for path in ("/simple/", "/simple/alpha/"):
        as_json = get(server, path, Accept=PIP_ACCEPT)
        assert as_json.status_code == 200 and as_json.headers["Content-Type"] == JSON
        assert as_json.headers["Vary"] == "Accept"
        assert as_json.json()["meta"]["api-version"] == "1.1"
        as_html = get(server, path, Accept=BROWSER_ACCEPT)
        assert as_html.headers["Content-Type"] == "text/html; charset=utf-8"
        assert '<meta name="pypi:repository-version" content="1.1">' in as_html.text
        refused = get(server, path, Accept="application/xml")
        assert refused.status_code == 406 and refused.headers["Vary"] == "Accept"


@pytest.mark.parametrize("path,location", [
    ("/simple/alpha", "/simple/alpha/"),
    ("/simple/Alpha/", "/simple/alpha/"),
    ("/simple/Beta_Lib", "/simple/beta-lib/"),
    ("/simple/beta.lib/", "/simple/beta-lib/"),
    ("/project/ALPHA/json/", "/project/alpha/json/"),
    ("/project/alpha", "/project/alpha/"),
])
def test_redirects_to_canonical_names_and_slashes(served, path, location):
    response = get(served[0], path)
    assert response.status_code == 301 and response.headers["Location"] == location


@pytest.mark.parametrize("path,content_type", [
    ("/simple/alpha/alpha-1.0-cp39-cp39-linux_armv7l.whl", "application/octet-stream"),
    ("/simple/alpha/alpha-1.0-cp39-cp39-linux_armv6l.whl", "application/octet-stream"),
    ("/simple/alpha/alpha-1.0-cp39-cp39-linux_armv7l.whl.metadata", "text/plain; charset=utf-8"),
    ("/project/alpha/json/", "application/json"),
    ("/packages.json", "application/json"),
    ("/project/alpha/", "text/html; charset=utf-8"),
    ("/style.css", "text/css; charset=utf-8"),
])
def test_content_types(served, path, content_type):
    response = get(served[0], path)
    assert response.status_code == 200 and response.headers["Content-Type"] == content_type


def test_build_logs_are_shown_as_text(served):
    response = get(served[0], "/logs/alpha/1.0/cp39.txt.gz")
    assert response.headers["Content-Encoding"] == "gzip"
    assert response.text == "building alpha 1.0\n"  # requests undid the gzip


def test_etag_and_not_modified(served):
    first = get(served[0], "/simple/alpha/", Accept=PIP_ACCEPT)
    etag = first.headers["ETag"]
    again = get(served[0], "/simple/alpha/", Accept=PIP_ACCEPT, **{"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""
    since = get(served[0], "/simple/alpha/", **{"If-Modified-Since":
                                                 first.headers["Last-Modified"]})
    assert since.status_code == 304


def test_ranges(served, tmp_path):
    server, root = served
    path = "/simple/alpha/alpha-1.0-cp39-cp39-linux_armv7l.whl"
    whole = (root / "www" / path.lstrip("/")).read_bytes()
    part = get(server, path, Range="bytes=10-19")
    assert part.status_code == 206 and part.content == whole[10:20]
    assert part.headers["Content-Range"] == f"bytes 10-19/{len(whole)}"
    tail = get(server, path, Range="bytes=-5")
    assert tail.status_code == 206 and tail.content == whole[-5:]
    assert get(server, path, Range=f"bytes={len(whole)}-").status_code == 416


def test_nothing_outside_www_or_hidden(served):
    server, _ = served
    for path in ("/simple/../../catalogue.db", "/%2e%2e/catalogue.db", "/simple/.tmp-x",
                 "/simple/alpha/..%2f..%2f..%2fcatalogue.db"):
        assert get(server, path).status_code == 404, path


def test_access_log_is_combined_format_with_agent(served):
    server, root = served
    get(server, "/simple/beta-lib/", Accept=PIP_ACCEPT, **{"User-Agent": 'pip/24.0 {"x": 1}'})
    server.access.flush()
    lines = (root / "logs" / "access.log").read_text().splitlines()
    combined = re.compile(r'^127\.0\.0\.1 - - \[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d \+0000\] '
                          r'"GET /simple/beta-lib/ HTTP/1\.1" 200 \d+ "-" '
                          r'"pip/24\.0 \{\\x22x\\x22: 1\}"$')
    assert any(combined.match(line) for line in lines), lines[-3:]


def test_keep_alive_serves_many_requests_on_one_connection(served):
    with requests.Session() as session:
        for _ in range(20):
            response = session.get(served[0].url + "simple/", timeout=10)
            assert response.status_code == 200
        assert len(session.adapters["http://"].poolmanager.pools) == 1


def _started(command: list[str], env: dict[str, str]) -> tuple[subprocess.Popen, str]:
    """`python -m publish COMMAND` and the URL from its first line."""
    process = subprocess.Popen([sys.executable, "-m", "publish", *command], cwd=ROOT, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    selector = selectors.DefaultSelector()
    selector.register(process.stdout, selectors.EVENT_READ)
    if not selector.select(timeout=30):
        process.kill()
        pytest.fail("no ready line within 30 s")
    line = process.stdout.readline()
    match = re.search(r"http://\S+/", line)
    if match is None:
        process.kill()
        pytest.fail(f"no URL in {line!r}: {process.stderr.read()}")
    return process, match.group(0)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_serve_with_two_processes_stops_cleanly(tmp_path, sig):
    (tmp_path / "www").mkdir()
    (tmp_path / "www" / "file.txt").write_text("hello\n")
    env = {**os.environ, "WHEELWRIGHT_DATA": str(tmp_path), "WHEELWRIGHT_WEB": "127.0.0.1:0"}
    process, url = _started(["serve", "--processes", "2"], env)
    try:
        for _ in range(20):  # a connection each: the kernel spreads them over both
            assert requests.get(url + "file.txt", timeout=10).text == "hello\n"
    finally:
        process.send_signal(sig)
        _, err = process.communicate(timeout=30)
    assert process.returncode == 0 and "Traceback" not in err, err
    with pytest.raises(requests.ConnectionError):  # no process is left on the port
        requests.get(url, timeout=5)
    lines = (tmp_path / "logs" / "access.log").read_text().splitlines()
    assert len(lines) == 20 and all('"GET /file.txt HTTP/1.1" 200 6 ' in x for x in lines)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_intake_stops_cleanly(tmp_path, sig):
    env = {**os.environ, "WHEELWRIGHT_DATA": str(tmp_path), "WHEELWRIGHT_INTAKE": "127.0.0.1:0"}
    process, url = _started(["intake"], env)
    try:
        assert requests.get(url + "health", timeout=10).json() == {"ok": True}
    finally:
        process.send_signal(sig)
        _, err = process.communicate(timeout=30)
    assert process.returncode == 0 and "Traceback" not in err, err
