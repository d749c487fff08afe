"""The downloads the pages show: the publisher's record of the figures it last read
from stats.db (stats.downloads), each with the day stats.db had counted up to when
they were read.

Pages are static, so each says the day its figures are from. Every page, and
packages.json, is rendered from this record rather than from stats.db directly: a
publish costs one lookup by key (not a sum over the rollups), a project's page says
the same whatever wrote it, and `admin verify`, which renders pages afresh to
compare, renders the same bytes. `refresh` (once a day, from the publish worker:
publish.jobs) reads stats.db and keeps the projects whose figures changed, dated by
stats.db's newest day. A project whose figures did not change keeps its row, and its
date: "N downloads as of <that day>" stays true of it, and re-dating it would mean
rewriting the page of every project ever downloaded each day, the cost this record
exists to avoid. A project never downloaded has no row, and its page no downloads
line.

The changed projects are kept as `pending` until their publishes are in the publish
queue (publish.jobs), so a crash between recording and queueing loses none; the
publishes themselves then write the pages, in order with every other publish.

The record is a small SQLite file beside the catalogue (publish-downloads.db) rather
than tables in the catalogue: it is derived from stats.db and rebuilt from it at any
time, so it stays out of the truth's backups and out of the catalogue's one write
lock, which ingest and the intake need. For the same reason a damaged record is no
emergency: readers see no figures (and say so in the log), and the next refresh
moves it aside and starts a new one. Written by one refresher at a time
(catalogue.transaction: BEGIN IMMEDIATE), read by any number of publishers.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from collections.abc import Iterable, Mapping
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from ingest.catalogue import transaction
from stats.downloads import Downloads

log = logging.getLogger("publish")

SCHEMA = """
CREATE TABLE IF NOT EXISTS shown (
    project TEXT PRIMARY KEY,
    last_30_days INTEGER NOT NULL,
    all_time INTEGER NOT NULL,
    -- the newest UTC day stats.db had counted when these figures were read; an
    -- unchanged project keeps the day its figures were first read (still true of them)
    as_of TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS refreshes (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    refreshed REAL NOT NULL,       -- seconds since the epoch, of the last refresh
    pending TEXT NOT NULL          -- projects whose publishes are not queued yet, \\n-joined
);
"""


def _connect(path: Path) -> sqlite3.Connection:
    """The record, for writing; a damaged one is moved aside and started afresh."""
    try:
        return _open_for_writing(path)
    except sqlite3.DatabaseError as error:
        if isinstance(error, sqlite3.OperationalError):
            raise  # locked, out of space: a passing fault, not a damaged file
        damaged = path.with_name(path.name + ".damaged")
        log.warning("%s is damaged (%s): moved to %s; the next refresh reads every "
                    "project's downloads again", path, error, damaged.name)
        os.replace(path, damaged)
        for suffix in ("-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        return _open_for_writing(path)


def _open_for_writing(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=30, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.executescript(SCHEMA)
    except sqlite3.Error:
        conn.close()
        raise
    return conn


def _read(path: Path | None, query: str, args: tuple = ()) -> list[tuple]:
    """Rows of `query` on the record, read-only; none without a record, or with one
    not yet given its tables, or damaged (logged: the next refresh replaces it)."""
    if path is None or not path.exists():
        return []
    uri = f"file:{quote(str(path.resolve()))}?mode=ro"
    try:
        with closing(sqlite3.connect(uri, uri=True, timeout=30)) as conn:
            return conn.execute(query, args).fetchall()
    except sqlite3.OperationalError as error:
        if "no such table" not in str(error):
            raise
        return []  # made, not yet given its tables
    except sqlite3.DatabaseError as error:
        log.warning("downloads record %s unreadable, pages show no downloads until the "
                    "next refresh replaces it: %s", path, error)
        return []


def shown(path: Path | None, name: str | None = None) -> dict[str, Downloads]:
    """The record's figures of every project, or of `name` alone."""
    rows = _read(path, "SELECT * FROM shown") if name is None else \
        _read(path, "SELECT * FROM shown WHERE project = ?", (name,))
    return {project: Downloads(recent, total, as_of) for project, recent, total, as_of in rows}


@dataclass
class State:
    """What the refresher needs to know of the record, read at once."""

    refreshed: float | None  # seconds since the epoch; None: never
    has_figures: bool  # whether any project's downloads are recorded yet
    pending: list[str] = field(default_factory=list)


def state(path: Path) -> State:
    rows = _read(path, "SELECT r.refreshed, r.pending, EXISTS (SELECT 1 FROM shown) "
                       "FROM refreshes r")
    if not rows:  # never refreshed, so no figures either (refresh writes both)
        return State(None, False)
    refreshed, pending, any_shown = rows[0]
    return State(refreshed, bool(any_shown), _names(pending))


def _names(joined: str) -> list[str]:
    return [name for name in joined.split("\n") if name]


@dataclass
class Refresh:
    changed: list[str]  # projects whose figures changed, in name order
    pending: list[str]  # their publishes and any still not queued: all to queue now
    read: int  # projects stats.db gave figures for


def refresh(path: Path, figures: Mapping[str, Downloads], now: float | None = None
            ) -> Refresh:
    """Record `figures` (every project's, from stats.downloads) where they changed,
    and add those projects to the pending publishes.

    Figures only grow, so none at all while the record has some means stats.db
    could not tell (missing, being rebuilt): the record is left as it is."""
    with closing(_connect(path)) as conn, transaction(conn):
        old = {p: (r, t) for p, r, t in conn.execute(
            "SELECT project, last_30_days, all_time FROM shown")}
        row = conn.execute("SELECT pending FROM refreshes").fetchone()
        pending = set(_names(row[0])) if row else set()
        changed: set[str] = set()
        if figures or not old:
            new = {p: d for p, d in figures.items() if d.all_time > 0}
            changed = {p for p in old.keys() | new.keys()
                       if old.get(p) != (new[p].counts if p in new else None)}
            conn.executemany("DELETE FROM shown WHERE project = ?",
                             [(p,) for p in changed if p not in new])
            conn.executemany("INSERT OR REPLACE INTO shown VALUES (?, ?, ?, ?)",
                             [(p, *new[p].counts, new[p].as_of) for p in changed if p in new])
        todo = sorted(changed | pending)
        conn.execute("INSERT OR REPLACE INTO refreshes VALUES (1, ?, ?)",
                     (time.time() if now is None else now, "\n".join(todo)))
    return Refresh(sorted(changed), todo, len(figures))


def queued(path: Path, names: Iterable[str]) -> None:
    """The publishes of `names` are in the publish queue: no longer pending."""
    finished = set(names)
    with closing(_connect(path)) as conn, transaction(conn):
        row = conn.execute("SELECT pending FROM refreshes").fetchone()
        if row:
            left = [p for p in _names(row[0]) if p not in finished]
            conn.execute("UPDATE refreshes SET pending = ?", ("\n".join(left),))
