"""Job functions the publish worker runs (allowlisted in PublishJob), and the
refresher that keeps the home page and packages.json up with them.

The home page's totals and packages.json cover every project: rewriting them with
each publish would cost more than the publish. So a publish only marks them stale
in Redis, and the publish worker's HomeRefresher thread rewrites them once no
publish has come for QUIET seconds (the trailing edge of a burst), or every LONGEST
seconds while a long burst lasts: every publish shows there within a few seconds,
and a burst of a thousand costs a few rewrites.

The same thread reads the downloads from stats.db every WHEELWRIGHT_DOWNLOADS_REFRESH
seconds (a day by default) and rewrites the pages of the projects whose figures
changed, and packages.json, which carries them all: static pages stay a day fresh at
most without a full rebuild (publish.downloads)."""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from contextlib import closing
from dataclasses import dataclass

from redis import Redis
from redis.exceptions import RedisError
from rq import get_current_job

from ingest import catalogue, settings
from publish import downloads as shown_downloads
from publish import index
from publish.releases import load_project
from stats import downloads as stats_downloads
from worker.queues import PUBLISH_FUNCTION, AllowlistJob

log = logging.getLogger("publish")

# A hash: `pending` publishes not on the home page yet, `first` and `last` the times
# (Redis's clock, in seconds) of the first and the last of them.
HOME_KEY = "wheelwright:publish:home"
QUIET = 1.0  # seconds without a publish before the home page is rewritten
LONGEST = 3.0  # seconds a publish waits at most for the home page, however long the burst
POLL = 0.2  # seconds between the refresher's looks at HOME_KEY
DOWNLOADS_POLL = 60.0  # seconds between its looks at the downloads record's age
FIRST_FIGURES = 600.0  # seconds between refreshes while no project has downloads yet


class PublishJob(AllowlistJob):
    ALLOWED = frozenset({PUBLISH_FUNCTION})


def publish_project(project: str) -> dict:
    """Rewrite one project's pages (and the root index if it came or went) from the
    catalogue, and mark the home page stale (run without a queue, write it now)."""
    config = settings.load()
    site = index.site_of(config)
    with closing(catalogue.connect(config.catalogue_path)) as conn:
        outcome = index.publish_project(conn, config.www_dir, site, project)
        job = get_current_job()
        if job is None:
            index.write_home(conn, config.www_dir, site)
        else:
            mark_home_stale(job.connection)
    return {"project": project, "live": outcome.live, "written": outcome.files_written,
            "removed": outcome.files_removed}


def mark_home_stale(redis: Redis) -> None:
    """Record a publish the home page does not show yet."""
    now = _redis_time(redis)
    with redis.pipeline(transaction=True) as pipe:
        pipe.hincrby(HOME_KEY, "pending", 1)
        pipe.hsetnx(HOME_KEY, "first", now)
        pipe.hset(HOME_KEY, "last", now)
        pipe.execute()


@dataclass
class Staleness:
    pending: int
    first: float
    last: float


def staleness(redis: Redis) -> Staleness | None:
    fields = redis.hgetall(HOME_KEY)
    pending = int(fields.get(b"pending", 0))
    if pending <= 0:
        return None
    return Staleness(pending, float(fields.get(b"first", 0)), float(fields.get(b"last", 0)))


def due(stale: Staleness, now: float) -> bool:
    """Trailing edge: quiet for QUIET seconds, or stale for LONGEST."""
    return now - stale.last >= QUIET or now - stale.first >= LONGEST


def mark_home_written(redis: Redis, covered: int, now: float) -> None:
    """The `covered` publishes counted before the rewrite began are on the page now;
    those counted since wait from now for the next one."""
    def update(pipe) -> None:
        left = int(pipe.hget(HOME_KEY, "pending") or 0) - covered
        pipe.multi()
        if left > 0:
            pipe.hincrby(HOME_KEY, "pending", -covered)
            pipe.hset(HOME_KEY, "first", now)
        else:
            pipe.delete(HOME_KEY)

    redis.transaction(update, HOME_KEY)


def refresh_home_if_due(redis: Redis, config: settings.Settings, force: bool = False) -> bool:
    """Rewrite the home page and packages.json if they are due (with force: if any
    publish is not on them yet); True if written."""
    stale = staleness(redis)
    if stale is None or not (force or due(stale, _redis_time(redis))):
        return False
    # Counted before reading the catalogue: every publish counted here read the
    # catalogue before this rewrite does, so the rewrite shows it.
    with closing(catalogue.connect(config.catalogue_path)) as conn:
        index.write_home(conn, config.www_dir, index.site_of(config))
    mark_home_written(redis, stale.pending, _redis_time(redis))
    return True


def refresh_downloads_if_due(config: settings.Settings, force: bool = False
                             ) -> shown_downloads.Refresh | None:
    """Read the downloads from stats.db if the record is older than the setting
    allows (with force: now), and rewrite the pages of the projects whose figures
    changed, then the home page and packages.json. The refresh, or None if not due."""
    site = index.site_of(config)
    record = site.downloads_path
    assert record is not None  # site_of always names it
    last = shown_downloads.last_refresh(record)
    # Until stats.db has its first downloads, look again every FIRST_FIGURES seconds
    # rather than once a day: a new farm's pages get figures on the day it serves.
    every = config.downloads_refresh if shown_downloads.has_figures(record) else \
        min(config.downloads_refresh, FIRST_FIGURES)
    if not force and (config.downloads_refresh <= 0 or (
            last is not None and time.time() - last < every)):
        return None
    today = stats_downloads.today_utc()
    figures = stats_downloads.project_downloads(config.stats_path, today=today)
    refreshed = shown_downloads.refresh(record, figures, today)
    with closing(catalogue.connect(config.catalogue_path)) as conn:
        for name in refreshed.changed:
            # Only the project's pages: what else a publish does (the roots, the
            # files of deleted releases) its own publish job does.
            if (project := load_project(conn, name)) is not None:
                index.write_project(config.www_dir, site, project)
        shown_downloads.done(record, refreshed.changed)
        if refreshed.changed:
            index.write_home(conn, config.www_dir, site)
    log.info("downloads read for %d projects; pages of %d rewritten", refreshed.read,
             len(refreshed.changed))
    return refreshed


class HomeRefresher(threading.Thread):
    """The publish worker's thread that runs refresh_home_if_due every POLL seconds,
    and refresh_downloads_if_due every DOWNLOADS_POLL (rq's worker blocks on the
    queue; a job runs in a forked process)."""

    def __init__(self, redis: Redis, config: settings.Settings) -> None:
        super().__init__(name="home-refresher", daemon=True)
        self.redis, self.config = redis, config
        self.stopping = threading.Event()

    def run(self) -> None:
        downloads_due = 0.0  # monotonic time of the next look at the record's age
        while not self.stopping.wait(POLL):
            try:
                refresh_home_if_due(self.redis, self.config)
                if time.monotonic() >= downloads_due:
                    downloads_due = time.monotonic() + DOWNLOADS_POLL
                    refresh_downloads_if_due(self.config)
            except (RedisError, OSError, sqlite3.Error) as error:  # try again later
                log.warning("could not refresh the home page: %s", error)
                self.stopping.wait(5.0)

    def stop(self) -> None:
        self.stopping.set()
        self.join(10)


def _redis_time(redis: Redis) -> float:
    """Redis's clock: publishers on other machines, and this refresher, agree on it."""
    seconds, micros = redis.time()
    return seconds + micros / 1e6

