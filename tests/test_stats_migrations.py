"""stats.db has numbered migrations: a file made before they existed is adopted as
schema 1 with its rows, and a later migration reaches an existing file in place."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import sqlite_utils

from ingest.migrations import migrate, schema_version
from stats import rollups
from stats.store import HEALTH_COLUMNS, MIGRATIONS, SCHEMA_VERSION, open_db

ROOT = Path(__file__).resolve().parent.parent

_HITS = """
SELECT r.id, r.time, date(r.time) AS day, r.kind, r.project, r.filename, r.bytes,
       r.client, r.agent, a.installer, a.installer_version, a.python, a.python_minor,
       a.implementation, a.distro, a.distro_version, a.distro_id, a.libc, a.libc_version,
       a.system, a.cpu, a.ci, a.user_agent
FROM requests r JOIN agents a ON a.id = r.agent
WHERE r.method = 'GET'
  AND (r.status BETWEEN 200 AND 299 OR r.status = 304
       OR (r.status = 404 AND r.kind = 'search'))
"""


def old_stats_db(path: Path) -> sqlite_utils.Database:
    """stats.db as the code before migrations made it (its create_schema, verbatim):
    tables made by sqlite-utils if missing, user_version left at 0."""
    db = sqlite_utils.Database(sqlite3.connect(str(path)))
    db.execute("PRAGMA page_size = 16384")
    db.enable_wal()
    with db.atomic():
        db["agents"].create({
            "id": int, "user_agent": str, "installer": str, "installer_version": str,
            "python": str, "python_minor": str, "implementation": str,
            "implementation_version": str, "distro": str, "distro_version": str,
            "distro_id": str, "libc": str, "libc_version": str, "system": str,
            "system_release": str, "cpu": str, "openssl_version": str,
            "setuptools_version": str, "rustc_version": str, "ci": int, "bot": int,
        }, pk="id", not_null={"user_agent", "bot"}, if_not_exists=True)
        db["requests"].create({
            "id": int, "time": str, "kind": str, "project": str, "filename": str,
            "method": str, "status": int, "bytes": int, "client": str, "agent": int,
        }, pk="id", not_null={"time", "kind", "method", "status", "bytes", "client", "agent"},
            foreign_keys=[("agent", "agents", "id")], if_not_exists=True)
        db["requests"].create_index(["kind", "time"], if_not_exists=True)
        db["sources"].create({
            "fingerprint": str, "path": str, "offset": int, "lines": int, "stored": int,
            "rejected": int, "updated": str,
        }, pk="fingerprint", if_not_exists=True)
        db["rejects"].create({"fingerprint": str, "offset": int, "reason": str},
                             pk=("fingerprint", "offset"), if_not_exists=True)
        db["worker_health"].create(HEALTH_COLUMNS, pk=("worker", "time"),
                                   not_null={"worker", "time"}, if_not_exists=True)
        db["worker_health"].create_index(["time"], if_not_exists=True)
        for name, sql in {"hits": _HITS + "  AND NOT a.bot",
                          "bot_hits": _HITS + "  AND a.bot"}.items():
            db.create_view(name, sql, ignore=True)
    return db


def fill(db: sqlite_utils.Database) -> None:
    db["agents"].insert({"id": 1, "user_agent": "pip/24.0", "installer": "pip", "bot": 0})
    db["requests"].insert_all([
        {"time": "2025-01-02T03:04:05", "kind": "download", "project": "numpy",
         "filename": "numpy-2.0-cp311-cp311-linux_armv7l.whl", "method": "GET",
         "status": 200, "bytes": 1234, "client": "c1", "agent": 1},
        {"time": "2025-01-02T03:04:06", "kind": "search", "project": "nope",
         "filename": None, "method": "GET", "status": 404, "bytes": 0, "client": "c2",
         "agent": 1},
    ])
    db["sources"].insert({"fingerprint": "f", "path": "access.log", "offset": 99,
                          "lines": 2, "stored": 2, "rejected": 0, "updated": "now"})
    db["worker_health"].insert({"worker": "pi1", "time": "2025-01-02T03:04:05",
                                "abi": "cp311", "builds_done": 3})


def schema(db: sqlite_utils.Database) -> list[tuple]:
    """What sqlite_master holds, whitespace aside (sqlite-utils wrote the old text)."""
    return sorted((kind, name, " ".join((sql or "").split())) for kind, name, sql in
                  db.execute("SELECT type, name, sql FROM sqlite_master"))


def test_migration_1_is_the_schema_before_migrations(tmp_path):
    old = old_stats_db(tmp_path / "old.db")
    first = sqlite3.connect(tmp_path / "new.db")
    migrate(first, MIGRATIONS[:1], "stats.db")
    assert schema(sqlite_utils.Database(first)) == schema(old)
    assert schema_version(open_db(tmp_path / "new.db").conn) == SCHEMA_VERSION


def test_a_stats_db_from_before_migrations_is_upgraded_in_place(tmp_path):
    path = tmp_path / "stats.db"
    old = old_stats_db(path)
    fill(old)
    before = {table: list(old[table].rows) for table in old.table_names()}
    hits = old.execute("SELECT count(*) FROM hits").fetchone()[0]
    old.conn.close()
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == 0

    db = open_db(path)
    assert schema_version(db.conn) == SCHEMA_VERSION
    assert {table: list(db[table].rows) for table in before} == before
    assert db.execute("SELECT count(*) FROM hits").fetchone()[0] == hits == 2
    # The rollups arrive filled from the rows the file held.
    assert rollups.stored(db.conn) == rollups.from_raw(db.conn)
    assert db.execute("SELECT * FROM daily_files").fetchall() == [
        ("2025-01-02", "numpy", "numpy-2.0-cp311-cp311-linux_armv7l.whl", "2.0", 1)]
    assert db.execute("SELECT * FROM daily_hits").fetchall() == [
        ("2025-01-02", 3, "download", 1, 1234), ("2025-01-02", 3, "search", 1, 0)]
    assert db.execute("SELECT * FROM daily_searches").fetchall() == [
        ("2025-01-02", "nope", 1, 1, "2025-01-02T03:04:06")]
    assert set(db.table_names()) >= {"agents", "requests", "sources", "rejects",
                                     "worker_health"}
    assert set(db.view_names()) == {"hits", "bot_hits"}
    db.conn.close()
    assert schema_version(open_db(path).conn) == SCHEMA_VERSION  # opening again: no-op


def test_a_new_migration_reaches_an_existing_file(tmp_path):
    """What stats.db had no way to do before: add a column to a file in use."""
    path = tmp_path / "stats.db"
    db = open_db(path)
    fill(db)
    db.conn.close()
    added = "ALTER TABLE worker_health ADD COLUMN uptime INTEGER;\n" \
            "CREATE INDEX worker_health_worker ON worker_health (worker);"
    conn = sqlite3.connect(path)
    migrate(conn, [*MIGRATIONS, added], "stats.db")
    assert schema_version(conn) == SCHEMA_VERSION + 1
    assert conn.execute("SELECT worker, builds_done, uptime FROM worker_health").fetchall() \
        == [("pi1", 3, None)]
    # The code of before (one migration fewer) refuses the newer file.
    conn.close()
    with pytest.raises(RuntimeError, match=rf"stats.db schema {SCHEMA_VERSION + 1} is newer "
                                           rf"than this code \({SCHEMA_VERSION}\)"):
        open_db(path)


def test_a_failing_migration_leaves_the_file_as_it_was(tmp_path):
    path = tmp_path / "stats.db"
    fill(open_db(path))
    broken = "ALTER TABLE requests ADD COLUMN referrer TEXT;\nSELECT * FROM no_such_table;"
    conn = sqlite3.connect(path)
    with pytest.raises(sqlite3.OperationalError, match="no_such_table"):
        migrate(conn, [*MIGRATIONS, broken], "stats.db")
    assert schema_version(conn) == SCHEMA_VERSION
    columns = [row[1] for row in conn.execute("PRAGMA table_info(requests)")]
    assert "referrer" not in columns
    assert conn.execute("SELECT count(*) FROM requests").fetchone()[0] == 2


@pytest.mark.parametrize("first", ["ingest.migrations", "ingest.catalogue", "stats.store"])
def test_imports_in_any_order(first):
    """The migrator and the catalogue import each other's modules: any may load first."""
    result = subprocess.run([sys.executable, "-c", f"import {first}; import stats.store; "
                             "import ingest.catalogue; ingest.catalogue.migrate"],
                            capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert result.returncode == 0, result.stderr
