"""Worker health in Redis: the agreed keys, a TTL, refreshed while the worker lives."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

from tests.test_worker import ROOT
from tests.test_worker_kill import wait_for
from worker.health import HEALTH_TTL, cpu_temperature, health_key, meminfo
from worker.interpreter import probe

FIELDS = {"worker", "abi", "time", "cpu_temperature", "load1", "load5", "load15",
          "memory_total", "memory_available", "swap_total", "swap_free", "disk_total",
          "disk_free", "builds_done", "profile"}


def test_running_worker_publishes_its_health(config, redis, monkeypatch, tmp_path):
    monkeypatch.setenv("WHEELWRIGHT_HEALTH_INTERVAL", "1")
    monkeypatch.setenv("WHEELWRIGHT_BUILD_DIR", str(tmp_path))
    marker = tmp_path / "builder-profile"
    marker.write_text("4\n")  # as `python -m worker profile --install` leaves it
    monkeypatch.setenv("WHEELWRIGHT_PROFILE_MARKER", str(marker))
    key = health_key("test-worker")
    worker = subprocess.Popen([sys.executable, "-m", "worker"], cwd=ROOT, env=dict(os.environ),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        first = json.loads(wait_for(lambda: redis.get(key), 30, "a health report"))
        assert set(first) == FIELDS
        assert first["worker"] == "test-worker"
        assert first["abi"] == probe(config.build_python).abi
        assert first["builds_done"] == 0
        assert first["profile"] == 4
        assert first["memory_total"] == meminfo()["MemTotal"] > first["memory_available"] > 0
        assert first["disk_total"] > first["disk_free"] > 0
        assert first["time"].endswith("Z")
        assert 0 < redis.ttl(key) <= HEALTH_TTL
        later = wait_for(lambda: json.loads(redis.get(key) or "{}").get("time") != first["time"]
                         and redis.get(key), 10, "a refreshed report")
        assert json.loads(later)["worker"] == "test-worker"
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(30)
    assert redis.get(key) is None  # a worker that stops says so at once


def test_cpu_temperature_prefers_the_cpu_zone(tmp_path):
    for zone, kind, temp in (("thermal_zone0", "acpitz", "27800"),
                             ("thermal_zone1", "cpu-thermal", "51540")):
        (tmp_path / zone).mkdir()
        (tmp_path / zone / "type").write_text(kind + "\n")
        (tmp_path / zone / "temp").write_text(temp + "\n")
    assert cpu_temperature(tmp_path) == 51.54
    assert cpu_temperature(tmp_path / "missing") is None
