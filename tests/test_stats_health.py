"""Worker health records in Redis, sampled into stats.db."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from stats.health import sample
from stats.store import open_db

ROOT = Path(__file__).resolve().parent.parent


def record(worker: str, time: str, temperature: float | None, **extra) -> dict:
    return {"worker": worker, "abi": "cp311", "time": time,
            "cpu_temperature": temperature, "load1": 1.5, "load5": 1.0, "load15": 0.5,
            "memory_total": 4_000_000_000, "memory_available": 1_000_000_000,
            "swap_total": 100_000_000, "swap_free": 50_000_000,
            "disk_total": 32_000_000_000, "disk_free": 8_000_000_000, "builds_done": 7,
            **extra}


def test_health_records_are_sampled_once_each(redis, tmp_path):
    db = open_db(tmp_path / "stats.db")
    redis.set("wheelwright:health:pi-1", json.dumps(record("pi-1", "2024-10-10T08:00:00Z", 51.5)),
              ex=120)
    redis.set("wheelwright:health:pi-2",
              json.dumps(record("pi-2", "2024-10-10T10:00:05+02:00", None)), ex=120)
    redis.set("wheelwright:health:broken", b"{not json", ex=120)
    redis.set("wheelwright:health:liar", json.dumps(record("liar", "yesterday", 40.0)), ex=120)
    redis.set("wheelwright:health:pi-3",
              json.dumps(record("pi-3", "2024-10-10T08:00:00Z", "hot")), ex=120)
    redis.set("rq:unrelated", b"x")

    first = sample(redis, db)
    assert (first.seen, first.stored) == (5, 2)
    assert sorted(first.bad) == ["wheelwright:health:broken", "wheelwright:health:liar",
                                 "wheelwright:health:pi-3"]
    rows = [dict(row) for row in db.query("SELECT * FROM worker_health ORDER BY worker")]
    assert [(r["worker"], r["time"], r["cpu_temperature"]) for r in rows] == [
        ("pi-1", "2024-10-10 08:00:00", 51.5), ("pi-2", "2024-10-10 08:00:05", None)]
    assert rows[0]["disk_free"] == 8_000_000_000 and rows[0]["abi"] == "cp311"

    assert sample(redis, db).stored == 0  # the same records again
    redis.set("wheelwright:health:pi-1", json.dumps(record("pi-1", "2024-10-10T08:00:30Z", 53.0)),
              ex=120)
    assert sample(redis, db).stored == 1
    assert db["worker_health"].count == 3


def test_health_command_once(redis, redis_instance, tmp_path):
    redis.set("wheelwright:health:pi-1", json.dumps(record("pi-1", "2024-10-10T08:00:00Z", 50.0)))
    env = {"WHEELWRIGHT_DATA": str(tmp_path / "var"), "REDIS_URL": redis_instance.url,
           "PATH": "/usr/bin:/bin"}
    result = subprocess.run([sys.executable, "-m", "stats", "health", "--once"],
                            capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "1 health records, 1 new" in result.stderr
    assert open_db(tmp_path / "var" / "stats.db")["worker_health"].count == 1
