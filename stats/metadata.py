"""Datasette's view of stats.db: table and column descriptions, canned queries, and
the dashboard (datasette-dashboards, Vega-Lite charts drawn in the browser).

Queries run on stats.db with the catalogue attached read-only as `catalogue`
(stats.site does the attaching). Time windows count back from now, in UTC.
"""

from __future__ import annotations

QUERIES: dict[str, dict[str, str]] = {
    "downloads_per_day": {
        "title": "Downloads and searches per day",
        "description": "Wheel downloads, installer searches and distinct clients each "
                       "day of the last 90 days; bots excluded.",
        "sql": """
SELECT day,
       sum(kind = 'download') AS downloads,
       sum(kind = 'search') AS searches,
       count(DISTINCT client) AS clients
FROM hits
WHERE kind IN ('download', 'search') AND time >= datetime('now', '-90 days')
GROUP BY day
ORDER BY day""",
    },
    "top_projects": {
        "title": "Top projects over 30 days",
        "description": "Projects by wheel downloads in the last 30 days.",
        "sql": """
SELECT project, count(*) AS downloads, count(DISTINCT client) AS clients
FROM hits
WHERE kind = 'download' AND time >= datetime('now', '-30 days')
GROUP BY project
ORDER BY downloads DESC, project
LIMIT 100""",
    },
    "python_versions": {
        "title": "Python versions",
        "description": "Downloads in the last 30 days by the Python (major.minor) the "
                       "installer runs on.",
        "sql": """
SELECT coalesce(python_minor, 'unknown') AS python, count(*) AS downloads,
       round(100.0 * count(*) / sum(count(*)) OVER (), 1) AS percent
FROM hits
WHERE kind = 'download' AND time >= datetime('now', '-30 days')
GROUP BY python_minor
ORDER BY downloads DESC, python""",
    },
    "distros": {
        "title": "Distributions",
        "description": "Downloads in the last 30 days by distribution release.",
        "sql": """
SELECT coalesce(distro, 'unknown') AS distro, distro_version, distro_id,
       count(*) AS downloads,
       round(100.0 * count(*) / sum(count(*)) OVER (), 1) AS percent
FROM hits
WHERE kind = 'download' AND time >= datetime('now', '-30 days')
GROUP BY distro, distro_version, distro_id
ORDER BY downloads DESC, distro, distro_version""",
    },
    "cpus": {
        "title": "CPUs",
        "description": "Downloads in the last 30 days by CPU architecture (armv6l: Pi "
                       "Zero and 1; armv7l: 32-bit on later Pis; aarch64: 64-bit).",
        "sql": """
SELECT coalesce(cpu, 'unknown') AS cpu, count(*) AS downloads,
       round(100.0 * count(*) / sum(count(*)) OVER (), 1) AS percent
FROM hits
WHERE kind = 'download' AND time >= datetime('now', '-30 days')
GROUP BY cpu
ORDER BY downloads DESC, cpu""",
    },
    "installers": {
        "title": "Installers",
        "description": "Downloads and searches in the last 30 days by installer and "
                       "version (Browser: people; unknown: agents linehaul cannot parse).",
        "sql": """
SELECT coalesce(installer, 'unknown') AS installer, installer_version,
       sum(kind = 'download') AS downloads, sum(kind = 'search') AS searches
FROM hits
WHERE kind IN ('download', 'search') AND time >= datetime('now', '-30 days')
GROUP BY installer, installer_version
ORDER BY downloads + searches DESC, installer, installer_version""",
    },
    "searched_not_built": {
        "title": "Searched for but not built",
        "description": "Projects installers looked for in the last 30 days of which we "
                       "have no wheel at all: demand we do not meet. on_pypi says "
                       "whether the catalogue knows the project (0: a typo, or not on "
                       "PyPI); skip_reason, why we do not build it.",
        "sql": """
SELECT s.project, count(*) AS searches, count(DISTINCT s.client) AS clients,
       max(s.time) AS last_searched, p.name IS NOT NULL AS on_pypi, p.skip_reason
FROM hits s
LEFT JOIN catalogue.live_projects p ON p.name = s.project
WHERE s.kind = 'search' AND s.time >= datetime('now', '-30 days')
  AND NOT EXISTS (SELECT 1 FROM catalogue.wheels w WHERE w.project = s.project)
GROUP BY s.project
ORDER BY clients DESC, searches DESC, s.project
LIMIT 200""",
    },
    "time_saved": {
        "title": "Build time saved",
        "description": "For each project, downloads in the last 30 days of wheels "
                       "that are not pure Python, times the time their build took: "
                       "the time our users did not spend building. A wheel served "
                       "under its armv6l name counts as the armv7l wheel it is.",
        "sql": """
SELECT w.project, count(*) AS downloads,
       round(sum(b.duration) / 3600.0, 3) AS hours_saved
FROM hits d
JOIN catalogue.wheels w
  ON w.filename = replace(d.filename, '-linux_armv6l.whl', '-linux_armv7l.whl')
JOIN catalogue.builds b
  ON b.project = w.project AND b.version = w.version AND b.abi = w.builder_abi
WHERE d.kind = 'download' AND d.time >= datetime('now', '-30 days') AND w.abi_tag != 'none'
GROUP BY w.project
ORDER BY hours_saved DESC, w.project""",
    },
    "builds_per_hour": {
        "title": "Builds per hour per ABI",
        "description": "Builds finished each hour of the last 7 days, by ABI.",
        "sql": """
SELECT strftime('%Y-%m-%d %H:00', built_at) AS hour, abi, count(*) AS builds,
       sum(status = 'failed') AS failed
FROM catalogue.builds
WHERE datetime(built_at) >= datetime('now', '-7 days')
GROUP BY hour, abi
ORDER BY hour, abi""",
    },
    "failures": {
        "title": "Build failures",
        "description": "Builds and failed builds per ABI, all time.",
        "sql": """
SELECT abi, count(*) AS builds, sum(status = 'failed') AS failed,
       round(100.0 * sum(status = 'failed') / count(*), 1) AS percent_failed
FROM catalogue.builds
GROUP BY abi
ORDER BY abi""",
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
SELECT method, status, count(*) AS requests
FROM requests
WHERE NOT (method = 'GET' AND (status BETWEEN 200 AND 299 OR status = 304
                               OR (status = 404 AND kind = 'search')))
GROUP BY method, status
ORDER BY requests DESC, method, status""",
    },
    "bots": {
        "title": "Bots",
        "description": "Requests served to bots (crawlers and the robots linehaul "
                       "ignores), kept apart from every other count; all time.",
        "sql": """
SELECT user_agent, count(*) AS requests, max(time) AS last_seen
FROM bot_hits
GROUP BY user_agent
ORDER BY requests DESC, user_agent""",
    },
}

TABLES = {
    "requests": {
        "description": "One row per access log line, in log order. No client address "
                       "is kept: `client` is a keyed hash of it.",
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
    "hits": {"description": "Requests that count, with their agent's fields: GETs "
                            "answered 2xx or 304, and searches answered 404 (demand "
                            "for what we lack); bots left out."},
    "bot_hits": {"description": "Requests served to bots."},
}


def chart(title: str, query: str, display: dict) -> dict:
    # Vega-Lite draws from the query's JSON; no chart puts data into HTML itself.
    return {"title": title, "db": "stats", "query": QUERIES[query]["sql"].strip(),
            "library": "vega-lite", "display": display}


def share(field: str, title: str, query: str) -> dict:
    return chart(title, query, {
        "mark": {"type": "arc", "tooltip": True},
        "encoding": {"color": {"field": field, "type": "nominal"},
                     "theta": {"field": "downloads", "type": "quantitative"}},
    })


DASHBOARD = {
    "title": "wheelwright",
    "description": "Downloads, searches and builds.",
    "layout": [
        ["downloads-per-day", "downloads-per-day"],
        ["python-versions", "cpus"],
        ["distros", "installers"],
        ["builds-per-hour", "worker-temperature"],
        ["time-saved", "searched-not-built"],
    ],
    "charts": {
        "downloads-per-day": chart("Downloads and searches per day", "downloads_per_day", {
            "transform": [{"fold": ["downloads", "searches"], "as": ["what", "count"]}],
            "mark": {"type": "line", "point": True, "tooltip": True},
            "encoding": {"x": {"field": "day", "type": "temporal", "title": "day"},
                         "y": {"field": "count", "type": "quantitative"},
                         "color": {"field": "what", "type": "nominal"}},
        }),
        "python-versions": share("python", "Python versions", "python_versions"),
        "cpus": share("cpu", "CPUs", "cpus"),
        "distros": chart("Distributions", "distros", {
            "mark": {"type": "bar", "tooltip": True},
            "encoding": {"y": {"field": "distro_id", "type": "nominal", "sort": "-x"},
                         "x": {"field": "downloads", "type": "quantitative"},
                         "color": {"field": "distro", "type": "nominal"}},
        }),
        "installers": chart("Installers", "installers", {
            "mark": {"type": "bar", "tooltip": True},
            "encoding": {"y": {"field": "installer", "type": "nominal", "sort": "-x"},
                         "x": {"aggregate": "sum", "field": "downloads",
                               "type": "quantitative"},
                         "color": {"field": "installer_version", "type": "nominal"}},
        }),
        "builds-per-hour": chart("Builds per hour per ABI", "builds_per_hour", {
            "mark": {"type": "line", "point": True, "tooltip": True},
            "encoding": {"x": {"field": "hour", "type": "temporal"},
                         "y": {"field": "builds", "type": "quantitative"},
                         "color": {"field": "abi", "type": "nominal"}},
        }),
        "worker-temperature": chart("Worker temperature (°C)", "worker_health", {
            "mark": {"type": "line", "tooltip": True},
            "encoding": {"x": {"field": "time", "type": "temporal"},
                         "y": {"field": "cpu_temperature", "type": "quantitative"},
                         "color": {"field": "worker", "type": "nominal"}},
        }),
        "time-saved": chart("Build time saved (hours)", "time_saved", {
            "mark": {"type": "bar", "tooltip": True},
            "encoding": {"y": {"field": "project", "type": "nominal", "sort": "-x"},
                         "x": {"field": "hours_saved", "type": "quantitative"}},
        }),
        "searched-not-built": chart("Searched for but not built (clients)",
                                    "searched_not_built", {
            "mark": {"type": "bar", "tooltip": True},
            "encoding": {"y": {"field": "project", "type": "nominal", "sort": "-x"},
                         "x": {"field": "clients", "type": "quantitative"}},
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
