"""Downloads per project, as the publisher shows them: the last 30 days and all time,
as of the newest day stats.db has counted.

Read from the daily rollup `daily_projects` (stats.rollups), which is kept for ever,
never from the raw requests, which are pruned. The figures are dated by stats.db
itself, not by the reader's clock: the newest UTC day its rollups hold any counted
request for. A log follower days behind gives figures as of the day it has reached,
and says so. The 30 days are the UTC days up to and including that day
(stats.windows' window); `window_downloads` is not read, since it is only as fresh as
the last refresh of the windows and could disagree with the sum of all time taken now.

The file is opened read-only: the publisher never writes stats.db. A stats.db that is
missing, not yet migrated to its rollups, or unreadable gives no figures (an empty
dict), never an error: pages must publish whatever state the statistics are in.
"""

from __future__ import annotations

import logging
import sqlite3
from contextlib import closing
from dataclasses import dataclass
from datetime import date, datetime, time, timezone
from pathlib import Path
from urllib.parse import quote

from stats.windows import first_day

log = logging.getLogger("stats")

# The newest day counted: daily_hits holds every counted request (searches, pages and
# downloads) by (day, hour, kind), so a quiet day for downloads still moves it, and
# its key answers max(day) without a scan.
NEWEST_DAY = "SELECT max(day) FROM daily_hits"
# Every project at once: one pass over the rollup (a few million rows a year at
# piwheels' rate: seconds, once a day).
ALL = """
SELECT project, sum(CASE WHEN day >= :first THEN downloads ELSE 0 END), sum(downloads)
FROM daily_projects WHERE day <= :day AND project != ''
GROUP BY project
"""


@dataclass(frozen=True)
class Downloads:
    """A project's wheel downloads (bots apart), as of a day."""

    last_30_days: int
    all_time: int
    as_of: str  # YYYY-MM-DD (UTC): the newest day stats.db had counted

    @property
    def counts(self) -> tuple[int, int]:
        return self.last_30_days, self.all_time


def project_downloads(stats_path: Path) -> dict[str, Downloads]:
    """Every project downloaded at least once, with its downloads up to the end of the
    newest day stats.db has counted. Empty when stats.db cannot tell (see above)."""
    if not stats_path.exists():
        return {}
    try:
        with closing(sqlite3.connect(f"file:{quote(str(stats_path.resolve()))}?mode=ro",
                                     uri=True, timeout=5)) as conn:
            (day,) = conn.execute(NEWEST_DAY).fetchone()
            if day is None:
                return {}
            first = first_day(now=datetime.combine(date.fromisoformat(day), time(),
                                                   timezone.utc))
            return {project: Downloads(recent, total, day) for project, recent, total
                    in conn.execute(ALL, {"first": first, "day": day})}
    except sqlite3.Error as error:
        log.warning("downloads unavailable from %s: %s", stats_path, error)
        return {}
