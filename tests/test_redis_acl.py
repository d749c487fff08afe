"""The Redis user `python -m worker acl` makes for a remote worker: it builds and
pushes through it, and it is refused everything outside rq's and its health keys."""

from __future__ import annotations

import subprocess
import sys
from urllib.parse import quote

import pytest
from redis import Redis
from redis.exceptions import NoPermissionError, ResponseError

from ingest import redis_server
from ingest.__main__ import main as ingest_main
from tests.sdists import pure_sdist
from tests.test_worker import ROOT, catalogue_rows, release_events, run_workers, start_farm
from worker.acl import new_password, worker_acl


@pytest.fixture
def acl_redis(tmp_path):
    """A redis-server of its own: the test changes its users."""
    server = redis_server.start(tmp_path / "redis-acl" / "redis.sock")
    yield server
    server.stop()


def user_url(server, name: str, password: str) -> str:
    return f"unix://{quote(name)}:{quote(password)}@{server.socket_path}"


def test_the_printed_acl_is_what_redis_takes(acl_redis):
    out = subprocess.run([sys.executable, "-m", "worker", "acl", "pi1"], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout
    [command] = [line for line in out.splitlines() if line.startswith("ACL SETUSER")]
    admin = Redis.from_url(acl_redis.url, decode_responses=True)
    assert admin.execute_command(*command.split()) in (b"OK", "OK", True)
    assert "pi1" in admin.acl_users()


@pytest.mark.parametrize("command", [
    ("SET", "elsewhere", "1"), ("GET", "catalogue"), ("DEL", "other:key"),
    ("FLUSHALL",), ("FLUSHDB",), ("CONFIG", "GET", "*"), ("CONFIG", "SET", "dir", "/tmp"),
    ("EVAL", "return redis.call('flushall')", "0"), ("SCRIPT", "LOAD", "return 1"),
    ("MODULE", "LIST"), ("DEBUG", "SLEEP", "0"), ("KEYS", "*"), ("ACL", "LIST"),
    ("SHUTDOWN",), ("CLIENT", "KILL", "ID", "1"), ("PUBLISH", "elsewhere", "x"),
])
def test_the_worker_user_is_refused_outside_its_keys(acl_redis, command):
    password = new_password()
    admin = Redis.from_url(acl_redis.url)
    admin.execute_command(*worker_acl("pi1", password).split())
    pi = Redis.from_url(user_url(acl_redis, "pi1", password))
    assert pi.set("rq:probe", "1")  # its own keys are writable
    with pytest.raises((NoPermissionError, ResponseError), match="(?i)permission|noperm"):
        pi.execute_command(*command)
    assert admin.ping()  # still up, still configured as before


def test_a_worker_builds_and_pushes_as_its_acl_user(tmp_path, acl_redis, monkeypatch,
                                                    backend_wheels):
    farm, server = start_farm(tmp_path, monkeypatch, acl_redis.url,
                              [lambda d: pure_sdist(d, "acl-pure", "1.0")], backend_wheels)
    try:
        password = new_password()
        Redis.from_url(acl_redis.url).execute_command(*worker_acl("pi1", password).split())
        ingest_main(["replay", str(release_events(tmp_path / "events.jsonl",
                                                  [("acl-pure", "1.0")]))])
        outputs = run_workers(farm.config, 1, {"REDIS_URL": user_url(acl_redis, "pi1",
                                                                      password)})
        assert "NOPERM" not in outputs[0], outputs[0]
        assert catalogue_rows(farm.config, "SELECT status FROM builds WHERE project = ?",
                              "acl-pure") == [("success",)]
    finally:
        server.stop()
