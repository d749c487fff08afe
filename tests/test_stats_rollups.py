"""The daily rollups: always the aggregates of the raw rows they were written with
(after loads, reloads, rotation, a killed writer), kept when the raw rows are pruned,
and read by the canned queries and the scheduler's demand."""

from __future__ import annotations

import gzip
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from ingest.demand import searched_projects
from stats import rollups
from stats.clients import ClientHasher
from stats.follow import Follower
from stats.loader import Parser, load_file
from stats.metadata import QUERIES
from stats.store import open_db
from stats.writer import WriterError
from tests.stats_logs import (
    FIREFOX,
    GOOGLEBOT,
    NUMPY_V6,
    NUMPY_WHL,
    PIP18,
    PIP20,
    PIP23,
    PIP24_CI,
    PIP_OLD,
    SIX_WHL,
    UV,
    line,
    write_log,
)
from tests.test_stats_writer import writer_pids

ROOT = Path(__file__).resolve().parent.parent
AGENTS = [PIP23, PIP20, PIP18, PIP24_CI, UV, PIP_OLD, FIREFOX, GOOGLEBOT]
TARGETS = [
    (f"/simple/numpy/{NUMPY_WHL}", 5_000_000), (f"/simple/numpy/{NUMPY_V6}", 5_000_000),
    (f"/simple/six/{SIX_WHL}", 11_000), (f"/simple/numpy/{NUMPY_WHL}.metadata", 900),
    ("/simple/numpy/", 1200), ("/simple/six/", 800), ("/simple/not-built/", 150),
    ("/project/numpy/", 4000), ("/", 300),
]


def parser() -> Parser:
    return Parser(ClientHasher(b"k" * 32))


def mixed_lines(count: int, start: datetime, days: int = 3, seed: int = 1) -> list[str]:
    """`count` lines spread over `days` days from `start`, in time order: downloads,
    searches (found and not), pages, bots, HEADs and errors from a few clients, so
    that each rollup gets repeated and distinct keys."""
    rng = random.Random(seed)
    step = timedelta(days=days) / count
    lines = []
    for n in range(count):
        target, size = rng.choice(TARGETS)
        method = "HEAD" if rng.random() < 0.03 else "GET"
        status = rng.choice([200] * 20 + [304, 404, 500])
        lines.append(line(f"192.0.2.{rng.randrange(1, 12)}", start + step * n,
                          f"{method} {target} HTTP/1.1", status, size, rng.choice(AGENTS)))
    return lines


def assert_rollups_match_raw(db) -> None:
    assert rollups.stored(db.conn) == rollups.from_raw(db.conn)


def downloads(db) -> int:
    return db.execute("SELECT coalesce(sum(downloads), 0) FROM daily_projects").fetchone()[0]


START = datetime(2024, 10, 10, 20, 0, tzinfo=timezone.utc)


def test_rollups_equal_the_raw_aggregates_after_loads_and_reloads(tmp_path):
    log = tmp_path / "access.log"
    lines = mixed_lines(3000, START)
    write_log(log, lines[:1000])
    db = open_db(tmp_path / "stats.db")
    load_file(db, parser(), log)
    assert_rollups_match_raw(db)
    write_log(log, lines)  # the file grew
    load_file(db, parser(), log)
    assert_rollups_match_raw(db)
    before = rollups.stored(db.conn)
    assert sum(n for *_, n in before["daily_projects"]) > 100
    # Loading again, or a rotated and a gzipped copy, adds nothing to any rollup.
    rotated = tmp_path / "access.log.1"
    shutil.copy(log, rotated)
    with rotated.open("rb") as plain, gzip.open(tmp_path / "access.log.2.gz", "wb") as packed:
        shutil.copyfileobj(plain, packed)
    for again in (log, rotated, tmp_path / "access.log.2.gz"):
        assert load_file(db, parser(), again).stored == 0
    assert rollups.stored(db.conn) == before


def test_batches_of_any_size_make_the_same_rollups(tmp_path):
    """A day's distinct search clients are counted across batches, not per batch."""
    log = tmp_path / "access.log"
    write_log(log, mixed_lines(2000, START))
    whole = open_db(tmp_path / "whole.db")
    load_file(whole, parser(), log)
    split = open_db(tmp_path / "split.db")
    load_file(split, parser(), log, batch_rows=7)  # a writer process, batches of 7 rows
    assert rollups.stored(split.conn) == rollups.stored(whole.conn)
    assert_rollups_match_raw(split)
    clients = split.execute("SELECT max(clients) FROM daily_searches").fetchone()[0]
    assert 1 < clients <= 11  # 11 addresses: each counted once a day


def test_a_killed_writer_leaves_rollups_equal_to_the_rows_it_wrote(tmp_path):
    log = tmp_path / "access.log"
    write_log(log, mixed_lines(20_000, START))
    db = open_db(tmp_path / "stats.db")
    killed = []

    def kill_the_writer(result) -> None:
        if not killed and result.stored:  # once a batch is in, mid-file
            [pid] = writer_pids()
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

    with pytest.raises(WriterError, match="writer process died"):
        load_file(db, parser(), log, progress=kill_the_writer, batch_rows=2_000)
    assert killed
    partial = db.execute("SELECT count(*) FROM requests").fetchone()[0]
    assert 0 < partial < 20_000
    assert_rollups_match_raw(db)  # the batches written, whole; nothing of the others
    load_file(db, parser(), log, batch_rows=2_000)
    assert db.execute("SELECT count(*) FROM requests").fetchone()[0] == 20_000
    assert_rollups_match_raw(db)
    fresh = open_db(tmp_path / "fresh.db")
    load_file(fresh, parser(), log)
    assert rollups.stored(db.conn) == rollups.stored(fresh.conn)


def test_follow_through_rotation_keeps_rollups_equal_to_the_raw_rows(tmp_path):
    log = tmp_path / "access.log"
    lines = mixed_lines(600, START, seed=2)
    log.write_text("".join(f"{text}\n" for text in lines[:300]))
    db = open_db(tmp_path / "stats.db")
    follower = Follower(db, parser(), log, grace=0)
    follower.poll()
    log.rename(tmp_path / "access.log.1")
    log.write_text("".join(f"{text}\n" for text in lines[300:]))
    while db.execute("SELECT count(*) FROM requests").fetchone()[0] < 600:
        assert follower.poll() or follower.retired or follower.current, "follow stalled"
    follower.close()
    assert_rollups_match_raw(db)
    fresh = open_db(tmp_path / "fresh.db")
    write_log(tmp_path / "all.log", lines)
    load_file(fresh, parser(), tmp_path / "all.log")
    assert rollups.stored(db.conn) == rollups.stored(fresh.conn)


def test_pruning_drops_old_raw_rows_and_keeps_every_rollup(tmp_path):
    now = datetime.now(timezone.utc)
    old = mixed_lines(500, now - timedelta(days=100), days=5, seed=3)  # days -100..-96
    new = mixed_lines(500, now - timedelta(days=3), days=2, seed=4)
    write_log(tmp_path / "old.log", old)
    write_log(tmp_path / "new.log", new)
    db = open_db(tmp_path / "stats.db")
    for name in ("old.log", "new.log"):
        load_file(db, parser(), tmp_path / name)
    kept = db.execute("SELECT count(*) FROM requests WHERE time >= ?",
                      [rollups.cutoff_day(90)]).fetchone()[0]
    assert kept == 500
    before = rollups.stored(db.conn)
    result = rollups.prune(db, 90, batch=37)  # many small transactions
    assert result.done and result.requests == 500 and result.search_clients > 0
    assert db.execute("SELECT count(*) FROM requests").fetchone()[0] == 500
    assert db.execute("SELECT min(time) FROM requests").fetchone()[0] >= rollups.cutoff_day(90)
    assert db.execute("SELECT min(day) FROM search_clients").fetchone()[0] >= \
        rollups.cutoff_day(90)
    after = rollups.stored(db.conn)
    del before["search_clients"], after["search_clients"]
    assert after == before  # the rollups keep the days whose raw rows are gone
    assert db.execute("SELECT count(DISTINCT day) FROM daily_hits").fetchone()[0] >= 7
    assert rollups.prune(db, 90).requests == 0
    assert rollups.prune(db, 0).requests == 0  # 0: keep everything


def test_a_pruner_works_in_short_steps(tmp_path):
    now = datetime.now(timezone.utc)
    write_log(tmp_path / "old.log", mixed_lines(300, now - timedelta(days=40), days=1))
    db = open_db(tmp_path / "stats.db")
    load_file(db, parser(), tmp_path / "old.log")
    pruner = rollups.Pruner(30, every=3600, budget=0.0)
    first = pruner.step(db)  # a budget of nothing: one transaction, then it yields
    assert first is not None
    while first is not None and not first.done:
        first = pruner.step(db)
    assert db.execute("SELECT count(*) FROM requests").fetchone()[0] == 0
    assert pruner.step(db) is None  # not due again for an hour


def test_stats_load_prunes_raw_rows_past_the_setting(tmp_path):
    log = tmp_path / "access.log"
    write_log(log, mixed_lines(200, START))  # 2024: long past 90 days
    env = {"WHEELWRIGHT_DATA": str(tmp_path / "var"), "PATH": "/usr/bin:/bin"}
    result = subprocess.run([sys.executable, "-m", "stats", "load", str(log)],
                            capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "pruned 200 raw rows older than 90 days" in result.stdout
    db = open_db(tmp_path / "var" / "stats.db")
    assert db["requests"].count == 0
    assert db.execute("SELECT sum(requests) FROM daily_hits").fetchone()[0] > 0
    result = subprocess.run([sys.executable, "-m", "stats", "load", str(log)],
                            capture_output=True, text=True, cwd=ROOT, timeout=120,
                            env={**env, "WHEELWRIGHT_STATS_RAW_DAYS": "0"})
    assert result.returncode == 0 and "pruned" not in result.stdout


def query(db, name: str) -> list[dict]:
    cursor = db.conn.execute(QUERIES[name]["sql"])
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor]


def test_a_day_without_traffic_reads_zero(tmp_path):
    today = datetime.now(timezone.utc).replace(hour=12, minute=0, second=0, microsecond=0)
    lines = [line("192.0.2.1", today - timedelta(days=2), f"GET /simple/six/{SIX_WHL} "
                  "HTTP/1.1", 200, 11_000, PIP23),
             line("192.0.2.1", today, f"GET /simple/six/{SIX_WHL} HTTP/1.1", 200, 11_000,
                  PIP23)]
    write_log(tmp_path / "access.log", lines)
    db = open_db(tmp_path / "stats.db")
    load_file(db, parser(), tmp_path / "access.log")
    rows = query(db, "downloads_per_day")
    assert len(rows) == 90 and rows[-1]["day"] == today.strftime("%Y-%m-%d")
    assert [r["downloads"] for r in rows[-3:]] == [1, 0, 1]  # the gap day is a 0
    assert all(r["downloads"] == 0 for r in rows[:-3])
    assert [r["bytes"] for r in query(db, "bandwidth")[-3:]] == [11_000, 0, 11_000]
    hours = query(db, "downloads_by_hour")
    assert len(hours) == 24 and hours[12]["downloads"] == 2 and hours[11]["downloads"] == 0


def test_search_clients_are_counted_once_a_day_and_summed_over_days(tmp_path):
    now = datetime.now(timezone.utc).replace(hour=10, minute=0, second=0, microsecond=0)
    search = "GET /simple/wanted/ HTTP/1.1"
    lines = [line("192.0.2.1", now - timedelta(days=1), search, 404, 0, PIP23),
             line("192.0.2.1", now - timedelta(days=1, minutes=-5), search, 404, 0, PIP23),
             line("192.0.2.1", now, search, 404, 0, PIP23),       # the same client, a day on
             line("192.0.2.2", now, search, 404, 0, GOOGLEBOT)]   # a bot: not counted
    write_log(tmp_path / "access.log", lines)
    stats = tmp_path / "stats.db"
    db = open_db(stats)
    load_file(db, parser(), tmp_path / "access.log", batch_rows=1)
    assert db.execute("SELECT day, searches, clients FROM daily_searches ORDER BY day"
                      ).fetchall() == [((now - timedelta(days=1)).strftime("%Y-%m-%d"), 2, 1),
                                       (now.strftime("%Y-%m-%d"), 1, 1)]
    # Two client-days: enough for a demand of two; one client on one day is not.
    assert searched_projects(stats, clients=2) == ["wanted"]
    assert searched_projects(stats, clients=3) == []
    assert searched_projects(stats, clients=2, days=1) == []


def test_demand_reads_nothing_from_a_stats_db_without_rollups(tmp_path):
    path = tmp_path / "stats.db"
    sqlite3.connect(path).execute("CREATE TABLE requests (id INTEGER)").connection.close()
    assert searched_projects(path, clients=1) == []


def test_30_day_sums_are_the_daily_rollups_of_the_window(tmp_path):
    from stats import windows

    now = datetime.now(timezone.utc)
    write_log(tmp_path / "old.log", mixed_lines(400, now - timedelta(days=45), days=10))
    write_log(tmp_path / "new.log", mixed_lines(400, now - timedelta(days=5), days=4, seed=5))
    db = open_db(tmp_path / "stats.db")
    for name in ("old.log", "new.log"):
        load_file(db, parser(), tmp_path / name)
    summed = windows.refresh(db, None)  # no catalogue: no build times, nothing saved
    first = windows.first_day()
    assert (summed.first_day, summed.with_catalogue) == (first, False)
    assert sorted(db.execute("SELECT project, downloads FROM window_downloads")) == sorted(
        db.execute("SELECT project, sum(downloads) FROM daily_projects WHERE day >= ? "
                   "GROUP BY project", [first]))
    assert sorted(db.execute("SELECT * FROM window_searches")) == sorted(db.execute(
        "SELECT project, sum(searches), sum(clients), max(last_time) FROM daily_searches "
        "WHERE day >= ? GROUP BY project", [first]))
    in_window = db.execute("SELECT sum(downloads) FROM window_downloads").fetchone()[0]
    assert 0 < in_window < downloads(db)  # the old log's days are outside
    assert db.execute("SELECT sum(seconds_saved) FROM window_downloads").fetchone()[0] == 0
    refresher = windows.Refresher(None, every=3600)
    assert refresher.step(db) is not None and refresher.step(db) is None
    assert windows.refresh_if_stale(db, None) is None  # just refreshed


def test_a_catalogue_not_yet_migrated_is_read_as_no_catalogue(tmp_path):
    # `ingest up` starts the master and the stats follower together: the follower
    # may find catalogue.db created but still empty.
    from stats import windows

    sqlite3.connect(tmp_path / "catalogue.db").close()
    db = open_db(tmp_path / "stats.db")
    summed = windows.refresh(db, tmp_path / "catalogue.db")
    assert summed.with_catalogue is False
    assert db.execute("PRAGMA database_list").fetchall()[-1][1] == "main"  # detached
