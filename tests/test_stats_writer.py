"""Large loads: batches written by a child process, and what happens when it dies."""

from __future__ import annotations

import contextlib
import os
import signal
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from stats.clients import ClientHasher
from stats.loader import Parser, load_file
from stats.logline import MalformedLine, utc_time
from stats.store import Batch, open_db
from stats.writer import ProcessWriter, WriterError
from tests.stats_logs import PIP23, line, sample_log, write_log

BASE = datetime(2024, 10, 10, 8, 0, tzinfo=timezone.utc)


def parser() -> Parser:
    return Parser(ClientHasher(b"k" * 32))


def everything(db) -> dict[str, list[tuple]]:
    return {table: [tuple(row) for row in db.execute(f"SELECT * FROM {table} ORDER BY 1, 2")]
            for table in ("requests", "agents", "rejects")} | {
        "sources": [tuple(row)[:6] for row in db.execute("SELECT * FROM sources")]}


def numbered_log(path: Path, count: int) -> None:
    """Line n is a download of n bytes, so the stored sizes say which lines came."""
    write_log(path, [line("192.0.2.10", BASE + timedelta(seconds=n),
                          "GET /simple/six/six-1.16.0-py2.py3-none-any.whl HTTP/1.1", 200,
                          n, PIP23) for n in range(1, count + 1)])


def writer_pids() -> list[int]:
    """Our own children running stats.writer."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        if parent == os.getpid() and b"stats.writer" in command:
            pids.append(int(entry.name))
    return pids


def test_a_writer_process_stores_what_writing_in_process_stores(tmp_path):
    lines, rows, malformed = sample_log(BASE)
    log = tmp_path / "access.log"
    write_log(log, lines)
    inline, child = open_db(tmp_path / "inline.db"), open_db(tmp_path / "child.db")
    here = load_file(inline, parser(), log)
    there = load_file(child, parser(), log, batch_rows=1)  # a full batch: the child writes
    assert (there.lines, there.stored, there.rejected) == \
        (here.lines, here.stored, here.rejected) == (len(lines), len(rows), len(malformed))
    assert everything(child) == everything(inline)
    assert not writer_pids()  # the writer is gone once the load returns
    # A database no other process can open is written here, whatever the size.
    memory = open_db(":memory:")
    assert load_file(memory, parser(), log, batch_rows=1).stored == len(rows)
    assert everything(memory) == everything(inline)


def test_a_killed_writer_is_reported_and_the_next_load_loses_and_repeats_nothing(tmp_path):
    log = tmp_path / "access.log"
    numbered_log(log, 20_000)
    db = open_db(tmp_path / "stats.db")
    killed = []

    def kill_the_writer(_result) -> None:
        if not killed:
            [pid] = writer_pids()
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

    with pytest.raises(WriterError, match="writer process died .* loading again resumes"):
        load_file(db, parser(), log, progress=kill_the_writer, batch_rows=2_000)
    assert killed and not writer_pids()
    partial = db.execute("SELECT count(*) FROM requests").fetchone()[0]
    assert partial < 20_000
    again = load_file(db, parser(), log, batch_rows=2_000)
    assert again.stored == 20_000 - partial
    sizes = [row[0] for row in db.execute("SELECT bytes FROM requests ORDER BY id")]
    assert sizes == list(range(1, 20_001))


def test_a_failing_writer_reports_why_and_its_batch_is_not_half_written(tmp_path):
    db = open_db(tmp_path / "stats.db")
    written = []
    writer = ProcessWriter(str(tmp_path / "stats.db"), written.append)
    good = ("2024-10-10 08:00:00", "search", "six", None, "GET", 200, 10, "c" * 16, 1)
    writer.submit(Batch("f" * 32, "access.log", 0, 10, rows=[good], ends=[10]))
    bad = Batch("f" * 32, "access.log", 10, 30, rows=[good, good[:8]], ends=[20, 30])
    writer.submit(bad)  # one value short: SQLite refuses the second row
    with pytest.raises(WriterError, match="writing stats.db failed: ProgrammingError"):
        writer.close()
    writer.abort()
    assert [w.stored for w in written] == [1]
    assert db.execute("SELECT count(*) FROM requests").fetchone()[0] == 1
    assert db.execute("SELECT offset FROM sources").fetchone()[0] == 10
    assert not writer_pids()


@pytest.mark.parametrize("stamp", [
    "10/Oct/2024:13:55:36 +0200", "10/Oct/2024:00:05:59 +0530", "01/Jan/2024:00:00:00 -0000",
    "31/Dec/2023:23:59:59 -1200", "29/Feb/2024:12:00:00 +0000", "10/Oct/2024:13:55:60 +0000",
    "30/Feb/2024:12:00:00 +0000", "10/Foo/2024:10:00:00 +0000", "10/Oct/2024:13:55:3x +0000",
    "10/Oct/2024:13:55:36 +0200 extra", "10/Oct/2024:13:55:36",
])
def test_times_cached_by_the_minute_convert_as_each_stamp_alone(stamp):
    """The parser converts one stamp a minute and carries the seconds over."""
    try:
        expected = utc_time(stamp)
    except MalformedLine as error:
        expected = error
    def check(cached: Parser) -> None:
        try:
            assert cached.time(stamp) == expected
        except MalformedLine as error:
            assert str(error) == str(expected)

    cached = parser()
    check(cached)  # converting
    check(cached)  # from the cache of stamps
    neighbour = parser()  # another second of the same minute converted first
    with contextlib.suppress(MalformedLine):
        neighbour.time(f"{stamp[:18]}00{stamp[20:]}")
    check(neighbour)


def test_digits_that_are_no_number_make_a_malformed_line_not_a_failed_load(tmp_path):
    good = line("192.0.2.10", BASE, "GET /simple/six/ HTTP/1.1", 200, 10, PIP23)
    superscript = good.replace(" 200 10 ", " 200 1\u00b2 ")  # str.isdigit() says yes
    log = tmp_path / "access.log"
    write_log(log, [good, superscript, "not a log line", good])
    db = open_db(tmp_path / "stats.db")
    result = load_file(db, parser(), log)
    assert (result.stored, result.rejected) == (2, 2)
    # Offsets count bytes: the line after the two-byte character is where it is.
    second = len(good) + 1
    third = second + len(superscript.encode()) + 1
    assert list(db.execute("SELECT offset, reason FROM rejects ORDER BY offset")) == [
        (second, "not a number: '1\u00b2'"), (third, "not in the Combined Log Format")]
    assert log.read_bytes()[third:].startswith(b"not a log line\n")
