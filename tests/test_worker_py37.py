"""A Buster Pi's set-up: the worker runs on a current Python and builds cp37m
wheels with python3.7 (`--python`). Skipped where no python3.7 exists."""

from __future__ import annotations

import glob
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ingest.__main__ import main as ingest_main
from tests.sdists import c_sdist
from tests.test_worker import ROOT, catalogue_rows, release_events, start_farm
from worker.interpreter import probe
from worker.queues import build_queue_name

CACHE = Path(__file__).parent / ".cache" / "wheels-py37"
# The newest build backends that still run on Python 3.7.
BACKENDS_37 = ("setuptools<68.1", "wheel<0.42")


def python37() -> str | None:
    root = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
    found = sorted(glob.glob(f"{root}/versions/3.7.*/bin/python3.7"))
    return found[-1] if found else None


@pytest.fixture(scope="session")
def backend_wheels_37() -> list[Path]:
    if python37() is None:
        pytest.skip("no python3.7 here")
    if not all(any(CACHE.glob(f"{b.split('<')[0]}-*.whl")) for b in BACKENDS_37):
        CACHE.mkdir(parents=True, exist_ok=True)
        fetched = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--only-binary=:all:",
             "--python-version", "3.7", "--dest", str(CACHE), *BACKENDS_37],
            capture_output=True, text=True)
        if fetched.returncode != 0:
            pytest.skip(f"cannot fetch build backends for Python 3.7: {fetched.stderr[-300:]}")
    return sorted(CACHE.glob("*.whl"))


@pytest.fixture(scope="session")
def python_37(backend_wheels_37) -> str:
    return python37()


def test_worker_builds_cp37m_with_python37(tmp_path, redis, redis_instance, monkeypatch,
                                           python_37, backend_wheels_37):
    assert probe(python_37).abi == "cp37m"
    farm, server = start_farm(tmp_path, monkeypatch, redis_instance.url,
                              [lambda d: c_sdist(d, "ww-old", "1.0")], backend_wheels_37,
                              abis="cp37m")
    try:
        ingest_main(["replay", str(release_events(tmp_path / "events.jsonl",
                                                  [("ww-old", "1.0")]))])
        assert redis.llen(f"rq:queue:{build_queue_name('cp37m')}") == 1
        done = subprocess.run([sys.executable, "-m", "worker", "--python", python_37,
                               "--burst"], cwd=ROOT, env=dict(os.environ),
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
    finally:
        server.stop()
    assert "builds cp37-cp37m wheels" in done.stderr, done.stderr
    rows = catalogue_rows(farm.config, "SELECT filename, python_tag, abi_tag FROM wheels")
    assert len(rows) == 1 and rows[0][1:] == ("cp37", "cp37m"), done.stderr
    assert rows[0][0].startswith("ww_old-1.0-cp37-cp37m-linux_")
    assert catalogue_rows(farm.config, "SELECT abi, status FROM builds") == \
        [("cp37m", "success")]
