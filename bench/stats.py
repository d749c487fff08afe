"""Benchmark: access log lines into stats.db, and the canned queries over a year.

    python bench/stats.py [--lines 1000000] [--runs 3]
    python bench/stats.py --queries [--days 365] [--raw-days 90] [--keep DIR]

Generates a log in the Combined Log Format with a realistic mix of clients (pip of
several versions on several Raspberry Pi OS releases, uv, browsers, bots, a few
malformed lines; mostly wheel downloads and simple-page searches), then loads it into
a fresh stats.db with `stats.loader`, and in the same run with the naive baseline:
every line's user agent parsed by linehaul, every row inserted on its own with
sqlite-utils. Each runs in a child process of its own; prints lines/s, lines per
CPU-second (the loader's writer process included) and peak RSS (the writer's apart).

With --queries: builds a stats.db holding a year of traffic at piwheels' 2021 rate
(36.7 million downloads and as many searches) and a catalogue to join it with, then
times every canned query and every dashboard chart's query on it, each against the
same query written over the raw rows (the baseline, in the same run). See
`build_year` for how the year is made and `RAW_QUERIES` for the baselines.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import random
import resource
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

RELEASES = [  # (distro name, version, id, glibc, python, cpu, kernel)
    ("Raspbian GNU/Linux", "10", "buster", "2.28", "3.7.3", "armv7l", "5.10.103-v7l+"),
    ("Raspbian GNU/Linux", "11", "bullseye", "2.31", "3.9.2", "armv7l", "6.1.21-v7+"),
    ("Raspbian GNU/Linux", "12", "bookworm", "2.36", "3.11.2", "armv7l", "6.6.51+rpt-rpi-v7"),
    ("Debian GNU/Linux", "12", "bookworm", "2.36", "3.11.2", "aarch64", "6.6.51+rpt-rpi-v8"),
    ("Raspbian GNU/Linux", "9", "stretch", "2.24", "3.5.3", "armv6l", "4.19.66+"),
]
PIPS = ["9.0.1", "18.1", "20.3.4", "22.3.1", "23.0.1", "24.2", "25.1.1"]
UVS = ["0.4.18", "0.5.11", "0.6.9"]
BROWSERS = [
    "Mozilla/5.0 (X11; Linux aarch64; rv:128.0) Gecko/20100101 Firefox/128.0",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/126.0.0.0 Safari/537.36",
]
BOTS = [
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)",
    "Go-http-client/1.1",
]
MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]


def installer_agent(rng: random.Random, name: str, version: str) -> str:
    distro, distro_version, distro_id, glibc, python, cpu, kernel = rng.choice(RELEASES)
    data = {
        "ci": rng.choice([None, None, None, True]),
        "cpu": cpu,
        "distro": {"id": distro_id, "libc": {"lib": "glibc", "version": glibc},
                   "name": distro, "version": distro_version},
        "implementation": {"name": "CPython", "version": python},
        "installer": {"name": name, "version": version},
        "openssl_version": rng.choice(["OpenSSL 1.1.1n  15 Mar 2022",
                                       "OpenSSL 3.0.15 3 Sep 2024"]),
        "python": python,
        "setuptools_version": rng.choice(["40.8.0", "52.0.0", "66.1.1", None]),
        "system": {"name": "Linux", "release": kernel},
    }
    if name == "pip" and rng.random() < 0.3:
        data["rustc_version"] = "1.63.0"
    return f"{name}/{version} {json.dumps(data, separators=(',', ':'), sort_keys=True)}"


def agent_pool(rng: random.Random, size: int = 2000) -> list[str]:
    """Distinct agent strings, weighted the way a wheel index sees them."""
    pool = []
    for _ in range(size):
        roll = rng.random()
        if roll < 0.80:
            pool.append(installer_agent(rng, "pip", rng.choice(PIPS)))
        elif roll < 0.90:
            pool.append(installer_agent(rng, "uv", rng.choice(UVS)))
        elif roll < 0.95:
            pool.append(rng.choice(BROWSERS))
        else:
            pool.append(rng.choice(BOTS))
    return pool


def clf_time(when: datetime) -> str:
    return (f"{when.day:02d}/{MONTHS[when.month - 1]}/{when.year}:"
            f"{when:%H:%M:%S} +0000")


def generate(path: Path, lines: int, seed: int = 6) -> None:
    rng = random.Random(seed)
    agents = agent_pool(rng)
    projects = [f"project-{i}" for i in range(20_000)]
    weights = [1 / (i + 1) for i in range(len(projects))]  # a few projects dominate
    popular = rng.choices(projects, weights, k=lines)
    clients = [f"{rng.randrange(1, 224)}.{rng.randrange(256)}.{rng.randrange(256)}."
               f"{rng.randrange(1, 255)}" for _ in range(50_000)]
    start = datetime(2024, 6, 1, tzinfo=timezone.utc)
    step = timedelta(days=1) / lines
    with path.open("w") as out:
        for i in range(lines):
            if rng.random() < 0.0005:
                out.write("garbage \x00 that is no log line\n")
                continue
            project = popular[i]
            roll = rng.random()
            if roll < 0.45:
                wheel = f"{project.replace('-', '_')}-1.{i % 7}-cp311-cp311-linux_armv7l.whl"
                target = f"/simple/{project}/{wheel}"
            elif roll < 0.90:
                target = f"/simple/{project}/"
            elif roll < 0.95:
                target = f"/project/{project}/"
            else:
                target = "/simple/"
            method = "HEAD" if rng.random() < 0.01 else "GET"
            status = 404 if rng.random() < 0.03 else 200
            agent = rng.choice(agents).replace('"', "\\x22")  # nginx escapes quotes so
            out.write(f'{rng.choice(clients)} - - [{clf_time(start + step * i)}] '
                      f'"{method} {target} HTTP/1.1" {status} {rng.randrange(300, 900_000)} '
                      f'"-" "{agent}"\n')


def run_ours(log: Path, db_path: Path) -> dict:
    from stats.clients import ClientHasher
    from stats.loader import Parser, load_file
    from stats.store import open_db

    db = open_db(db_path)
    started, cpu = time.perf_counter(), time.process_time()
    result = load_file(db, Parser(ClientHasher(b"k" * 32)), log)
    return {"seconds": time.perf_counter() - started, "cpu": time.process_time() - cpu,
            "lines": result.lines, "stored": result.stored}


def run_baseline(log: Path, db_path: Path) -> dict:
    """The obvious loader: parse every agent with linehaul, insert each row alone."""
    from stats.agents import parse_agent
    from stats.clients import ClientHasher
    from stats.loader import fingerprint
    from stats.logline import MalformedLine, parse, unescape
    from stats.paths import SEARCH, SIMPLE, classify
    from stats.store import _agent_row, open_db

    db = open_db(db_path)
    hasher = ClientHasher(b"k" * 32)
    requests, agents = db["requests"], db["agents"]
    started, cpu = time.perf_counter(), time.process_time()
    lines = stored = 0
    with log.open("rb") as handle:
        fingerprint(handle.readline())
        handle.seek(0)
        for raw in handle:
            lines += 1
            try:
                entry = parse(raw.decode("utf-8", "replace").rstrip("\n"))
            except MalformedLine:
                continue
            agent = parse_agent(unescape(entry.agent))
            agents.insert(_agent_row(agent), ignore=True)
            target = classify(entry.target)
            kind = target.kind
            if kind == SIMPLE:
                kind = SEARCH if agent.is_installer else "page"
            requests.insert({"time": entry.time, "kind": kind, "project": target.project,
                             "filename": target.filename, "method": entry.method,
                             "status": entry.status, "bytes": entry.size,
                             "client": hasher(entry.host), "agent": agent.id})
            stored += 1
    return {"seconds": time.perf_counter() - started, "cpu": time.process_time() - cpu,
            "lines": lines, "stored": stored}


def child(kind: str, log: Path, db_path: Path, limit: int) -> None:
    if kind == "baseline" and limit:
        # The baseline is slow: it runs over the first `limit` lines; lines/s compares.
        short = log.with_name("baseline.log")
        with log.open() as source, short.open("w") as out:
            for _, line in zip(range(limit), source, strict=False):
                out.write(line)
        log = short
    result = (run_ours if kind == "ours" else run_baseline)(log, db_path)
    result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    # The writer process, if the loader started one (it has been waited for by now).
    writer = resource.getrusage(resource.RUSAGE_CHILDREN)
    result["writer_rss_mib"] = writer.ru_maxrss / 1024
    result["writer_cpu"] = writer.ru_utime + writer.ru_stime
    print(json.dumps(result))


def measure(kind: str, log: Path, work: Path, limit: int) -> dict:
    db_path = work / f"{kind}.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db_path}{suffix}").unlink(missing_ok=True)
    out = subprocess.run([sys.executable, __file__, "--child", kind, "--log", str(log),
                          "--db", str(db_path), "--baseline-lines", str(limit)],
                         check=True, capture_output=True, text=True).stdout
    result = json.loads(out.strip().splitlines()[-1])
    result["rate"] = result["lines"] / result["seconds"]
    # lines per CPU-second, the loading process and its writer process together
    result["cpu_rate"] = result["lines"] / (result["cpu"] + result["writer_cpu"])
    return result


def describe(result: dict) -> str:
    rss = f"peak RSS {result['peak_rss_mib']:,.0f} MiB"
    if result["writer_rss_mib"]:
        rss += f" + writer {result['writer_rss_mib']:,.0f} MiB"
    return (f"{result['rate']:,.0f} lines/s ({result['cpu_rate']:,.0f} per CPU-s, "
            f"{rss}, {result['stored']:,} rows)")


def load_average() -> str:
    return "/".join(f"{load:.2f}" for load in os.getloadavg())


# --- the query benchmark -------------------------------------------------------------

YEAR_DOWNLOADS = 36_700_000  # piwheels, 2021; as many searches again
PROJECTS = 60_000            # searched for; three in four built
VERSIONS = ("2.0", "2.1", "2.2")
VERSION_WEIGHTS = (1, 2, 7)  # most downloads are of the newest release
ABI_OF = {"3.5": "cp37m", "3.7": "cp37m", "3.9": "cp39", "3.11": "cp311"}
TAGS = {"cp37m": "cp37-cp37m", "cp39": "cp39-cp39", "cp311": "cp311-cp311"}
# Downloads by hour of day (UTC): a day shape with its low at night in Europe.
HOUR_WEIGHTS = [3, 2, 2, 2, 2, 3, 4, 6, 8, 9, 10, 10, 10, 10, 10, 10, 10, 9, 9, 8, 7, 6, 5, 4]
CLIENTS = 250_000


@dataclass
class Year:
    """The made-up index and its users the traffic is drawn from."""
    rng: random.Random
    projects: list[str]
    cum_weights: list[float]
    agents: list  # stats.agents.Agent, installers and a few bots
    clients: list[str]
    files: dict = field(default_factory=dict)  # (rank, version, tags) -> wheel name

    def built(self, rank: int) -> bool:
        return rank % 4 != 3

    def pure(self, rank: int) -> bool:
        return rank % 5 == 4

    def filename(self, rank: int, version: str, agent) -> str:
        if self.pure(rank):
            key = (rank, version, None)
        else:
            python = ".".join((agent.python or "3.11").split(".")[:2])
            key = (rank, version, (TAGS[ABI_OF.get(python, "cp311")],
                                   "linux_armv6l" if agent.cpu == "armv6l"
                                   else "linux_armv7l"))
        found = self.files.get(key)
        if found is None:
            name = self.projects[rank].replace("-", "_")
            found = self.files[key] = (
                f"{name}-{version}-py3-none-any.whl" if key[2] is None
                else f"{name}-{version}-{key[2][0]}-{key[2][1]}.whl")
        return found


def make_year(seed: int = 2021) -> Year:
    from stats.agents import parse_agent

    rng = random.Random(seed)
    projects = [f"project-{i}" for i in range(PROJECTS)]
    cum, total = [], 0.0
    for i in range(PROJECTS):
        total += 1 / (i + 1) ** 1.05
        cum.append(total)
    pool = agent_pool(rng, 3000)
    agents = list({agent.id: agent for agent in map(parse_agent, pool)}.values())
    clients = [f"{rng.getrandbits(64):016x}" for _ in range(CLIENTS)]
    return Year(rng, projects, cum, agents, clients)


def day_rows(year: Year, day: str, downloads: int) -> list[tuple]:
    """One day's requests as the loader stores them, in time order: `downloads`
    wheel downloads, as many installer searches, and a tenth as many other requests
    (metadata, project pages, HEADs, bots' and browsers' pages, errors)."""
    rng = year.rng
    searches = downloads
    other = downloads // 10
    total = downloads + searches + other
    clock = _clock(day)
    stamps = [clock[s] for s in sorted(rng.choices(range(86_400), k=total,
                                                   cum_weights=_second_weights()))]
    ranks = rng.choices(range(PROJECTS), cum_weights=year.cum_weights, k=total)
    agents = rng.choices(year.agents, k=total)
    clients = rng.choices(year.clients, k=total)
    versions = rng.choices(VERSIONS, VERSION_WEIGHTS, k=total)
    rolls = [rng.random() for _ in range(total)]
    kinds = ["download"] * downloads + ["search"] * searches + ["other"] * other
    rng.shuffle(kinds)
    names = year.projects
    rows = []
    for when, kind, rank, agent, client, version, roll in zip(
            stamps, kinds, ranks, agents, clients, versions, rolls, strict=True):
        if kind == "search":
            found = year.built(rank)
            rows.append((when, "search" if agent.is_installer else "page", names[rank],
                         None, "GET", 200 if found else 404, 3_000 if found else 150,
                         client, agent.id))
            continue
        if kind == "other" and roll >= 0.3:
            rows.append((when, "project_page", names[rank], None, "GET",
                         (200, 200, 200, 304, 404, 500)[int(roll * 60) % 6], 8_000, client,
                         agent.id))
            continue
        if not year.built(rank):
            rank -= 1  # downloads are of what we have
        filename = year.filename(rank, version, agent)
        if kind == "download":
            rows.append((when, "download", names[rank], filename, "GET", 200,
                         50_000 + rank % 997 * 9_000, client, agent.id))
        else:
            rows.append((when, "metadata", names[rank], filename,
                         "HEAD" if roll < 0.06 else "GET", 200, 2_000, client, agent.id))
    return rows


def _clock(day: str) -> list[str]:
    return [f"{day} {s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"
            for s in range(86_400)]


@functools.lru_cache(maxsize=1)
def _second_weights() -> list[float]:
    cum, total = [], 0.0
    for second in range(86_400):
        total += HOUR_WEIGHTS[second // 3600]
        cum.append(total)
    return cum


def make_catalogue(path: Path, year: Year) -> None:
    """Projects, wheels (armv7l names: armv6l ones are aliases) and builds."""
    from ingest import catalogue

    conn = catalogue.connect(path)
    rng = random.Random(7)
    conn.execute("BEGIN")
    conn.executemany("INSERT INTO projects (name, display_name, display_key, seen_key) "
                     "VALUES (?, ?, 1, 1)", ((p, p) for p in year.projects))
    wheels, builds = [], []
    start = datetime.now(timezone.utc) - timedelta(days=365)
    for rank, project in enumerate(year.projects):
        if not year.built(rank):
            continue
        name = project.replace("-", "_")
        for version in VERSIONS:
            for abi, tags in TAGS.items():
                built_at = (start + timedelta(seconds=rng.randrange(365 * 86_400)))
                builds.append((project, version, abi, "success", "pi-1",
                               rng.lognormvariate(4.5, 1.3), built_at.isoformat()))
                if year.pure(rank):
                    if abi != "cp311":
                        continue
                    filename, python, abi_tag, platform = (
                        f"{name}-{version}-py3-none-any.whl", "py3", "none", "any")
                else:
                    python, abi_tag = tags.split("-")
                    filename = f"{name}-{version}-{tags}-linux_armv7l.whl"
                    platform = "linux_armv7l"
                wheels.append((filename, project, version, abi, python, abi_tag, platform,
                               100_000, "0" * 64, built_at.isoformat()))
    conn.executemany("INSERT INTO builds (project, version, abi, status, worker, duration, "
                     "built_at) VALUES (?, ?, ?, ?, ?, ?, ?)", builds)
    conn.executemany("INSERT INTO wheels (filename, project, version, builder_abi, "
                     "python_tag, abi_tag, platform_tag, size, sha256, uploaded_at) "
                     "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", wheels)
    conn.execute("COMMIT")
    conn.close()


TEMPLATE_DAY = "2000-01-01"
TEMPLATES = 14  # distinct days of traffic the days before the raw window repeat


def day_rollups(db, rows: list[tuple], agents) -> dict[str, list[tuple]]:
    """The rollup rows of one day's `rows`, as `apply` makes them (with its tally),
    with the day's distinct search clients counted directly."""
    from stats import rollups

    keys = rollups.AGENT_KEYS
    keys.learn(db, agents, {row[8] for row in rows})
    counts = rollups.tally(rows, keys)
    hours: Counter = Counter()
    sizes: Counter = Counter()
    shares: Counter = Counter()
    for (stamp, kind, number), (n, size) in counts.hits.items():
        hours[(stamp[:10], int(stamp[11:13]), kind)] += n
        sizes[(stamp[:10], int(stamp[11:13]), kind)] += size
        if kind in rollups.AGENT_KINDS:
            shares[(stamp[:10], kind, *keys.groups[number])] += n
    projects: Counter = Counter()
    for (d, p, _), n in counts.files.items():
        projects[(d, p)] += n
    clients = Counter((d, p) for d, p, _ in counts.clients)
    return {
        "daily_hits": [(*k, n, sizes[k]) for k, n in hours.items()],
        "daily_agents": [(*k, n) for k, n in shares.items()],
        "daily_files": [(d, p, f, rollups.version_of(f), n)
                        for (d, p, f), n in counts.files.items()],
        "daily_projects": [(*k, n) for k, n in projects.items()],
        "daily_searches": [(*k, n, clients[k], last)
                           for k, (n, last) in counts.searches.items()],
        "daily_other": [(*k, n) for k, n in counts.other.items()],
        "daily_bots": [(*k, n, last) for k, (n, last) in counts.bots.items()],
    }


def insert_day(db, template: dict[str, list[tuple]], day: str) -> None:
    """A template day's rollup rows as `day`'s: the day is each row's first field,
    and starts the times kept in daily_searches and daily_bots."""
    for table, rows in template.items():
        marks = ", ".join("?" * len(rows[0])) if rows else ""
        last = table in ("daily_searches", "daily_bots")
        db.conn.executemany(f"INSERT INTO {table} VALUES ({marks})", (
            (day, *row[1:-1], day + row[-1][10:]) if last else (day, *row[1:])
            for row in rows))


def build_year(work: Path, days: int, raw_days: int) -> dict:
    """stats.db with `days` days of traffic ending today: the last `raw_days` written
    through stats.store.write_batch (raw rows and rollups in one transaction per batch,
    by a stats.writer process, as `stats load` does); the days before as rollups only
    (their raw rows would have been pruned), each a copy of one of TEMPLATES days drawn
    the same way and tallied by the same code, so that each day has as many distinct
    projects, files and clients as a day drawn afresh, at a fraction of the time."""
    from stats import windows
    from stats.store import Batch, open_db
    from stats.writer import ProcessWriter

    year = make_year()
    make_catalogue(work / "catalogue.db", year)
    db = open_db(work / "stats.db")
    per_day = round(YEAR_DOWNLOADS / 365)
    today = datetime.now(timezone.utc).date()
    started = time.perf_counter()
    stored = []
    writer = ProcessWriter(str(work / "stats.db"), stored.append)
    agents_sent = False
    templates = []
    if days > raw_days:
        with db.conn:
            db["agents"].insert_all((_agent_dict(a) for a in year.agents), ignore=True)
        agents_sent = True
        templates = [day_rollups(db, day_rows(year, TEMPLATE_DAY, per_day), year.agents)
                     for _ in range(min(TEMPLATES, days - raw_days))]
    try:
        for back in range(days - 1, -1, -1):
            day = (today - timedelta(days=back)).isoformat()
            if back >= raw_days:
                with db.conn:
                    insert_day(db, templates[back % len(templates)], day)
            else:
                rows = day_rows(year, day, per_day)
                for start in range(0, len(rows), 50_000):
                    chunk = rows[start:start + 50_000]
                    writer.submit(Batch(f"bench-{day}", "generated", start,
                                        start + len(chunk), rows=chunk,
                                        ends=list(range(start + 1, start + len(chunk) + 1)),
                                        agents=[] if agents_sent else year.agents))
                    agents_sent = True
            if back % 30 == 0:
                print(f"  {day}: {time.perf_counter() - started:,.0f} s", flush=True)
        writer.close()
    except BaseException:
        writer.abort()
        raise
    summed = windows.refresh(db, work / "catalogue.db")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    counts = {table: db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
              for table in ("requests", "daily_hits", "daily_files", "daily_projects",
                            "daily_agents", "daily_searches", "search_clients")}
    db.close()
    return {"seconds": time.perf_counter() - started, "rows": counts, "refresh": summed,
            "raw_stored": sum(w.stored for w in stored),
            "size": (work / "stats.db").stat().st_size,
            "downloads": per_day * days}


def _agent_dict(agent) -> dict:
    from stats.store import _agent_row

    return _agent_row(agent)


R30 = "time >= date('now', '-29 days')"
R90 = "time >= date('now', '-89 days')"


def _tail(name: str, marker: str) -> str:
    from stats.metadata import QUERIES

    sql = QUERIES[name]["sql"]
    return sql[sql.index(marker):]


def raw_queries() -> dict[str, str]:
    """Each canned query written over the raw rows (the `hits` view), as the queries
    were before the rollups: same output, same windows. The catalogue's queries have
    no raw form: their baseline is themselves."""
    from stats.metadata import CPU_64_BIT, DAYS_90, QUERIES

    totals_tail = _tail("totals", "\nSELECT 1 AS n")
    days_tail = "\nSELECT days.day"
    share = (f"SELECT coalesce({{column}}, 'unknown') AS {{label}}, count(*) AS downloads, "
             "round(100.0 * count(*) / sum(count(*)) OVER (), 1) AS percent FROM hits "
             f"WHERE kind = 'download' AND {R30} GROUP BY 1 ORDER BY downloads DESC, {{label}}")
    raw = {
        "totals": f"""
WITH platforms AS (
  SELECT sum(cpu = '{CPU_64_BIT}') AS bits64, count(*) AS known
  FROM hits WHERE kind = 'download' AND coalesce(cpu, '') != '' AND {R30}
), per_day AS (
  SELECT day, sum(kind = 'download') AS downloads, sum(kind = 'search') AS searches,
         sum(bytes) AS bytes FROM hits GROUP BY day
), busiest_hour AS (
  SELECT day, CAST(substr(time, 12, 2) AS INTEGER) AS hour, count(*) AS requests
  FROM hits WHERE kind = 'download' GROUP BY 1, 2 ORDER BY requests DESC, day, hour LIMIT 1
){totals_tail}""",
        "downloads_per_day": f"""
{DAYS_90}, totals AS (
  SELECT day, sum(kind = 'download') AS downloads, sum(kind = 'search') AS searches
  FROM hits WHERE kind IN ('download', 'search') AND {R90} GROUP BY day
){_tail("downloads_per_day", days_tail)}""",
        "downloads_by_platform": f"""
{DAYS_90}, totals AS (
  SELECT day, coalesce(nullif(cpu, ''), 'unknown') AS cpu, count(*) AS downloads
  FROM hits WHERE kind = 'download' AND {R90} GROUP BY day, 2
), platforms AS (SELECT DISTINCT cpu FROM totals){_tail("downloads_by_platform", days_tail)}""",
        "bandwidth": f"""
{DAYS_90}, totals AS (
  SELECT day, sum(bytes) AS bytes,
         sum(CASE WHEN kind = 'download' THEN bytes ELSE 0 END) AS wheel_bytes
  FROM hits WHERE {R90} GROUP BY day
){_tail("bandwidth", days_tail)}""",
        "downloads_by_hour": f"""
WITH RECURSIVE hours(hour) AS (
  SELECT 0 UNION ALL SELECT hour + 1 FROM hours WHERE hour < 23
), totals AS (
  SELECT CAST(substr(time, 12, 2) AS INTEGER) AS hour, count(*) AS downloads FROM hits
  WHERE kind = 'download' AND {R30} GROUP BY hour
){_tail("downloads_by_hour", chr(10) + "SELECT hours.hour")}""",
        "top_projects": f"""
SELECT project, count(*) AS downloads FROM hits WHERE kind = 'download' AND {R30}
GROUP BY project ORDER BY downloads DESC, project LIMIT 30""",
        "python_versions": share.format(column="python_minor", label="python"),
        "cpus": share.format(column="cpu", label="cpu"),
        "distros": f"""
SELECT coalesce(distro || ' ' || distro_version, distro, 'unknown') AS release,
       coalesce(distro, 'unknown') AS distro, distro_version, distro_id,
       count(*) AS downloads, round(100.0 * count(*) / sum(count(*)) OVER (), 1) AS percent
FROM hits WHERE kind = 'download' AND {R30}
GROUP BY 1, 2, 3, 4 ORDER BY downloads DESC, distro, distro_version""",
        "installers": f"""
SELECT coalesce(installer, 'unknown') AS installer, installer_version,
       sum(kind = 'download') AS downloads, sum(kind = 'search') AS searches
FROM hits WHERE kind IN ('download', 'search') AND {R30}
GROUP BY 1, 2 ORDER BY downloads + searches DESC, installer, installer_version""",
        "searched_not_built": f"""
SELECT s.project, s.searches, s.clients, s.last_searched,
       p.name IS NOT NULL AS on_pypi, p.skip_reason
FROM (
  SELECT project, count(*) AS searches, count(DISTINCT client) AS clients,
         max(time) AS last_searched
  FROM hits WHERE kind = 'search' AND {R30} GROUP BY project
) s
LEFT JOIN catalogue.live_projects p ON p.name = s.project
WHERE NOT EXISTS (SELECT 1 FROM catalogue.wheels w WHERE w.project = s.project)
ORDER BY s.clients DESC, s.searches DESC, s.project
LIMIT 200""",
        "time_saved": f"""
SELECT w.project, sum(f.downloads) AS downloads,
       round(sum(f.downloads * f.weight * max(b.duration - 6.7, 0)) / 3600.0, 3)
         AS hours_saved
FROM (
  SELECT filename, count(*) AS downloads,
         CASE WHEN filename LIKE '%-linux^_armv6l.whl' ESCAPE '^' THEN 6 ELSE 1 END AS weight
  FROM hits WHERE kind = 'download' AND {R30} GROUP BY filename
) f
JOIN catalogue.wheels w
  ON w.filename = replace(f.filename, '-linux_armv6l.whl', '-linux_armv7l.whl')
JOIN catalogue.builds b
  ON b.project = w.project AND b.version = w.version AND b.abi = w.builder_abi
WHERE w.abi_tag != 'none'
GROUP BY w.project
ORDER BY hours_saved DESC, w.project
LIMIT 30""",
        "other_requests": """
SELECT method, status, count(*) AS requests FROM requests
WHERE NOT (method = 'GET' AND (status BETWEEN 200 AND 299 OR status = 304
                               OR (status = 404 AND kind = 'search')))
GROUP BY method, status ORDER BY requests DESC, method, status""",
        "bots": """
SELECT user_agent, count(*) AS requests, max(time) AS last_seen FROM bot_hits
GROUP BY user_agent ORDER BY requests DESC, user_agent""",
    }
    return {name: raw.get(name, sql["sql"]) for name, sql in QUERIES.items()}


# The three window queries as they would read the daily rollups directly (what
# stats.windows sums every 10 minutes instead): printed for comparison.
DAILY_QUERIES = {
    "top_projects": """
SELECT project, sum(downloads) AS downloads FROM daily_projects
WHERE day >= date('now', '-29 days') GROUP BY project ORDER BY downloads DESC, project
LIMIT 30""",
    "searched_not_built": """
SELECT s.project, s.searches, s.clients, s.last_searched
FROM (SELECT project, sum(searches) AS searches, sum(clients) AS clients,
             max(last_time) AS last_searched
      FROM daily_searches WHERE day >= date('now', '-29 days') GROUP BY project) s
WHERE NOT EXISTS (SELECT 1 FROM catalogue.wheels w WHERE w.project = s.project)
ORDER BY s.clients DESC, s.searches DESC, s.project LIMIT 200""",
    "time_saved": """
SELECT w.project, sum(f.downloads) AS downloads,
       round(sum(f.downloads * f.weight * max(b.duration - 6.7, 0)) / 3600.0, 3) AS hours
FROM (SELECT filename, sum(downloads) AS downloads,
             CASE WHEN filename LIKE '%-linux^_armv6l.whl' ESCAPE '^' THEN 6 ELSE 1 END
               AS weight
      FROM daily_files WHERE day >= date('now', '-29 days') GROUP BY filename) f
JOIN catalogue.wheels w
  ON w.filename = replace(f.filename, '-linux_armv6l.whl', '-linux_armv7l.whl')
JOIN catalogue.builds b
  ON b.project = w.project AND b.version = w.version AND b.abi = w.builder_abi
WHERE w.abi_tag != 'none' GROUP BY w.project ORDER BY hours DESC, w.project LIMIT 30""",
}


def time_query(conn: sqlite3.Connection, sql: str, runs: int) -> tuple[float, list]:
    """Median seconds of `runs` runs after one to warm the page cache; the rows."""
    rows = conn.execute(sql).fetchall()
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        conn.execute(sql).fetchall()
        times.append(time.perf_counter() - started)
    return statistics.median(times), rows


def connect_like_datasette(work: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(f"file:{work / 'stats.db'}?mode=ro", uri=True)
    conn.execute("ATTACH DATABASE ? AS catalogue", [f"file:{work / 'catalogue.db'}?mode=ro"])
    return conn


def query_benchmark(work: Path, days: int, raw_days: int, runs: int, build: bool) -> None:
    from stats.metadata import DASHBOARD, QUERIES

    if build:
        print(f"building {days} days of traffic ({raw_days} of them raw) in {work} ...",
              flush=True)
        made = build_year(work, days, raw_days)
        print(f"built in {made['seconds']:,.0f} s: {made['downloads']:,} downloads and as "
              f"many searches; {made['raw_stored']:,} raw rows; rows {made['rows']}; "
              f"stats.db {made['size'] / 2**30:,.2f} GiB; 30-day sums refreshed in "
              f"{made['refresh'].seconds:.2f} s", flush=True)
    print(f"stats.db {(work / 'stats.db').stat().st_size / 2**30:,.2f} GiB, load average "
          f"{load_average()}", flush=True)
    conn = connect_like_datasette(work)
    raw = raw_queries()
    slow = []
    print(f"{'query':28s} {'rollups':>10s} {'raw rows':>10s} {'ratio':>7s}  rows", flush=True)
    for name, query in QUERIES.items():
        ours, rows = time_query(conn, query["sql"], runs)
        if raw[name] is query["sql"]:
            base, base_rows = ours, rows
            note = "(catalogue only: same query)"
        else:
            started = time.perf_counter()
            base_rows = conn.execute(raw[name]).fetchall()
            base = time.perf_counter() - started
            note = "same rows" if base_rows == rows else "rows differ"
        slow += [name] if ours >= 0.25 else []
        print(f"{name:28s} {ours * 1000:8.1f}ms {base * 1000:8.0f}ms "
              f"{base / ours:6.0f}x  {len(rows)} (raw {len(base_rows)}) {note}", flush=True)
    for name, sql in DAILY_QUERIES.items():
        daily, rows = time_query(conn, sql, 1)
        print(f"{name:28s} {daily * 1000:8.1f}ms over the daily rollups, not the 30-day "
              "sums", flush=True)
    for slug, chart in DASHBOARD["charts"].items():
        ours, rows = time_query(conn, chart["query"], runs)
        slow += [f"chart {slug}"] if ours >= 0.25 else []
        print(f"chart {slug:22s} {ours * 1000:8.1f}ms  {len(rows)} rows", flush=True)
    print(f"load average {load_average()} after; over 250 ms: {', '.join(slow) or 'none'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--baseline-lines", type=int, default=100_000,
                        help="lines the naive baseline loads (its rate is what compares)")
    parser.add_argument("--queries", action="store_true",
                        help="the query benchmark: a year of stats, every canned query")
    parser.add_argument("--days", type=int, default=365, help="(--queries) days of traffic")
    parser.add_argument("--raw-days", type=int, default=90,
                        help="(--queries) the last days kept as raw rows too")
    parser.add_argument("--keep", help="(--queries) build in, or reuse, this directory")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--log", help=argparse.SUPPRESS)
    parser.add_argument("--db", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, Path(args.log), Path(args.db), args.baseline_lines)
        return
    if args.queries:
        if args.keep:
            work = Path(args.keep)
            work.mkdir(parents=True, exist_ok=True)
            query_benchmark(work, args.days, args.raw_days, args.runs,
                            build=not (work / "stats.db").exists())
        else:
            with tempfile.TemporaryDirectory() as tmp:
                query_benchmark(Path(tmp), args.days, args.raw_days, args.runs, build=True)
        return
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        log = work / "access.log"
        print(f"generating {args.lines:,} lines ...", flush=True)
        generate(log, args.lines)
        ours, base = [], []
        for run in range(args.runs):
            before = load_average()
            ours.append(measure("ours", log, work, args.baseline_lines))
            base.append(measure("baseline", log, work, args.baseline_lines))
            print(f"run {run + 1} (load average {before} before, {load_average()} after):\n"
                  f"  ours     {describe(ours[-1])}\n  baseline {describe(base[-1])}\n"
                  f"  ratio {ours[-1]['rate'] / base[-1]['rate']:.1f}", flush=True)
        rate = statistics.median(r["rate"] for r in ours)
        base_rate = statistics.median(r["rate"] for r in base)
        rss = statistics.median(r["peak_rss_mib"] for r in ours)
        writer_rss = statistics.median(r["writer_rss_mib"] for r in ours)
        cpu_rate = statistics.median(r["cpu_rate"] for r in ours)
        print(f"median of {args.runs}: ours {rate:,.0f} lines/s ({cpu_rate:,.0f} per CPU-s), "
              f"peak RSS {rss:,.0f} MiB + writer "
              f"{writer_rss:,.0f} MiB; baseline {base_rate:,.0f} lines/s; "
              f"ratio {rate / base_rate:.1f}")


if __name__ == "__main__":
    main()
