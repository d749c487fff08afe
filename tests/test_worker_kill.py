"""Workers that die mid-build: the job is failed (never silently lost) within the
configured bound, the build is killed whole, and nothing half-made reaches www/."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from rq import Queue
from rq.registry import StartedJobRegistry

from ingest.__main__ import main as ingest_main
from tests.test_worker import (
    ROOT,
    catalogue_rows,
    custom_sdist,
    hanging_setup,
    marker_pids,
    process_gone,
    release_events,
    start_farm,
    stored_log,
)
from worker.interpreter import probe
from worker.jobs import build_root
from worker.queues import SERIALIZER, AllowlistJob, build_job_id, build_queue_name

HEARTBEAT, GRACE, MAINTENANCE = 1, 2, 1
BOUND = HEARTBEAT + GRACE + MAINTENANCE


@pytest.fixture(params=[0])
def hanging_job(request, tmp_path, redis, redis_instance, backend_wheels, monkeypatch):
    """A build that hangs; `params` are the retries its job gets (0: fail at once)."""
    marker = f"ww-stuck-{os.getpid()}-{tmp_path.name}"
    hang = hanging_setup(marker)
    farm, server = start_farm(tmp_path, monkeypatch, redis_instance.url,
                              [lambda d: custom_sdist(d, "ww-stuck", "1.0", hang)],
                              backend_wheels)
    for name, value in (("WHEELWRIGHT_HEARTBEAT_INTERVAL", HEARTBEAT),
                        ("WHEELWRIGHT_ABANDON_GRACE", GRACE),
                        ("WHEELWRIGHT_MAINTENANCE_INTERVAL", MAINTENANCE),
                        ("WHEELWRIGHT_BUILD_TIMEOUT", 600),
                        ("WHEELWRIGHT_BUILD_RETRIES", request.param)):
        monkeypatch.setenv(name, str(value))
    ingest_main(["replay", str(release_events(tmp_path / "events.jsonl",
                                              [("ww-stuck", "1.0")]))])
    abi = probe(farm.config.build_python).abi
    yield farm, build_job_id("ww-stuck", "1.0", abi), abi, marker
    server.stop()


def start_worker() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "worker"], cwd=ROOT, env=dict(os.environ),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def wait_for(condition, within: float, what: str):
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"waited {within} s for {what}")


def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def kill_worker(worker: subprocess.Popen) -> None:
    """SIGKILL the worker and wait until its work horse has reacted and gone: a horse
    still cleaning up would write its job into the next test's (flushed) Redis."""
    tree = descendants(worker.pid)
    if worker.poll() is None:
        worker.kill()
    worker.wait()
    wait_for(lambda: all(process_gone(pid) for pid in tree), 30, "the work horse to go")


def job_status(redis, job_id: str):
    job = AllowlistJob.fetch(job_id, connection=redis, serializer=SERIALIZER)
    return job if job.is_failed or job.is_finished else None


def assert_nothing_reached_www(config):
    www = config.www_dir
    assert not (www / "simple" / "ww-stuck").exists() or \
        not list((www / "simple" / "ww-stuck").glob("*.whl"))
    assert not [p for p in www.rglob("*") if p.name.startswith(".tmp-")]
    assert catalogue_rows(config, "SELECT COUNT(*) FROM builds") == [(0,)]


def test_power_cut_mid_build_fails_the_job_within_the_bound(hanging_job, redis):
    """Everything of the worker dies at once; a worker started afterwards (the Pi
    rebooting, or any other worker of the queue) fails the abandoned job."""
    farm, job_id, abi, marker = hanging_job
    worker = start_worker()
    try:
        wait_for(lambda: marker_pids(marker), 60, "the build to start")
        registry = StartedJobRegistry(build_queue_name(abi), connection=redis)
        assert job_id in registry.get_job_ids()
        tree = [worker.pid, *descendants(worker.pid)]
        for pid in tree:  # freeze first, so that nothing gets to react
            os.kill(pid, signal.SIGSTOP)
        for pid in tree:
            os.kill(pid, signal.SIGKILL)
        killed_at = time.monotonic()
        worker.wait()
        assert all(process_gone(pid) for pid in tree)
    finally:
        kill_worker(worker)
    stale = list(build_root(farm.config).glob("build-*"))
    assert stale  # the power cut left the build directory behind ...
    successor = start_worker()
    try:
        job = wait_for(lambda: job_status(redis, job_id), BOUND + 30, "the job to fail")
        elapsed = time.monotonic() - killed_at
        print(f"abandoned job failed {elapsed:.1f} s after the kill (bound {BOUND} s "
              "past the last heartbeat, plus the successor's start)")
        assert job.is_failed
        assert "AbandonedJobError" in job.latest_result().exc_string
        assert not any(p.exists() for p in stale)  # ... and the successor removed it
    finally:
        successor.send_signal(signal.SIGTERM)
        successor.wait(30)
    assert_nothing_reached_www(farm.config)


def test_killed_worker_takes_its_build_down(hanging_job, redis):
    """SIGKILL to the worker alone: its work horse learns of it from the kernel,
    kills the build, removes its directory and fails the job at once."""
    farm, job_id, _abi, marker = hanging_job
    worker = start_worker()
    try:
        [build_pid] = wait_for(lambda: marker_pids(marker), 60, "the build to start")
        worker.send_signal(signal.SIGKILL)
        worker.wait()
        job = wait_for(lambda: job_status(redis, job_id), 30, "the job to fail")
    finally:
        kill_worker(worker)
    assert job.is_failed and "WorkerLost" in job.latest_result().exc_string
    assert process_gone(build_pid)
    wait_for(lambda: not list(build_root(farm.config).glob("build-*")), 10,
             "the build directory to go")
    assert_nothing_reached_www(farm.config)


@pytest.mark.parametrize("hanging_job", [1], indirect=True)
def test_a_job_with_a_retry_left_goes_back_to_the_queue(hanging_job, redis):
    """With a retry left (the default), the job of a worker killed mid-build is queued
    again for the next worker rather than failed."""
    farm, job_id, abi, marker = hanging_job
    worker = start_worker()
    try:
        wait_for(lambda: marker_pids(marker), 60, "the build to start")
        worker.send_signal(signal.SIGKILL)
        worker.wait()

        def requeued():
            job = AllowlistJob.fetch(job_id, connection=redis, serializer=SERIALIZER)
            # The status of the same read as the rest: a fresh one could be newer than
            # the retries_left fetched a moment before.
            return job if job.get_status(refresh=False) == "queued" else None

        job = wait_for(requeued, 30, "the job to be queued again")
    finally:
        kill_worker(worker)
    assert job.retries_left == 0
    assert job_id in Queue(build_queue_name(abi), connection=redis,
                           serializer=SERIALIZER).job_ids
    assert_nothing_reached_www(farm.config)


def build_top(worker: int) -> list[int]:
    """The process the worker's work horse started for its build: bubblewrap, or pip."""
    horses = set(children_of(worker))
    return [pid for horse in horses for pid in children_of(horse)]


def children_of(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(stat.parent.name))
        except OSError:
            continue
    return found


@pytest.mark.parametrize("hanging_job", [1], indirect=True)
def test_a_build_killed_from_outside_runs_again(hanging_job, redis):
    """SIGKILL to the build (an operator, the OOM killer) says nothing of the release:
    with a retry left, its job goes back to the queue and nothing is recorded."""
    farm, job_id, _abi, marker = hanging_job
    worker = start_worker()
    try:
        wait_for(lambda: marker_pids(marker), 60, "the build to start")
        [top] = build_top(worker.pid)
        os.kill(top, signal.SIGKILL)

        def retried():
            job = AllowlistJob.fetch(job_id, connection=redis, serializer=SERIALIZER)
            return job if job.retries_left == 0 else None

        wait_for(retried, 30, "the job's retry")
        wait_for(lambda: marker_pids(marker), 60, "the build to run again")
    finally:
        kill_worker(worker)
    assert catalogue_rows(farm.config, "SELECT COUNT(*) FROM builds") == [(0,)]


def test_a_build_killed_on_its_last_try_is_recorded_failed(hanging_job, redis):
    """With no try left, the killed build is recorded as failed, its log saying why."""
    farm, job_id, abi, marker = hanging_job
    worker = start_worker()
    try:
        wait_for(lambda: marker_pids(marker), 60, "the build to start")
        [top] = build_top(worker.pid)
        os.kill(top, signal.SIGKILL)
        job = wait_for(lambda: job_status(redis, job_id), 30, "the job to end")
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(30)
    assert job.is_finished
    assert catalogue_rows(farm.config, "SELECT status FROM builds") == [("failed",)]
    assert "killed (SIGKILL) from outside" in stored_log(farm.config, "ww-stuck", "1.0", abi)
