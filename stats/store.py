"""stats.db: the schema, and the writes made to it.

The schema is built by numbered migrations (MIGRATIONS, PRAGMA user_version, run
by ingest.migrations like the catalogue's), so a new column reaches an existing
file. Rows are written in large transactions (one per batch of tens of thousands of
lines), each with the daily rollups that batch adds to (stats.rollups), which every
canned query reads. Requests are appended in log order, so their rowids follow
time; the (kind, time) index serves pruning. Tables and columns are described for
people in stats/metadata.py (Datasette's metadata).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import sqlite_utils

from ingest.catalogue.writes import transaction
from ingest.migrations import migrate
from stats import rollups, windows
from stats.agents import COLUMNS as AGENT_COLUMNS
from stats.agents import Agent

INSERT_REQUEST = ("INSERT INTO requests (time, kind, project, filename, method, status, "
                  "bytes, client, agent) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)")

HEALTH_COLUMNS = {
    "worker": str, "time": str, "abi": str, "cpu_temperature": float,
    "load1": float, "load5": float, "load15": float,
    "memory_total": int, "memory_available": int, "swap_total": int, "swap_free": int,
    "disk_total": int, "disk_free": int, "builds_done": int,
}

# Each entry upgrades the schema by one version (see ingest.migrations); never edit
# one that was released, append. Migration 1 is the schema stats.db had before it
# was numbered: IF NOT EXISTS lets it adopt such a file, rows and all.
#
# The views: a request counts when it was served, a GET answered 2xx, or 304 (the
# client's cached copy is still good, so it is still a use). A search counts on 404
# too: an installer asking for a project we have not built is the demand we want to
# see. Everything else stays in `requests` and is counted apart by `other_requests`.
MIGRATIONS: list[str] = [
    '''
CREATE TABLE IF NOT EXISTS "agents" (
   "id" INTEGER PRIMARY KEY,
   "user_agent" TEXT NOT NULL,
   "installer" TEXT,
   "installer_version" TEXT,
   "python" TEXT,
   "python_minor" TEXT,
   "implementation" TEXT,
   "implementation_version" TEXT,
   "distro" TEXT,
   "distro_version" TEXT,
   "distro_id" TEXT,
   "libc" TEXT,
   "libc_version" TEXT,
   "system" TEXT,
   "system_release" TEXT,
   "cpu" TEXT,
   "openssl_version" TEXT,
   "setuptools_version" TEXT,
   "rustc_version" TEXT,
   "ci" INTEGER,
   "bot" INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS "requests" (
   "id" INTEGER PRIMARY KEY,
   "time" TEXT NOT NULL,
   "kind" TEXT NOT NULL,
   "project" TEXT,
   "filename" TEXT,
   "method" TEXT NOT NULL,
   "status" INTEGER NOT NULL,
   "bytes" INTEGER NOT NULL,
   "client" TEXT NOT NULL,
   "agent" INTEGER NOT NULL REFERENCES "agents"("id")
);
CREATE INDEX IF NOT EXISTS "idx_requests_kind_time"
    ON "requests" ("kind", "time");
CREATE TABLE IF NOT EXISTS "sources" (
   "fingerprint" TEXT PRIMARY KEY,
   "path" TEXT,
   "offset" INTEGER,
   "lines" INTEGER,
   "stored" INTEGER,
   "rejected" INTEGER,
   "updated" TEXT
);
CREATE TABLE IF NOT EXISTS "rejects" (
   "fingerprint" TEXT,
   "offset" INTEGER,
   "reason" TEXT,
   PRIMARY KEY ("fingerprint", "offset")
);
CREATE TABLE IF NOT EXISTS "worker_health" (
   "worker" TEXT NOT NULL,
   "time" TEXT NOT NULL,
   "abi" TEXT,
   "cpu_temperature" REAL,
   "load1" REAL,
   "load5" REAL,
   "load15" REAL,
   "memory_total" INTEGER,
   "memory_available" INTEGER,
   "swap_total" INTEGER,
   "swap_free" INTEGER,
   "disk_total" INTEGER,
   "disk_free" INTEGER,
   "builds_done" INTEGER,
   PRIMARY KEY ("worker", "time")
);
CREATE INDEX IF NOT EXISTS "idx_worker_health_time"
    ON "worker_health" ("time");
CREATE VIEW IF NOT EXISTS "hits" AS
SELECT r.id, r.time, date(r.time) AS day, r.kind, r.project, r.filename, r.bytes,
       r.client, r.agent, a.installer, a.installer_version, a.python, a.python_minor,
       a.implementation, a.distro, a.distro_version, a.distro_id, a.libc, a.libc_version,
       a.system, a.cpu, a.ci, a.user_agent
FROM requests r JOIN agents a ON a.id = r.agent
WHERE r.method = 'GET'
  AND (r.status BETWEEN 200 AND 299 OR r.status = 304
       OR (r.status = 404 AND r.kind = 'search'))
  AND NOT a.bot;
CREATE VIEW IF NOT EXISTS "bot_hits" AS
SELECT r.id, r.time, date(r.time) AS day, r.kind, r.project, r.filename, r.bytes,
       r.client, r.agent, a.installer, a.installer_version, a.python, a.python_minor,
       a.implementation, a.distro, a.distro_version, a.distro_id, a.libc, a.libc_version,
       a.system, a.cpu, a.ci, a.user_agent
FROM requests r JOIN agents a ON a.id = r.agent
WHERE r.method = 'GET'
  AND (r.status BETWEEN 200 AND 299 OR r.status = 304
       OR (r.status = 404 AND r.kind = 'search'))
  AND a.bot;
''',
    # Daily rollups (stats.rollups), filled from the rows the file already holds, and
    # the 30-day sums per project (stats.windows).
    rollups.MIGRATION + windows.MIGRATION,
]
SCHEMA_VERSION = len(MIGRATIONS)


@dataclass
class Batch:
    """Parsed lines of one source, ready to write. `ends[i]` is the byte offset just
    past the line that made `rows[i]`; a batch covers [start, end) of its source."""
    fingerprint: str
    path: str
    start: int
    end: int
    rows: list[tuple] = field(default_factory=list)
    ends: list[int] = field(default_factory=list)
    rejects: list[tuple[int, str]] = field(default_factory=list)  # (offset, reason)
    agents: list[Agent] = field(default_factory=list)


@dataclass
class Written:
    stored: int = 0
    rejected: int = 0
    already: int = 0    # rows skipped because their lines were loaded before


def open_db(path: Path | str) -> sqlite_utils.Database:
    """Open stats.db (WAL), migrated to the current schema."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    # A connection may be handed from one thread to another (never used by two at once).
    db = sqlite_utils.Database(sqlite3.connect(str(path), timeout=60,
                                               check_same_thread=False))
    # Large pages take a tenth off the cost of appending rows. Only a new file takes
    # the setting (before WAL is on); an existing one keeps the size it was made with.
    db.execute("PRAGMA page_size = 16384")
    db.enable_wal()
    db.execute("PRAGMA synchronous = NORMAL")
    db.execute("PRAGMA cache_size = -65536")
    migrate(db.conn, MIGRATIONS, "stats.db")
    return db


@contextmanager
def immediate(db: sqlite_utils.Database) -> Iterator[sqlite_utils.Database]:
    """A write transaction taken up front: two loaders of one file then serialise
    instead of failing to upgrade a read (sqlite-utils' atomic() nests inside)."""
    with transaction(db.conn):
        yield db


def source_offset(db: sqlite_utils.Database, fingerprint: str) -> int:
    row = db.execute("SELECT offset FROM sources WHERE fingerprint = ?",
                     [fingerprint]).fetchone()
    return row[0] if row else 0


def write_batch(db: sqlite_utils.Database, batch: Batch) -> Written:
    """Write one batch in one transaction, skipping lines of the source already
    written (by an earlier load, or by another process racing this one)."""
    with immediate(db):
        # Agents first and always: later batches' rows may refer to them.
        if batch.agents:
            db["agents"].insert_all(
                (_agent_row(agent) for agent in batch.agents), ignore=True, batch_size=500)
        done = source_offset(db, batch.fingerprint)
        if done >= batch.end:
            return Written(already=len(batch.rows))
        rows, rejects = batch.rows, batch.rejects
        if done > batch.start:
            rows = [row for row, end in zip(batch.rows, batch.ends, strict=True) if end > done]
            rejects = [r for r in batch.rejects if r[0] >= done]
        db.conn.executemany(INSERT_REQUEST, rows)
        rollups.apply(db, rows, batch.agents)
        if rejects:
            db["rejects"].insert_all(
                ({"fingerprint": batch.fingerprint, "offset": offset, "reason": reason}
                 for offset, reason in rejects), ignore=True)
        db.execute(
            "INSERT INTO sources (fingerprint, path, offset, lines, stored, rejected, updated) "
            "VALUES (?, ?, ?, ?, ?, ?, datetime('now')) ON CONFLICT (fingerprint) DO UPDATE "
            "SET path = excluded.path, offset = excluded.offset, "
            "lines = lines + excluded.lines, stored = stored + excluded.stored, "
            "rejected = rejected + excluded.rejected, updated = excluded.updated",
            [batch.fingerprint, batch.path, batch.end, len(rows) + len(rejects), len(rows),
             len(rejects)])
    return Written(stored=len(rows), rejected=len(rejects),
                   already=len(batch.rows) - len(rows))


def _agent_row(agent: Agent) -> dict:
    row = {name: getattr(agent, name) for name in AGENT_COLUMNS}
    python = agent.python
    row["python_minor"] = ".".join(python.split(".")[:2]) if python else None
    return row
