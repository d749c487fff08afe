"""Loading access logs: the rows a real-shaped log must make, exactly, once."""

from __future__ import annotations

import gzip
import shutil
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from stats.agents import parse_agent
from stats.clients import ClientHasher, client_key
from stats.loader import Parser, load_file
from stats.logline import COMBINED, MalformedLine, parse, split_fields
from stats.store import open_db
from tests.stats_logs import GOOGLEBOT, PIP18, PIP24_CI, sample_log, write_log

BASE = datetime(2024, 10, 10, 8, 0, tzinfo=timezone.utc)
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def db(tmp_path):
    return open_db(tmp_path / "stats.db")


def parser(tmp_path) -> Parser:
    return Parser(ClientHasher(client_key(tmp_path)))


def stored_rows(db) -> list[tuple]:
    return [tuple(row) for row in db.execute(
        "SELECT r.time, r.kind, r.project, r.filename, r.method, r.status, r.bytes, "
        "a.installer FROM requests r JOIN agents a ON a.id = r.agent ORDER BY r.id")]


def everything(db) -> dict[str, list[tuple]]:
    return {table: [tuple(row) for row in db.execute(f"SELECT * FROM {table} ORDER BY 1, 2")]
            for table in ("requests", "agents", "rejects", "worker_health")} | {
        "sources": [tuple(row)[:6] for row in db.execute("SELECT * FROM sources")]}


def expected_rows(rows) -> list[tuple]:
    return [(r.time, r.kind, r.project, r.filename, r.method, r.status, r.bytes, r.installer)
            for r in rows]


def test_sample_log_yields_exactly_the_expected_rows(tmp_path, db):
    lines, rows, malformed = sample_log(BASE)
    log = tmp_path / "access.log"
    write_log(log, lines)
    result = load_file(db, parser(tmp_path), log)
    assert (result.lines, result.stored, result.rejected) == \
        (len(lines), len(rows), len(malformed))
    assert stored_rows(db) == expected_rows(rows)
    # Each malformed line is found again by its offset, with the reason.
    data = log.read_bytes()
    rejects = list(db.execute("SELECT offset, reason FROM rejects ORDER BY offset"))
    assert [data[o:].split(b"\n", 1)[0].decode() for o, _ in rejects] == malformed
    assert {reason for _, reason in rejects} == {
        "not in the Combined Log Format", "bad timestamp '10/Foo/2024:10:00:00 +0000'",
        "request line is not METHOD TARGET HTTP/VERSION"}


def test_loading_again_or_a_rotated_or_gzipped_copy_changes_nothing(tmp_path, db):
    lines, _, _ = sample_log(BASE)
    log = tmp_path / "access.log"
    write_log(log, lines)
    load_file(db, parser(tmp_path), log)
    before = everything(db)
    assert load_file(db, parser(tmp_path), log).stored == 0
    rotated = tmp_path / "access.log.1"
    shutil.copy(log, rotated)
    with rotated.open("rb") as plain, gzip.open(tmp_path / "access.log.2.gz", "wb") as packed:
        shutil.copyfileobj(plain, packed)
    assert load_file(db, parser(tmp_path), rotated).stored == 0
    assert load_file(db, parser(tmp_path), tmp_path / "access.log.2.gz").stored == 0
    assert everything(db) == before


def test_a_growing_file_is_loaded_in_pieces_without_loss_or_repeat(tmp_path, db):
    lines, rows, _ = sample_log(BASE)
    log = tmp_path / "access.log"
    text = "".join(f"{line}\n" for line in lines)
    cut = text.index("\n", len(text) // 2) + 20  # stop inside a line
    log.write_text(text[:cut])
    first = load_file(db, parser(tmp_path), log)
    assert first.incomplete
    with log.open("a") as out:
        out.write(text[cut:])
    second = load_file(db, parser(tmp_path), log)
    assert not second.incomplete
    assert first.stored + second.stored == len(rows)
    assert stored_rows(db) == expected_rows(rows)


def test_a_gzipped_log_loads_whole_even_without_a_final_newline(tmp_path, db):
    lines, rows, _ = sample_log(BASE)
    with gzip.open(tmp_path / "old.log.gz", "wt") as out:
        out.write("\n".join(lines))
    result = load_file(db, parser(tmp_path), tmp_path / "old.log.gz")
    assert result.stored == len(rows) and not result.incomplete
    assert stored_rows(db) == expected_rows(rows)


def test_no_client_address_is_stored(tmp_path, db):
    lines, _, _ = sample_log(BASE)
    log = tmp_path / "access.log"
    write_log(log, lines)
    load_file(db, parser(tmp_path), log)
    db.conn.commit()
    dump = "\n".join(db.conn.iterdump())
    for address in ("192.0.2.10", "198.51.100.7", "2001:db8::1", "66.249.66.1"):
        assert address not in dump
    clients = {row[0] for row in db.execute("SELECT client FROM requests")}
    assert len(clients) == 9 and all(len(c) == 16 for c in clients)
    key = (tmp_path / "secrets" / "stats-client-key")
    assert key.stat().st_mode & 0o077 == 0
    # Same key, same hash: a later load counts the same client as the same.
    assert ClientHasher(client_key(tmp_path))("192.0.2.10") in clients


def test_linehaul_fields_and_bots():
    pip = parse_agent(PIP24_CI)
    assert (pip.installer, pip.installer_version, pip.python, pip.implementation,
            pip.distro, pip.distro_version, pip.distro_id, pip.libc, pip.libc_version,
            pip.system, pip.cpu, pip.ci, pip.bot) == (
        "pip", "24.2", "3.11.2", "CPython", "Debian GNU/Linux", "12", "bookworm",
        "glibc", "2.36", "Linux", "aarch64", True, False)
    assert pip.is_installer and parse_agent(PIP18).cpu == "armv6l"
    assert parse_agent(GOOGLEBOT).bot and not parse_agent(GOOGLEBOT).is_installer
    assert parse_agent("Go-http-client/1.1").bot  # a robot linehaul ignores
    unknown = parse_agent("something/1.0 odd")
    assert (unknown.installer, unknown.bot) == (None, False)
    assert parse_agent("pip/23.0 [1, 2]").installer is None  # hostile JSON, no crash


def test_fast_split_agrees_with_the_full_grammar():
    lines, _, _ = sample_log(BASE)
    for text in lines:
        match = COMBINED.match(text)
        if match is None:
            with pytest.raises(MalformedLine):
                split_fields(text)
        else:
            assert split_fields(text) == match.group(
                "host", "time", "request", "status", "size", "agent")
    entry = parse('::1 - - [01/Jan/2024:00:30:00 +0100] "GET /x HTTP/1.1" 200 - "-" "a\\"b"')
    assert (entry.time, entry.size, entry.agent) == ("2023-12-31 23:30:00", 0, 'a\\"b')


def test_load_command(tmp_path, monkeypatch):
    lines, rows, malformed = sample_log(BASE)
    write_log(tmp_path / "access.log", lines)
    # The sample log is from 2024: keep its raw rows (stats load prunes them otherwise).
    env = {"WHEELWRIGHT_DATA": str(tmp_path / "var"), "PATH": "/usr/bin:/bin",
           "WHEELWRIGHT_STATS_RAW_DAYS": "0"}
    result = subprocess.run([sys.executable, "-m", "stats", "load",
                             str(tmp_path / "access.log")], capture_output=True, text=True,
                            cwd=ROOT, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert f"{len(rows)} stored, {len(malformed)} malformed" in result.stdout
    missing = subprocess.run([sys.executable, "-m", "stats", "load", str(tmp_path / "nope")],
                             capture_output=True, text=True, cwd=ROOT, env=env, timeout=60)
    assert missing.returncode != 0 and "no such file" in missing.stderr
    db = open_db(tmp_path / "var" / "stats.db")
    assert db["requests"].count == len(rows)


def test_times_are_converted_to_utc():
    when = BASE + timedelta(minutes=5)
    lines, rows, _ = sample_log(when)
    assert parse(lines[0]).time == rows[0].time == "2024-10-10 08:05:00"


def test_a_release_index_counts_like_the_simple_index(tmp_path, db):
    """/<codename>/simple/ serves pip as /simple/ does (publish.index): its wheels are
    downloads, its project pages searches (or page views), under the project's name."""
    from tests.stats_logs import FIREFOX, NUMPY_WHL, PIP23, line

    lines = [line("192.0.2.10", BASE, "GET /bookworm/simple/NumPy/ HTTP/1.1", 200, 900, PIP23),
             line("192.0.2.10", BASE, f"GET /bookworm/simple/numpy/{NUMPY_WHL}.metadata "
                  "HTTP/1.1", 200, 900, PIP23),
             line("192.0.2.10", BASE, f"GET /bookworm/simple/numpy/{NUMPY_WHL} HTTP/1.1", 200,
                  5_000_000, PIP23),
             line("192.0.2.11", BASE, "GET /trixie/simple/numpy/index.json HTTP/1.1", 200, 900,
                  FIREFOX),
             line("192.0.2.12", BASE, "GET /nowhere/simple/numpy/ HTTP/1.1", 404, 150, PIP23)]
    log = tmp_path / "access.log"
    write_log(log, lines)
    load_file(db, parser(tmp_path), log)
    assert [row[1:4] for row in stored_rows(db)] == [
        ("search", "numpy", None), ("metadata", "numpy", NUMPY_WHL),
        ("download", "numpy", NUMPY_WHL), ("page", "numpy", None), ("page", None, None)]
