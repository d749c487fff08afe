"""Ingest benchmark: replay speed against a raw SQLite load, live latency, enqueue rate.

    python -m bench.ingest [--events 1000000] [--runs 3]
    python -m bench.ingest --coverage [--events 200000]

1. Replay: a deterministic PyPI-shaped history (about 2% early and disordered) is
   replayed from a JSONL file into a new on-disk catalogue, in a child process whose
   peak RSS is read from the kernel. Baseline, in the same run: a child that reads the
   same file, parses each line and inserts the same rows into one SQLite table with
   one executemany in one transaction: the least any ingest can do with these events.
2. Latency: with that catalogue and a full queue, from appending a new release with a
   source file to the followed file until its job is in Redis.
3. Enqueue: jobs/s that the scheduler queues from the catalogue, against rq's own
   enqueue_many of the same jobs prepared beforehand.

With --coverage, instead: the same history with a file mix (bench.history.FileMix:
most projects pure Python with py3-none-any wheels, some compiled, few for ARM) is
replayed, and the scheduler queues every buildable release for each Raspberry Pi
OS ABI; reported: the share of builds it avoided because PyPI already serves the
release's users a wheel (ingest.coverage).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from redis import Redis
from rq import Queue

from bench.history import FileMix, write
from ingest import redis_server
from ingest.catalogue import connect
from ingest.follower import Follower
from ingest.scheduler import build_queue, top_up
from ingest.sources import FileSource
from worker.queues import BUILD_FUNCTION, SERIALIZER, build_job_id

ROOT = Path(__file__).resolve().parent.parent


def child_replay(events: str, db: str) -> None:
    conn = connect(db)
    Follower(conn, FileSource(Path(events))).run(until_caught_up=True)


def child_baseline(events: str, db: str) -> None:
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("CREATE TABLE events (serial INTEGER, timestamp INTEGER, name TEXT, "
                 "version TEXT, action TEXT)")
    with open(events, "rb") as f:
        rows = [(e["serial"], e["timestamp"], e["name"], e["version"], e["action"])
                for e in map(json.loads, f)]
    conn.execute("BEGIN")
    conn.executemany("INSERT INTO events VALUES (?, ?, ?, ?, ?)", rows)
    conn.execute("COMMIT")


def timed_child(kind: str, events: Path, db: Path) -> tuple[float, float]:
    """Run a child; return (seconds, peak RSS in MB)."""
    for path in db.parent.glob(db.name + "*"):
        path.unlink()
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "bench.ingest", "--child", kind,
                             str(events), str(db)], cwd=ROOT)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - started
    if status != 0:
        raise SystemExit(f"{kind} child failed ({status})")
    return elapsed, usage.ru_maxrss / 1024


def latency(db: Path, redis: Redis, samples: int = 5) -> list[float]:
    """Seconds from appending a release to its build job being queued."""
    live = db.parent / "live.jsonl"
    live.write_text("")
    ready, stop = threading.Event(), threading.Event()

    def follow() -> None:  # SQLite connections stay in the thread that made them
        follower = Follower(connect(db), FileSource(live), redis=redis, abis=("cp311",),
                            depth=1000)
        follower.run(until_caught_up=True)  # fills the queue: new releases must jump it
        ready.set()
        follower.run(interval=0.05, stop=stop.is_set)

    thread = threading.Thread(target=follow, daemon=True)
    thread.start()
    ready.wait(600)
    results = []
    for i in range(samples):
        name = f"latency-probe-{i}"
        key = f"rq:job:{build_job_id(name, '1.0', 'cp311')}"
        lines = [{"serial": 90_000_000 + 2 * i + n, "timestamp": 1_800_000_000, "name": name,
                  "version": "1.0", "action": action}
                 for n, action in enumerate(["new release",
                                             f"add source file {name}-1.0.tar.gz"])]
        started = time.perf_counter()
        with live.open("a") as f:
            f.write("".join(json.dumps(line) + "\n" for line in lines))
        while not redis.exists(key):
            if time.perf_counter() - started > 30:
                raise SystemExit("the probe was never queued")
            time.sleep(0.002)
        results.append(time.perf_counter() - started)
    stop.set()
    thread.join()
    return results


def enqueue_rates(db: Path, redis: Redis, jobs: int = 10_000) -> tuple[float, float]:
    """(scheduler jobs/s, rq enqueue_many jobs/s) for the same number of jobs."""
    conn = connect(db)
    redis.flushall()
    started = time.perf_counter()
    queued = top_up(conn, redis, "cp311", depth=jobs, job_timeout=3600).queued
    ours = queued / (time.perf_counter() - started)
    ids = build_queue(redis, "cp311").job_ids
    redis.flushall()
    prepared = [Queue.prepare_data(BUILD_FUNCTION, args=("p", str(i), "cp311"), job_id=job_id,
                                   timeout=3600, result_ttl=3600, failure_ttl=86400)
                for i, job_id in enumerate(ids)]
    queue = Queue("build-cp311", connection=redis, serializer=SERIALIZER)
    started = time.perf_counter()
    queue.enqueue_many(prepared)
    theirs = len(prepared) / (time.perf_counter() - started)
    redis.flushall()
    return ours, theirs


PI_ABIS = ("cp37m", "cp39", "cp311", "cp313")


def coverage_share(work: Path, count: int, redis: Redis) -> None:
    """Print, per ABI and overall, the builds the scheduler avoided because PyPI
    covers the release, among all it would otherwise queue."""
    events = write(work / "mixed.jsonl", count, mix=FileMix())
    with events.open("rb") as f:
        lines = sum(1 for _ in f)  # the history's events and the wheels sdists brought
    started = time.perf_counter()
    conn = connect(work / "mixed.db")
    Follower(conn, FileSource(events)).run(until_caught_up=True)
    print(f"replayed {lines:,} events in {time.perf_counter() - started:.1f} s", flush=True)
    with_source = conn.execute(
        "SELECT COUNT(*), SUM(EXISTS (SELECT 1 FROM live_files b WHERE b.project = v.project "
        "AND b.version = v.version AND b.filename LIKE '%-py3-none-any.whl')) "
        "FROM live_versions v WHERE EXISTS (SELECT 1 FROM live_files f WHERE "
        "f.project = v.project AND f.version = v.version AND f.kind = 'source')").fetchone()
    print(f"releases with an sdist: {with_source[0]:,}, of which with a pure wheel on PyPI: "
          f"{with_source[1]:,} ({with_source[1] / max(with_source[0], 1):.1%})")
    total_queued = total_covered = 0
    for abi in PI_ABIS:
        started = time.perf_counter()
        result = top_up(conn, redis, abi, depth=10_000_000, job_timeout=3600)
        elapsed = time.perf_counter() - started
        considered = result.queued + result.covered
        total_queued += result.queued
        total_covered += result.covered
        print(f"{abi}: {result.covered:,} of {considered:,} builds avoided "
              f"({result.covered / max(considered, 1):.1%}), {result.queued:,} queued, "
              f"{considered / elapsed:,.0f} releases/s judged", flush=True)
    considered = total_queued + total_covered
    print(f"\nbuilds avoided by PyPI coverage: {total_covered:,} of {considered:,} "
          f"({total_covered / max(considered, 1):.1%})")
    conn.close()
    redis.flushall()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.ingest", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000, help="history size")
    parser.add_argument("--runs", type=int, default=3, help="runs of each measurement")
    parser.add_argument("--coverage", action="store_true",
                        help="measure only the share of builds PyPI coverage avoids")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, events, db = args.child
        (child_replay if kind == "replay" else child_baseline)(events, db)
        return

    work = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    if args.coverage:
        server = redis_server.start(work / "redis" / "redis.sock")
        try:
            coverage_share(work, args.events, Redis.from_url(server.url))
        finally:
            server.stop()
            shutil.rmtree(work, ignore_errors=True)
        return
    try:
        events = work / "events.jsonl"
        print(f"writing {args.events:,} events ...", flush=True)
        write(events, args.events)
        replay, baseline = [], []
        for run in range(args.runs):
            b = timed_child("baseline", events, work / "baseline.db")
            r = timed_child("replay", events, work / "catalogue.db")
            baseline.append(b)
            replay.append(r)
            print(f"run {run + 1}: replay {args.events / r[0]:,.0f} events/s "
                  f"({r[1]:.0f} MB), baseline {args.events / b[0]:,.0f} rows/s "
                  f"({b[1]:.0f} MB), ratio {b[0] / r[0]:.2f}", flush=True)
        ratios = [b[0] / r[0] for r, b in zip(replay, baseline, strict=True)]
        server = redis_server.start(work / "redis" / "redis.sock")
        try:
            redis = Redis.from_url(server.url)
            lat = latency(work / "catalogue.db", redis)
            rates = [enqueue_rates(work / "catalogue.db", redis) for _ in range(args.runs)]
        finally:
            server.stop()
        median = statistics.median
        print("\nsummary (medians)")
        print(f"replay:   {args.events / median(r[0] for r in replay):,.0f} events/s, "
              f"peak RSS {max(r[1] for r in replay):.0f} MB")
        print(f"baseline: {args.events / median(b[0] for b in baseline):,.0f} rows/s")
        print(f"replay / baseline: {median(ratios):.2f}")
        print(f"release -> queued: median {median(lat) * 1000:.0f} ms, "
              f"max {max(lat) * 1000:.0f} ms")
        ours, theirs = median(r[0] for r in rates), median(r[1] for r in rates)
        print(f"enqueue: scheduler {ours:,.0f} jobs/s, rq enqueue_many {theirs:,.0f} jobs/s, "
              f"ratio {ours / theirs:.2f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
