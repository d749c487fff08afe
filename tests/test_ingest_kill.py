"""SIGKILL ingest mid-stream, again and again: the catalogue ends as if it never died."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from bench.history import write

ROOT = Path(__file__).resolve().parent.parent
EVENTS = 120_000


def ingest(data: Path, redis_url: str, *args: str) -> subprocess.Popen:
    env = dict(os.environ, WHEELWRIGHT_DATA=str(data), REDIS_URL=redis_url,
               WHEELWRIGHT_ABIS="cp311", WHEELWRIGHT_REPLAY_CHUNK="10000")
    return subprocess.Popen([sys.executable, "-m", "ingest", *args], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def offset(data: Path) -> int:
    """The replay's stored position (read-only: the writer may be mid-transaction)."""
    path = data / "catalogue.db"
    if not path.exists():
        return -1
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
        row = conn.execute("SELECT value FROM state WHERE name LIKE 'file-offset:%'").fetchone()
        conn.close()
    except sqlite3.OperationalError:
        return -1
    return int(row[0]) if row else -1


def wait_for(condition, deadline: float, what: str) -> None:
    end = time.monotonic() + deadline
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def test_sigkill_mid_stream_then_restart_gives_the_same_catalogue(tmp_path, redis_instance):
    events = write(tmp_path / "events.jsonl", EVENTS, seed=3)
    size = events.stat().st_size

    clean = tmp_path / "clean"
    assert ingest(clean, redis_instance.url, "replay", str(events)).wait(timeout=300) == 0

    killed = tmp_path / "killed"
    kills, last = 0, -1
    while kills < 4:
        proc = ingest(killed, redis_instance.url, "replay", str(events))
        # Kill as soon as another transaction has landed: the next one is under way.
        wait_for(lambda p=proc, seen=last: offset(killed) > seen or p.poll() is not None,
                 120, "progress")
        if proc.poll() is not None:
            break
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
        last = offset(killed)
    assert kills >= 3, "the replay finished before it could be killed three times"
    assert 0 < last < size
    assert ingest(killed, redis_instance.url, "replay", str(events)).wait(timeout=300) == 0

    def dumped(data: Path) -> str:
        env = dict(os.environ, WHEELWRIGHT_DATA=str(data), REDIS_URL=redis_instance.url)
        return subprocess.run([sys.executable, "-m", "ingest", "dump"], cwd=ROOT, env=env,
                              capture_output=True, text=True, check=True).stdout

    clean_dump = dumped(clean)
    assert len(clean_dump) > 100_000
    assert dumped(killed) == clean_dump
