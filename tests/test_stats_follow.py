"""Following a live log: rotation by rename, copytruncate, and restarts lose nothing."""

from __future__ import annotations

import os
import threading
import time
from datetime import datetime, timedelta, timezone

import pytest

from stats.clients import ClientHasher
from stats.follow import Follower, follow
from stats.loader import Parser
from stats.store import open_db
from tests.stats_logs import PIP23, line

BASE = datetime(2024, 10, 10, 8, 0, tzinfo=timezone.utc)


def numbered(n: int) -> str:
    """Line n: a download whose size is n, so the stored rows say which lines came."""
    return line("192.0.2.10", BASE + timedelta(seconds=n),
                "GET /simple/six/six-1.16.0-py2.py3-none-any.whl HTTP/1.1", 200, n, PIP23)


def sizes(db) -> list[int]:
    return sorted(row[0] for row in db.execute("SELECT bytes FROM requests"))


def wait_for(predicate, follower: Follower, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "follow did not catch up"
        follower.poll()
        time.sleep(0.01)


@pytest.fixture
def db(tmp_path):
    return open_db(tmp_path / "stats.db")


@pytest.fixture
def parser():
    return Parser(ClientHasher(b"k" * 32))


def test_rotation_by_rename_mid_stream_loses_no_line(tmp_path, db, parser):
    log = tmp_path / "access.log"
    log.write_text("")
    follower = Follower(db, parser, log, grace=0.5)
    writer_done = threading.Event()

    def server():
        out = log.open("a", buffering=1)
        for n in range(1, 301):
            out.write(numbered(n) + "\n")
            if n == 150:
                # Rotate while the follower is mid-file: once it has read some lines.
                deadline = time.monotonic() + 30
                while follower.result.stored < 100 and time.monotonic() < deadline:
                    time.sleep(0.005)
                os.rename(log, tmp_path / "access.log.1")
            if n == 160:  # the server reopens its log only some lines later
                out.close()
                out = log.open("a", buffering=1)
        out.close()
        writer_done.set()

    thread = threading.Thread(target=server)
    thread.start()
    wait_for(lambda: writer_done.is_set() and sizes(db) == list(range(1, 301)), follower)
    thread.join()
    follower.close()
    assert db["requests"].count == 300
    assert len(list(db.execute("SELECT * FROM sources"))) == 2  # the old file and the new


def test_copytruncate_is_read_from_the_start(tmp_path, db, parser):
    log = tmp_path / "access.log"
    log.write_text("".join(numbered(n) + "\n" for n in range(1, 11)))
    follower = Follower(db, parser, log)
    wait_for(lambda: len(sizes(db)) == 10, follower)
    with log.open("r+") as out:  # logrotate's copytruncate, then new lines
        out.truncate(0)
    log.write_text("".join(numbered(n) + "\n" for n in range(11, 14)))
    wait_for(lambda: len(sizes(db)) == 13, follower)
    follower.close()
    assert sizes(db) == list(range(1, 14))


def test_a_restart_resumes_and_finds_the_rotated_tail(tmp_path, db, parser):
    log = tmp_path / "access.log"
    log.write_text("".join(numbered(n) + "\n" for n in range(1, 6)))
    first = Follower(db, parser, log)
    wait_for(lambda: len(sizes(db)) == 5, first)
    first.close()
    # While stopped: more lines, a rotation, and a new file.
    with log.open("a") as out:
        out.write("".join(numbered(n) + "\n" for n in range(6, 9)))
    log.rename(tmp_path / "access.log.1")
    log.write_text("".join(numbered(n) + "\n" for n in range(9, 12)))
    second = Follower(db, Parser(ClientHasher(b"k" * 32)), log)
    wait_for(lambda: len(sizes(db)) >= 11, second)
    second.close()
    assert sizes(db) == list(range(1, 12))


def test_follow_loop_stops_on_request(tmp_path, db, parser):
    log = tmp_path / "access.log"
    log.write_text(numbered(1) + "\n" + numbered(2)[:30])  # the second line is unfinished
    seen = []
    result = follow(db, parser, log, 0.01, stop=lambda: bool(seen), report=seen.append)
    assert seen == [1] and sizes(db) == [1] and result.stored == 1
