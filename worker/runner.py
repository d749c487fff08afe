"""The rq worker that serves one build queue: rq's forking Worker, with jobs
limited to our allowlist, a bounded time to notice abandoned jobs, work horses
that do not outlive their worker, and a health report."""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import time
from pathlib import Path

from redis import Redis
from rq import Queue, Worker
from rq.exceptions import StopRequested
from rq.job import JobStatus
from rq.worker import WorkerStatus

from worker import settings
from worker.build import PR_SET_PDEATHSIG
from worker.errors import LowDisk, free_space, megabytes
from worker.health import HealthReporter
from worker.interpreter import BuildInterpreter
from worker.jobs import build_root, remove_stale_builds
from worker.machine import toolchain
from worker.profile import installed_profile
from worker.queues import (
    SERIALIZER,
    AllowlistJob,
    build_queue_name,
    connect,
    rq_worker_name,
)
from worker.stopping import interruptible

log = logging.getLogger(__name__)


class WorkerLost(Exception):
    """The worker process died under its work horse."""


class BuildInterrupted(Exception):
    """The worker was asked to stop: the build is cut short and its job goes back on
    its queue, to run once more when a worker next starts."""


class BuildWorker(Worker):
    """rq's Worker, told how long a silent job may go before counting as abandoned."""

    abandon_grace: int = 60
    builds_done: int = 0
    interrupted: bool = False  # a stop cut the current build short
    min_free: int = 0  # bytes the build directory's file system keeps free; 0: no check
    build_root: Path | None = None
    disk_poll: float = 1.0  # seconds between looks at the free space while paused

    def check_for_suspension(self, burst: bool) -> None:
        super().check_for_suspension(burst)  # `rq suspend`
        self.wait_for_room(burst)

    def wait_for_room(self, burst: bool) -> None:
        """Take no job while the build directory's file system has less than
        `min_free` bytes free: a build would fail for want of room and be recorded as
        a failed build. Paused, the worker stays registered (suspended, heartbeating)
        and stops when asked; it carries on by itself once there is room. In burst
        mode it stops, as rq's own suspension does."""
        if not self.min_free or self.build_root is None:
            return
        paused_from = None
        while not self._stop_requested:
            free = free_space(self.build_root)
            if free >= self.min_free:
                break
            if burst:
                self.log.warning("%s; stopping (burst mode)",
                                 LowDisk(self.build_root, free, self.min_free))
                raise StopRequested
            if paused_from is None:
                self.log.warning("taking no build job: %s",
                                 LowDisk(self.build_root, free, self.min_free))
                paused_from = self.get_state()
                self.set_state(WorkerStatus.SUSPENDED)
            self.heartbeat()
            time.sleep(self.disk_poll)
        if paused_from is not None:
            self.log.info("%s free in %s again: taking build jobs", megabytes(free),
                          self.build_root)
            self.set_state(paused_from)

    def request_stop(self, signum, frame) -> None:
        # rq would wait for the running job, and a build may take hours: a stop
        # interrupts the build instead (SIGINT, which only we send the horse, in its
        # own process group), and its job goes back on the queue as it was.
        horse = self.horse_pid
        if horse:
            self.interrupted = True
        super().request_stop(signum, frame)  # raises StopRequested when idle
        if horse:
            with contextlib.suppress(ProcessLookupError):
                os.kill(horse, signal.SIGINT)

    def handle_job_failure(self, job, queue, started_job_registry=None, exc_string=""):
        if not self.is_horse and job.get_status(refresh=True) in (JobStatus.QUEUED,
                                                                  JobStatus.SCHEDULED):
            # The horse put its job back before it died: a second retry from here
            # would put the job on the queue twice, and build it twice.
            return
        if self.interrupted:
            # A stop is not a failure of the job: it keeps the tries it had, and rq's
            # retry puts it back on its queue (the one place interrupted work is
            # queued again; see ingest.scheduler).
            job.retries_left = (job.retries_left or 0) + 1
        super().handle_job_failure(job, queue, started_job_registry, exc_string)

    def handle_exception(self, job, *exc_info) -> None:
        if self.interrupted:
            self.log.info("build %s interrupted by a stop: queued again", job.id)
            return
        super().handle_exception(job, *exc_info)

    def get_heartbeat_ttl(self, job, *args, **kwargs) -> int:
        # rq adds a fixed 60 s; ours is a setting, so the bound is ours to choose.
        # Whatever else rq passes (newer rq gives `working_time`) goes on to rq.
        return max(1, super().get_heartbeat_ttl(job, *args, **kwargs) - 60
                   + self.abandon_grace)

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
        signal.signal(signal.SIGINT, self._interrupt_build)
        if os.getppid() == 1:  # the worker died before the line above
            _worker_lost(signal.SIGTERM, None)

    def _interrupt_build(self, signum, frame) -> None:
        if not interruptible():
            return  # a push under way finishes, and the job with it
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        self.interrupted = True
        raise BuildInterrupted("the worker is stopping")


def _worker_lost(signum, frame) -> None:
    # Once is enough: a second SIGTERM (they do come) landing in the cleanup or in
    # rq's failure handling would leave the job neither retried nor failed.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if not interruptible():
        return  # a push under way finishes, and the horse records the job's end itself
    raise WorkerLost("the worker process died during the build")


def make_worker(conn: Redis, config: settings.Settings, abi: str) -> BuildWorker:
    """A build worker of target `abi` (its key: worker.targets)."""
    queue = Queue(build_queue_name(abi), connection=conn, serializer=SERIALIZER,
                  job_class=AllowlistJob)
    worker = BuildWorker(
        [queue], connection=conn, serializer=SERIALIZER, job_class=AllowlistJob,
        name=rq_worker_name(config.worker_name, abi),
        job_monitoring_interval=config.heartbeat_interval,
        maintenance_interval=config.maintenance_interval,
        # An idle worker sweeps only between waits on the queue, and rq waits
        # worker_ttl - 15 s: this keeps the sweeps as frequent as configured.
        worker_ttl=config.maintenance_interval + 15,
    )
    worker.abandon_grace = config.abandon_grace
    worker.min_free = config.min_free_mb * 2**20
    worker.build_root = build_root(config)
    return worker


def run(config: settings.Settings, interpreter: BuildInterpreter, burst: bool = False) -> int:
    """Serve the queue of the interpreter's build target until stopped (or, with
    burst, until it is empty)."""
    root = build_root(config)
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    for stale in remove_stale_builds(root):
        log.info("removed %s, left by a build that did not finish", stale)
    conn = connect(config.effective_redis_url)
    worker = make_worker(conn, config, interpreter.key)
    health = HealthReporter(connect(config.effective_redis_url), config.machine_name,
                            interpreter.key, root, config.health_interval,
                            builds_done=lambda: worker.builds_done,
                            profile=lambda: installed_profile(config.profile_marker))
    health.start()
    toolchain()  # asked once here, so that every work horse inherits the answer
    log.info("worker %s builds %s-%s wheels with %s (Python %s) from %s, builder profile %d",
             worker.name, interpreter.interpreter, interpreter.abi, interpreter.python,
             interpreter.version, build_queue_name(interpreter.key),
             installed_profile(config.profile_marker))
    try:
        worker.work(burst=burst, with_scheduler=False)
    finally:
        health.stop()
    return worker.builds_done
