"""Datasette's view of stats.db: table and column descriptions, canned queries, and
the dashboard (datasette-dashboards, Vega-Lite charts drawn in the browser).

Queries run on stats.db with the catalogue attached read-only as `catalogue`
(stats.site does the attaching). Time windows count back from now, in UTC.
"""

from __future__ import annotations

# Windows are whole UTC days counted back from today, today included: 30 days is
# `day >= date('now', '-29 days')`. Every query on requests data reads the daily
# rollups (stats.rollups), never the raw rows, which are pruned after
# WHEELWRIGHT_STATS_RAW_DAYS: a year of traffic is a few hundred thousand rollup rows.
LAST_30 = "day >= date('now', '-29 days')"
LAST_90 = "day >= date('now', '-89 days')"
# Every day of the last 90, so that a day without traffic is a row of zeros.
DAYS_90 = """WITH RECURSIVE days(day) AS (
  SELECT date('now', '-89 days')
  UNION ALL SELECT date(day, '+1 day') FROM days WHERE day < date('now')
)"""
# piwheels' "time saved": each download of a wheel that is not pure Python saved its
# user the build, less the 6.7 s a download and install take; on an armv6l Pi
# (Zero, 1), about six times slower, the build would have taken six times as long.
TIME_SAVED_RULE = ("hours saved = Σ over downloads of non-pure wheels of max(0, build "
                   "time − 6.7 s), an armv6l download counted six times (piwheels' rule)")
TIME_SAVED_LINES = ["hours saved = Σ over downloads of non-pure wheels of",
                    "max(0, build time − 6.7 s); an armv6l download counts six times"]
# The CPU (linehaul's `cpu`, Python's platform.machine()) of the 64-bit Raspberry Pi OS
# image, whose wheels the `-aarch64` build targets make (worker.targets).
CPU_64_BIT = "aarch64"
# A download's platform: the CPU its installer reported, 'unknown' when it said none.
PLATFORM_SQL = "coalesce(nullif(cpu, ''), 'unknown')"


# What the catalogue's `abi` columns hold: a build target's key (worker.targets).
TARGET_KEYS = ("target key: the ABI for the 32-bit Raspberry Pi OS image, e.g. cp311; "
               "the ABI and -aarch64 for the 64-bit one, e.g. cp311-aarch64")


def share_query(column: str, label: str) -> str:
    """Downloads of the last 30 days by one field of the installer's agent."""
    return f"""
SELECT coalesce(nullif({column}, ''), 'unknown') AS {label}, sum(requests) AS downloads,
       round(100.0 * sum(requests) / sum(sum(requests)) OVER (), 1) AS percent
FROM daily_agents
WHERE kind = 'download' AND {LAST_30}
GROUP BY 1
ORDER BY downloads DESC, {label}"""  # noqa: S608 - constant fragments


QUERIES: dict[str, dict[str, str]] = {
    "totals": {
        "title": "Totals and records",
        "description": "Downloads, searches and data served since counting began, "
                       "the last 30 days, and the busiest day and hour; bots excluded. "
                       "The 64-bit share is of the last 30 days' downloads whose "
                       f"installer named its CPU: those on {CPU_64_BIT} (the 64-bit "
                       "Raspberry Pi OS).",
        "sql": f"""
WITH platforms AS (
  SELECT sum(CASE WHEN cpu = '{CPU_64_BIT}' THEN requests ELSE 0 END) AS bits64,
         sum(requests) AS known
  FROM daily_agents WHERE kind = 'download' AND cpu != '' AND {LAST_30}
), per_day AS (
  SELECT day, sum(CASE WHEN kind = 'download' THEN requests ELSE 0 END) AS downloads,
         sum(CASE WHEN kind = 'search' THEN requests ELSE 0 END) AS searches,
         sum(bytes) AS bytes
  FROM daily_hits GROUP BY day
), busiest_hour AS (
  SELECT day, hour, requests FROM daily_hits WHERE kind = 'download'
  ORDER BY requests DESC, day, hour LIMIT 1
)
SELECT 1 AS n, 'Downloads, all time' AS figure,
       printf('%,d', coalesce(sum(downloads), 0)) AS value FROM per_day
UNION ALL
SELECT 2, 'Downloads, last 30 days', printf('%,d', coalesce(sum(downloads), 0))
FROM per_day WHERE {LAST_30}
UNION ALL
SELECT 3, '64-bit share of downloads, last 30 days',
       CASE WHEN known > 0 THEN printf('%.1f%% (%,d of %,d)', 100.0 * bits64 / known,
                                       bits64, known)
            ELSE 'no downloads yet' END
FROM platforms
UNION ALL
SELECT 4, 'Searches, all time', printf('%,d', coalesce(sum(searches), 0)) FROM per_day
UNION ALL
SELECT 5, 'Data served, all time', (
  SELECT CASE WHEN b >= 1e12 THEN printf('%.1f TB', b / 1e12)
              WHEN b >= 1e9 THEN printf('%.1f GB', b / 1e9)
              WHEN b >= 1e6 THEN printf('%.1f MB', b / 1e6)
              ELSE printf('%.1f kB', b / 1e3) END
  FROM (SELECT coalesce(sum(bytes), 0) AS b FROM per_day))
UNION ALL
SELECT 6, 'Busiest day', coalesce((
  SELECT day || ': ' || printf('%,d', downloads) || ' downloads' FROM per_day
  ORDER BY downloads DESC, day LIMIT 1), 'none yet')
UNION ALL
SELECT 7, 'Busiest hour (UTC)', coalesce((
  SELECT day || printf(' %02d:00: ', hour) || printf('%,d', requests) || ' downloads'
  FROM busiest_hour), 'none yet')
UNION ALL
SELECT 8, 'Counting since', coalesce(min(day), 'no traffic yet') FROM per_day
ORDER BY n""",  # noqa: S608 - constant fragments
    },
    "downloads_per_day": {
        "title": "Downloads and searches per day",
        "description": "Wheel downloads and installer searches each day of the last 90 "
                       "days (UTC), 0 on a day without any; bots excluded.",
        "sql": f"""
{DAYS_90}, totals AS (
  SELECT day, sum(CASE WHEN kind = 'download' THEN requests ELSE 0 END) AS downloads,
         sum(CASE WHEN kind = 'search' THEN requests ELSE 0 END) AS searches
  FROM daily_hits WHERE {LAST_90} GROUP BY day
)
SELECT days.day, coalesce(downloads, 0) AS downloads, coalesce(searches, 0) AS searches
FROM days LEFT JOIN totals USING (day)
ORDER BY days.day""",  # noqa: S608 - constant fragments
    },
    "downloads_by_platform": {
        "title": "Downloads per day by platform",
        "description": "Wheel downloads each day of the last 90 days (UTC) by the CPU "
                       "the installer runs on (armv6l: Pi Zero and 1; armv7l: the 32-bit "
                       "image on later Pis; aarch64: the 64-bit image; unknown: an agent "
                       "that did not say), 0 on a day without any; bots excluded.",
        "sql": f"""
{DAYS_90}, totals AS (
  SELECT day, {PLATFORM_SQL} AS cpu, sum(requests) AS downloads
  FROM daily_agents WHERE kind = 'download' AND {LAST_90} GROUP BY day, 2
), platforms AS (SELECT DISTINCT cpu FROM totals)
SELECT days.day, platforms.cpu, coalesce(totals.downloads, 0) AS downloads
FROM days CROSS JOIN platforms
LEFT JOIN totals ON totals.day = days.day AND totals.cpu = platforms.cpu
ORDER BY days.day, platforms.cpu""",  # noqa: S608 - constant fragments
    },
    "bandwidth": {
        "title": "Data served per day",
        "description": "Bytes of response bodies sent each day of the last 90 days "
                       "(UTC): everything that counts, and the wheels alone; 0 on a day "
                       "without traffic; bots excluded.",
        "sql": f"""
{DAYS_90}, totals AS (
  SELECT day, sum(bytes) AS bytes,
         sum(CASE WHEN kind = 'download' THEN bytes ELSE 0 END) AS wheel_bytes
  FROM daily_hits WHERE {LAST_90} GROUP BY day
)
SELECT days.day, coalesce(bytes, 0) AS bytes, coalesce(wheel_bytes, 0) AS wheel_bytes
FROM days LEFT JOIN totals USING (day)
ORDER BY days.day""",  # noqa: S608 - constant fragments
    },
    "downloads_by_hour": {
        "title": "Downloads by hour of day",
        "description": "Wheel downloads in the last 30 days by hour of the day (UTC), "
                       "0 for an hour without any.",
        "sql": f"""
WITH RECURSIVE hours(hour) AS (
  SELECT 0 UNION ALL SELECT hour + 1 FROM hours WHERE hour < 23
), totals AS (
  SELECT hour, sum(requests) AS downloads FROM daily_hits
  WHERE kind = 'download' AND {LAST_30} GROUP BY hour
)
SELECT hours.hour, coalesce(downloads, 0) AS downloads
FROM hours LEFT JOIN totals USING (hour)
ORDER BY hours.hour""",  # noqa: S608 - constant fragments
    },
    "top_projects": {
        "title": "Top 30 projects over 30 days",
        "description": "Projects by wheel downloads in the last 30 days (the 30-day "
                       "sums of the daily rollups, made every 10 minutes: the table "
                       "`windows` says when).",
        "sql": """
SELECT project, downloads
FROM window_downloads
ORDER BY downloads DESC, project
LIMIT 30""",
    },
    "python_versions": {
        "title": "Python versions",
        "description": "Downloads in the last 30 days by the Python (major.minor) the "
                       "installer runs on.",
        "sql": share_query("python", "python"),
    },
    "distros": {
        "title": "OS releases",
        "description": "Downloads in the last 30 days by OS release (distribution name "
                       "and version).",
        "sql": f"""
SELECT coalesce(nullif(distro, '') || ' ' || nullif(distro_version, ''),
                nullif(distro, ''), 'unknown') AS release,
       coalesce(nullif(distro, ''), 'unknown') AS distro,
       nullif(distro_version, '') AS distro_version, nullif(distro_id, '') AS distro_id,
       sum(requests) AS downloads,
       round(100.0 * sum(requests) / sum(sum(requests)) OVER (), 1) AS percent
FROM daily_agents
WHERE kind = 'download' AND {LAST_30}
GROUP BY 1, 2, 3, 4
ORDER BY downloads DESC, distro, distro_version""",  # noqa: S608 - constant fragments
    },
    "cpus": {
        "title": "CPUs",
        "description": "Downloads in the last 30 days by CPU architecture (armv6l: Pi "
                       "Zero and 1; armv7l: 32-bit on later Pis; aarch64: 64-bit).",
        "sql": share_query("cpu", "cpu"),
    },
    "installers": {
        "title": "Installers",
        "description": "Downloads and searches in the last 30 days by installer and "
                       "version (Browser: people; unknown: agents linehaul cannot parse).",
        "sql": f"""
SELECT coalesce(nullif(installer, ''), 'unknown') AS installer,
       nullif(installer_version, '') AS installer_version,
       sum(CASE WHEN kind = 'download' THEN requests ELSE 0 END) AS downloads,
       sum(CASE WHEN kind = 'search' THEN requests ELSE 0 END) AS searches
FROM daily_agents
WHERE {LAST_30}
GROUP BY 1, 2
ORDER BY downloads + searches DESC, installer, installer_version""",  # noqa: S608 - constant fragments
    },
    "searched_not_built": {
        "title": "Searched for but not built",
        "description": "Projects installers looked for in the last 30 days of which we "
                       "have no wheel at all: demand we do not meet. clients counts "
                       "distinct clients each day, summed over the days (a client "
                       "searching on two days counts twice); on_pypi says whether the "
                       "catalogue knows the project (0: a typo, or not on PyPI); "
                       "skip_reason, why we do not build it. From the 30-day sums, made "
                       "every 10 minutes; the wheels are the catalogue's now.",
        "sql": """
SELECT s.project, s.searches, s.clients, s.last_searched,
       p.name IS NOT NULL AS on_pypi, p.skip_reason
FROM window_searches s
LEFT JOIN catalogue.live_projects p ON p.name = s.project
WHERE NOT EXISTS (SELECT 1 FROM catalogue.wheels w WHERE w.project = s.project)
ORDER BY s.clients DESC, s.searches DESC, s.project
LIMIT 200""",
    },
    "time_saved": {
        "title": "Build time saved",
        "description": "The 30 projects whose wheels saved their users the most build "
                       f"time in the last 30 days: {TIME_SAVED_RULE}. Build times are "
                       "the catalogue's; a wheel served under its armv6l name is the "
                       "armv7l wheel built. downloads counts those of wheels that are "
                       "not pure Python. From the 30-day sums, made every 10 minutes.",
        "sql": """
SELECT project, saved_downloads AS downloads, round(seconds_saved / 3600.0, 3) AS hours_saved
FROM window_downloads
WHERE seconds_saved > 0
ORDER BY seconds_saved DESC, project
LIMIT 30""",
    },
    "builds_per_hour": {
        "title": "Builds per hour per target",
        "description": "Builds finished each hour of the last 7 days, by build target "
                       f"({TARGET_KEYS}).",
        "sql": """
SELECT strftime('%Y-%m-%d %H:00', built_at) AS hour, abi AS target, count(*) AS builds,
       sum(status = 'failed') AS failed
FROM catalogue.builds
WHERE datetime(built_at) >= datetime('now', '-7 days')
GROUP BY hour, abi
ORDER BY hour, abi""",
    },
    "failure_rates": {
        "title": "Build failure rates",
        "description": f"Builds and failed builds per build target ({TARGET_KEYS}), "
                       "all time.",
        "sql": """
SELECT abi AS target, count(*) AS builds, sum(status = 'failed') AS failed,
       round(100.0 * sum(status = 'failed') / count(*), 1) AS percent_failed
FROM catalogue.builds
GROUP BY abi
ORDER BY abi""",
    },
    "failures": {
        "title": "Build failures by reason",
        "description": "Failed builds by the reason read from their logs "
                       "(publish.failures: a missing header, tool or library, out of "
                       "memory, a timeout, ...), all time; 'unknown' when the log said "
                       "nothing recognised or the build is older than the reasons. "
                       "packages: the Debian packages that would have provided what was "
                       "missing, most named first; last_failed: the latest such build.",
        "sql": """
SELECT coalesce(failure_reason, 'unknown') AS reason, count(*) AS failed,
       count(DISTINCT project) AS projects,
       (SELECT group_concat(package, ' ') FROM (
            SELECT f.failure_package AS package FROM catalogue.builds f
            WHERE f.status = 'failed' AND f.failure_package IS NOT NULL
              AND coalesce(f.failure_reason, 'unknown') = coalesce(b.failure_reason, 'unknown')
            GROUP BY f.failure_package ORDER BY count(*) DESC, f.failure_package LIMIT 10))
       AS packages,
       max(built_at) AS last_failed
FROM catalogue.builds b
WHERE status = 'failed'
GROUP BY coalesce(failure_reason, 'unknown')
ORDER BY failed DESC, reason""",
    },
    "worker_health": {
        "title": "Worker health over time",
        "description": "Samples of each worker's health record over the last 7 days.",
        "sql": """
SELECT time, worker, abi, cpu_temperature, load1, load5, load15,
       round(100.0 * memory_available / memory_total, 1) AS memory_available_percent,
       round(100.0 * disk_free / disk_total, 1) AS disk_free_percent, builds_done
FROM worker_health
WHERE time >= datetime('now', '-7 days')
ORDER BY time, worker""",
    },
    "other_requests": {
        "title": "Requests not counted",
        "description": "Requests left out of every count above: anything but a GET "
                       "answered 2xx or 304, or a search answered 404 (HEAD requests, "
                       "errors, redirects), by method and status, all time.",
        "sql": """
SELECT method, status, sum(requests) AS requests
FROM daily_other
GROUP BY method, status
ORDER BY requests DESC, method, status""",
    },
    "bots": {
        "title": "Bots",
        "description": "Requests served to bots (crawlers and the robots linehaul "
                       "ignores), kept apart from every other count; all time.",
        "sql": """
SELECT a.user_agent, sum(b.requests) AS requests, max(b.last_time) AS last_seen
FROM daily_bots b JOIN agents a ON a.id = b.agent
GROUP BY b.agent
ORDER BY requests DESC, a.user_agent""",
    },
}

TABLES = {
    "requests": {
        "description": "One row per access log line, in log order, kept for "
                       "WHEELWRIGHT_STATS_RAW_DAYS days (the daily_ rollups keep the "
                       "counts for ever). No client address is kept: `client` is a "
                       "keyed hash of it.",
        "columns": {
            "time": "When the request was logged, UTC (YYYY-MM-DD HH:MM:SS)",
            "kind": "download (a wheel), metadata (a wheel's .metadata), search (an "
                    "installer fetching a project's simple page), project_page, "
                    "project_json, or page (anything else, including a simple page "
                    "a browser fetched)",
            "project": "Canonical project name, for project paths",
            "filename": "The wheel, for download and metadata",
            "method": "HTTP method",
            "status": "HTTP status",
            "bytes": "Size of the response body",
            "client": "Keyed BLAKE2b hash of the client address (key in "
                      "DATA/secrets/stats-client-key)",
            "agent": "The user agent: agents.id",
        },
        "units": {"bytes": "byte"},
    },
    "agents": {
        "description": "Each distinct User-Agent string once, as PyPA's linehaul parses "
                       "it; bot marks crawlers, which every count leaves out.",
        "columns": {
            "id": "63-bit BLAKE2b hash of user_agent",
            "python_minor": "python, major.minor",
            "ci": "1 when the installer says it runs under CI",
            "bot": "1 for crawlers and the robots linehaul ignores",
        },
    },
    "sources": {
        "description": "Each log file loaded, known by a hash of its first line: how "
                       "far into it stats has read, so nothing is counted twice.",
        "columns": {"offset": "Bytes read (of the decompressed file)",
                    "lines": "Lines read", "stored": "Rows stored",
                    "rejected": "Malformed lines"},
        "units": {"offset": "byte"},
    },
    "rejects": {
        "description": "Malformed log lines: where they are in their file and why they "
                       "were refused (the line itself holds an address, so it is not kept).",
    },
    "worker_health": {
        "description": "Samples of the health records workers publish in Redis.",
        "columns": {
            "time": "When the worker wrote the record, UTC",
            "cpu_temperature": "SoC temperature",
            "load1": "Load average over 1 minute",
            "memory_total": "RAM", "memory_available": "RAM available",
            "disk_total": "Build disk size", "disk_free": "Build disk free",
            "builds_done": "Builds the worker has finished since it started",
        },
        "units": {"cpu_temperature": "degC", "memory_total": "byte",
                  "memory_available": "byte", "swap_total": "byte", "swap_free": "byte",
                  "disk_total": "byte", "disk_free": "byte"},
    },
    "daily_hits": {
        "description": "Rollup: requests that count (as in `hits`) per UTC day, hour and "
                       "kind, and the bytes they sent. Kept for ever, like every daily_ "
                       "table; written with the raw rows, in the same transaction.",
        "units": {"bytes": "byte"},
    },
    "daily_files": {"description": "Rollup: wheel downloads per day, project and file "
                                   "(version: the version in the file's name)."},
    "daily_projects": {"description": "Rollup: wheel downloads per day and project."},
    "daily_agents": {"description": "Rollup: downloads and searches per day by the "
                                    "installer's agent fields ('' when unknown)."},
    "daily_searches": {
        "description": "Rollup: installer searches per day and project.",
        "columns": {"clients": "Distinct clients that searched for it that day",
                    "last_time": "The day's last search, UTC"},
    },
    "windows": {"description": "When the window_ tables were last summed from the "
                               "daily rollups, and over which UTC days."},
    "window_downloads": {
        "description": "Wheel downloads per project over the last 30 days, and the build "
                       f"time they saved ({TIME_SAVED_RULE}); see `windows`.",
        "units": {"seconds_saved": "s"},
    },
    "window_searches": {"description": "Installer searches per project over the last 30 "
                                       "days (clients: client-days); see `windows`."},
    "search_clients": {"description": "Which clients searched for which project each "
                                      "day: how daily_searches counts distinct clients. "
                                      "Pruned with the raw rows."},
    "daily_other": {"description": "Rollup: requests no count includes, per day, "
                                   "method and status."},
    "daily_bots": {"description": "Rollup: requests served to bots per day and agent."},
    "hits": {"description": "Requests that count, with their agent's fields: GETs "
                            "answered 2xx or 304, and searches answered 404 (demand "
                            "for what we lack); bots left out."},
    "bot_hits": {"description": "Requests served to bots."},
}


def chart(title: str, query: str, display: dict) -> dict:
    # Vega-Lite draws from the query's JSON; no chart puts data into HTML itself.
    return {"title": title, "db": "stats", "query": QUERIES[query]["sql"].strip(),
            "library": "vega-lite", "display": display}


def count_axis(title: str, fmt: str = "~s") -> dict:
    """A quantitative axis whose labels stay short and never overlap: counts with SI
    prefixes (12k, 1.2M) on whole ticks (no "500m" between 0 and 1), or with ",~f"
    fixed-point to the ticks' precision, trailing zeros cut (never "5e+1"); labels
    that would still collide are dropped."""
    axis = {"title": title, "format": fmt, "labelOverlap": "greedy", "tickCount": 5}
    if fmt == "~s":
        axis["tickMinStep"] = 1
    return axis


def share(field: str, title: str, query: str) -> dict:
    return chart(title, query, {
        "mark": {"type": "arc", "tooltip": True},
        "encoding": {"color": {"field": field, "type": "nominal"},
                     "theta": {"field": "downloads", "type": "quantitative"}},
    })


def per_day(title: str, query: str, fields: list[str], axis: dict) -> dict:
    """A line per field over the query's days, every day drawn (zeros included)."""
    return chart(title, query, {
        "transform": [{"fold": fields, "as": ["what", "count"]}],
        "mark": {"type": "line", "point": True, "tooltip": True},
        "encoding": {"x": {"field": "day", "type": "temporal", "title": "day (UTC)",
                           "axis": {"format": "%b %d", "labelOverlap": "greedy",
                                    "labelSeparation": 8}},
                     "y": {"field": "count", "type": "quantitative", "axis": axis},
                     "color": {"field": "what", "type": "nominal"}},
    })


def ranked(title: str, query: str, field: str, axis: dict) -> dict:
    """Horizontal bars, largest first."""
    return chart(title, query, {
        "mark": {"type": "bar", "tooltip": True},
        "encoding": {"y": {"field": "project", "type": "nominal", "sort": "-x",
                           "title": None},
                     "x": {"field": field, "type": "quantitative", "axis": axis}},
    })


DASHBOARD = {
    "title": "wheelwright",
    "description": "Downloads, searches and builds, from the daily rollups of the "
                   "index's access logs (UTC days; bots excluded). Build time saved, "
                   f"as piwheels counts it: {TIME_SAVED_RULE}.",
    "layout": [
        ["totals", "top-projects"],
        ["downloads-per-day", "downloads-per-day"],
        ["downloads-by-platform", "downloads-by-platform"],
        ["bandwidth", "downloads-by-hour"],
        ["python-versions", "cpus"],
        ["distros", "installers"],
        ["time-saved", "searched-not-built"],
        ["builds-per-hour", "worker-temperature"],
    ],
    "charts": {
        "totals": chart("Totals and records", "totals", {
            "mark": {"type": "text", "align": "left", "baseline": "middle", "dx": 6,
                     "fontSize": 14},
            "encoding": {"y": {"field": "figure", "type": "nominal", "title": None,
                               "sort": {"field": "n"},
                               "axis": {"labelFontSize": 13, "labelLimit": 260,
                                        "domain": False, "ticks": False}},
                         "text": {"field": "value", "type": "nominal"}},
        }),
        "top-projects": ranked("Top 30 projects, last 30 days (downloads)",
                               "top_projects", "downloads", count_axis("downloads")),
        "downloads-per-day": per_day("Downloads and searches per day", "downloads_per_day",
                                     ["downloads", "searches"], count_axis("count")),
        "downloads-by-platform": chart("Downloads per day by platform (CPU)",
                                       "downloads_by_platform", {
            "mark": {"type": "area", "line": True, "tooltip": True},
            "encoding": {"x": {"field": "day", "type": "temporal", "title": "day (UTC)",
                               "axis": {"format": "%b %d", "labelOverlap": "greedy",
                                        "labelSeparation": 8}},
                         # stacked: the top line is the day's downloads
                         "y": {"field": "downloads", "type": "quantitative",
                               "stack": "zero", "axis": count_axis("downloads")},
                         "color": {"field": "cpu", "type": "nominal",
                                   "title": "platform (CPU)"}},
        }),
        "bandwidth": per_day("Data served per day (bytes)", "bandwidth",
                             ["bytes", "wheel_bytes"], count_axis("bytes")),
        "downloads-by-hour": chart("Downloads by hour of day (UTC), last 30 days",
                                   "downloads_by_hour", {
            "mark": {"type": "bar", "tooltip": True},
            "encoding": {"x": {"field": "hour", "type": "ordinal", "title": "hour (UTC)",
                               "axis": {"labelAngle": 0}},
                         "y": {"field": "downloads", "type": "quantitative",
                               "axis": count_axis("downloads")}},
        }),
        "python-versions": share("python", "Python versions", "python_versions"),
        "cpus": share("cpu", "CPUs", "cpus"),
        "distros": chart("OS releases", "distros", {
            "mark": {"type": "bar", "tooltip": True},
            "encoding": {"y": {"field": "release", "type": "nominal", "sort": "-x",
                               "title": None},
                         "x": {"field": "downloads", "type": "quantitative",
                               "axis": count_axis("downloads")},
                         "color": {"field": "distro", "type": "nominal"}},
        }),
        "installers": chart("Installers", "installers", {
            "mark": {"type": "bar", "tooltip": True},
            "encoding": {"y": {"field": "installer", "type": "nominal", "sort": "-x"},
                         "x": {"aggregate": "sum", "field": "downloads",
                               "type": "quantitative", "axis": count_axis("downloads")},
                         "color": {"field": "installer_version", "type": "nominal"}},
        }),
        "time-saved": chart("Build time saved, last 30 days (hours)", "time_saved", {
            "title": {"text": TIME_SAVED_LINES, "fontSize": 11, "fontWeight": "normal",
                      "anchor": "start"},
            "mark": {"type": "bar", "tooltip": True},
            "encoding": {"y": {"field": "project", "type": "nominal", "sort": "-x",
                               "title": None},
                         # 0.0002, 1.5, 1,200 as the ticks need, never "0.00000.0002"
                         "x": {"field": "hours_saved", "type": "quantitative",
                               "axis": count_axis("hours saved", ",~f")}},
        }),
        "searched-not-built": ranked("Searched for but not built (client-days)",
                                     "searched_not_built", "clients",
                                     count_axis("clients", ",~f")),
        "builds-per-hour": chart("Builds per hour per target", "builds_per_hour", {
            "mark": {"type": "line", "point": True, "tooltip": True},
            "encoding": {"x": {"field": "hour", "type": "temporal"},
                         "y": {"field": "builds", "type": "quantitative",
                               "axis": count_axis("builds", ",~f")},
                         "color": {"field": "target", "type": "nominal"}},
        }),
        "worker-temperature": chart("Worker temperature (°C)", "worker_health", {
            "mark": {"type": "line", "tooltip": True},
            "encoding": {"x": {"field": "time", "type": "temporal"},
                         "y": {"field": "cpu_temperature", "type": "quantitative",
                               "axis": count_axis("°C", ",~f")},
                         "color": {"field": "worker", "type": "nominal"}},
        }),
    },
}


def metadata(catalogue: str) -> dict:
    """Datasette metadata; `catalogue` is the path stats.site attaches read-only."""
    return {
        "title": "wheelwright stats",
        "description": "Downloads and searches from the index's access logs, builds "
                       "from the catalogue, and worker health.",
        "databases": {
            "stats": {"tables": TABLES, "queries": QUERIES},
            "catalogue": {"description": "The catalogue, read-only: what PyPI holds and "
                                         "what we have built."},
        },
        "plugins": {
            "datasette-dashboards": {"wheelwright": DASHBOARD},
            "wheelwright-stats": {"catalogue": catalogue},  # see stats.datasette_plugin
        },
    }
