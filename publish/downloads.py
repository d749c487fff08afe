"""The downloads the pages show: the publisher's record of the figures it last read
from stats.db (stats.downloads), and the day it read each project's.

Pages are static, so each says the day its figures are from. Every page, and
packages.json, is rendered from this record rather than from stats.db directly: a
publish costs one lookup by key (not a sum over the rollups), a project's page says
the same whether a build or a refresh wrote it, and `admin verify`, which renders
pages afresh to compare, renders the same bytes. `refresh` (once a day, from the
publish worker: publish.jobs) reads stats.db, keeps the projects whose figures
changed, with today's date, and says which they are, so that only their pages are
written again. A project never downloaded has no row, and its page no downloads line.

The record is a small SQLite file beside the catalogue (publish-downloads.db), written
by one refresher at a time (catalogue.transaction: BEGIN IMMEDIATE) and read by any
number of publishers.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable, Mapping
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from ingest.catalogue import transaction
from stats.downloads import Downloads

SCHEMA = """
CREATE TABLE IF NOT EXISTS shown (
    project TEXT PRIMARY KEY,
    last_30_days INTEGER NOT NULL,
    all_time INTEGER NOT NULL,
    as_of TEXT NOT NULL            -- the UTC day these figures were read
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS refreshes (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    refreshed REAL NOT NULL,       -- seconds since the epoch, of the last refresh
    pending TEXT NOT NULL          -- projects whose pages are not rewritten yet, \\n-joined
);
"""


@dataclass(frozen=True)
class Shown:
    """A project's downloads as its page shows them."""

    last_30_days: int
    all_time: int
    as_of: str  # YYYY-MM-DD (UTC)


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=30, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.executescript(SCHEMA)
    return conn


def shown(path: Path | None, names: Iterable[str] | None = None) -> dict[str, Shown]:
    """The record's figures of `names` (all by default); none without a record."""
    if path is None or not path.exists():
        return {}
    uri = f"file:{quote(str(path.resolve()))}?mode=ro"
    with closing(sqlite3.connect(uri, uri=True, timeout=30)) as conn:
        try:
            if names is None:
                rows = conn.execute("SELECT * FROM shown").fetchall()
            else:
                rows = [row for name in names for row in conn.execute(
                    "SELECT * FROM shown WHERE project = ?", (name,))]
        except sqlite3.OperationalError as error:
            if "no such table" not in str(error):
                raise
            return {}  # made, not yet given its tables
    return {project: Shown(recent, total, as_of) for project, recent, total, as_of in rows}


def last_refresh(path: Path) -> float | None:
    """When the record was last refreshed (seconds since the epoch), None if never."""
    if not path.exists():
        return None
    with closing(_connect(path)) as conn:
        row = conn.execute("SELECT refreshed FROM refreshes").fetchone()
    return row[0] if row else None


def has_figures(path: Path) -> bool:
    """Whether the record shows any project's downloads yet."""
    if not path.exists():
        return False
    with closing(_connect(path)) as conn:
        return conn.execute("SELECT 1 FROM shown LIMIT 1").fetchone() is not None


@dataclass
class Refresh:
    changed: list[str]  # projects whose pages must be written again, in name order
    read: int  # projects stats.db gave figures for


def refresh(path: Path, figures: Mapping[str, Downloads], today: str,
            now: float | None = None) -> Refresh:
    """Record `figures` (every project's, from stats.downloads), dating those that
    changed `today`. The changed projects are kept as pending until done() says
    their pages are written, and are returned again by the next refresh if a crash
    came between: nothing is left showing figures the record no longer holds.

    Figures only grow, so none at all while the record has some means stats.db
    could not tell (missing, being rebuilt): the record is left as it is."""
    with closing(_connect(path)) as conn, transaction(conn):
        old = {p: (r, t) for p, r, t in conn.execute(
            "SELECT project, last_30_days, all_time FROM shown")}
        row = conn.execute("SELECT pending FROM refreshes").fetchone()
        pending = set(filter(None, row[0].split("\n"))) if row else set()
        if not figures and old:
            changed: set[str] = set()
        else:
            new = {p: (d.last_30_days, d.all_time) for p, d in figures.items()
                   if d.all_time > 0}
            changed = {p for p in old.keys() | new.keys() if old.get(p) != new.get(p)}
            conn.executemany("DELETE FROM shown WHERE project = ?",
                             [(p,) for p in changed if p not in new])
            conn.executemany("INSERT OR REPLACE INTO shown VALUES (?, ?, ?, ?)",
                             [(p, *new[p], today) for p in changed if p in new])
        todo = sorted(changed | pending)
        conn.execute("INSERT OR REPLACE INTO refreshes VALUES (1, ?, ?)",
                     (time.time() if now is None else now, "\n".join(todo)))
    return Refresh(todo, len(figures))


def done(path: Path, names: Iterable[str]) -> None:
    """The pages of `names` show the record now."""
    finished = set(names)
    with closing(_connect(path)) as conn, transaction(conn):
        row = conn.execute("SELECT pending FROM refreshes").fetchone()
        if row:
            left = [p for p in row[0].split("\n") if p and p not in finished]
            conn.execute("UPDATE refreshes SET pending = ?", ("\n".join(left),))
