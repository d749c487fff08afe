"""Following PyPI's changelog through faults, and the scheduler's rules."""

from __future__ import annotations

import time

import pytest

from bench.history import generate
from ingest.catalogue import connect
from ingest.dump import dump
from ingest.events import Event, apply_batch, batch_of
from ingest.follower import Backoff, Follower
from ingest.metadata import MetadataFetcher
from ingest.scheduler import build_queue
from ingest.sources import XmlRpcSource
from tests import fake_pypi
from worker.queues import build_job_id


@pytest.fixture
def pypi():
    server = fake_pypi.start()
    yield server
    server.stop()


def reference_dump(path, events):
    conn = connect(path)
    conn.execute("BEGIN")
    apply_batch(conn, batch_of(events))
    conn.execute("COMMIT")
    return dump(conn)


def xmlrpc_follower(conn, pypi, margin=50, **kwargs):
    source = XmlRpcSource(pypi.xmlrpc_url, margin=margin, timeout=0.5, page=pypi.state.page)
    return Follower(conn, source, margin=margin, backoff=Backoff(first=0.01, most=0.05),
                    **kwargs)


def run_until(follower, done, deadline=60):
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        follower.run(until_caught_up=True)
        if done():
            return
    raise AssertionError("the follower did not get there in time")


def test_follows_through_faults_late_serials_and_gaps(tmp_path, pypi):
    history = [Event.from_row(row) for row in generate(1500, early=0.05, seed=7)]
    rows = [[e.name, e.version, e.timestamp, e.action, e.serial] for e in history]
    state = pypi.state
    state.page = 200
    # Six serials just below the newest become visible only after later calls.
    late = sorted(r[4] for r in rows)[-20:-14]
    state.hidden = {serial: 12 for serial in late}
    # The generator leaves permanent gaps in the serials; the faults come in bursts.
    state.faults = ["429", "rate-limit", "500", "503", "timeout", "truncated", "garbage",
                    "wrong-shape", None, "timeout", "500", None, "garbage", "429"]
    state.rows = rows

    conn = connect(tmp_path / "followed.db")
    follower = xmlrpc_follower(conn, pypi)
    run_until(follower, lambda: state.calls > 12 and not state.faults)

    assert dump(conn) == reference_dump(tmp_path / "reference.db", history)
    assert follower.stats.failures >= 10  # every fault was met and outlived
    assert follower.stats.events == len(history)  # re-read serials counted once
    assert conn.execute("SELECT value FROM state WHERE name = 'pypi-serial'").fetchone()[0] \
        == str(max(e.serial for e in history))


def test_metadata_rules_builds_in_and_out(tmp_path, pypi, redis):
    state = pypi.state
    events = [
        Event(900_001 + i, 1_700_000_000 + i, name, version, action)
        for i, (name, version, action) in enumerate([
            (name, version, action)
            for name, version in [("modern", "1.0"), ("future", "2.0"), ("legacy", "0.9"),
                                  ("vanished", "1.0"), ("flaky", "3.0")]
            for action in ("new release", f"add source file {name}-{version}.tar.gz")
        ])
    ]
    state.rows = [[e.name, e.version, e.timestamp, e.action, e.serial] for e in events]
    state.projects = {
        "modern": fake_pypi.project_json("modern", {"1.0": ">=3.8"}, "A modern one"),
        "future": fake_pypi.project_json("future", {"2.0": ">=3.12"}),
        "legacy": fake_pypi.project_json("legacy", {"0.9": "<3"}),
        "flaky": fake_pypi.project_json("flaky", {"3.0": None}),
    }
    state.json_faults = ["500"] * 2  # flaky (or whichever asks first) fails twice
    conn = connect(tmp_path / "c.db")
    metadata = MetadataFetcher(pypi.url)
    follower = xmlrpc_follower(conn, pypi, redis=redis, abis=("cp311", "cp37m"),
                               metadata=metadata)

    def settled():
        unknown = conn.execute(
            "SELECT COUNT(*) FROM versions WHERE metadata_state IS NULL").fetchone()[0]
        if unknown:
            metadata.request_missing(conn)
        return unknown == 0

    run_until(follower, settled)
    follower.finish()
    queued = {abi: sorted(build_queue(redis, abi).job_ids) for abi in ("cp311", "cp37m")}
    assert queued["cp311"] == sorted(build_job_id(p, v, "cp311") for p, v in [
        ("modern", "1.0"), ("vanished", "1.0"), ("flaky", "3.0")])
    assert queued["cp37m"] == sorted(build_job_id(p, v, "cp37m") for p, v in [
        ("vanished", "1.0"), ("flaky", "3.0")])
    skips = conn.execute("SELECT project, abi FROM skips ORDER BY 1, 2").fetchall()
    assert [tuple(s) for s in skips] == [("future", "cp311"), ("future", "cp37m"),
                                         ("legacy", "cp311"), ("legacy", "cp37m"),
                                         ("modern", "cp37m")]
    summary = conn.execute("SELECT summary FROM projects WHERE name = 'modern'").fetchone()[0]
    assert summary == "A modern one"
    metadata.close()
