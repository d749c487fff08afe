"""30-day figures per project, summed from the daily rollups every few minutes.

The daily rollups answer a question about one project, or about every project over a
few days, at once; but "the top 30 projects of the last 30 days" sums a row per
project per day (some 15,000 projects a day at piwheels' rate: 450,000 rows), and
time saved then joins each file downloaded to its build in the catalogue. Neither fits
in the 250 ms a dashboard chart may take. So `refresh` sums the last 30 UTC days
(today included) per project once, into `window_downloads` and `window_searches`,
with the build time saved (piwheels' rule, stats.metadata.TIME_SAVED_RULE) from the
catalogue; the charts read those few thousand rows, ordered by an index.

`stats follow` refreshes every 10 minutes (Refresher), `stats load` after loading,
and `stats serve` when it starts, so the figures are at most minutes old; the table
`windows` says when they were summed and over which days.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import quote

import sqlite_utils

from ingest.catalogue.writes import transaction

DAYS = 30
ARMV6_FACTOR = 6       # an armv6l Pi (Zero, 1) builds about six times slower
INSTALL_SECONDS = 6.7  # what a download and install of the wheel cost instead

# Part of migration 2 (stats.store.MIGRATIONS).
MIGRATION = """
CREATE TABLE windows (             -- when each window table was last summed
   name TEXT PRIMARY KEY, first_day TEXT NOT NULL, last_day TEXT NOT NULL,
   refreshed TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE window_downloads (    -- downloads per project over the window
   project TEXT PRIMARY KEY, downloads INTEGER NOT NULL,
   saved_downloads INTEGER NOT NULL,  -- of wheels that are not pure Python
   seconds_saved REAL NOT NULL
) WITHOUT ROWID;
CREATE INDEX window_downloads_rank ON window_downloads (downloads DESC, project);
CREATE INDEX window_downloads_saved ON window_downloads (seconds_saved DESC, project);
CREATE TABLE window_searches (     -- installer searches per project over the window
   project TEXT PRIMARY KEY, searches INTEGER NOT NULL,
   clients INTEGER NOT NULL,       -- client-days: distinct clients each day, summed
   last_searched TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX window_searches_rank ON window_searches (clients DESC, searches DESC, project);
"""

_DOWNLOADS = """
INSERT INTO window_downloads
SELECT project, sum(downloads), 0, 0.0 FROM daily_projects WHERE day >= ?
GROUP BY project
"""
# Each file's downloads times its build's time less INSTALL_SECONDS (never below 0),
# six times for a download under the armv6l name of the armv7l wheel built.
_SAVED = f"""
WITH saved AS (
  SELECT w.project, sum(f.downloads) AS downloads,
         sum(f.downloads * f.weight * max(b.duration - {INSTALL_SECONDS}, 0)) AS seconds
  FROM (
    SELECT filename, sum(downloads) AS downloads,
           CASE WHEN filename LIKE '%-linux^_armv6l.whl' ESCAPE '^'
                THEN {ARMV6_FACTOR} ELSE 1 END AS weight
    FROM daily_files WHERE day >= ? GROUP BY filename
  ) f
  JOIN catalogue.wheels w
    ON w.filename = replace(f.filename, '-linux_armv6l.whl', '-linux_armv7l.whl')
  JOIN catalogue.builds b
    ON b.project = w.project AND b.version = w.version AND b.abi = w.builder_abi
  WHERE w.abi_tag != 'none'
  GROUP BY w.project
)
UPDATE window_downloads SET saved_downloads = saved.downloads,
                            seconds_saved = coalesce(saved.seconds, 0)
FROM saved WHERE saved.project = window_downloads.project
"""  # noqa: S608 - constant numbers
_SEARCHES = """
INSERT INTO window_searches
SELECT project, sum(searches), sum(clients), max(last_time) FROM daily_searches
WHERE day >= ? GROUP BY project
"""


@dataclass
class Refreshed:
    first_day: str
    last_day: str
    projects: int
    seconds: float         # how long the refresh took
    with_catalogue: bool   # False: no catalogue to take build times from


def first_day(days: int = DAYS, now: datetime | None = None) -> str:
    now = now or datetime.now(timezone.utc)
    return (now - timedelta(days=days - 1)).strftime("%Y-%m-%d")


def refresh(db: sqlite_utils.Database, catalogue: Path | None, days: int = DAYS,
            now: datetime | None = None) -> Refreshed:
    """Sum the last `days` UTC days into the window tables, in one transaction."""
    started = time.monotonic()
    now = now or datetime.now(timezone.utc)
    start, end = first_day(days, now), now.strftime("%Y-%m-%d")
    conn = db.conn
    with_catalogue = catalogue is not None and Path(catalogue).exists()
    if with_catalogue:
        _attach(conn, Path(catalogue))
        # A catalogue the master has created but not yet migrated has no tables yet.
        with_catalogue = conn.execute(
            "SELECT 1 FROM catalogue.sqlite_master WHERE name = 'wheels'").fetchone() is not None
        if not with_catalogue:
            conn.execute("DETACH DATABASE catalogue")
    try:
        with transaction(conn):
            conn.execute("DELETE FROM window_downloads")
            conn.execute("DELETE FROM window_searches")
            conn.execute(_DOWNLOADS, [start])
            if with_catalogue:
                conn.execute(_SAVED, [start])
            conn.execute(_SEARCHES, [start])
            conn.executemany(
                "INSERT OR REPLACE INTO windows VALUES (?, ?, ?, ?)",
                [(name, start, end, now.strftime("%Y-%m-%d %H:%M:%S"))
                 for name in ("window_downloads", "window_searches")])
            projects = conn.execute("SELECT count(*) FROM window_downloads").fetchone()[0]
    finally:
        if with_catalogue:
            conn.execute("DETACH DATABASE catalogue")
    return Refreshed(start, end, projects, time.monotonic() - started, with_catalogue)


def _attach(conn: sqlite3.Connection, catalogue: Path) -> None:
    conn.execute("ATTACH DATABASE ? AS catalogue",
                 [f"file:{quote(str(catalogue.resolve()))}?mode=ro"])


def refresh_if_stale(db: sqlite_utils.Database, catalogue: Path | None,
                     older_than: float = 600.0) -> Refreshed | None:
    """Refresh unless the last refresh is under `older_than` seconds old and today's."""
    row = db.execute("SELECT min(refreshed) FROM windows").fetchone()
    if row[0] is not None:
        when = datetime.strptime(row[0], "%Y-%m-%d %H:%M:%S").replace(tzinfo=timezone.utc)
        now = datetime.now(timezone.utc)
        if when.date() == now.date() and (now - when).total_seconds() < older_than:
            return None
    return refresh(db, catalogue)


@dataclass
class Refresher:
    """Refreshes from a loop (stats follow) every `every` seconds."""
    catalogue: Path | None
    every: float = 600.0
    due: float = 0.0

    def step(self, db: sqlite_utils.Database) -> Refreshed | None:
        if time.monotonic() < self.due:
            return None
        self.due = time.monotonic() + self.every
        return refresh(db, self.catalogue)
