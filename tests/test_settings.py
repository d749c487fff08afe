"""Settings: each declared once, where its readers are; a Pi imports none of the
master's code; `python -m worker|ingest settings` print them with secrets masked."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from ingest import settings as master
from worker import settings as worker
from worker.settings import declared

ROOT = Path(__file__).resolve().parent.parent
# Variables the README may name that are not settings of a process.
NOT_SETTINGS = {"WHEELWRIGHT_SLOW"}


def test_worker_imports_nothing_of_the_master():
    """A Pi has worker/requirements.txt only: every worker module must import
    without ingest, publish or stats (or what only they depend on)."""
    script = (
        "import importlib, pkgutil, sys, worker\n"
        "for info in pkgutil.iter_modules(worker.__path__):\n"
        "    importlib.import_module(f'worker.{info.name}')\n"
        "print(' '.join(sorted(name for name in sys.modules if name.split('.')[0] in\n"
        "      ('ingest', 'publish', 'stats', 'bottle', 'sqlite_utils', 'datasette'))))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            cwd=ROOT, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == []


def test_each_variable_is_declared_once_with_a_doc():
    entries = declared(master.Settings)
    counts = Counter(s.env for _, s in entries)
    assert [env for env, n in counts.items() if n > 1] == []
    assert all(s.doc and "\n" not in s.doc for _, s in entries)
    # The worker's are a part of the master's, and no master-only one reaches a Pi.
    worker_envs = {s.env for _, s in declared(worker.Settings)}
    assert worker_envs < set(counts)
    assert {"WHEELWRIGHT_WORKER_TOKENS", "WHEELWRIGHT_INTAKE", "WHEELWRIGHT_ABIS",
            "WHEELWRIGHT_DEMAND_CLIENTS", "WHEELWRIGHT_MAX_UPLOAD"}.isdisjoint(worker_envs)


def test_readme_names_only_declared_variables():
    declared_envs = {s.env for _, s in declared(master.Settings)}
    named = set(re.findall(r"\bWHEELWRIGHT_[A-Z_]+[A-Z]", (ROOT / "README.md").read_text()))
    assert named - declared_envs - NOT_SETTINGS == set()


def test_defaults_and_overrides(tmp_path):
    config = master.load({"WHEELWRIGHT_DATA": str(tmp_path), "WHEELWRIGHT_WEB": ":9000",
                          "WHEELWRIGHT_DISABLED_ABIS": ""})
    assert config.data_dir == tmp_path
    assert config.web_bind == ("127.0.0.1", 9000)
    assert config.public_url == "http://127.0.0.1:9000/"
    assert config.disabled_abis == ()           # set empty: nothing disabled
    assert master.load({}).disabled_abis == ("cp34m", "cp35m")
    assert config.build_timeout == 10800 and config.push_backoff == 1.0
    assert config.redis_url is None
    assert config.effective_redis_url == f"unix://{tmp_path}/redis/redis.sock"
    assert config.events_file == master.SAMPLE_EVENTS


def test_a_bad_value_names_its_variable():
    with pytest.raises(ValueError, match="WHEELWRIGHT_BUILD_TIMEOUT='soon'"):
        worker.load({"WHEELWRIGHT_BUILD_TIMEOUT": "soon"})


@pytest.mark.parametrize("package,settings_class", [("worker", worker.Settings),
                                                    ("ingest", master.Settings)])
def test_settings_command_prints_every_variable_with_secrets_masked(
        tmp_path, package, settings_class):
    env = {**os.environ, "WHEELWRIGHT_DATA": str(tmp_path),
           "REDIS_URL": "redis://pi1:hunter22@master.lan:6379/0",
           "WHEELWRIGHT_WORKER_TOKEN": "tok-worker-secret",
           "WHEELWRIGHT_WORKER_TOKENS": "pi1:tok-intake-secret",
           "WHEELWRIGHT_BUILD_TIMEOUT": "777"}
    result = subprocess.run([sys.executable, "-m", package, "settings"], capture_output=True,
                            text=True, cwd=ROOT, env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    printed = re.findall(r"^(\w+) = ", out, re.MULTILINE)
    assert printed == [s.env for _, s in declared(settings_class)]
    assert "WHEELWRIGHT_BUILD_TIMEOUT = 777   (default: 10800)" in out
    assert "REDIS_URL = redis://pi1:****@master.lan:6379/0" in out
    assert "hunter22" not in out and "tok-" not in out
    assert "WHEELWRIGHT_WORKER_TOKEN = ****" in out
    # Printing settings makes nothing: no token file appears.
    assert not (tmp_path / "secrets").exists()
