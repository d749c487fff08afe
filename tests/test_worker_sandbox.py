"""A build runs inside walls: whatever it tries, it reads no secret of the worker's,
reaches no socket of the worker's and writes nowhere but its build directory."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from worker.build import run_pip_wheel
from worker.interpreter import probe
from worker.sandbox import Sandbox, build_environment, find_bwrap

ROOT = Path(__file__).resolve().parent.parent
BWRAP = shutil.which("bwrap")
needs_bwrap = pytest.mark.skipif(BWRAP is None, reason="Debian's bubblewrap is not installed")

# What a hostile build tries; each attempt prints one JSON line: what, and whether
# it worked. The test then reads the log, as an operator would.
ATTEMPTS = r"""
import json, os, socket, sys
paths = json.loads(sys.argv[1])
def attempt(what, action):
    try:
        result = action()
        print(json.dumps({"what": what, "ok": True, "got": str(result)[:80]}))
    except Exception as error:
        print(json.dumps({"what": what, "ok": False, "error": repr(error)[:120]}))
def connect_unix(path):
    s = socket.socket(socket.AF_UNIX); s.connect(path); s.close()
def connect_tcp(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=2); s.close()
def proc_environ():
    return [open(f"/proc/{p}/environ", "rb").read() for p in os.listdir("/proc")
            if p.isdigit() and b"SECRET" in open(f"/proc/{p}/environ", "rb").read()][0]
attempt("token in environment", lambda: os.environ["WHEELWRIGHT_WORKER_TOKEN"])
attempt("redis url in environment", lambda: os.environ["REDIS_URL"])
attempt("token file", lambda: open(paths["token_file"]).read())
attempt("another process's environment", proc_environ)
attempt("redis unix socket", lambda: connect_unix(paths["redis_socket"]))
attempt("listening tcp port", lambda: connect_tcp(paths["port"]))
attempt("write worker home", lambda: open(paths["home"] + "/planted", "w").write("x"))
attempt("write /tmp outside the build", lambda: open(paths["tmp"], "w").write("x"))
attempt("write the build directory", lambda: open("made-here", "w").write("x"))
"""


@pytest.fixture
def worker_files(tmp_path, monkeypatch):
    """A worker's secrets laid out as on a Pi: a home, a data directory with a token
    and a Redis socket, a listening port, and the token in the environment."""
    home = tmp_path / "home"
    data = tmp_path / "var"
    (data / "secrets").mkdir(parents=True)
    home.mkdir()
    token_file = data / "secrets" / "worker-token"
    token_file.write_text("SECRET-token")
    unix = socket.socket(socket.AF_UNIX)
    unix.bind(str(data / "redis.sock"))
    unix.listen()
    tcp = socket.socket()
    tcp.bind(("127.0.0.1", 0))
    tcp.listen()
    monkeypatch.setenv("WHEELWRIGHT_WORKER_TOKEN", "SECRET-token")
    monkeypatch.setenv("REDIS_URL", "redis://pi1:SECRET@127.0.0.1:6379/0")
    monkeypatch.setenv("HOME", str(home))
    yield {"home": str(home), "data": str(data), "token_file": str(token_file),
           "redis_socket": str(data / "redis.sock"), "port": tcp.getsockname()[1],
           "tmp": f"/tmp/wheelwright-sandbox-test-{tmp_path.name}"}
    unix.close()
    tcp.close()


def attempts(log: str) -> dict[str, bool]:
    found = {}
    for line in log.splitlines():
        line = line.strip()  # pip indents a failed build's output
        if line.startswith('{"what"'):
            entry = json.loads(line)
            found[entry["what"]] = entry["ok"]
    return found


@needs_bwrap
@pytest.mark.parametrize("network", [False, True])
def test_a_build_reaches_nothing_of_the_worker(tmp_path, worker_files, network):
    workdir = tmp_path / "build"
    workdir.mkdir()
    interpreter = probe(sys.executable)
    sandbox = Sandbox(workdir=workdir, network=network,
                      hidden=(Path(worker_files["home"]), Path(worker_files["data"])),
                      readable=tuple(Path(p) for p in interpreter.paths))
    run = run_pip_wheel([sys.executable, "-c", ATTEMPTS, json.dumps(worker_files)], workdir,
                        timeout=60, sandbox=sandbox, bwrap=find_bwrap("bwrap"))
    found = attempts(run.log)
    assert found.pop("write the build directory") is True, run.log
    # With the network shared, a TCP port on the worker's loopback answers (Redis
    # must want a password there); without it, nothing does.
    assert found.pop("listening tcp port") is network, run.log
    assert found == {what: False for what in found}, run.log
    assert len(found) == 7
    assert not (Path(worker_files["home"]) / "planted").exists()
    assert not Path(worker_files["tmp"]).exists()
    assert (workdir / "made-here").exists()


def test_without_walls_the_same_attempts_succeed(tmp_path, worker_files):
    """The check above can fail: run unsandboxed, the build reads the token file."""
    workdir = tmp_path / "build"
    workdir.mkdir()
    run = run_pip_wheel([sys.executable, "-c", ATTEMPTS, json.dumps(worker_files)], workdir,
                        timeout=60)
    found = attempts(run.log)
    assert found["token file"] is True
    assert found["write worker home"] is True
    # The environment is scrubbed even without bubblewrap.
    assert found["token in environment"] is False
    assert found["redis url in environment"] is False
    Path(worker_files["tmp"]).unlink(missing_ok=True)


def test_the_environment_keeps_pip_settings_and_drops_secrets(tmp_path):
    env = build_environment(tmp_path, source={
        "PATH": "/usr/bin", "PIP_INDEX_URL": "https://mirror.example/simple/",
        "LC_ALL": "C.UTF-8", "REDIS_URL": "redis://x", "WHEELWRIGHT_WORKER_TOKEN": "t",
        "HOME": "/root", "AWS_SECRET_ACCESS_KEY": "k"})
    assert env["PIP_INDEX_URL"] == "https://mirror.example/simple/"
    assert env["LC_ALL"] == "C.UTF-8"
    assert env["HOME"] == str(tmp_path / "home")
    assert not {"REDIS_URL", "WHEELWRIGHT_WORKER_TOKEN", "AWS_SECRET_ACCESS_KEY"} & set(env)


def test_an_unknown_sandbox_mode_is_a_clear_error():
    from worker.sandbox import SandboxUnavailable

    with pytest.raises(SandboxUnavailable, match="auto, bwrap, off"):
        find_bwrap("docker")


HOSTILE = ATTEMPTS.replace("paths = json.loads(sys.argv[1])", "paths = {paths!r}") + r"""
import urllib.request
def push():
    request = urllib.request.Request(paths["intake"] + "builds", data=b"{}", method="POST")
    return urllib.request.urlopen(request, timeout=5).status
attempt("push to the intake", push)
# pip shows a build's output only when it fails.
raise SystemExit("hostile build: done trying")
"""


@needs_bwrap
def test_the_real_worker_builds_a_hostile_sdist_that_reaches_nothing(
        tmp_path, redis_instance, backend_wheels, monkeypatch):
    """The whole path: a hostile setup.py built by `python -m worker` with the
    default settings but bubblewrap required; its own log says what it got (it fails
    on purpose at the end, since pip shows a build's output only then)."""
    from ingest.__main__ import main as ingest_main
    from tests.sdists import write_index
    from tests.test_worker import (
        catalogue_rows,
        custom_sdist,
        release_events,
        run_workers,
        start_farm,
        stored_log,
    )

    home = tmp_path / "worker-home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("WHEELWRIGHT_WORKER_TOKEN", "SECRET-token")
    data = tmp_path / "var"
    paths = {"home": str(home), "token_file": str(data / "secrets" / "worker-token"),
             "redis_socket": str(redis_instance.socket_path), "port": 1,
             "tmp": f"/tmp/wheelwright-hostile-{tmp_path.name}", "intake": ""}
    farm, server = start_farm(tmp_path, monkeypatch, redis_instance.url, [], backend_wheels)
    try:
        monkeypatch.setenv("WHEELWRIGHT_WORKER_TOKENS", "test-worker:SECRET-token")
        paths["intake"] = farm.intake_url
        sdist = custom_sdist(farm.sources, "ww-hostile", "1.0",
                             HOSTILE.replace("{paths!r}", repr(paths)))
        write_index(tmp_path / "upstream", [sdist, *backend_wheels])
        ingest_main(["replay", str(release_events(tmp_path / "events.jsonl",
                                                  [("ww-hostile", "1.0")]))])
        run_workers(farm.config, 1, {"WHEELWRIGHT_BUILD_SANDBOX": "bwrap"})
    finally:
        server.stop()
    assert catalogue_rows(farm.config, "SELECT status FROM builds WHERE project = ?",
                          "ww-hostile") == [("failed",)]
    log = stored_log(farm.config, "ww-hostile", "1.0", probe(sys.executable).abi)
    assert "hostile build: done trying" in log
    found = attempts(log)
    assert found.pop("write the build directory") is True, log
    assert set(found) == {"token in environment", "redis url in environment", "token file",
                          "another process's environment", "redis unix socket",
                          "listening tcp port", "write worker home",
                          "write /tmp outside the build", "push to the intake"}, log
    assert not any(found.values()), log
    assert "HTTPError 401" in log  # the intake answered, and refused it
    assert list(home.iterdir()) == []
    assert not Path(paths["tmp"]).exists()


def test_wheels_are_taken_without_following_links(tmp_path):
    from worker.jobs import take_wheels

    dest = tmp_path / "wheels"
    dest.mkdir()
    (dest / "real-1.0-py3-none-any.whl").write_bytes(b"PK")
    secret = tmp_path / "token"
    secret.write_text("SECRET")
    (dest / "stolen-1.0-py3-none-any.whl").symlink_to(secret)
    taken = take_wheels(dest, tmp_path / "out")
    assert [p.name for p in taken] == ["real-1.0-py3-none-any.whl"]
    moved = tmp_path / "moved"
    dest.rename(moved)
    dest.symlink_to(moved)  # the build swapped its wheel directory for a link
    with pytest.raises(OSError):
        take_wheels(dest, tmp_path / "out2")


def test_a_bubblewrap_that_cannot_make_namespaces_is_not_used(tmp_path, monkeypatch, caplog):
    """In a chroot (the kernel gives a chrooted process no new user namespace) bwrap is
    installed yet fails every time: `auto` builds without it, saying why; `bwrap`
    refuses to start. (A stand-in bwrap that fails as bubblewrap does there.)"""
    from worker import sandbox

    fake = tmp_path / "bin" / "bwrap"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\necho 'bwrap: Creating new namespace failed, likely because "
                    "the kernel does not support user namespaces.' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}:{os.environ['PATH']}")
    sandbox.bwrap_refusal.cache_clear()
    try:
        with caplog.at_level("WARNING"):
            assert find_bwrap("auto") is None
        assert "Creating new namespace failed" in caplog.text
        with pytest.raises(sandbox.SandboxUnavailable, match="cannot make a sandbox here"):
            find_bwrap("bwrap")
    finally:
        sandbox.bwrap_refusal.cache_clear()
    # A worker required to sandbox its builds says so in one line and does not start.
    done = subprocess.run([sys.executable, "-m", "worker"], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, env={**os.environ, "WHEELWRIGHT_BUILD_SANDBOX":
                                                      "bwrap", "WHEELWRIGHT_DATA": str(tmp_path)})
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "error: bubblewrap cannot make a sandbox here: bwrap: Creating new namespace failed, "
        "likely because the kernel does not support user namespaces."]
