"""Search demand: projects that installers asked our index for lately, read from
stats.db, so that the scheduler can build their newest release ahead of the backlog.

An installer fetching a project's simple page is a search (see stats.paths); one
for a project we have no wheel of is demand we do not meet. Bots do not count, and
a project needs searches from several distinct clients, so that one client's
retries or typos do not reorder the farm's work.

The searches are read from the daily rollup `daily_searches` (stats.rollups), a
few thousand rows a day, never from the raw requests. Its `clients` is exact for
each day; summed over the window it counts client-days, so a client that searches
for a project on two different days counts twice (its retries within a day once).
"""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

log = logging.getLogger("ingest")

DAYS = 30  # how far back searches count: UTC days, today included
LIMIT = 100  # projects promoted at most

QUERY = """
SELECT project FROM daily_searches
WHERE day >= date('now', ?)
GROUP BY project
HAVING sum(clients) >= ?
ORDER BY sum(clients) DESC, project
LIMIT ?
"""


def searched_projects(stats_path: Path, clients: int, days: int = DAYS,
                      limit: int = LIMIT) -> list[str]:
    """Canonical names searched for by at least `clients` distinct non-bot clients
    (client-days, see above) in the last `days`, most wanted first; none when
    `clients` is 0 or stats.db cannot tell (missing, older than its rollups, or
    being rebuilt)."""
    if clients <= 0 or not stats_path.exists():
        return []
    try:
        conn = sqlite3.connect(f"file:{stats_path}?mode=ro", uri=True, timeout=5)
        try:
            rows = conn.execute(QUERY, (f"-{days - 1} days", clients, limit)).fetchall()
        finally:
            conn.close()
    except sqlite3.Error as error:
        log.warning("search demand unavailable from %s: %s", stats_path, error)
        return []
    return [row[0] for row in rows]
