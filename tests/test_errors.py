"""Errors a person fixes by hand are told in one line within 5 s, with no traceback
and a non-zero status: the real commands, run as processes."""

from __future__ import annotations

import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from ingest import catalogue
from ingest.sources import SourceUnavailable, UpstreamMisconfigured, XmlRpcSource
from tests import fake_pypi
from tests.publishing import make_catalogue
from worker.errors import masked_url

ROOT = Path(__file__).resolve().parent.parent
DEADLINE = 5.0  # seconds from start to the one line


@dataclass
class Ran:
    code: int
    stdout: str
    stderr: str
    seconds: float


def run(args: list[str], env: dict[str, str], timeout: float = 30, prefix: tuple = (),
        **popen) -> Ran:
    started = time.monotonic()
    result = subprocess.run([*prefix, sys.executable, "-m", *args], cwd=ROOT, env=env,
                            text=True, capture_output=True, timeout=timeout, **popen)
    return Ran(result.returncode, result.stdout, result.stderr, time.monotonic() - started)


def one_line(ran: Ran, command: str, within: float = DEADLINE) -> str:
    """The error line of `command`, checked: status 1, no traceback, within the
    deadline, and no line on stderr but log lines (which start with the year) and it."""
    assert ran.code == 1, (ran.code, ran.stderr)
    assert "Traceback" not in ran.stderr + ran.stdout, ran.stderr
    assert ran.seconds < within, f"{ran.seconds:.1f} s: {ran.stderr}"
    lines = [line for line in ran.stderr.splitlines() if line and not line.startswith("20")]
    assert len(lines) == 1, ran.stderr
    assert lines[0].startswith(f"{command}: "), lines[0]
    return lines[0]


@pytest.fixture
def env(tmp_path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("WHEELWRIGHT_", "REDIS_URL", "RQ_DASHBOARD"))}
    env["WHEELWRIGHT_DATA"] = str(tmp_path / "var")
    env["WHEELWRIGHT_WORKER_NAME"] = "test-worker"
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- Redis out of reach ---------------------------------------------------------------

@pytest.mark.parametrize("command", [["ingest", "follow"], ["worker"], ["ingest", "up"],
                                     ["publish", "worker"], ["stats", "health"]])
def test_unreachable_redis_is_one_line_with_the_url_masked(env, command):
    env["REDIS_URL"] = f"redis://farm:s3cret@127.0.0.1:{closed_port()}/0"
    line = one_line(run(command, env), " ".join(command))
    assert "s3cret" not in line
    assert "cannot reach Redis at redis://farm:****@127.0.0.1:" in line
    assert "start Redis there, or fix REDIS_URL" in line


def test_missing_embedded_redis_says_how_to_start_it(env):
    line = one_line(run(["ingest", "follow"], env), "ingest follow")
    assert "redis.sock" in line and "python -m ingest up" in line


def test_masked_url_hides_every_password():
    assert masked_url("redis://u:p@ss@h:1/0") == "redis://u:****@h:1/0"
    assert masked_url("rediss://:pw@h/0") == "rediss://:****@h/0"
    assert masked_url("redis://h/0?password=pw&db=1") == "redis://h/0?password=****&db=1"
    assert masked_url("unix:///var/redis.sock") == "unix:///var/redis.sock"


# -- a port in use --------------------------------------------------------------------

@pytest.fixture
def listener():
    """A process of our own listening on a loopback port."""
    port = closed_port()
    process = subprocess.Popen([sys.executable, "-c", f"""
import socket, sys, time
s = socket.socket(); s.bind(("127.0.0.1", {port})); s.listen()
print("ready", flush=True); time.sleep(600)
"""], stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "ready"
    yield port, process.pid
    process.kill()
    process.wait()


@pytest.mark.parametrize("command,variable,value", [
    (["publish", "serve"], "WHEELWRIGHT_WEB", "127.0.0.1:{port}"),
    (["publish", "intake"], "WHEELWRIGHT_INTAKE", "127.0.0.1:{port}"),
    (["stats", "serve"], "WHEELWRIGHT_STATS_WEB", "127.0.0.1:{port}"),
    (["ingest", "dashboard"], "WHEELWRIGHT_DASHBOARD_PORT", "{port}"),
])
def test_port_in_use_names_its_process_and_the_setting(env, listener, redis_instance,
                                                       command, variable, value):
    port, pid = listener
    env[variable] = value.format(port=port)
    env["REDIS_URL"] = redis_instance.url
    line = one_line(run(command, env), " ".join(command))
    assert f"127.0.0.1:{port} is in use by pid {pid} (" in line
    assert f"set {variable}" in line


# -- an upstream that is not XML-RPC --------------------------------------------------

class _WebSite(BaseHTTPRequestHandler):
    """A web server where PyPI's XML-RPC was expected: 404 pages, or a home page."""

    status = 404

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        body = b"<html><body>Not Found</body></html>"
        self.send_response(self.status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture(params=[404, 200])
def website(request):
    handler = type("Handler", (_WebSite,), {"status": request.param})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}", request.param
    server.shutdown()
    server.server_close()


def test_upstream_that_is_not_xmlrpc_fails_at_once(env, redis_instance, website):
    url, status = website
    env["REDIS_URL"] = redis_instance.url
    env["WHEELWRIGHT_PYPI_URL"] = url
    line = one_line(run(["ingest", "follow"], env), "ingest follow")
    assert line == (f"ingest follow: {url}/pypi answered {status} text/html: "
                    "WHEELWRIGHT_PYPI_URL (or --pypi-url) must be the base URL whose /pypi "
                    "answers XML-RPC (PyPI's changelog)")


def test_transient_faults_are_still_retried_and_a_later_404_too(website):
    """Rate limits and server errors before the first answer, and a 404 page after
    it (the URL was right), are waited out; only a first answer that is not XML-RPC
    is final."""
    url, status = website
    pypi = fake_pypi.start()
    try:
        pypi.state.rows = [["a", "1.0", 1_700_000_000, "new release", 5]]
        pypi.state.faults = ["429", "503", "500", "timeout"]
        pypi.state.timeout_sleep = 1.0
        source = XmlRpcSource(pypi.xmlrpc_url, timeout=0.5)
        for _ in range(4):
            with pytest.raises(SourceUnavailable):
                source.fetch(None)
        assert [e.serial for e in source.fetch(None).events] == [5]
        source.url = url + "/pypi"
        with pytest.raises(SourceUnavailable, match=f"answered {status} text/html"):
            source.fetch("5")
    finally:
        pypi.stop()
    with pytest.raises(UpstreamMisconfigured):
        XmlRpcSource(url + "/pypi").fetch(None)


def test_xmlrpc_fault_counts_as_an_answer():
    pypi = fake_pypi.start()
    try:
        pypi.state.faults = ["rate-limit"]
        source = XmlRpcSource(pypi.xmlrpc_url)
        with pytest.raises(SourceUnavailable, match="fault"):
            source.fetch(None)
        assert source.answered
    finally:
        pypi.stop()


# -- a data directory this user may not write -----------------------------------------

def _user_namespaces() -> bool:
    unshare = shutil.which("unshare")
    return bool(unshare) and subprocess.run(
        [unshare, "--user", "--map-root-user", "--mount", "true"],
        capture_output=True).returncode == 0


USER_NAMESPACES = _user_namespaces()


@pytest.fixture
def read_only_data(env, tmp_path):
    """A data directory the command may not write (mode 0555), and how to run the
    command so that the mode holds: as root, in a user namespace of its own with no
    user mapped, where root's files are checked by their mode like anyone's."""
    if os.geteuid() == 0 and not USER_NAMESPACES:
        pytest.skip("root ignores file modes, and no user namespace is available")
    data = tmp_path / "var"
    data.mkdir()
    data.chmod(0o555)
    env["WHEELWRIGHT_DATA"] = str(data)
    yield data, ("unshare", "--user") if os.geteuid() == 0 else ()
    data.chmod(0o755)


def test_unwritable_data_directory_stops_up_in_one_line(env, read_only_data):
    data, prefix = read_only_data
    line = one_line(run(["ingest", "up"], env, prefix=prefix), "ingest up")
    assert line.startswith(f"ingest up: cannot write {data}/instance.lock: permission denied: "
                           f"make {data} writable by user ")
    assert line.endswith(", or set WHEELWRIGHT_DATA to a directory it can write")


def test_unwritable_data_directory_stops_replay_in_one_line(env, read_only_data, tmp_path):
    data, prefix = read_only_data
    events = events_file(tmp_path / "events.jsonl", 1)
    line = one_line(run(["ingest", "replay", str(events)], env, prefix=prefix),
                    "ingest replay")
    assert line.startswith(f"ingest replay: cannot write {data}/catalogue.db: unable to open "
                           f"database file: make {data} writable by user ")


# -- a full disk ----------------------------------------------------------------------
#
# A file size limit (RLIMIT_FSIZE, set in the child; Python ignores SIGXFSZ, so the
# write fails with EFBIG) runs unprivileged anywhere. It takes the same branch of the
# one-line wrapper as ENOSPC (worker.errors.NO_ROOM) for files; SQLite reports it as
# an I/O error where a full disk gives SQLITE_FULL, and both are told the same way.
# The free space the line names is the real one, plenty here. Where user namespaces
# allow it, a real full tmpfs checks ENOSPC itself.

def _limit_file_size(size: int):
    return lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))


def events_file(path: Path, releases: int) -> Path:
    with path.open("w") as f:
        for i in range(releases):
            for j, action in enumerate(("new release", f"add source file p{i}-1.0.tar.gz")):
                serial = 1000 + 2 * i + j
                f.write(json.dumps({"serial": serial, "timestamp": 1_700_000_000 + serial,
                                    "name": f"project-{i}", "version": "1.0",
                                    "action": action}) + "\n")
    return path


def test_file_size_limit_writing_www_is_one_line(env, tmp_path):
    data = tmp_path / "var"
    data.mkdir()
    conn = catalogue.connect(data / "catalogue.db")
    make_catalogue(conn, data / "www")
    # packages.json carries every summary: past the limit, where no page is.
    conn.execute("UPDATE projects SET summary = ?", ("long summary " * 20_000,))
    conn.commit()
    conn.close()
    ran = run(["publish", "write"], env, preexec_fn=_limit_file_size(512 * 1024))
    line = one_line(ran, "publish write", within=30)
    assert line.startswith(f"publish write: cannot write {data}/www/.tmp-")
    assert "packages.json: file too large (" in line and " MB free there): free some space" \
        in line
    assert not list((data / "www").glob(".tmp-*"))  # no partial file left behind


def test_file_size_limit_writing_the_catalogue_is_one_line(env, tmp_path, redis_instance):
    env["REDIS_URL"] = redis_instance.url
    events = events_file(tmp_path / "events.jsonl", 3000)
    ran = run(["ingest", "replay", str(events)], env,
              preexec_fn=_limit_file_size(256 * 1024))
    line = one_line(ran, "ingest replay", within=30)
    assert line.startswith(f"ingest replay: cannot write {tmp_path}/var/catalogue.db: disk "
                           "I/O error (")
    assert " MB free there): free some space on that file system" in line


@pytest.mark.skipif(not USER_NAMESPACES, reason="no user namespace to mount a tmpfs in")
def test_full_disk_writing_the_catalogue_is_one_line(env, tmp_path, redis_instance):
    env["REDIS_URL"] = redis_instance.url
    data = tmp_path / "var"
    data.mkdir()
    events = events_file(tmp_path / "events.jsonl", 3000)
    script = (f'mount -t tmpfs -o size=256k tmpfs "{data}" && '
              f'exec "{sys.executable}" -m ingest replay "{events}"')
    started = time.monotonic()
    result = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c",
                             script], cwd=ROOT, env=env, text=True, capture_output=True,
                            timeout=60)
    ran = Ran(result.returncode, result.stdout, result.stderr, time.monotonic() - started)
    line = one_line(ran, "ingest replay", within=30)
    assert line.startswith(f"ingest replay: cannot write {data}/catalogue.db: database or "
                           "disk is full (")
    assert " MB free there)" in line
