"""The heartbeat TTL a build worker gives rq: rq's own, with our abandon grace in
place of rq's fixed 60 s, under the rq installed and under rq's newer signature."""

from __future__ import annotations

import dataclasses
from importlib.metadata import version
from pathlib import Path

from packaging.requirements import Requirement
from rq import Worker
from rq.job import Job

from worker.queues import BUILD_FUNCTION, SERIALIZER
from worker.runner import BuildWorker, make_worker

ROOT = Path(__file__).resolve().parent.parent


def _job(redis, timeout: int) -> Job:
    return Job.create(BUILD_FUNCTION, args=("demo", "1.0", "cp311"), connection=redis,
                      serializer=SERIALIZER, timeout=timeout)


def test_heartbeat_ttl_is_rqs_with_our_grace(config, redis):
    config = dataclasses.replace(config, heartbeat_interval=30, abandon_grace=5)
    worker = make_worker(redis, config, "cp311")
    job = _job(redis, timeout=1000)
    assert Worker.get_heartbeat_ttl(worker, job) == 30 + 60
    assert worker.get_heartbeat_ttl(job) == 30 + 5


class _NewerRqWorker(Worker):
    """rq's main branch: the caller passes how long the job has run."""

    def get_heartbeat_ttl(self, job: Job, working_time: float = 0.0) -> int:
        remaining = job.timeout - working_time
        return int(min(remaining, self.job_monitoring_interval)) + 60


class _OnNewerRq(BuildWorker, _NewerRqWorker):
    pass


def test_heartbeat_ttl_passes_newer_rq_arguments_on(config, redis):
    job = _job(redis, timeout=100)
    worker = _OnNewerRq([], connection=redis, serializer=SERIALIZER,
                        job_monitoring_interval=30)
    worker.abandon_grace = 5
    assert worker.get_heartbeat_ttl(job, working_time=90.0) == 10 + 5
    assert worker.get_heartbeat_ttl(job, 90.0) == 10 + 5


def test_installed_rq_is_within_the_bound_tested():
    """worker/requirements.txt admits only the rq versions these tests run on."""
    lines = (ROOT / "worker" / "requirements.txt").read_text().splitlines()
    rq = next(Requirement(line) for line in lines if line.startswith("rq"))
    assert rq.specifier.contains(version("rq"))
    assert not rq.specifier.contains("3.0.0")
