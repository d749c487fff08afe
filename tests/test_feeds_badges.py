"""Downloads on project pages, in project JSON and packages.json, read from a real
stats.db made by the real loader and brought to the pages by the real publish queue
(a real Redis, an rq worker in burst mode); Atom feeds parsed by feedparser; badges
parsed as SVG; strangers' names and versions escaped in both."""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import xml.etree.ElementTree as ET
from contextlib import closing
from datetime import datetime, timedelta, timezone
from pathlib import Path

import feedparser
import pytest
import requests
import sqlite_utils
from rq import Queue, Worker

from ingest import catalogue, settings
from publish import downloads as shown_downloads
from publish import index, jobs, pages
from publish.releases import Build, Project, Release, Wheel
from stats.clients import ClientHasher
from stats.downloads import Downloads, project_downloads
from stats.loader import Parser, load_file
from stats.store import open_db
from tests.publishing import HOSTILE_VERSION, apply_events, make_catalogue
from tests.stats_logs import GOOGLEBOT, PIP20, PIP23, line, write_log
from worker.queues import PUBLISH_QUEUE, SERIALIZER

SVG = "{http://www.w3.org/2000/svg}"
ATOM = "{http://www.w3.org/2005/Atom}"
PUBLIC = "http://pi.example/"
ALPHA_WHL = "alpha-1.0-cp311-cp311-linux_armv7l.whl"
NASTY = '1.0<&">\'x'


def download(when: datetime, project: str, filename: str, agent: str = PIP23,
             ip: str = "192.0.2.1") -> str:
    return line(ip, when, f"GET /simple/{project}/{filename} HTTP/1.1", 200, 4096, agent)


def make_stats(path: Path, now: datetime) -> None:
    """alpha: 3 downloads in the 30 days up to `now`, 4 in all (a bot's not counted);
    gamma: 1 recent; beta-lib: 2, both 40 days before."""
    day = timedelta(days=1)
    lines = [
        download(now - 40 * day, "alpha", ALPHA_WHL),
        download(now - 40 * day, "beta-lib", "beta_lib-0.1-py3-none-any.whl"),
        download(now - 40 * day + timedelta(minutes=1), "beta-lib",
                 "beta_lib-0.1-py3-none-any.whl", PIP20, "192.0.2.9"),
        download(now - 10 * day, "alpha", ALPHA_WHL, PIP20, "192.0.2.2"),
        download(now - 10 * day, "gamma", "gamma-1.1-cp311-cp311-linux_armv7l.whl"),
        download(now - timedelta(minutes=3), "alpha", ALPHA_WHL),
        download(now - timedelta(minutes=2), "alpha", ALPHA_WHL, GOOGLEBOT, "192.0.2.7"),
        download(now - timedelta(minutes=1), "alpha", ALPHA_WHL, PIP20, "192.0.2.3"),
    ]
    log = path.parent / f"access-{now:%Y%m%d%H%M%S}.log"
    write_log(log, lines)
    db = open_db(path)
    load_file(db, Parser(ClientHasher(b"k" * 32)), log)
    db.conn.close()


@pytest.fixture
def now() -> datetime:
    # The figures are dated by stats.db's newest day, that of the last line loaded.
    return datetime.now(timezone.utc)


@pytest.fixture
def config(tmp_path, monkeypatch, redis_instance) -> settings.Settings:
    monkeypatch.setenv("WHEELWRIGHT_DATA", str(tmp_path / "var"))
    monkeypatch.setenv("REDIS_URL", redis_instance.url)
    monkeypatch.setenv("WHEELWRIGHT_ABIS", "cp311,cp39")
    monkeypatch.setenv("WHEELWRIGHT_PUBLIC_URL", PUBLIC)
    monkeypatch.setenv("WHEELWRIGHT_PYPI_URL", "http://upstream.example")
    monkeypatch.delenv("WHEELWRIGHT_DOWNLOADS_REFRESH", raising=False)
    (tmp_path / "var").mkdir()
    return settings.load()


@pytest.fixture
def published(config):
    """The fixture catalogue published as the publish worker would, no stats yet."""
    conn = catalogue.connect(config.catalogue_path)
    make_catalogue(conn, config.www_dir)
    conn.commit()
    index.publish_all(conn, config.www_dir, index.site_of(config))
    yield conn
    conn.close()


def stamps(www: Path) -> dict[str, tuple[int, int]]:
    return {p.relative_to(www).as_posix(): (p.lstat().st_ino, p.lstat().st_mtime_ns)
            for p in www.rglob("*") if p.is_symlink() or not p.is_dir()}


def queued_publishes(redis) -> list[str]:
    queue = Queue(PUBLISH_QUEUE, connection=redis, serializer=SERIALIZER)
    return sorted(job.args[0] for job in queue.get_jobs())


def run_publisher(redis, config) -> None:
    """The publish worker: its queue run dry, then the home page as its refresher
    writes it once publishing goes quiet."""
    Worker([PUBLISH_QUEUE], connection=redis, serializer=SERIALIZER,
           job_class=jobs.PublishJob).work(burst=True)
    jobs.refresh_home_if_due(redis, config, force=True)


def record_of(config) -> Path:
    return index.site_of(config).downloads_path


# --- stats.downloads --------------------------------------------------------------

def test_project_downloads_reads_the_rollups(tmp_path, now):
    stats = tmp_path / "stats.db"
    make_stats(stats, now)
    today = now.strftime("%Y-%m-%d")
    assert project_downloads(stats) == {"alpha": Downloads(3, 4, today),
                                        "gamma": Downloads(1, 1, today),
                                        "beta-lib": Downloads(0, 2, today)}


def test_figures_are_as_of_the_newest_day_stats_db_has_counted(tmp_path, now):
    """A log follower days behind: the figures, and the 30 days, end where it is."""
    stats = tmp_path / "stats.db"
    behind = now - timedelta(days=25)
    make_stats(stats, behind)
    day = behind.strftime("%Y-%m-%d")
    # By the clock, only the newest alpha downloads are within 30 days; as of the day
    # stats.db has reached, the one 10 days before it is too.
    assert project_downloads(stats)["alpha"] == Downloads(3, 4, day)
    assert project_downloads(stats)["beta-lib"] == Downloads(0, 2, day)


def test_raw_rows_are_not_what_is_read(tmp_path, now):
    """Pruned raw rows (as retention does) leave the figures as they were."""
    stats = tmp_path / "stats.db"
    make_stats(stats, now)
    with closing(sqlite3.connect(stats)) as conn:
        conn.execute("DELETE FROM requests")
        conn.commit()
    assert project_downloads(stats)["alpha"].counts == (3, 4)


def test_a_missing_or_old_stats_db_gives_nothing(tmp_path):
    assert project_downloads(tmp_path / "missing.db") == {}
    old = tmp_path / "old.db"  # a stats.db from before the rollups
    sqlite_utils.Database(old)["requests"].insert({"time": "2024-01-01", "kind": "download"})
    assert project_downloads(old) == {}
    assert not (tmp_path / "missing.db").exists()  # read-only: nothing made


# --- downloads on pages -------------------------------------------------------------

def test_changed_figures_reach_the_pages_through_the_publish_queue(
        config, redis, published, now):
    www = config.www_dir
    page = www / "project" / "alpha" / "index.html"
    assert "Downloads:" not in page.read_text()  # no stats.db: no line, not a made-up 0
    assert "downloads_all" not in (www / "project" / "alpha" / "json" / "index.json").read_text()
    assert jobs.refresh_downloads_if_due(redis, config).changed == []  # no stats.db yet
    make_stats(config.stats_path, now)
    assert jobs.refresh_downloads_if_due(redis, config) is None  # refreshed a moment ago
    before = stamps(www)

    refreshed = jobs.refresh_downloads_if_due(redis, config, force=True)
    assert refreshed.changed == ["alpha", "beta-lib", "gamma"]
    # The refresh itself writes no page: it asks for publishes, which the publish
    # queue runs in order with every other one.
    assert stamps(www) == before
    assert queued_publishes(redis) == ["alpha", "beta-lib", "gamma"]
    assert shown_downloads.state(record_of(config)).pending == []
    run_publisher(redis, config)

    today = now.strftime("%Y-%m-%d")
    text = page.read_text()
    assert ("Downloads: <strong>3</strong> in the last 30 days, <strong>4</strong> in all, "
            f"as of {today} (UTC)") in text
    data = json.loads((www / "project" / "alpha" / "json" / "index.json").read_text())
    assert (data["downloads_recent"], data["downloads_all"], data["downloads_as_of"]) == (
        3, 4, today)
    assert list(data)[:4] == ["package", "summary", "pypi_url", "piwheels_url"]
    # Only the changed projects' pages, and packages.json, were written again.
    after = stamps(www)
    changed = sorted(k for k in after if after[k] != before.get(k))
    assert changed == ["packages.json",
                       *[f"project/{name}/{file}" for name in ("alpha", "beta-lib", "gamma")
                         for file in ("index.html", "json/index.json")]]
    # Unchanged figures queue nothing; a publish shows the record's figures too.
    assert jobs.refresh_downloads_if_due(redis, config, force=True).changed == []
    assert queued_publishes(redis) == []
    index.publish_project(published, www, index.site_of(config), "alpha")
    assert page.read_text() == text


def test_unchanged_figures_keep_the_day_they_were_read(config, redis, published, now):
    """Re-dating every project would rewrite every downloaded project's page each
    day; an unchanged project's older date is still true of its figures."""
    earlier = now - timedelta(days=2)
    make_stats(config.stats_path, earlier)
    jobs.refresh_downloads_if_due(redis, config, force=True)
    # Two days on, only gamma was downloaded again.
    write_log(config.stats_path.parent / "later.log",
              [download(now, "gamma", "gamma-1.1-cp311-cp311-linux_armv7l.whl")])
    db = open_db(config.stats_path)
    load_file(db, Parser(ClientHasher(b"k" * 32)), config.stats_path.parent / "later.log")
    db.conn.close()
    assert jobs.refresh_downloads_if_due(redis, config, force=True).changed == ["gamma"]
    shown = shown_downloads.shown(record_of(config))
    assert shown["gamma"] == Downloads(2, 2, now.strftime("%Y-%m-%d"))
    assert shown["alpha"].as_of == earlier.strftime("%Y-%m-%d")


def test_a_new_farm_gets_its_first_figures_within_minutes_not_a_day(
        config, redis, published, now):
    record = record_of(config)
    assert jobs.refresh_downloads_if_due(redis, config).changed == []  # no stats.db yet
    make_stats(config.stats_path, now)
    assert jobs.refresh_downloads_if_due(redis, config) is None  # looked a moment ago
    long_ago = shown_downloads.state(record).refreshed - jobs.FIRST_FIGURES - 1
    shown_downloads.refresh(record, {}, now=long_ago)
    assert jobs.refresh_downloads_if_due(redis, config).changed == ["alpha", "beta-lib", "gamma"]
    # With figures shown, the next look is a day away.
    shown_downloads.refresh(record, {}, now=long_ago)
    assert jobs.refresh_downloads_if_due(redis, config) is None


def test_packages_json_ranks_by_downloads_with_piwheels_columns(config, redis, published, now):
    make_stats(config.stats_path, now)
    jobs.refresh_downloads_if_due(redis, config, force=True)
    run_publisher(redis, config)
    rows = json.loads((config.www_dir / "packages.json").read_text())
    # piwheels' readers take `name, recent, all, *_` from each row.
    figures = {name: (recent, total) for name, recent, total, *_ in rows}
    assert figures["alpha"] == (3, 4) and figures["empty-one"] == (0, 0)
    assert [row[0] for row in rows][:3] == ["alpha", "gamma", "beta-lib"]
    assert rows[0] == ["alpha", 3, 4, "Fast arrays for Pis"]  # no other column
    ranks = [(-row[1], -row[2], row[0]) for row in rows]
    assert ranks == sorted(ranks)


def test_a_stats_db_being_rebuilt_does_not_wipe_the_figures(config, redis, published, now):
    make_stats(config.stats_path, now)
    jobs.refresh_downloads_if_due(redis, config, force=True)
    run_publisher(redis, config)
    os.rename(config.stats_path, config.stats_path.with_suffix(".moved"))
    assert jobs.refresh_downloads_if_due(redis, config, force=True).changed == []
    assert queued_publishes(redis) == []
    assert "<strong>4</strong> in all" in (
        config.www_dir / "project" / "alpha" / "index.html").read_text()


def test_publishes_not_queued_before_a_crash_are_queued_at_the_next_poll(
        config, redis, published, now):
    make_stats(config.stats_path, now)
    record = record_of(config)
    # A refresh that recorded the figures and died before queueing any publish:
    shown_downloads.refresh(record, project_downloads(config.stats_path))
    assert queued_publishes(redis) == []
    # The next poll (not forced, and the record is fresh: no refresh due) queues them.
    assert jobs.refresh_downloads_if_due(redis, config) is None
    assert queued_publishes(redis) == ["alpha", "beta-lib", "gamma"]
    # Queued but died before it said so: queued again, yet not twice.
    shown_downloads.refresh(record, project_downloads(config.stats_path))
    with closing(sqlite3.connect(record)) as conn, conn:
        conn.execute("UPDATE refreshes SET pending = 'alpha\nbeta-lib\ngamma'")
    assert jobs.refresh_downloads_if_due(redis, config) is None
    assert queued_publishes(redis) == ["alpha", "beta-lib", "gamma"]
    assert shown_downloads.state(record).pending == []
    run_publisher(redis, config)
    assert "Downloads:" in (config.www_dir / "project" / "gamma" / "index.html").read_text()


def test_a_damaged_record_publishes_without_figures_then_is_replaced(
        config, redis, published, now, caplog):
    make_stats(config.stats_path, now)
    record = record_of(config)
    record.write_bytes(os.urandom(8192))  # not SQLite at all
    site = index.site_of(config)
    with caplog.at_level(logging.WARNING, logger="publish"):
        index.publish_project(published, config.www_dir, site, "alpha")
    assert "Downloads:" not in (config.www_dir / "project" / "alpha" / "index.html").read_text()
    assert any("unreadable" in r.getMessage() for r in caplog.records)
    # The next refresh moves it aside and reads every project's figures again.
    assert jobs.refresh_downloads_if_due(redis, config).changed == ["alpha", "beta-lib", "gamma"]
    assert record.with_name(record.name + ".damaged").exists()
    run_publisher(redis, config)
    assert "Downloads:" in (config.www_dir / "project" / "alpha" / "index.html").read_text()


def test_the_refresher_carries_on_after_an_unexpected_error(config, redis, monkeypatch):
    calls: list[int] = []
    again = threading.Event()

    def refresh(redis, config, force=False):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("a bug, once")
        again.set()
        return False

    monkeypatch.setattr(jobs, "refresh_home_if_due", refresh)
    monkeypatch.setattr(jobs, "refresh_downloads_if_due", lambda *args, **kwargs: None)
    monkeypatch.setattr(jobs, "ERROR_PAUSE", 0.0)
    # The thread's other duty (Debian's Contents caches) is not this test's.
    monkeypatch.setattr(jobs, "refresh_contents_in_background", lambda config: None,
                        raising=False)
    refresher = jobs.HomeRefresher(redis, config)
    refresher.start()
    try:
        assert again.wait(10), "the refresher stopped after the error"
        assert refresher.is_alive()
    finally:
        refresher.stop()


# --- feeds --------------------------------------------------------------------------

def parse_feed(path: Path) -> feedparser.FeedParserDict:
    parsed = feedparser.parse(path.read_bytes())
    assert not parsed.bozo, parsed.get("bozo_exception")
    assert parsed.version == "atom10"
    return parsed


def test_index_feed_lists_new_builds_newest_first(config, published):
    www = config.www_dir
    parsed = parse_feed(www / "feed.xml")
    entries = parsed.entries
    # Successful builds only (alpha 2.0rc1's failed); those of the deleted release
    # (gamma 1.0) and project (gone) went with them.
    assert [(e.title, e.updated) for e in entries] == [
        ("beta_lib 0.1 built for cp311", "2024-01-05T12:00:04Z"),
        ("Alpha 1.1 built for cp311", "2024-01-03T12:00:02Z"),
        ("Alpha 1.0 built for cp39", "2024-01-02T12:00:01Z"),
        ("Alpha 1.0 built for cp311", "2024-01-01T12:00:00Z"),
    ]
    stamps_ = [e.updated_parsed for e in entries]
    assert stamps_ == sorted(stamps_, reverse=True)
    assert len({e.id for e in entries}) == len(entries)
    assert entries[0].link.startswith(f"{PUBLIC}project/")
    assert parsed.feed.id == f"{PUBLIC}feed.xml"
    home = (www / "index.html").read_text()
    assert '<link rel="alternate" type="application/atom+xml" title="New builds" ' \
           'href="feed.xml">' in home


def test_feed_ids_are_stable_and_the_index_feed_is_bounded(config, published):
    www = config.www_dir
    ids = [e.id for e in parse_feed(www / "feed.xml").entries]
    conn = published
    apply_events(conn, [("Alpha", f"9.{i}", "new release") for i in range(150)],
                 serial0=3_000_000)
    conn.executemany(
        "INSERT INTO builds (project, version, abi, status, worker, duration, built_at, "
        "log_path) VALUES ('alpha', ?, 'cp37m', 'success', 'pi-1', 1.0, ?, NULL)",
        [(f"9.{i}", f"2025-03-01T{i // 3600:02d}:{i // 60 % 60:02d}:{i % 60:02d}Z")
         for i in range(150)])
    conn.commit()
    index.write_home(conn, www, index.site_of(config))
    entries = parse_feed(www / "feed.xml").entries
    assert len(entries) == 100
    assert entries[0].title == "Alpha 9.149 built for cp37m"
    assert entries[0].updated == "2025-03-01T00:02:29Z"
    index.write_home(conn, www, index.site_of(config))
    assert [e.id for e in parse_feed(www / "feed.xml").entries] == [e.id for e in entries]
    assert not set(ids) & {e.id for e in entries}  # the old builds fell off the end


def test_project_feeds_and_failures_feed(config, published):
    project = config.www_dir / "project" / "alpha"
    builds = parse_feed(project / "feed.xml")
    assert [e.title for e in builds.entries] == [
        "Alpha 1.1 built for cp311", "Alpha 1.0 built for cp39", "Alpha 1.0 built for cp311"]
    assert builds.feed.id == f"{PUBLIC}project/alpha/feed.xml"
    failures = parse_feed(project / "failures.xml")
    [failed] = failures.entries
    assert failed.title == "Alpha 2.0rc1 failed for cp311"
    assert failed.link == f"{PUBLIC}logs/alpha/2.0rc1/cp311.txt.gz"
    page = (project / "index.html").read_text()
    assert 'rel="alternate" type="application/atom+xml" title="New builds of Alpha" ' \
           'href="feed.xml">' in page
    assert 'title="Failed builds of Alpha" href="failures.xml">' in page
    # A project without failed builds has an empty failures feed, linked all the same:
    # one to subscribe to before anything fails.
    beta = config.www_dir / "project" / "beta-lib"
    assert parse_feed(beta / "failures.xml").entries == []
    assert 'href="failures.xml">feed of failed builds</a>' in (beta / "index.html").read_text()
    # When the failure is built again, successfully, its subscribers read an empty
    # feed (not a 404), updated when the failure was built again.
    published.execute("UPDATE builds SET status = 'success', built_at = "
                      "'2024-02-01T08:00:00Z' WHERE project = 'alpha' AND version = '2.0rc1'")
    index.publish_project(published, config.www_dir, index.site_of(config), "alpha")
    fixed = parse_feed(project / "failures.xml")
    assert fixed.entries == [] and fixed.feed.updated == "2024-02-01T08:00:00Z"
    assert 'href="failures.xml"' in (project / "index.html").read_text()


def test_an_empty_feed_is_dated_by_the_catalogue_not_1970(config, published):
    project = config.www_dir / "project"
    # gamma: releases, no successful build left; empty-one: nothing at all.
    gamma = parse_feed(project / "gamma" / "feed.xml")
    assert gamma.entries == []
    released = published.execute("SELECT max(released) FROM live_versions "
                                 "WHERE project = 'gamma'").fetchone()[0]
    assert gamma.feed.updated == pages.feeds.rfc3339(released)
    assert parse_feed(project / "empty-one" / "feed.xml").feed.updated == \
        pages.feeds.NOTHING_YET
    assert not pages.feeds.NOTHING_YET.startswith("1970")


def test_the_index_feed_leaves_out_releases_deleted_since_their_build(config, published):
    """Deleted in the catalogue, not published yet: the home page's feed and recent
    builds already leave it out (live_builds), as the project's own pages will."""
    apply_events(published, [("Alpha", "1.1", "remove release")], serial0=3_000_000)
    index.write_home(published, config.www_dir, index.site_of(config))
    titles = [e.title for e in parse_feed(config.www_dir / "feed.xml").entries]
    assert titles == ["beta_lib 0.1 built for cp311", "Alpha 1.0 built for cp39",
                      "Alpha 1.0 built for cp311"]
    home = (config.www_dir / "index.html").read_text()
    assert "<td>1.1</td>" not in home and "<td>1.0</td>" in home


def test_the_newest_builds_are_read_along_the_built_at_index(config, published):
    plan = " | ".join(row[3] for row in published.execute(
        f"EXPLAIN QUERY PLAN {index.NEWEST_BUILDS}"))
    assert "SCAN b USING INDEX builds_built" in plan, plan
    # Read in built_at order: at most the ties of one instant are sorted, never all rows.
    assert "USE TEMP B-TREE FOR ORDER BY" not in plan, plan


def test_feeds_escape_strangers_names_and_versions(config, published):
    failures = config.www_dir / "project" / "hostile" / "failures.xml"
    raw = failures.read_text()
    assert "<img" not in raw and "<b>" not in raw
    root = ET.parse(failures).getroot()
    [entry] = root.findall(f"{ATOM}entry")
    assert entry.findtext(f"{ATOM}title") == f'<b>"hostile"</b> {HOSTILE_VERSION} failed for cp311'
    parse_feed(failures)


# --- badges -------------------------------------------------------------------------

def svg_texts(data: str | bytes) -> tuple[ET.Element, list[str]]:
    root = ET.fromstring(data)
    assert root.tag == f"{SVG}svg"
    return root, [t.text for t in root.iter(f"{SVG}text")]


def value_colour(root: ET.Element) -> str:
    """The fill of the badge's right-hand box, the only rect placed with an x."""
    [box] = [r for r in root.iter(f"{SVG}rect") if r.get("x")]
    return box.get("fill")


def test_badges_show_the_version_pip_installs_or_not_built(config, published):
    project = config.www_dir / "project"
    _, texts = svg_texts((project / "alpha" / "badge.svg").read_bytes())
    assert texts == ["Raspberry Pi", "1.0"]  # 1.1 is yanked, 2.0rc1 failed
    root, texts = svg_texts((project / "empty-one" / "badge.svg").read_bytes())
    assert texts == ["Raspberry Pi", "not built"]
    assert value_colour(root) == pages.badge.NOT_BUILT_COLOUR
    assert root.findtext(f"{SVG}title") == "empty-one on the Raspberry Pi: not built"
    page = (project / "alpha" / "index.html").read_text()
    assert (f"<pre>[![alpha on the Raspberry Pi]({PUBLIC}project/alpha/badge.svg)]"
            f"({PUBLIC}project/alpha/)</pre>") in page
    assert '<img src="badge.svg"' in page


def test_a_yanked_release_is_not_shown_as_installable(config, published):
    """Every release with wheels yanked: pip takes one only with a warning, so the
    badge says yanked, not the green of an installable version."""
    badge = config.www_dir / "project" / "alpha" / "badge.svg"
    root, _ = svg_texts(badge.read_bytes())
    assert value_colour(root) == pages.badge.BUILT_COLOUR
    apply_events(published, [("Alpha", "1.0", "yank release")], serial0=3_000_000)
    index.publish_project(published, config.www_dir, index.site_of(config), "alpha")
    root, texts = svg_texts(badge.read_bytes())
    assert texts == ["Raspberry Pi", "1.1 yanked"]
    assert value_colour(root) == pages.badge.YANKED_COLOUR


def test_badges_escape_names_and_versions():
    wheel = Wheel(
        filename="nasty-1.0-cp311-cp311-linux_armv7l.whl", version=NASTY,
        builder_abi="cp311", python_tag="cp311", abi_tag="cp311",
        platform_tag="linux_armv7l", size=1, sha256="ab" * 32, requires_python=None,
        metadata_sha256=None, uploaded_at="2024-01-02T00:00:00Z")
    release = Release(version=NASTY, released="2024-01-01T00:00:00Z", requires_python=None,
                      yank_reason=None, skip_reason=None, yanked=False, has_source=True,
                      wheels=[wheel], builds={"cp311": Build(
                          NASTY, "cp311", "success", 1.0, "2024-01-02T00:00:00Z", None)})
    project = Project(name="nasty", display_name='<Nasty & "co">', summary=None,
                      skip_reason=None, releases=[release])
    svg = pages.badge_svg(project)
    assert "<Nasty" not in svg and NASTY not in svg
    root, texts = svg_texts(svg)
    assert texts == ["Raspberry Pi", NASTY]
    assert root.findtext(f"{SVG}title") == f'<Nasty & "co"> on the Raspberry Pi: {NASTY}'
    site = pages.Site(abis=("cp311",), public_url=PUBLIC, pypi_url=None)
    feed = ET.fromstring(pages.feed_xml(pages.feeds.project_feed(site.public_url, project)))
    assert feed.find(f"{ATOM}entry").findtext(f"{ATOM}title") == \
        f'<Nasty & "co"> {NASTY} built for cp311'


@pytest.mark.parametrize("server", ["publish-serve",
                                    pytest.param("nginx", marks=pytest.mark.nginx)])
def test_a_project_without_a_badge_shows_not_built_from_both_servers(config, published, server,
                                                                     tmp_path):
    """A README embedding the badge of a project since deleted (or never built) shows
    "not built", not a broken image; a project's own badge is served as it is."""
    from publish.server import start_in_thread
    from tests.servers import nginx_binary, start_nginx

    if server == "nginx":
        if not nginx_binary():
            pytest.skip("nginx is not installed")
        data = tmp_path / "nginx"
        data.mkdir()
        (data / "www").symlink_to(config.www_dir)
        running = start_nginx(data)
    else:
        running = start_in_thread(config.www_dir, access_log=None)
    try:
        gone = requests.get(f"{running.url}project/no-such-project/badge.svg", timeout=10)
        own = requests.get(f"{running.url}project/alpha/badge.svg", timeout=10)
    finally:
        running.stop()
    assert gone.status_code == 200 and gone.headers["Content-Type"].startswith("image/svg+xml")
    root = ET.fromstring(gone.content)
    assert root.tag == "{http://www.w3.org/2000/svg}svg" and "not built" in gone.text
    assert own.status_code == 200
    assert own.content == (config.www_dir / "project" / "alpha" / "badge.svg").read_bytes()
