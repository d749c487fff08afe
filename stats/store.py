"""stats.db: the schema, and the writes made to it.

Tables are created with sqlite-utils and written in large transactions (one per
batch of tens of thousands of lines). Requests are appended in log order, so their
rowids follow time; the one index, (kind, time), serves every canned query's
range scan. The schema is described for people in stats/metadata.yml.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import sqlite_utils

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

# A request counts when it was served: a GET answered 2xx, or 304 (the client's
# cached copy is still good, so it is still a use). A search counts on 404 too: an
# installer asking for a project we have not built is the demand we want to see.
# Everything else stays in `requests` and is counted apart by `other_requests`.
HITS = """
SELECT r.id, r.time, date(r.time) AS day, r.kind, r.project, r.filename, r.bytes,
       r.client, r.agent, a.installer, a.installer_version, a.python, a.python_minor,
       a.implementation, a.distro, a.distro_version, a.distro_id, a.libc, a.libc_version,
       a.system, a.cpu, a.ci, a.user_agent
FROM requests r JOIN agents a ON a.id = r.agent
WHERE r.method = 'GET'
  AND (r.status BETWEEN 200 AND 299 OR r.status = 304
       OR (r.status = 404 AND r.kind = 'search'))
"""
VIEWS = {"hits": HITS + "  AND NOT a.bot", "bot_hits": HITS + "  AND a.bot"}


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
    """Open stats.db (WAL), creating what is missing."""
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
    create_schema(db)
    return db


def create_schema(db: sqlite_utils.Database) -> None:
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
        for name, sql in VIEWS.items():
            db.create_view(name, sql, ignore=True)


@contextmanager
def immediate(db: sqlite_utils.Database) -> Iterator[sqlite_utils.Database]:
    """A write transaction taken up front: two loaders of one file then serialise
    instead of failing to upgrade a read (sqlite-utils' atomic() nests inside)."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        db.conn.rollback()
        raise
    db.execute("COMMIT")


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
