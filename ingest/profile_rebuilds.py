"""Asking again for builds that a newer builder profile (worker.profile: the Debian
packages a builder has, and the build dependencies per project) may fix: wheels
built without their compiled code, and builds refused for missing build
dependencies.

A package whose optional C extension cannot be built (a -dev package the builder
lacked) falls back to pure Python and still makes a wheel tagged for the platform:
the intake records it as `compiled = 0` (worker.elf.compiled_code). A worker that
lacks a package build-deps.txt names fails the build, once its tries are spent, as
missing-build-deps. Adding the package to the profile or the mapping raises the
builder profile version; workers get it only when an operator runs `python -m
worker profile --install`. So, for each ABI, nothing is asked for until a live
worker of that ABI reports the new version in its health (worker.health.profiles);
then each such build made with an older profile is asked for again through the
operator's rebuild machinery (the `rebuilds` mark, so that the push replaces the
served files; the same job ids as `python -m ingest admin rebuild`).

A request is done when a build made with that profile or newer lands: the build no
longer qualifies. A rebuild that lands from an older profile (another worker of the
ABI took the job) is asked for again, and so is one whose job is lost (missing, or
over without a push); at most ATTEMPTS times per (release, ABI, profile), counted
in profile_rebuilds, so that nothing loops."""

from __future__ import annotations

import json
import logging
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from redis import Redis

from ingest import catalogue
from ingest.catalogue import ProfileRebuildRequest
from ingest.scheduler import OVER, build_job_data, build_queue, job_status, make_way, release_times
from publish.failures import MISSING_BUILD_DEPS
from worker.health import profiles
from worker.profile import load_profile
from worker.queues import build_job_id
from worker.wire import BuildJob

ATTEMPTS = 3  # requests per (release, ABI, profile version), the first included

# Live builds whose wheel holds no compiled code, or which were refused for missing
# build dependencies, made with an older profile than :profile (or none said: a
# worker older than the record), not skipped, whose requests for :profile are not
# used up; with the attempts so far (0: none) and whether the rebuild mark is still
# there (the intake clears it when the build's push lands). Read through the partial
# indexes that hold only such builds: cheap enough for every pass of the follower
# (the reason is written in, since SQLite uses a partial index only for a literal).
STALE = f"""
WITH stale (project, version, abi) AS (
    SELECT w.project, w.version, w.builder_abi FROM wheels w INDEXED BY wheels_without_code
    WHERE w.compiled = 0
    UNION
    SELECT b.project, b.version, b.abi FROM builds b INDEXED BY builds_missing_deps
    WHERE b.failure_reason = '{MISSING_BUILD_DEPS}'
)
SELECT s.project, s.version, s.abi, MAX(v.removed_key, p.deleted_key),
       COALESCE(r.attempts, 0),
       EXISTS (SELECT 1 FROM rebuilds m WHERE m.project = s.project
               AND m.version = s.version AND m.abi = s.abi)
FROM stale s
JOIN builds b ON b.project = s.project AND b.version = s.version AND b.abi = s.abi
JOIN versions v ON v.project = s.project AND v.version = s.version
JOIN projects p ON p.name = s.project
LEFT JOIN profile_rebuilds r ON r.project = s.project AND r.version = s.version
     AND r.abi = s.abi AND r.profile = :profile
WHERE COALESCE(b.profile, 0) < :profile
  AND COALESCE(r.attempts, 0) < :attempts
  AND b.barrier_key = MAX(v.removed_key, p.deleted_key)
  AND v.seen_key > MAX(v.removed_key, p.deleted_key) AND p.seen_key > p.deleted_key
  AND p.skip_reason IS NULL AND v.skip_reason IS NULL
  AND s.abi IN (SELECT value FROM json_each(:abis))
  AND NOT EXISTS (SELECT 1 FROM skips k WHERE k.project = s.project
                  AND k.version IN (s.version, '') AND k.abi = s.abi
                  AND k.source = 'operator')
ORDER BY s.project, s.version, s.abi
"""  # noqa: S608 - a constant of ours, no values


log = logging.getLogger("ingest")


def profile_version(deps: Path) -> int | None:
    """The builder profile version of this checkout (the shipped profile and the
    build dependencies at `deps`, WHEELWRIGHT_BUILD_DEPS: worker.profile), read
    afresh each time, since it changes with the repository; None, with a warning,
    when it cannot be read: nothing is rebuilt on a guess."""
    try:
        return load_profile(deps=deps).version
    except (OSError, ValueError) as error:  # ProfileError is a ValueError
        log.warning("builder profile unreadable, no rebuilds for it: %s", error)
        return None


@dataclass(frozen=True)
class Stale:
    """A build a newer profile may fix, as STALE finds it."""

    project: str
    version: str
    abi: str
    incarnation: int  # see worker.queues.build_job_id
    attempts: int  # requests for the profile so far
    marked: bool  # its last request's rebuild has not landed

    @property
    def job_id(self) -> str:
        return build_job_id(self.project, self.version, self.abi, self.incarnation)


@dataclass(frozen=True)
class ProfileRebuild:
    """A build asked for again because a newer builder profile is installed."""

    request: ProfileRebuildRequest
    queued: bool  # False: its job was queued or running already; its push replaces


def stale_builds(conn: sqlite3.Connection, profile: int, abis: list[str] | tuple[str, ...]
                 ) -> list[Stale]:
    """The builds of `abis` a builder with profile `profile` may build better."""
    return [Stale(*row) for row in conn.execute(STALE, {
        "profile": profile, "abis": json.dumps(list(abis)), "attempts": ATTEMPTS})]


def ready_abis(redis: Redis, abis: list[str] | tuple[str, ...], profile: int) -> list[str]:
    """Those of `abis` that a live worker builds with profile `profile` or newer."""
    reported = profiles(redis)
    return [abi for abi in abis if reported.get(abi, 0) >= profile]


def due(redis: Redis, stale: Stale) -> bool:
    """Whether `stale` is to be asked for (again) now: never asked for; or its last
    rebuild landed, from an older profile (the mark is gone, yet it is still stale);
    or that rebuild's job is lost, missing or over without a push."""
    if stale.attempts == 0 or not stale.marked:
        return True
    status = job_status(redis, stale.job_id)
    return status is None or status in OVER


def queue_profile_rebuilds(conn: sqlite3.Connection, redis: Redis, profile: int,
                           abis: list[str] | tuple[str, ...], job_timeout: int,
                           retries: int) -> list[ProfileRebuild]:
    """Ask again for every build of `abis` that a live worker with builder profile
    `profile` may build better (see the module's doc); what was asked for. The
    requests and rebuild marks are written in one transaction first, then the jobs
    are queued together, behind what waits: a profile change may ask for many
    builds, and new releases should not wait behind them."""
    ready = ready_abis(redis, abis, profile)
    if not ready:
        return []
    asked = [s for s in stale_builds(conn, profile, ready) if due(redis, s)]
    if not asked:
        return []
    requests = [ProfileRebuildRequest(s.project, s.version, s.abi, profile, s.attempts + 1)
                for s in asked]
    catalogue.request_profile_rebuilds(conn, requests)
    # A job queued or running already builds anew; its push replaces the files.
    queued = [make_way(redis, s.job_id) is None for s in asked]
    released = release_times(conn, [(s.project, s.version) for s in asked])
    jobs: dict[str, list] = {}
    for stale, queue_it in zip(asked, queued, strict=True):
        if queue_it:
            job = BuildJob(stale.project, stale.version, stale.abi,
                           released[stale.project, stale.version])
            jobs.setdefault(stale.abi, []).append(build_job_data(
                job, stale.incarnation, job_timeout, retries, at_front=False))
    for abi, data in jobs.items():
        build_queue(redis, abi).enqueue_many(data)
    return [ProfileRebuild(request, queue_it)
            for request, queue_it in zip(requests, queued, strict=True)]
