"""The rq worker that serves one build queue: rq's forking Worker, with jobs
limited to our allowlist, a bounded time to notice abandoned jobs, work horses
that do not outlive their worker, and a health report."""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import secrets
import signal

from redis import Redis
from rq import Queue, Worker

from worker import settings
from worker.build import PR_SET_PDEATHSIG
from worker.health import HealthReporter
from worker.interpreter import BuildInterpreter
from worker.jobs import build_root, remove_stale_builds
from worker.queues import SERIALIZER, AllowlistJob, build_queue_name, connect

log = logging.getLogger(__name__)


class WorkerLost(Exception):
    """The worker process died under its work horse."""


class BuildWorker(Worker):
    """rq's Worker, told how long a silent job may go before counting as abandoned."""

    abandon_grace: int = 60
    builds_done: int = 0

    def get_heartbeat_ttl(self, job) -> int:
        # rq adds a fixed 60 s; ours is a setting, so the bound is ours to choose.
        return max(1, super().get_heartbeat_ttl(job) - 60 + self.abandon_grace)

    def execute_job(self, job, queue) -> None:
        try:
            super().execute_job(job, queue)
        finally:
            self.builds_done += 1

    def setup_work_horse_signals(self) -> None:
        super().setup_work_horse_signals()
        # Should the worker die (SIGKILL, OOM killer), the kernel tells its horse,
        # which then stops its build, cleans up and fails the job at once.
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        signal.signal(signal.SIGTERM, _worker_lost)
        if os.getppid() == 1:  # the worker died before the line above
            _worker_lost(signal.SIGTERM, None)


def _worker_lost(signum, frame) -> None:
    # Once is enough: a second SIGTERM (they do come) landing in the cleanup or in
    # rq's failure handling would leave the job neither retried nor failed.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise WorkerLost("the worker process died during the build")


def make_worker(conn: Redis, config: settings.Settings, abi: str) -> BuildWorker:
    queue = Queue(build_queue_name(abi), connection=conn, serializer=SERIALIZER,
                  job_class=AllowlistJob)
    # A random suffix: after a power cut the dead worker's name stays registered
    # in Redis for minutes, and a restarted worker must not wait for it.
    worker = BuildWorker(
        [queue], connection=conn, serializer=SERIALIZER, job_class=AllowlistJob,
        name=f"{config.worker_name}-{abi}-{secrets.token_hex(3)}",
        job_monitoring_interval=config.heartbeat_interval,
        maintenance_interval=config.maintenance_interval,
        # An idle worker sweeps only between waits on the queue, and rq waits
        # worker_ttl - 15 s: this keeps the sweeps as frequent as configured.
        worker_ttl=config.maintenance_interval + 15,
    )
    worker.abandon_grace = config.abandon_grace
    return worker


def run(config: settings.Settings, interpreter: BuildInterpreter, burst: bool = False) -> int:
    """Serve build-<abi> until stopped (or, with burst, until it is empty)."""
    root = build_root(config)
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    for stale in remove_stale_builds(root):
        log.info("removed %s, left by a build that did not finish", stale)
    conn = connect(config.effective_redis_url)
    worker = make_worker(conn, config, interpreter.abi)
    health = HealthReporter(connect(config.effective_redis_url), config.worker_name,
                            interpreter.abi, root, config.health_interval,
                            builds_done=lambda: worker.builds_done)
    health.start()
    log.info("worker %s builds %s-%s wheels with %s (Python %s) from %s",
             worker.name, interpreter.interpreter, interpreter.abi, interpreter.python,
             interpreter.version, build_queue_name(interpreter.abi))
    try:
        worker.work(burst=burst, with_scheduler=False)
    finally:
        health.stop()
    return worker.builds_done
