"""Rebuilding wheels that were built without their compiled code, once the builder
profile (worker.profile: the Debian packages a builder has) is newer than the one
they were built with.

A package whose optional C extension cannot be built (a -dev package the builder
lacked) falls back to pure Python and still makes a wheel tagged for the platform:
the intake records it as `compiled = 0` (publish.intake.compiled_code). Adding the
missing package to the profile raises its version; the follower then asks for
each such build again, through the operator's rebuild machinery (the `rebuilds`
mark, so that the push replaces the served files; the same job ids as
`python -m ingest admin rebuild`), once per (release, ABI, profile version):
profile_rebuilds remembers it, so a builder still on the old profile, whose push
records the old profile again, does not start a loop."""

from __future__ import annotations

import json
import logging
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from redis import Redis
from rq.exceptions import NoSuchJobError
from rq.job import JobStatus

from ingest import catalogue
from ingest.scheduler import build_job_data, build_queue, release_times
from worker.profile import load_profile
from worker.queues import SERIALIZER, AllowlistJob, build_job_id
from worker.wire import BuildJob

# A job in one of these states is over and may make way for the rebuild's (as
# ingest.admin.OVER, which this module cannot import: admin imports the follower).
OVER = frozenset(s.value for s in (JobStatus.FINISHED, JobStatus.FAILED, JobStatus.STOPPED,
                                   JobStatus.CANCELED))

# Live builds whose wheel holds no compiled code and whose builder had an older
# profile (or said none: a worker older than the record), not yet asked for again
# for this profile, nor skipped. Reads the partial index of wheels without code,
# which holds only those: cheap enough for every pass of the follower.
STALE = """
SELECT DISTINCT w.project, w.version, w.builder_abi, MAX(v.removed_key, p.deleted_key)
FROM wheels w INDEXED BY wheels_without_code
JOIN builds b ON b.project = w.project AND b.version = w.version AND b.abi = w.builder_abi
JOIN versions v ON v.project = w.project AND v.version = w.version
JOIN projects p ON p.name = w.project
WHERE w.compiled = 0
  AND COALESCE(b.profile, 0) < :profile
  AND b.barrier_key = MAX(v.removed_key, p.deleted_key)
  AND v.seen_key > MAX(v.removed_key, p.deleted_key) AND p.seen_key > p.deleted_key
  AND p.skip_reason IS NULL AND v.skip_reason IS NULL
  AND w.builder_abi IN (SELECT value FROM json_each(:abis))
  AND NOT EXISTS (SELECT 1 FROM skips s WHERE s.project = w.project
                  AND s.version IN (w.version, '') AND s.abi = w.builder_abi
                  AND s.source = 'operator')
  AND NOT EXISTS (SELECT 1 FROM profile_rebuilds r WHERE r.project = w.project
                  AND r.version = w.version AND r.abi = w.builder_abi
                  AND r.profile >= :profile)
ORDER BY w.project, w.version, w.builder_abi
"""


log = logging.getLogger("ingest")


def profile_version(path: Path) -> int | None:
    """The version of the builder profile at `path` (WHEELWRIGHT_BUILDER_PROFILE),
    read afresh each time, since it changes with the repository; None, with a
    warning, when it cannot be read: nothing is rebuilt on a guess."""
    try:
        return load_profile(path).version
    except (OSError, ValueError) as error:  # ProfileError is a ValueError
        log.warning("builder profile %s unreadable, no rebuilds for it: %s", path, error)
        return None


@dataclass(frozen=True)
class ProfileRebuild:
    """A build asked for again because the builder profile changed."""

    project: str
    version: str
    abi: str
    profile: int  # the profile version it is rebuilt for
    queued: bool  # False: its job was queued or running already; its push replaces


def stale_builds(conn: sqlite3.Connection, profile: int, abis: list[str] | tuple[str, ...]
                 ) -> list[tuple[str, str, str, int]]:
    """(project, version, abi, incarnation) of the builds to ask for again."""
    return [tuple(row) for row in conn.execute(
        STALE, {"profile": profile, "abis": json.dumps(list(abis))})]


def queue_profile_rebuilds(conn: sqlite3.Connection, redis: Redis, profile: int,
                           abis: list[str] | tuple[str, ...], job_timeout: int,
                           retries: int) -> list[ProfileRebuild]:
    """Ask once more for every build of `abis` whose wheel lacks its compiled code and
    whose builder profile is older than `profile`; what was asked for."""
    done = []
    for project, version, abi, incarnation in stale_builds(conn, profile, abis):
        # Marked first, as `admin rebuild` does: whichever push comes next for the
        # build replaces its files. The claim is stored last, so a crash in between
        # leaves the build to be found again, and its job id keeps it from running twice.
        catalogue.request_rebuild(conn, project, version, abi)
        queued = _make_way(redis, build_job_id(project, version, abi, incarnation))
        if queued:
            released = release_times(conn, [(project, version)])[project, version]
            # At the back of the queue: a profile change may ask for many builds, and
            # new releases should not wait behind them.
            build_queue(redis, abi).enqueue_many([build_job_data(
                BuildJob(project, version, abi, released), incarnation, job_timeout,
                retries, at_front=False)])
        catalogue.record_profile_rebuild(conn, project, version, abi, profile)
        done.append(ProfileRebuild(project, version, abi, profile, queued))
    return done


def _make_way(redis: Redis, job_id: str) -> bool:
    """Whether a new job may be queued under `job_id`: none exists, or the one that
    does is over (and is deleted). A job queued or running already builds anew."""
    try:
        job = AllowlistJob.fetch(job_id, connection=redis, serializer=SERIALIZER)
    except NoSuchJobError:
        return True
    status = job.get_status(refresh=False)
    if status is not None and JobStatus(status).value in OVER:
        job.delete()
        return True
    return status is None
