"""Downloads per project, as the publisher shows them: the last 30 days and all time.

Read from the daily rollup `daily_projects` (stats.rollups), which is kept for ever,
never from the raw requests, which are pruned. The 30 days are the UTC days up to and
including `today`, as in stats.windows; `window_downloads` is not read, since it is
only as fresh as the last refresh of the windows and could disagree with the sum of
all time taken now.

The file is opened read-only: the publisher never writes stats.db. A stats.db that is
missing, not yet migrated to its rollups, or unreadable gives no figures (an empty
dict, or zeros for the names asked for), never an error: pages must publish whatever
state the statistics are in.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import quote

log = logging.getLogger("stats")

DAYS = 30

# Every project at once: one pass over the rollup (a few million rows a year at
# piwheels' rate: seconds, once a day).
ALL = """
SELECT project, sum(CASE WHEN day >= :first THEN downloads ELSE 0 END), sum(downloads)
FROM daily_projects WHERE day <= :today AND project != ''
GROUP BY project
"""
# One project: the rollup's key is (day, project), so each of the days it holds is
# looked up by key instead of scanning every row for the name (CROSS JOIN keeps
# SQLite from turning the loop around).
ONE = """
WITH RECURSIVE days(day) AS (
  SELECT min(day) FROM daily_projects
  UNION ALL SELECT date(day, '+1 day') FROM days WHERE day < :today
)
SELECT coalesce(sum(CASE WHEN d.day >= :first THEN d.downloads ELSE 0 END), 0),
       coalesce(sum(d.downloads), 0)
FROM days CROSS JOIN daily_projects d ON d.day = days.day AND d.project = :name
"""


@dataclass(frozen=True)
class Downloads:
    """A project's wheel downloads (bots apart)."""

    last_30_days: int = 0
    all_time: int = 0


def today_utc() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%d")


def project_downloads(stats_path: Path, names: Iterable[str] | None = None,
                      today: str | None = None) -> dict[str, Downloads]:
    """Downloads up to the end of `today` (UTC, YYYY-MM-DD; default now): of every
    project downloaded at least once, or of each of `names` (zeros for a name never
    downloaded). Empty, or zeros, when stats.db cannot tell (see above)."""
    today = today or today_utc()
    first = (date.fromisoformat(today) - timedelta(days=DAYS - 1)).isoformat()
    wanted = None if names is None else list(dict.fromkeys(names))
    found: dict[str, Downloads] = {} if wanted is None else dict.fromkeys(wanted, Downloads())
    if not stats_path.exists():
        return found
    try:
        conn = sqlite3.connect(f"file:{quote(str(stats_path.resolve()))}?mode=ro", uri=True,
                               timeout=5)
        try:
            if wanted is None:
                for project, recent, total in conn.execute(ALL, {"first": first,
                                                                 "today": today}):
                    found[project] = Downloads(recent, total)
            else:
                for name in wanted:
                    recent, total = conn.execute(
                        ONE, {"first": first, "today": today, "name": name}).fetchone()
                    found[name] = Downloads(recent, total)
        finally:
            conn.close()
    except sqlite3.Error as error:
        log.warning("downloads unavailable from %s: %s", stats_path, error)
        return {} if wanted is None else dict.fromkeys(wanted, Downloads())
    return found
