"""Keeping each build target's queue (build-<key>, worker.targets) topped up from the
catalogue. Below, `abi` is a build target's key: cp311 (the 32-bit image), cp311-aarch64.

Priority: a release that arrives while ingest is live goes to the front; so does
the newest release of each project that installers search for and we have not
built (see ingest.demand); the backlog follows, the most recently released versions
first (then by name, for a stable order). A version is queued for an ABI when it is
alive, has a live source file, is not skipped, its Requires-Python admits the ABI's
Python, PyPI does not already serve every platform of the ABI's users a wheel (see
ingest.coverage), its metadata is known (when a metadata source is configured), it
has no build for the ABI yet, and no rq job for it exists in Redis (queued, running,
or failed and kept by rq). A release ruled out by Requires-Python or by PyPI's
wheels is recorded as skipped for the ABI, with the reason its pages show. Because
every condition is read from the catalogue and Redis, a Redis that lost its data
gets exactly the pending jobs back on the next pass."""

from __future__ import annotations

import json
import re
import sqlite3
import time
from dataclasses import dataclass
from functools import lru_cache

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import Version
from redis import Redis
from rq import Queue, Retry
from rq.exceptions import NoSuchJobError
from rq.job import JobStatus
from rq.queue import EnqueueData

from ingest.catalogue import Skip, record_skips
from ingest.coverage import coverage
from worker.queues import (
    BUILD_FUNCTION,
    PUBLISH_FUNCTION,
    PUBLISH_QUEUE,
    SERIALIZER,
    AllowlistJob,
    build_job_id,
    build_queue_name,
    publish_job_id,
)
from worker.targets import abi_of
from worker.wire import FALLBACK_EPOCH, LAST_EPOCH, BuildJob

# The Python each Raspberry Pi OS release ships, by ABI: what Requires-Python is
# checked against. Other ABIs are read as cpXY -> X.Y.0.
PI_PYTHONS = {"cp34m": "3.4.2", "cp35m": "3.5.3", "cp37m": "3.7.3", "cp39": "3.9.2",
              "cp311": "3.11.2", "cp313": "3.13.5"}

# A job in one of these states is over: it may make way for a new one of the same id.
OVER = frozenset(s.value for s in (JobStatus.FINISHED, JobStatus.FAILED, JobStatus.STOPPED,
                                   JobStatus.CANCELED))

# The last column: the release's live binary files on PyPI, space-separated (an
# event's file name has no whitespace), for the coverage check.
_SELECT = """
SELECT v.project, v.version, v.requires_python,
       MAX(v.removed_key, p.deleted_key) AS incarnation,
       (SELECT group_concat(f.filename, ' ') FROM live_files f
        WHERE f.project = v.project AND f.version = v.version AND f.kind = 'binary')
       AS pypi_binaries
"""
_WHERE = """
WHERE p.skip_reason IS NULL AND v.skip_reason IS NULL
  AND (v.metadata_state IS NOT NULL OR :metadata = 0)
  AND EXISTS (SELECT 1 FROM live_files f
              WHERE f.project = v.project AND f.version = v.version AND f.kind = 'source')
  AND NOT EXISTS (SELECT 1 FROM live_builds b
                  WHERE b.project = v.project AND b.version = v.version AND b.abi = :abi)
  AND NOT EXISTS (SELECT 1 FROM skips s
                  WHERE s.project = v.project AND s.version IN (v.version, '')
                    AND s.abi = :abi)
"""
# The backlog, newest release first: walks the released index.
CANDIDATES = _SELECT + """
FROM live_versions v JOIN live_projects p ON p.name = v.project
""" + _WHERE + """
ORDER BY v.released DESC, v.project, v.version
LIMIT :limit OFFSET :offset
"""
# Only the named projects' releases: looked up by name (the + keeps SQLite from
# walking the released index instead).
FRESH_CANDIDATES = _SELECT + """
FROM json_each(:projects) AS fresh
JOIN live_versions v ON v.project = fresh.value
JOIN live_projects p ON p.name = v.project
""" + _WHERE + """
ORDER BY +v.released DESC, v.project, v.version
LIMIT :limit OFFSET :offset
"""

# The newest live release of each named project, in the order named (the demand
# order): the version an installer asking for the project would want.
DEMAND_CANDIDATES = _SELECT + """
FROM json_each(:projects) AS wanted
JOIN live_versions v ON v.project = wanted.value
JOIN live_projects p ON p.name = v.project
""" + _WHERE + """
  AND v.released = (SELECT MAX(n.released) FROM live_versions n WHERE n.project = v.project)
ORDER BY wanted.key
LIMIT :limit OFFSET :offset
"""  # noqa: S608 - constant fragments, no values


@dataclass
class ScheduleResult:
    abi: str
    queued: int  # jobs added by this pass
    depth: int  # jobs waiting in the queue afterwards
    skipped: int = 0  # versions newly found to rule this ABI out (Requires-Python)
    covered: int = 0  # versions newly found served to this ABI's users by PyPI


def abi_python(key: str) -> Version | None:
    """The Python of a build target (both images of a release ship the same one)."""
    abi = abi_of(key)
    if abi in PI_PYTHONS:
        return Version(PI_PYTHONS[abi])
    match = re.fullmatch(r"cp(\d)(\d+)m?", abi)
    return Version(f"{match[1]}.{match[2]}.0") if match else None


@lru_cache(maxsize=4096)
def admits(requires_python: str | None, abi: str) -> bool:
    """Does Requires-Python admit the ABI's Python? An unreadable one rules nothing out:
    pip itself decides at build time."""
    python = abi_python(abi)
    if not requires_python or python is None:
        return True
    try:
        return SpecifierSet(requires_python).contains(python, prereleases=True)
    except InvalidSpecifier:
        return True


def build_queue(conn: Redis, abi: str) -> Queue:
    return Queue(build_queue_name(abi), connection=conn, serializer=SERIALIZER,
                 job_class=AllowlistJob)


def top_up(catalogue: sqlite3.Connection, redis: Redis, abi: str, depth: int,
           job_timeout: int, metadata: bool = False, fresh: set[str] | None = None,
           retries: int = 1, demanded: list[str] | None = None) -> ScheduleResult:
    """Add jobs to build-<abi> until it holds `depth` or nothing is left to build.
    With `metadata`, versions whose Requires-Python is not known yet wait.

    With `fresh` (projects that just released), only their versions are looked at,
    and they go to the front of the queue whatever its depth: the depth bounds the
    backlog, and a new release should not wait behind it. With `demanded` (projects
    installers search for, most wanted first), only the newest release of each is
    looked at, and it goes to the front likewise."""
    if fresh is not None:
        query, projects = FRESH_CANDIDATES, json.dumps(sorted(fresh))
    elif demanded is not None:
        query, projects = DEMAND_CANDIDATES, json.dumps(demanded)
    else:
        query, projects = CANDIDATES, None
    at_front = projects is not None
    queue = build_queue(redis, abi)
    waiting = queue.count
    wanted = depth if at_front else depth - waiting
    result = ScheduleResult(abi, 0, waiting)
    offset = 0
    while wanted > 0:
        rows = catalogue.execute(query, {"abi": abi, "metadata": int(metadata),
                                         "limit": wanted * 2, "offset": offset,
                                         "projects": projects}).fetchall()
        if not rows:
            break
        offset += len(rows)
        ruled_out = [Skip(r[0], r[1], abi, f"Requires-Python {r[2]} rules out {abi}")
                     for r in rows if not admits(r[2], abi)]
        covered, buildable = _split_covered([r for r in rows if admits(r[2], abi)], abi)
        if ruled_out or covered:
            record_skips(catalogue, ruled_out + covered)
            result.skipped += len(ruled_out)
            result.covered += len(covered)
            offset -= len(ruled_out) + len(covered)  # they no longer match the query
        unqueued = _without_jobs(redis, buildable, abi)[:wanted]
        if at_front:
            unqueued.reverse()  # pushed one by one at the front: the first ends up first
        released = release_times(catalogue, [(p, v) for p, v, _ in unqueued])
        jobs = [
            build_job_data(BuildJob(project, version, abi, released[project, version]),
                           incarnation, job_timeout, retries, at_front)
            for project, version, incarnation in unqueued
        ]
        if jobs:
            queue.enqueue_many(jobs)
        result.queued += len(jobs)
        wanted -= len(jobs)
    result.depth = waiting + result.queued
    return result


def build_job_data(job: BuildJob, incarnation: int, job_timeout: int, retries: int,
                   at_front: bool) -> EnqueueData:
    """The rq job of one build, under its deterministic id (see build_job_id): the one
    way builds are queued, by the scheduler and by an operator (ingest.admin)."""
    return Queue.prepare_data(
        BUILD_FUNCTION,
        args=job.to_args(),
        job_id=build_job_id(job.project, job.version, job.abi, incarnation),
        description=f"build {job.project}=={job.version} for {job.abi}",
        timeout=job_timeout, result_ttl=3600, failure_ttl=30 * 86400,
        at_front=at_front,
        # More tries if the job itself fails (a worker dead mid-build, an intake out
        # of reach); a build that fails is not an error and is recorded, not retried.
        retry=Retry(max=retries) if retries else None,
    )


def job_status(redis: Redis, job_id: str) -> str | None:
    """The status of the job `job_id` (see build_job_id), or None when there is none."""
    try:
        job = AllowlistJob.fetch(job_id, connection=redis, serializer=SERIALIZER)
    except NoSuchJobError:
        return None
    status = job.get_status(refresh=False)
    return None if status is None else JobStatus(status).value


def make_way(redis: Redis, job_id: str) -> str | None:
    """None when nothing stands in the way of a new job under `job_id` (a job that is
    over is deleted); otherwise the status of the job that does: one queued or running
    builds anew already."""
    status = job_status(redis, job_id)
    if status in OVER:
        AllowlistJob.fetch(job_id, connection=redis, serializer=SERIALIZER).delete()
        return None
    return status


def _split_covered(rows: list, abi: str) -> tuple[list[Skip], list[tuple[str, str, int]]]:
    """(skips of the releases PyPI serves every platform of the ABI's users, with the
    PyPI files named; (project, version, incarnation) of the rest, to build)."""
    covered, buildable = [], []
    for row in rows:
        if row[4] and (found := coverage(abi, row[4].split(" "))).complete:
            covered.append(Skip(row[0], row[1], abi, found.reason))
        else:
            buildable.append((row[0], row[1], row[3]))
    return covered, buildable


def release_times(catalogue: sqlite3.Connection, releases: list[tuple[str, str]]
                  ) -> dict[tuple[str, str], int]:
    """Each release's upload time in seconds since the epoch: its builds'
    SOURCE_DATE_EPOCH, so that every build of it dates its files alike. A release
    with no known time (or one before 1980, which zip cannot store) gets the fixed
    FALLBACK_EPOCH."""
    times = {}
    for project, version in releases:
        row = catalogue.execute(
            "SELECT CAST(strftime('%s', released) AS INTEGER) FROM versions "
            "WHERE project = ? AND version = ?", (project, version)).fetchone()
        epoch = row[0] if row else None
        times[project, version] = epoch if epoch is not None and \
            FALLBACK_EPOCH <= epoch <= LAST_EPOCH else FALLBACK_EPOCH
    return times


def drain(redis: Redis, abi: str) -> int:
    """Empty the queue of an ABI we no longer build (end of life); return how many
    jobs were dropped."""
    queue = build_queue(redis, abi)
    count = queue.count
    queue.empty()
    return count


def _without_jobs(redis: Redis, releases: list[tuple[str, str, int]], abi: str
                  ) -> list[tuple[str, str, int]]:
    """The releases that have no rq job (of any status) for this ABI."""
    pipe = redis.pipeline(transaction=False)
    for project, version, incarnation in releases:
        pipe.exists(f"rq:job:{build_job_id(project, version, abi, incarnation)}")
    return [release for release, exists in zip(releases, pipe.execute(), strict=True)
            if not exists]


def request_publish(redis: Redis, projects: set[str]) -> None:
    """Ask the publisher to rewrite these projects' pages. A request made while an
    earlier one still waits in the queue is covered by it; one made while an earlier
    one runs gets a job of its own, since that run may have read the catalogue
    before the change. Publishing is idempotent, so an extra run costs little."""
    queue = Queue(PUBLISH_QUEUE, connection=redis, serializer=SERIALIZER)
    names = sorted(projects)
    pipe = redis.pipeline(transaction=False)
    for name in names:
        pipe.hget(f"rq:job:{publish_job_id(name)}", "status")
    jobs = []
    for name, status in zip(names, pipe.execute(), strict=True):
        if status == b"queued":
            continue
        job_id = publish_job_id(name)
        if status is not None:
            job_id += f"-{time.time_ns()}"
        jobs.append(Queue.prepare_data(
            PUBLISH_FUNCTION, args=(name,), job_id=job_id, description=f"publish {name}",
            result_ttl=0, failure_ttl=7 * 86400,
        ))
    if jobs:
        queue.enqueue_many(jobs)
