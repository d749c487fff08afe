"""Keeping each build-<abi> queue topped up from the catalogue.

Priority: the most recently released versions first. A version is queued when it
is alive, has a live source file, is not skipped, has no build for the ABI yet and
has no job for it in Redis (queued, running, or failed and kept by rq)."""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass

from redis import Redis
from rq import Queue

from worker.queues import BUILD_FUNCTION, SERIALIZER, build_job_id, build_queue_name

PUBLISH_QUEUE = "publish"
PUBLISH_FUNCTION = "publish.jobs.publish_project"

CANDIDATES = """
SELECT v.project, v.version
FROM live_versions v
JOIN live_projects p ON p.name = v.project
WHERE p.skip_reason IS NULL AND v.skip_reason IS NULL
  AND EXISTS (SELECT 1 FROM live_files f
              WHERE f.project = v.project AND f.version = v.version AND f.kind = 'source')
  AND NOT EXISTS (SELECT 1 FROM builds b
                  WHERE b.project = v.project AND b.version = v.version AND b.abi = ?)
ORDER BY v.released DESC, v.project, v.version
LIMIT ? OFFSET ?
"""


@dataclass
class ScheduleResult:
    abi: str
    queued: int  # jobs added by this pass
    depth: int  # jobs waiting in the queue afterwards


def build_queue(conn: Redis, abi: str) -> Queue:
    return Queue(build_queue_name(abi), connection=conn, serializer=SERIALIZER)


def top_up(catalogue: sqlite3.Connection, redis: Redis, abi: str, depth: int,
           job_timeout: int) -> ScheduleResult:
    """Add jobs to build-<abi> until it holds `depth` or nothing is left to build."""
    queue = build_queue(redis, abi)
    waiting = queue.count
    wanted = depth - waiting
    queued, offset = 0, 0
    while wanted > 0:
        rows = catalogue.execute(CANDIDATES, (abi, wanted * 2, offset)).fetchall()
        if not rows:
            break
        offset += len(rows)
        fresh = _without_jobs(redis, [(r["project"], r["version"]) for r in rows], abi)
        jobs = [
            Queue.prepare_data(
                BUILD_FUNCTION, args=(project, version, abi),
                job_id=build_job_id(project, version, abi),
                description=f"build {project}=={version} for {abi}",
                timeout=job_timeout, result_ttl=3600, failure_ttl=30 * 86400,
            )
            for project, version in fresh[:wanted]
        ]
        if jobs:
            queue.enqueue_many(jobs)
        queued += len(jobs)
        wanted -= len(jobs)
    return ScheduleResult(abi, queued, waiting + queued)


def _without_jobs(redis: Redis, releases: list[tuple[str, str]], abi: str
                  ) -> list[tuple[str, str]]:
    """The releases that have no rq job (of any status) for this ABI."""
    pipe = redis.pipeline(transaction=False)
    for project, version in releases:
        pipe.exists(f"rq:job:{build_job_id(project, version, abi)}")
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


def publish_job_id(name: str) -> str:
    """Canonical names are [a-z0-9-], which rq accepts in ids; anything else is
    hex-encoded behind an underscore, which no canonical name contains."""
    if all(c.isascii() and (c.isalnum() or c == "-") for c in name):
        return f"publish-{name}"
    return f"publish-_{name.encode().hex()}"
