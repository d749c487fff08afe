"""Following a source: apply its events, keep the cursor with them, queue builds.

One pass: fetch after the stored cursor; in one transaction drop serials already
applied (sources that re-read a margin), apply the rest, store the new cursor;
then hand new projects to the metadata fetcher, ask the publisher for the pages
deletions and yanks change, and top up the build queues. A kill at any instant
leaves the catalogue and cursor in step, and a restart carries on from there."""

from __future__ import annotations

import json
import logging
import random
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from redis import Redis

from ingest.catalogue import (
    get_state,
    remember_serials,
    seen_serials,
    set_state,
    transaction,
)
from ingest.coverage import shadowed_projects
from ingest.events import Batch, Event, apply_batch, batch_of
from ingest.metadata import MetadataFetcher
from ingest.profile_rebuilds import queue_profile_rebuilds
from ingest.reading import collector_paused
from ingest.scheduler import (
    ScheduleResult,
    drain,
    request_publish,
    top_up,
)
from ingest.sources import Fetched, Source, SourceUnavailable

log = logging.getLogger("ingest")

STATUS_KEY = "follow-status"
BACKLOG_INTERVAL = 10.0  # seconds between walks through the whole backlog
DEMAND_INTERVAL = 300.0  # seconds between reads of the search demand


@dataclass
class FollowStats:
    events: int = 0  # events applied (re-read ones not counted again)
    malformed: int = 0
    passes: int = 0
    failures: int = 0  # fetches the source could not answer
    queued: int = 0  # build jobs added
    started: float = field(default_factory=time.monotonic)

    @property
    def rate(self) -> float:
        return self.events / max(time.monotonic() - self.started, 1e-9)


@dataclass
class Backoff:
    """Growing pauses after failures, with jitter, reset by a success."""

    first: float = 1.0
    most: float = 60.0
    current: float = 0.0

    def next(self) -> float:
        self.current = min(self.most, self.current * 2 if self.current else self.first)
        return self.current * random.uniform(0.5, 1.0)  # noqa: S311 - jitter, not secrets

    def reset(self) -> None:
        self.current = 0.0


@dataclass
class Follower:
    conn: sqlite3.Connection
    source: Source
    redis: Redis | None = None
    abis: tuple[str, ...] = ()
    disabled_abis: tuple[str, ...] = ()
    depth: int = 1000
    job_timeout: int = 11400
    retries: int = 1
    metadata: MetadataFetcher | None = None
    margin: int = 2000
    backoff: Backoff = field(default_factory=Backoff)
    progress: Callable[[FollowStats], None] = lambda _: None
    demand: Callable[[], list[str]] = list  # projects searched for, most wanted first
    # The builder profile's version now (worker.profile), None when unknown: builds
    # without their compiled code made with an older one are asked for again.
    profile: Callable[[], int | None] = lambda: None
    stats: FollowStats = field(default_factory=FollowStats)
    _last_missing_check: float = 0.0
    _last_backlog: float = 0.0
    _demanded: list[str] = field(default_factory=list)
    _last_demand: float = float("-inf")

    def apply(self, fetched: Fetched) -> Batch:
        """Apply a fetch and store its cursor in one transaction."""
        conn = self.conn
        with transaction(conn):
            batch = fetched.batch
            if batch is None:
                events = fetched.events
                if self.source.rereads:
                    events = self._unseen(events, int(fetched.cursor))
                batch = batch_of(events)
            apply_batch(conn, batch)
            set_state(conn, self.source.state_key, fetched.cursor)
            if batch.count:
                set_state(conn, STATUS_KEY, json.dumps({
                    "serial": batch.newest_serial, "timestamp": batch.newest_timestamp,
                    "upstream_serial": fetched.newest_serial, "applied_at": time.time(),
                    "rate": round(self.stats.rate),
                }))
        self.stats.events += batch.count
        self.stats.malformed += fetched.malformed
        if self.metadata is not None:
            self.metadata.request(batch.released)
        return batch

    def _unseen(self, events: list[Event], cursor: int) -> list[Event]:
        """Drop serials applied before, remember the new ones, forget old ones."""
        if not events:
            return events
        low = min(e.serial for e in events)
        seen = seen_serials(self.conn, low)
        fresh = {e.serial: e for e in events if e.serial not in seen}
        remember_serials(self.conn, fresh, forget_below=cursor - 2 * self.margin)
        return list(fresh.values())

    def schedule(self, fresh: set[str] | None = None, backlog: bool = True) -> None:
        """Top up every build queue; with `fresh`, first put those projects' new
        releases at the front of their queues. `backlog=False` skips the walk
        through the backlog (search demand first, then the rest), which costs more
        the bigger the catalogue."""
        if self.redis is None:
            return
        if fresh:
            for abi in self._active_abis():
                self._top_up(abi, fresh=fresh)
        if not backlog:
            return
        self._last_backlog = time.monotonic()
        for abi in self.disabled_abis:
            if dropped := drain(self.redis, abi):
                log.info("dropped %d queued builds for end-of-life %s", dropped, abi)
        if time.monotonic() - self._last_demand >= DEMAND_INTERVAL:
            self._last_demand = time.monotonic()
            self._demanded = self.demand()
        # Jobs of builds cut short (a stop, a dead worker) are rq's to queue again
        # (worker.runner, rq's abandoned-job sweep): top_up never adds a job for a
        # release whose job exists, so each such build runs exactly once more.
        self._rebuild_for_profile()
        for abi in self._active_abis():
            if self._demanded:
                self._top_up(abi, demanded=self._demanded)
            result = self._top_up(abi)
            if result.queued:
                log.info("queued %d builds for %s (%d waiting)", result.queued, abi,
                         result.depth)

    def _rebuild_for_profile(self) -> None:
        """Queue again the builds an older builder profile made without compiled code
        or refused for missing build dependencies, once a worker has the current one
        (ingest.profile_rebuilds); a cheap query when there are none."""
        if (profile := self.profile()) is None:
            return
        asked = queue_profile_rebuilds(self.conn, self.redis, profile, self._active_abis(),
                                       self.job_timeout, self.retries)
        if asked:
            log.info("asked again for %d builds made with a builder profile older than "
                     "%d, which a worker now has", len(asked), profile)

    def _top_up(self, abi: str, **front: set[str] | list[str]) -> ScheduleResult:
        result = top_up(self.conn, self.redis, abi, self.depth, self.job_timeout,
                        metadata=self.metadata is not None, retries=self.retries, **front)
        self.stats.queued += result.queued
        return result

    def _active_abis(self) -> list[str]:
        return [abi for abi in self.abis if abi not in self.disabled_abis]

    def step(self) -> bool | None:
        """One pass: whether it caught up with the source, or None when the source
        could not answer (the caller pauses)."""
        self.stats.passes += 1
        if self.metadata is not None:
            self.metadata.collect(self.conn)
            if time.monotonic() - self._last_missing_check > 60:
                self._last_missing_check = time.monotonic()
                self.metadata.request_missing(self.conn)
        try:
            fetched = self.source.fetch(get_state(self.conn, self.source.state_key))
        except SourceUnavailable as error:
            self.stats.failures += 1
            log.warning("event source unavailable: %s", error)
            return None
        self.backoff.reset()
        batch = self.apply(fetched)
        # Live (caught up), a release goes straight to the front of the queues;
        # while a backlog is replayed, the usual priority order decides. Each pass
        # looks at the new releases; the backlog is walked every BACKLOG_INTERVAL.
        self.schedule(fresh=batch.released if fetched.caught_up else None,
                      backlog=time.monotonic() - self._last_backlog >= BACKLOG_INTERVAL)
        if self.redis is not None:
            # Deletions and yanks change pages; so does a PyPI upload named like a
            # wheel of ours, which the publisher then withdraws. Live, a new release
            # changes its page too (pending, or skipped and why: scheduled above);
            # a replayed backlog is published whole by `publish write`.
            touched = batch.touched | shadowed_projects(self.conn, batch.released)
            if fetched.caught_up:
                touched |= set(batch.released)
            if touched:
                request_publish(self.redis, touched)
        self.progress(self.stats)
        return fetched.caught_up

    def run(self, until_caught_up: bool = False, interval: float = 1.0,
            stop: Callable[[], bool] = lambda: False) -> FollowStats:
        """Follow until stopped (or, with until_caught_up, until nothing is left)."""
        self.schedule()
        while not stop():
            # The batch is gone by the time the collector resumes, so it never
            # traverses it; and step() returns no batch: one at a time in memory.
            with collector_paused():
                caught_up = self.step()
            if caught_up is None:
                _pause(self.backoff.next(), stop)
            elif caught_up:
                if until_caught_up:
                    self.finish()
                    break
                _pause(interval, stop)
        return self.stats

    def finish(self, wait: float = 30.0) -> None:
        """Write the metadata still on its way (up to `wait` s), then schedule."""
        if self.metadata is not None:
            deadline = time.monotonic() + wait
            while self.metadata.pending and time.monotonic() < deadline:
                self.metadata.collect(self.conn)
                time.sleep(0.05)
        self.schedule()


def _pause(seconds: float, stop: Callable[[], bool]) -> None:
    deadline = time.monotonic() + seconds
    while not stop() and time.monotonic() < deadline:
        time.sleep(min(0.05, seconds))
