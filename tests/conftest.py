"""Shared fixtures: a real redis-server per test run, a data directory per test,
offline build backends, and real HTTP servers for the intake and the index."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from redis import Redis

from ingest import redis_server, settings

CACHE = Path(__file__).parent / ".cache"
BACKENDS = ("setuptools", "wheel")


@pytest.fixture(autouse=True)
def restore_signal_handlers():
    """An in-process rq worker installs its own SIGINT/SIGTERM handlers and leaves
    them behind; later tests (and processes they fork) must not inherit them."""
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


@pytest.fixture(scope="session")
def redis_instance(tmp_path_factory):
    """One private redis-server for the whole run, started by our own launcher."""
    server = redis_server.start(tmp_path_factory.mktemp("redis") / "redis.sock")
    yield server
    server.stop()


@pytest.fixture
def redis(redis_instance) -> Redis:
    conn = Redis.from_url(redis_instance.url)
    conn.flushall()
    yield conn
    conn.close()


@pytest.fixture
def offline_pip(monkeypatch):
    """pip sees no configuration, no find-links, no extra index: only what a test gives."""
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    for name in ("PIP_FIND_LINKS", "PIP_EXTRA_INDEX_URL", "PIP_INDEX_URL"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def config(tmp_path, redis, redis_instance, monkeypatch) -> settings.Settings:
    """Settings for one test: its own data directory, the test Redis (flushed)."""
    monkeypatch.setenv("WHEELWRIGHT_DATA", str(tmp_path / "var"))
    monkeypatch.setenv("REDIS_URL", redis_instance.url)
    monkeypatch.setenv("WHEELWRIGHT_WORKER_NAME", "test-worker")
    for name in ("WHEELWRIGHT_ABIS", "WHEELWRIGHT_WORKER_TOKENS", "WHEELWRIGHT_WORKER_TOKEN",
                 "WHEELWRIGHT_BUILD_INDEX_URL", "WHEELWRIGHT_PYPI_URL"):
        monkeypatch.delenv(name, raising=False)
    return settings.load()


@pytest.fixture(scope="session")
def backend_wheels() -> list[Path]:
    """Wheels of the build backends our test sdists need, so that builds run with no
    index but the test's own. Fetched once into tests/.cache (CI fetches them first)."""
    wheels = CACHE / "wheels"
    if not all(any(wheels.glob(f"{b}-*.whl")) for b in BACKENDS):
        wheels.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "--only-binary=:all:",
                        "--dest", str(wheels), *BACKENDS], check=True)
    return sorted(wheels.glob("*.whl"))  # the backends and what they depend on


def pytest_collection_modifyitems(config, items):
    """Slow suites run only when WHEELWRIGHT_SLOW=1 asks for them."""
    if os.environ.get("WHEELWRIGHT_SLOW") == "1":
        return
    skip = pytest.mark.skip(reason="slow: set WHEELWRIGHT_SLOW=1 to run")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
