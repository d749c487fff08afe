"""Datasette over stats.db: every canned query, in-process, on known data; and the
dashboard drawn by headless Chromium."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from ingest import catalogue
from stats.clients import ClientHasher
from stats.health import record_row
from stats.loader import Parser, load_file
from stats.metadata import DASHBOARD, QUERIES
from stats.site import make_datasette
from stats.store import open_db
from tests.stats_logs import GOOGLEBOT, PIP23, line, sample_log, write_log
from tests.test_stats_health import record

NOW = datetime.now(timezone.utc).replace(microsecond=0)
TODAY = NOW.replace(hour=0, minute=0, second=0)
BASE = TODAY - timedelta(days=2) + timedelta(hours=8)  # the sample log's first line
OLD = BASE - timedelta(days=40)                         # outside 30 days, inside 90


def iso(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def minute(offset: int) -> str:
    return (BASE + timedelta(minutes=offset)).strftime("%Y-%m-%d %H:%M:%S")


def hour(when: datetime) -> str:
    return when.strftime("%Y-%m-%d %H:00")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    data = tmp_path_factory.mktemp("stats-site")
    lines, _, _ = sample_log(BASE)
    write_log(data / "access.log", lines)
    write_log(data / "old.log", [line(
        "192.0.2.200", OLD, "GET /simple/numpy/numpy-1.26.4-cp311-cp311-linux_armv7l.whl "
        "HTTP/1.1", 200, 5_000_000, PIP23)])
    db = open_db(data / "stats.db")
    parser = Parser(ClientHasher(b"k" * 32))
    for name in ("access.log", "old.log"):
        load_file(db, parser, data / name)
    health = [record("pi-1", iso(NOW - timedelta(hours=2)), 50.0),
              record("pi-1", iso(NOW - timedelta(hours=1)), 55.5),
              record("pi-2", iso(NOW - timedelta(hours=1)), None),
              record("pi-1", iso(NOW - timedelta(days=10)), 40.0)]
    db["worker_health"].insert_all(record_row("k", json.dumps(r))
                                   for r in health)
    db.close()

    conn = catalogue.connect(data / "catalogue.db")
    for name in ("numpy", "six", "not-built-yet", "brokenpkg"):
        conn.execute("INSERT INTO projects (name, display_name, display_key, seen_key) "
                     "VALUES (?, ?, 1, 1)", (name, name))
    wheel = ("INSERT INTO wheels (filename, project, version, builder_abi, python_tag, "
             "abi_tag, platform_tag, size, sha256, uploaded_at) "
             "VALUES (?, ?, ?, 'cp311', ?, ?, ?, 1, 'x', ?)")
    conn.execute(wheel, ("numpy-1.26.4-cp311-cp311-linux_armv7l.whl", "numpy", "1.26.4",
                         "cp311", "cp311", "linux_armv7l", iso(NOW)))
    conn.execute(wheel, ("six-1.16.0-py2.py3-none-any.whl", "six", "1.16.0", "py2.py3",
                         "none", "any", iso(NOW)))
    build = ("INSERT INTO builds (project, version, abi, status, worker, duration, built_at) "
             "VALUES (?, ?, 'cp311', ?, 'pi-1', ?, ?)")
    conn.execute(build, ("numpy", "1.26.4", "success", 3600.0, iso(NOW - timedelta(hours=3))))
    conn.execute(build, ("six", "1.16.0", "success", 12.0, iso(NOW - timedelta(hours=3))))
    conn.execute(build, ("brokenpkg", "1.0", "failed", 30.0, iso(NOW - timedelta(hours=1))))
    conn.execute(build, ("numpy", "1.26.3", "success", 3000.0, iso(NOW - timedelta(days=10))))
    conn.execute(build, ("brokenpkg", "0.9", "failed", 5.0, iso(NOW - timedelta(days=10))))
    # The 64-bit image's build of numpy: builds count per target (key), not per ABI.
    conn.execute("INSERT INTO builds (project, version, abi, status, worker, duration, "
                 "built_at) VALUES ('numpy', '1.26.4', 'cp311-aarch64', 'success', 'pi-5', "
                 "3000.0, ?)", (iso(NOW - timedelta(hours=3)),))
    # Why brokenpkg 1.0 failed, as the intake reads it from the log; 0.9 is older
    # than the reasons (unknown).
    conn.execute("UPDATE builds SET failure_reason = 'missing-header', "
                 "failure_detail = 'yaml.h', failure_package = 'libyaml-dev' "
                 "WHERE project = 'brokenpkg' AND version = '1.0'")
    conn.close()
    return data


def day(when: datetime) -> str:
    return when.strftime("%Y-%m-%d")


def every_day(days: int, values: dict[str, dict], zero: dict) -> list[dict]:
    """The last `days` UTC days, oldest first: `values` where given, else zeros."""
    series = [day(TODAY - timedelta(days=back)) for back in range(days - 1, -1, -1)]
    return [{"day": d, **values.get(d, zero)} for d in series]


# The sample log's counted bytes (bots, HEAD, errors and 404 pages left out): three
# 5 MB wheels, six's 11,000 bytes, and 9,550 bytes of searches, metadata and pages.
WHEEL_BYTES = 3 * 5_000_000 + 11_000
ALL_BYTES = WHEEL_BYTES + 9_550

EXPECTED = {
    "totals": [
        {"n": 1, "figure": "Downloads, all time", "value": "5"},
        {"n": 2, "figure": "Downloads, last 30 days", "value": "4"},
        # uv's download (aarch64) of the four on a CPU we know; not the searches'
        {"n": 3, "figure": "64-bit share of downloads, last 30 days",
         "value": "25.0% (1 of 4)"},
        {"n": 4, "figure": "Searches, all time", "value": "6"},
        {"n": 5, "figure": "Data served, all time", "value": "20.0 MB"},
        {"n": 6, "figure": "Busiest day", "value": f"{day(BASE)}: 4 downloads"},
        {"n": 7, "figure": "Busiest hour (UTC)", "value": f"{day(BASE)} 08:00: 4 downloads"},
        {"n": 8, "figure": "Counting since", "value": day(OLD)},
    ],
    # Every day of 90, the days without traffic 0.
    "downloads_per_day": every_day(90, {day(OLD): {"downloads": 1, "searches": 0},
                                        day(BASE): {"downloads": 4, "searches": 6}},
                                   {"downloads": 0, "searches": 0}),
    # Each platform seen in the 90 days, every day, 0 on the days without its downloads.
    "downloads_by_platform": [
        {"day": row["day"], "cpu": cpu, "downloads": row[cpu]}
        for row in every_day(90, {day(OLD): {"aarch64": 0, "armv6l": 0, "armv7l": 1},
                                  day(BASE): {"aarch64": 1, "armv6l": 1, "armv7l": 2}},
                             {"aarch64": 0, "armv6l": 0, "armv7l": 0})
        for cpu in ("aarch64", "armv6l", "armv7l")],
    "bandwidth": every_day(90, {day(OLD): {"bytes": 5_000_000, "wheel_bytes": 5_000_000},
                                day(BASE): {"bytes": ALL_BYTES, "wheel_bytes": WHEEL_BYTES}},
                           {"bytes": 0, "wheel_bytes": 0}),
    "downloads_by_hour": [{"hour": hour, "downloads": 4 if hour == 8 else 0}
                          for hour in range(24)],
    "top_projects": [{"project": "numpy", "downloads": 3},
                     {"project": "six", "downloads": 1}],
    "python_versions": [{"python": "3.11", "downloads": 2, "percent": 50.0},
                        {"python": "3.7", "downloads": 1, "percent": 25.0},
                        {"python": "3.9", "downloads": 1, "percent": 25.0}],
    "distros": [
        {"release": "Debian GNU/Linux 12", "distro": "Debian GNU/Linux",
         "distro_version": "12", "distro_id": "bookworm", "downloads": 1, "percent": 25.0},
        {"release": "Raspbian GNU/Linux 10", "distro": "Raspbian GNU/Linux",
         "distro_version": "10", "distro_id": "buster", "downloads": 1, "percent": 25.0},
        {"release": "Raspbian GNU/Linux 11", "distro": "Raspbian GNU/Linux",
         "distro_version": "11", "distro_id": "bullseye", "downloads": 1, "percent": 25.0},
        {"release": "Raspbian GNU/Linux 12", "distro": "Raspbian GNU/Linux",
         "distro_version": "12", "distro_id": "bookworm", "downloads": 1, "percent": 25.0},
    ],
    "cpus": [{"cpu": "armv7l", "downloads": 2, "percent": 50.0},
             {"cpu": "aarch64", "downloads": 1, "percent": 25.0},
             {"cpu": "armv6l", "downloads": 1, "percent": 25.0}],
    "installers": [
        {"installer": "pip", "installer_version": "18.1", "downloads": 1, "searches": 1},
        {"installer": "pip", "installer_version": "20.3.4", "downloads": 1, "searches": 1},
        {"installer": "pip", "installer_version": "23.0.1", "downloads": 1, "searches": 1},
        {"installer": "pip", "installer_version": "24.2", "downloads": 1, "searches": 1},
        {"installer": "pip", "installer_version": "1.5.6", "downloads": 0, "searches": 1},
        {"installer": "uv", "installer_version": "0.4.18", "downloads": 0, "searches": 1},
    ],
    "searched_not_built": [
        {"project": "not-built-yet", "searches": 2, "clients": 1, "last_searched": minute(5),
         "on_pypi": 1, "skip_reason": None},
        {"project": "typo-pkg", "searches": 1, "clients": 1, "last_searched": minute(4),
         "on_pypi": 0, "skip_reason": None},
    ],
    # numpy's armv7l wheel, downloaded twice under its name and once as armv6l (which
    # counts six times), built in an hour, less 6.7 s each: 8 * 3593.3 s. six is pure
    # Python and saves nobody a build.
    "time_saved": [{"project": "numpy", "downloads": 3, "hours_saved": 7.985}],
    "builds_per_hour": [
        {"hour": hour(NOW - timedelta(hours=3)), "target": "cp311", "builds": 2, "failed": 0},
        {"hour": hour(NOW - timedelta(hours=3)), "target": "cp311-aarch64", "builds": 1,
         "failed": 0},
        {"hour": hour(NOW - timedelta(hours=1)), "target": "cp311", "builds": 1, "failed": 1},
    ],
    "failure_rates": [
        {"target": "cp311", "builds": 5, "failed": 2, "percent_failed": 40.0},
        {"target": "cp311-aarch64", "builds": 1, "failed": 0, "percent_failed": 0.0}],
    "failures": [
        {"reason": "missing-header", "failed": 1, "projects": 1, "packages": "libyaml-dev",
         "last_failed": iso(NOW - timedelta(hours=1))},
        {"reason": "unknown", "failed": 1, "projects": 1, "packages": None,
         "last_failed": iso(NOW - timedelta(days=10))},
    ],
    "worker_health": [
        {"time": (NOW - timedelta(hours=2)).strftime("%Y-%m-%d %H:%M:%S"), "worker": "pi-1",
         "abi": "cp311", "cpu_temperature": 50.0, "load1": 1.5, "load5": 1.0, "load15": 0.5,
         "memory_available_percent": 25.0, "disk_free_percent": 25.0, "builds_done": 7},
        {"time": (NOW - timedelta(hours=1)).strftime("%Y-%m-%d %H:%M:%S"), "worker": "pi-1",
         "abi": "cp311", "cpu_temperature": 55.5, "load1": 1.5, "load5": 1.0, "load15": 0.5,
         "memory_available_percent": 25.0, "disk_free_percent": 25.0, "builds_done": 7},
        {"time": (NOW - timedelta(hours=1)).strftime("%Y-%m-%d %H:%M:%S"), "worker": "pi-2",
         "abi": "cp311", "cpu_temperature": None, "load1": 1.5, "load5": 1.0, "load15": 0.5,
         "memory_available_percent": 25.0, "disk_free_percent": 25.0, "builds_done": 7},
    ],
    "other_requests": [{"method": "GET", "status": 404, "requests": 2},
                       {"method": "GET", "status": 500, "requests": 1},
                       {"method": "HEAD", "status": 200, "requests": 1}],
    "bots": [{"user_agent": GOOGLEBOT, "requests": 1, "last_seen": minute(8)}],
}


def get_json(datasette, path: str):
    async def fetch():
        response = await datasette.client.get(path)
        assert response.status_code == 200, response.text
        return response.json()
    return asyncio.run(fetch())


def test_every_canned_query_is_tested():
    assert set(EXPECTED) == set(QUERIES)


@pytest.mark.parametrize("query", sorted(QUERIES))
def test_canned_query_returns_the_expected_rows(data_dir, query):
    datasette = make_datasette(data_dir / "stats.db", data_dir / "catalogue.db")
    rows = get_json(datasette, f"/stats/{query}.json?_shape=array")
    assert rows == EXPECTED[query]


def test_catalogue_is_attached_read_only(data_dir):
    datasette = make_datasette(data_dir / "stats.db", data_dir / "catalogue.db")

    async def attempt():
        database = datasette.get_database("stats")

        def write(conn):
            conn.execute("DELETE FROM catalogue.builds")
        await database.execute_write_fn(write, block=True)

    with pytest.raises(Exception, match="readonly"):
        asyncio.run(attempt())
    tables = get_json(datasette, "/stats.json")["tables"]
    described = {t["name"] for t in tables}
    assert {"requests", "agents", "worker_health", "sources", "rejects"} <= described
    page = get_json(datasette, "/stats/requests.json?_shape=array&_size=1")
    assert page and "client" in page[0]


def chromium_or_skip() -> None:
    if shutil.which("chromium"):
        return
    if shutil.which("apt-get"):
        subprocess.run(["apt-get", "install", "-y", "chromium"], capture_output=True,
                       timeout=600, check=False)
    if not shutil.which("chromium"):
        pytest.skip("chromium is not installed and could not be installed")


def test_dashboard_draws_every_chart_in_headless_chromium(data_dir, tmp_path):
    chromium_or_skip()
    from stats.screenshot import screenshot

    png = tmp_path / "dashboard.png"
    drawn = screenshot(data_dir / "stats.db", data_dir / "catalogue.db", png)
    assert drawn == set(DASHBOARD["charts"])
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 50_000
