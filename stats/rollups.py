"""Daily rollups of stats.db's requests, kept up to date with every batch written.

Every figure Datasette shows reads these small tables instead of the raw `requests`
rows, so a chart over a year touches thousands of rows, not tens of millions; the raw
rows can then be dropped after a while (`prune`, WHEELWRIGHT_STATS_RAW_DAYS) while
the rollups are kept for ever. `apply` runs inside the transaction that writes a
batch's raw rows and the log file's new offset (stats.store.write_batch), so the
rollups always hold exactly the rows `requests` was given: a batch written twice is
skipped whole, and a writer killed mid-batch leaves neither.

A batch is tallied in Python first (one pass over its rows, `tally`), so SQLite
does one upsert per distinct key, not one per row. What counts is what the `hits`
view says (a GET answered 2xx or 304, or a search answered 404; bots apart): `tally`
and COUNTED_SQL (FROM_RAW, the migration's backfill) say the same.

Distinct clients are not additive: `daily_searches.clients` is the number of
distinct clients that searched for the project that day (exact, from the helper
table `search_clients`, which keeps (day, project, client) for as long as the raw
rows are kept). Over a longer window its sum counts client-days: a client searching
on three days counts three times, one searching thirty times in a day once.
"""

from __future__ import annotations

import sqlite3
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from operator import itemgetter

import sqlite_utils

from ingest.catalogue.writes import transaction
from stats.agents import Agent
from stats.paths import KINDS

# The agent fields the shares are counted by; '' stands for unknown (SQLite's
# ON CONFLICT never matches a NULL key).
AGENT_FIELDS = ("installer", "installer_version", "python_minor", "distro",
                "distro_version", "distro_id", "cpu")
AGENT_KINDS = frozenset({"download", "search"})
COUNTED_STATUS = frozenset([*range(200, 300), 304])
PRUNE_ROWS = 20_000  # raw rows deleted per transaction: a writer waits at most that long
AGENT_CACHE = 200_000

COUNTED_SQL = ("method = 'GET' AND (status BETWEEN 200 AND 299 OR status = 304 "
               "OR (status = 404 AND kind = 'search'))")
# The version in a wheel's name (name-version-...); `version_of` does the same.
_REST = "substr(filename, instr(filename, '-') + 1)"
VERSION_SQL = f"substr({_REST}, 1, instr({_REST} || '-', '-') - 1)"

# Each rollup as the raw rows give it: what migration 2 fills an existing file with,
# and what the tests compare the rollups with. `apply` groups each batch the same way.
FROM_RAW = {
    "daily_hits": "SELECT substr(time, 1, 10), CAST(substr(time, 12, 2) AS INTEGER), kind, "
                  "count(*), sum(bytes) FROM hits GROUP BY 1, 2, 3",
    "daily_files": "SELECT substr(time, 1, 10), coalesce(project, ''), "  # noqa: S608
                   f"coalesce(filename, ''), {VERSION_SQL}, count(*) "
                   "FROM hits WHERE kind = 'download' GROUP BY 1, 2, 3",
    "daily_projects": "SELECT substr(time, 1, 10), coalesce(project, ''), count(*) "
                      "FROM hits WHERE kind = 'download' GROUP BY 1, 2",
    "daily_agents": "SELECT substr(time, 1, 10), kind, coalesce(installer, ''), "
                    "coalesce(installer_version, ''), coalesce(python_minor, ''), "
                    "coalesce(distro, ''), coalesce(distro_version, ''), "
                    "coalesce(distro_id, ''), coalesce(cpu, ''), count(*) FROM hits "
                    "WHERE kind IN ('download', 'search') GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9",
    "daily_searches": "SELECT substr(time, 1, 10), project, count(*), "
                      "count(DISTINCT client), max(time) FROM hits "
                      "WHERE kind = 'search' AND project IS NOT NULL GROUP BY 1, 2",
    "search_clients": "SELECT DISTINCT substr(time, 1, 10), project, client FROM hits "
                      "WHERE kind = 'search' AND project IS NOT NULL",
    "daily_other": "SELECT substr(time, 1, 10), method, status, count(*) FROM requests "  # noqa: S608
                   f"WHERE NOT ({COUNTED_SQL}) GROUP BY 1, 2, 3",
    "daily_bots": "SELECT substr(time, 1, 10), agent, count(*), max(time) FROM bot_hits "
                  "GROUP BY 1, 2",
}

# Migration 2 (stats.store.MIGRATIONS): the tables, filled from the raw rows the file
# already holds.
MIGRATION = """
CREATE TABLE daily_hits (        -- counted requests per UTC hour and kind, bots apart
   day TEXT NOT NULL, hour INTEGER NOT NULL, kind TEXT NOT NULL,
   requests INTEGER NOT NULL, bytes INTEGER NOT NULL,
   PRIMARY KEY (day, hour, kind)
) WITHOUT ROWID;
CREATE TABLE daily_files (       -- wheel downloads per file
   day TEXT NOT NULL, project TEXT NOT NULL, filename TEXT NOT NULL,
   version TEXT NOT NULL, downloads INTEGER NOT NULL,
   PRIMARY KEY (day, project, filename)
) WITHOUT ROWID;
CREATE TABLE daily_projects (    -- wheel downloads per project (daily_files summed)
   day TEXT NOT NULL, project TEXT NOT NULL, downloads INTEGER NOT NULL,
   PRIMARY KEY (day, project)
) WITHOUT ROWID;
CREATE TABLE daily_agents (      -- downloads and searches by what the installer runs on
   day TEXT NOT NULL, kind TEXT NOT NULL,
   installer TEXT NOT NULL, installer_version TEXT NOT NULL, python TEXT NOT NULL,
   distro TEXT NOT NULL, distro_version TEXT NOT NULL, distro_id TEXT NOT NULL,
   cpu TEXT NOT NULL, requests INTEGER NOT NULL,
   PRIMARY KEY (day, kind, installer, installer_version, python, distro,
                distro_version, distro_id, cpu)
) WITHOUT ROWID;
CREATE TABLE daily_searches (    -- installer searches per project
   day TEXT NOT NULL, project TEXT NOT NULL, searches INTEGER NOT NULL,
   clients INTEGER NOT NULL, last_time TEXT NOT NULL,
   PRIMARY KEY (day, project)
) WITHOUT ROWID;
CREATE TABLE search_clients (    -- who searched what that day; pruned with the raw rows
   day TEXT NOT NULL, project TEXT NOT NULL, client TEXT NOT NULL,
   PRIMARY KEY (day, project, client)
) WITHOUT ROWID;
CREATE TABLE daily_other (       -- requests no count includes (HEAD, errors, redirects)
   day TEXT NOT NULL, method TEXT NOT NULL, status INTEGER NOT NULL,
   requests INTEGER NOT NULL,
   PRIMARY KEY (day, method, status)
) WITHOUT ROWID;
CREATE TABLE daily_bots (        -- counted requests made by bots
   day TEXT NOT NULL, agent INTEGER NOT NULL, requests INTEGER NOT NULL,
   last_time TEXT NOT NULL,
   PRIMARY KEY (day, agent)
) WITHOUT ROWID;
""" + "".join(f"INSERT INTO {table}\n{sql};\n" for table, sql in FROM_RAW.items())

UPSERTS = {
    "daily_hits": "INSERT INTO daily_hits VALUES (?, ?, ?, ?, ?) "
                  "ON CONFLICT DO UPDATE SET requests = requests + excluded.requests, "
                  "bytes = bytes + excluded.bytes",
    "daily_files": "INSERT INTO daily_files VALUES (?, ?, ?, ?, ?) "
                   "ON CONFLICT DO UPDATE SET downloads = downloads + excluded.downloads",
    "daily_projects": "INSERT INTO daily_projects VALUES (?, ?, ?) "
                      "ON CONFLICT DO UPDATE SET downloads = downloads + excluded.downloads",
    "daily_agents": "INSERT INTO daily_agents VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                    "ON CONFLICT DO UPDATE SET requests = requests + excluded.requests",
    "daily_searches": "INSERT INTO daily_searches VALUES (?1, ?2, ?3, (SELECT count(*) "
                      "FROM search_clients WHERE day = ?1 AND project = ?2), ?4) "
                      "ON CONFLICT DO UPDATE SET searches = searches + excluded.searches, "
                      "clients = excluded.clients, "
                      "last_time = max(last_time, excluded.last_time)",
    "daily_other": "INSERT INTO daily_other VALUES (?, ?, ?, ?) "
                   "ON CONFLICT DO UPDATE SET requests = requests + excluded.requests",
    "daily_bots": "INSERT INTO daily_bots VALUES (?, ?, ?, ?) "
                  "ON CONFLICT DO UPDATE SET requests = requests + excluded.requests, "
                  "last_time = max(last_time, excluded.last_time)",
}
# The day's distinct clients are counted afresh from search_clients (a range of its
# primary key) each time a batch adds to the day's searches of a project.
NEW_SEARCH_CLIENT = "INSERT OR IGNORE INTO search_clients VALUES (?, ?, ?)"

def version_of(filename: str) -> str:
    """The version part of a wheel's name, as VERSION_SQL finds it."""
    return filename[filename.find("-") + 1:].split("-", 1)[0]


def agent_key(agent: Agent) -> tuple[str, ...] | None:
    """The fields a counted request of `agent` is tallied by; None for a bot."""
    if agent.bot:
        return None
    python = agent.python
    minor = ".".join(python.split(".")[:2]) if python else None
    values = {name: getattr(agent, name, None) for name in AGENT_FIELDS}
    values["python_minor"] = minor
    return tuple(values[name] or "" for name in AGENT_FIELDS)


@dataclass
class AgentKeys:
    """What the rollups need of each agent id: learnt from each batch's new agents
    and, for agents another process wrote, from the agents table. An id is a hash
    of the User-Agent text, so what it maps to never changes.

    Agents that share an agent_key share a small number, their group, so that a
    batch's rows are tallied by (hour, kind, group): far fewer keys than agents."""
    group: dict[int, int] = field(default_factory=dict)  # agents whose requests count
    bots: set[int] = field(default_factory=set)
    groups: list[tuple[str, ...]] = field(default_factory=list)
    numbers: dict[tuple[str, ...], int] = field(default_factory=dict)

    def learn(self, db: sqlite_utils.Database, agents: Iterable[Agent],
              ids: Iterable[int]) -> None:
        if len(self.group) + len(self.bots) > AGENT_CACHE:
            self.group.clear()
            self.bots.clear()
        for agent in agents:
            self._know(agent.id, agent_key(agent))
        missing = [i for i in ids if i not in self.group and i not in self.bots]
        for start in range(0, len(missing), 500):
            chunk = missing[start:start + 500]
            marks = ",".join("?" * len(chunk))
            for row in db.execute(
                    f"SELECT id, bot, {', '.join(AGENT_FIELDS)} FROM agents "  # noqa: S608
                    f"WHERE id IN ({marks})", chunk):
                self._know(row[0], None if row[1] else tuple(v or "" for v in row[2:]))
        # An id still unknown is not in `agents`: like the views' join, the rollups
        # leave its requests out (it is looked up again next batch).

    def _know(self, agent: int, key: tuple[str, ...] | None) -> None:
        if key is None:
            self.bots.add(agent)
            return
        number = self.numbers.get(key)
        if number is None:
            number = self.numbers[key] = len(self.groups)
            self.groups.append(key)
        self.group[agent] = number


AGENT_KEYS = AgentKeys()


@dataclass
class Tally:
    """One batch's rows, counted by each rollup's key (or a finer one)."""
    hits: dict[tuple, list[int]] = field(default_factory=dict)  # (day hour, kind, group)
    files: dict[tuple, int] = field(default_factory=dict)       # (day, project, file)
    searches: dict[tuple, list] = field(default_factory=dict)   # (day, project): n, last
    clients: set[tuple] = field(default_factory=set)            # (day, project, client)
    other: dict[tuple, int] = field(default_factory=dict)       # (day, method, status)
    bots: dict[tuple, list] = field(default_factory=dict)       # (day, agent): n, last


def tally(rows: Sequence[tuple], keys: AgentKeys) -> Tally:
    """Count `rows` (INSERT_REQUEST's order) by each rollup's key, in one pass. It
    runs once per stored log line, so it does as little as it can: the hits key
    carries the agent's group, and daily_hits and daily_agents are summed from it.
    (A loop measured faster than passes of map/zip/Counter over the columns.)"""
    result = Tally()
    hits, files, searches, clients = (result.hits, result.files, result.searches,
                                      result.clients)
    group, bots = keys.group, keys.bots
    counted_status = COUNTED_STATUS
    for when, kind, project, filename, method, status, size, client, agent in rows:
        if method != "GET" or (status not in counted_status
                               and (status != 404 or kind != "search")):
            key = (when[:10], method, status)
            result.other[key] = result.other.get(key, 0) + 1
            continue
        number = group.get(agent)
        if number is None:
            if agent in bots:
                key = (when[:10], agent)
                found = result.bots.get(key)
                if found is None:
                    result.bots[key] = [1, when]
                else:
                    found[0] += 1
                    if when > found[1]:
                        found[1] = when
            continue
        key = (when[:13], kind, number)
        found = hits.get(key)
        if found is None:
            hits[key] = [1, size]
        else:
            found[0] += 1
            found[1] += size
        if kind == "download":
            key = (when[:10], project, filename)
            files[key] = files.get(key, 0) + 1
        elif kind == "search":
            day = when[:10]
            key = (day, project)
            found = searches.get(key)
            if found is None:
                searches[key] = [1, when]
            else:
                found[0] += 1
                if when > found[1]:
                    found[1] = when
            clients.add((day, project, client))
    return result


def apply(db: sqlite_utils.Database, rows: Sequence[tuple], agents: Iterable[Agent]) -> None:
    """Add `rows` (just inserted into `requests`, same transaction) to the rollups."""
    if not rows:
        return
    AGENT_KEYS.learn(db, agents, set(map(itemgetter(8), rows)))
    counts = tally(rows, AGENT_KEYS)
    groups = AGENT_KEYS.groups
    conn = db.conn
    hours: dict[tuple, list[int]] = {}
    shares: Counter = Counter()
    for (stamp, kind, number), (n, size) in counts.hits.items():
        key = (stamp, kind)
        found = hours.get(key)
        if found is None:
            hours[key] = [n, size]
        else:
            found[0] += n
            found[1] += size
        if kind in AGENT_KINDS:
            shares[(stamp[:10], kind, *groups[number])] += n
    conn.executemany(UPSERTS["daily_hits"], (
        (stamp[:10], int(stamp[11:13]), kind, n, size)
        for (stamp, kind), (n, size) in hours.items()))
    conn.executemany(UPSERTS["daily_agents"], ((*key, n) for key, n in shares.items()))
    if counts.files:
        conn.executemany(UPSERTS["daily_files"], (
            (day, project or "", filename or "", version_of(filename or ""), n)
            for (day, project, filename), n in counts.files.items()))
        conn.executemany(UPSERTS["daily_projects"], (
            (day, project or "", n) for (day, project), n in
            _sum_by(counts.files, itemgetter(0, 1)).items()))
    if counts.searches:
        conn.executemany(NEW_SEARCH_CLIENT, (
            key for key in counts.clients if key[1] is not None))
        conn.executemany(UPSERTS["daily_searches"], (
            (*key, n, last) for key, (n, last) in counts.searches.items()
            if key[1] is not None))
    if counts.other:
        conn.executemany(UPSERTS["daily_other"], (
            (*key, n) for key, n in counts.other.items()))
    if counts.bots:
        conn.executemany(UPSERTS["daily_bots"], (
            (*key, n, last) for key, (n, last) in counts.bots.items()))


def _sum_by(counts: Counter, part: Callable[[tuple], tuple]) -> Counter:
    """`counts` summed over keys that share `part(key)`."""
    summed: Counter = Counter()
    for key, n in counts.items():
        summed[part(key)] += n
    return summed


@dataclass
class Pruned:
    requests: int = 0
    search_clients: int = 0
    done: bool = True   # False when stopped by `limit` with more to delete


def cutoff_day(keep_days: int, now: datetime | None = None) -> str:
    """The first UTC day whose raw rows are kept."""
    now = now or datetime.now(timezone.utc)
    return (now - timedelta(days=keep_days - 1)).strftime("%Y-%m-%d")


def prune(db: sqlite_utils.Database, keep_days: int, now: datetime | None = None,
          batch: int = PRUNE_ROWS, limit: float | None = None) -> Pruned:
    """Delete raw rows (requests, search_clients) older than the last `keep_days`
    UTC days, today included; `keep_days` <= 0 keeps them all. Rollups are not
    touched. Each transaction deletes at most `batch` rows, so writers wait little;
    with `limit` (seconds) it stops early and says it is not done."""
    result = Pruned()
    if keep_days <= 0:
        return result
    first_kept = cutoff_day(keep_days, now)
    deadline = None if limit is None else time.monotonic() + limit
    for kind in KINDS:
        while True:
            with transaction(db.conn):
                # The (kind, time) index finds them; `time` starts with the day.
                deleted = db.execute(
                    "DELETE FROM requests WHERE id IN (SELECT id FROM requests "
                    "WHERE kind = ? AND time < ? LIMIT ?)", [kind, first_kept, batch]).rowcount
            result.requests += deleted
            if deleted < batch:
                break
            if deadline is not None and time.monotonic() > deadline:
                result.done = False
                return result
    while True:
        with transaction(db.conn):
            deleted = db.execute(
                "DELETE FROM search_clients WHERE (day, project, client) IN ("
                "SELECT day, project, client FROM search_clients WHERE day < ? LIMIT ?)",
                [first_kept, batch]).rowcount
        result.search_clients += deleted
        if deleted < batch:
            return result
        if deadline is not None and time.monotonic() > deadline:
            result.done = False
            return result


@dataclass
class Pruner:
    """Prunes raw rows from a loop (stats follow): every `every` seconds, and then
    for at most `budget` seconds a time, so a large backlog of old rows goes in
    short steps between polls."""
    keep_days: int
    every: float = 600.0
    budget: float = 1.0
    due: float = 0.0

    def step(self, db: sqlite_utils.Database) -> Pruned | None:
        if self.keep_days <= 0 or time.monotonic() < self.due:
            return None
        result = prune(db, self.keep_days, limit=self.budget)
        self.due = time.monotonic() + (0.0 if not result.done else self.every)
        return result


def from_raw(conn: sqlite3.Connection) -> dict[str, list[tuple]]:
    """Each rollup computed afresh from the raw rows (FROM_RAW), sorted."""
    return {table: sorted(conn.execute(sql).fetchall()) for table, sql in FROM_RAW.items()}


def stored(conn: sqlite3.Connection) -> dict[str, list[tuple]]:
    """Each rollup as stored, sorted like `from_raw`."""
    return {table: sorted(conn.execute(f"SELECT * FROM {table}").fetchall())  # noqa: S608
            for table in FROM_RAW}
