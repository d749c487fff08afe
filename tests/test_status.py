"""`python -m ingest status`, for people and with --json for scripts, on a real
catalogue and a real Redis holding queues, rq worker registrations and health."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from contextlib import closing
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from rq import Queue, Worker

from ingest import catalogue
from ingest.follower import STATUS_KEY
from ingest.status import duration
from tests.publishing import make_catalogue
from worker.health import Health, publish
from worker.queues import SERIALIZER, build_queue_name, rq_worker_name

ROOT = Path(__file__).resolve().parent.parent
AGE = 3 * 86400 + 4 * 3600 + 25  # the newest event's age: "3 days 4 h"


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.fixture
def farm(config, redis, monkeypatch):
    """A catalogue (a build failed 50 min ago, one built 5 min ago, the rest long
    ago), the follower's last pass, two build queues, and two build workers registered in rq
    with their health: one well, one with its disk nearly full."""
    monkeypatch.setenv("WHEELWRIGHT_ABIS", "cp39,cp311")
    monkeypatch.setenv("WHEELWRIGHT_MIN_FREE_MB", "100")
    now = datetime.now(timezone.utc)
    with closing(catalogue.connect(config.catalogue_path)) as conn:
        make_catalogue(conn, config.www_dir)
        conn.execute("UPDATE builds SET built_at = ? WHERE project = 'alpha' AND "
                     "version = '2.0rc1'", (iso(now - timedelta(minutes=50)),))
        conn.execute("UPDATE builds SET built_at = ? WHERE project = 'alpha' AND "
                     "version = '1.0' AND abi = 'cp311'", (iso(now - timedelta(minutes=5)),))
        catalogue.set_state(conn, STATUS_KEY, json.dumps({
            "serial": 2_000_040, "timestamp": time.time() - AGE, "upstream_serial": 2_000_100,
            "applied_at": time.time() - 90, "rate": 1234}))
        conn.commit()
    for abi, count in (("cp311", 3), ("cp39", 1)):
        queue = Queue(build_queue_name(abi), connection=redis, serializer=SERIALIZER)
        for i in range(count):
            queue.enqueue_call("worker.jobs.build", args=(f"p{i}", "1.0", abi))
    workers = {}
    for name, disk_free in (("pi-ok", 20 * 2**30), ("pi-full", 50 * 2**20)):
        queue = Queue(build_queue_name("cp311"), connection=redis, serializer=SERIALIZER)
        worker = Worker([queue], connection=redis, serializer=SERIALIZER,
                        name=rq_worker_name(name, "cp311"))
        worker.register_birth()
        workers[name] = worker.name
        publish(redis, Health(
            worker=name, abi="cp311", time=iso(now - timedelta(seconds=10)),
            cpu_temperature=51.5, load1=0.5, load5=0.4, load15=0.3,
            memory_total=4 * 2**30, memory_available=2 * 2**30, swap_total=0, swap_free=0,
            disk_total=32 * 2**30, disk_free=disk_free, builds_done=7, profile=3))
    return workers


def status(*args: str) -> str:
    result = subprocess.run([sys.executable, "-m", "ingest", "status", *args], cwd=ROOT,
                            env=dict(os.environ), capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return result.stdout


def test_status_for_people(farm):
    lines = status().splitlines()
    text = "\n".join(lines)
    assert lines[0] == "catalogue: 11 projects, 13 versions, 8 builds"
    assert ("events: serial 2,000,040, newest event 3 days 4 h old, 60 serials behind "
            "PyPI; last applied 1 min 30 s ago at 1,234 events/s") in lines
    assert "builds: 2 in the last hour, 2 in the last day (0.1/h), 1 of them failed" in lines
    failed = [line for line in lines if line.startswith("  failed: ")]
    assert len(failed) == 1 and failed[0].startswith("  failed: alpha 2.0rc1 cp311 at ")
    assert "queue build-cp39: 1 waiting, 0 building, 0 failed jobs" in lines
    assert "queue build-cp311: 3 waiting, 0 building, 0 failed jobs" in lines
    assert "queue publish: 0 waiting" in lines
    ok = next(line for line in lines if line.startswith(f"worker {farm['pi-ok']} "))
    assert ok.startswith(f"worker {farm['pi-ok']} (build-cp311): ")
    assert "CPU 52 C" in ok and "20,480 MB disk free" in ok and ok.endswith("; healthy")
    assert "7 builds since start, builder profile 3;" in ok
    full = next(line for line in lines if line.startswith(f"worker {farm['pi-full']} "))
    assert full.endswith("; disk nearly full (50 MB free): paused")
    assert " s old" not in text.replace("1 min 30 s ago", "")  # no raw seconds anywhere


def test_status_as_json_has_the_same_facts(farm):
    data = json.loads(status("--json"))
    assert (data["projects"], data["versions"], data["builds"]) == (11, 13, 8)
    assert data["follow"]["serial"] == 2_000_040
    assert data["follow"]["serials_behind"] == 60
    assert AGE <= data["follow"]["newest_event_age"] < AGE + 60
    assert data["follow"]["events_per_second"] == 1234
    assert (data["builds_last_hour"], data["builds_last_day"], data["failed_last_day"]) == \
        (2, 2, 1)
    assert [(b["project"], b["version"], b["abi"]) for b in data["failed_builds"]] == \
        [("alpha", "2.0rc1", "cp311")]
    assert {q["abi"]: q["waiting"] for q in data["queues"]} == {"cp39": 1, "cp311": 3}
    assert data["publish_waiting"] == 0 and data["redis_error"] is None
    workers = {w["name"]: w for w in data["workers"]}
    assert workers[farm["pi-ok"]]["healthy"] is True
    assert workers[farm["pi-ok"]]["health"]["disk_free"] == 20 * 2**30
    assert workers[farm["pi-ok"]]["health"]["profile"] == 3
    assert workers[farm["pi-full"]]["healthy"] is False
    assert workers[farm["pi-full"]]["health"]["problems"] == [
        "disk nearly full (50 MB free): paused"]


def test_status_without_redis_still_shows_the_catalogue(config, monkeypatch):
    monkeypatch.setenv("REDIS_URL", "redis://:pw@127.0.0.1:9/0")
    lines = status().splitlines()
    assert lines[0] == "catalogue: 0 projects, 0 versions, 0 builds"
    assert lines[-1].startswith("queues and workers: unknown: cannot reach Redis at "
                                "redis://:****@127.0.0.1:9/0")
    data = json.loads(status("--json"))
    assert data["queues"] == [] and "****" in data["redis_error"]


@pytest.mark.parametrize("seconds,words", [
    (0, "0 s"), (59, "59 s"), (61, "1 min 1 s"), (3600, "1 h"), (3661, "1 h 1 min"),
    (86400, "1 day"), (AGE, "3 days 4 h"), (89_189_748, "1,032 days 6 h"),
])
def test_durations_in_words(seconds, words):
    assert duration(seconds) == words


def test_json_round_trips_every_field(farm, config):
    from ingest.status import gather

    facts = gather(dataclasses.replace(config, abis=("cp39", "cp311")))
    assert set(json.loads(facts.to_json())) == {f.name for f in dataclasses.fields(facts)}
