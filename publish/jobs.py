"""Job functions the publish worker runs (allowlisted in PublishJob), and the
refresher that keeps the home page and packages.json up with them.

The home page's totals and packages.json cover every project: rewriting them with
each publish would cost more than the publish. So a publish only marks them stale
in Redis, and the publish worker's HomeRefresher thread rewrites them once no
publish has come for QUIET seconds (the trailing edge of a burst), or every LONGEST
seconds while a long burst lasts: every publish shows there within a few seconds,
and a burst of a thousand costs a few rewrites.

The same thread reads the downloads from stats.db every WHEELWRIGHT_DOWNLOADS_REFRESH
seconds (a day by default) into the record pages are rendered from
(publish.downloads), and asks for a publish of each project whose figures changed:
the publish queue writes their pages in order with every other publish (a page
written from here could overwrite a newer publish with an older one), and each
publish marks packages.json stale like any other. Pages show figures a refresh
interval older than stats.db at most, plus the time the queue takes."""

from __future__ import annotations

import logging
import threading
import time
from contextlib import closing
from dataclasses import dataclass

from redis import Redis
from rq import get_current_job

from ingest import catalogue, settings
from ingest.scheduler import request_publish
from publish import downloads as shown_downloads
from publish import index
from publish.contents import refresh_in_background as refresh_contents_in_background
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
ERROR_PAUSE = 5.0  # seconds the refresher waits after a failed pass


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


def refresh_downloads_if_due(redis: Redis, config: settings.Settings, force: bool = False
                             ) -> shown_downloads.Refresh | None:
    """Read the downloads from stats.db into the record if it is older than the
    setting allows (with force: now); then, due or not, queue a publish of every
    project whose figures changed and whose publish is not queued yet (left over
    by a crash, say). The refresh, or None if not due."""
    record = index.site_of(config).downloads_path
    assert record is not None  # site_of always names it
    known = shown_downloads.state(record)
    # Until stats.db has its first downloads, look again every FIRST_FIGURES seconds
    # rather than once a day: a new farm's pages get figures on the day it serves.
    every = config.downloads_refresh if known.has_figures else \
        min(config.downloads_refresh, FIRST_FIGURES)
    refreshed = None
    if force or (config.downloads_refresh > 0 and (
            known.refreshed is None or time.time() - known.refreshed >= every)):
        refreshed = shown_downloads.refresh(
            record, stats_downloads.project_downloads(config.stats_path))
        log.info("downloads read for %d projects; %d changed", refreshed.read,
                 len(refreshed.changed))
    pending = refreshed.pending if refreshed else known.pending
    if pending:
        # Taken off the list only once queued: a crash before it queues them again,
        # and request_publish does not queue a project twice.
        request_publish(redis, set(pending))
        shown_downloads.queued(record, pending)
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
        downloads_due = 0.0  # monotonic time of the next look at the record
        while not self.stopping.wait(POLL):
            try:
                refresh_home_if_due(self.redis, self.config)
                # Debian's Contents caches, in a thread of their own (publish.contents).
                refresh_contents_in_background(self.config)
                if time.monotonic() >= downloads_due:
                    downloads_due = time.monotonic() + DOWNLOADS_POLL
                    refresh_downloads_if_due(self.redis, self.config)
            except Exception:  # whatever it was, the thread must go on
                # Redis away, a locked or damaged file, a bug: the pages go stale
                # until it passes, which is better than stale for good.
                log.exception("could not refresh the home page or the downloads")
                self.stopping.wait(ERROR_PAUSE)

    def stop(self) -> None:
        self.stopping.set()
        self.join(10)


def _redis_time(redis: Redis) -> float:
    """Redis's clock: publishers on other machines, and this refresher, agree on it."""
    seconds, micros = redis.time()
    return seconds + micros / 1e6

