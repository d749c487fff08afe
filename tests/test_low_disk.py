"""Below WHEELWRIGHT_MIN_FREE_MB of free space the intake refuses pushes with 507,
which workers retry, and workers take no build job; both carry on by themselves
once there is room. "No room" is a threshold set above this machine's free space,
then lowered below it."""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from contextlib import closing
from pathlib import Path

import pytest
import requests
from rq import Queue, Worker

from ingest import catalogue
from publish.intake import Intake as IntakeApp
from tests.publishing import apply_events, started_job
from tests.servers import serve
from worker.errors import free_space
from worker.interpreter import probe
from worker.push import Intake, push
from worker.queues import SERIALIZER, AllowlistJob, build_queue_name
from worker.report import BuildOutcome
from worker.runner import make_worker

ROOT = Path(__file__).resolve().parent.parent


def above_free_space(path: Path) -> int:
    """A threshold in MiB well above the free space of `path`'s file system."""
    return free_space(path) // 2**20 + 1_000_000


class FillsUp:
    """The same intake short of room (its threshold above the free space) for the
    first `short` requests, then with its threshold lowered below it."""

    def __init__(self, config, short: int):
        self.short, self.seen, self.statuses = short, 0, []
        self.full = IntakeApp(dataclasses.replace(
            config, min_free_mb=above_free_space(config.data_dir))).app
        self.roomy = IntakeApp(dataclasses.replace(config, min_free_mb=1)).app

    def __call__(self, environ, start_response):
        self.seen += 1
        app = self.full if self.seen <= self.short else self.roomy

        def record(status, headers, *rest):
            self.statuses.append(int(status.split()[0]))
            return start_response(status, headers, *rest)

        return app(environ, record)


@pytest.fixture
def release(config, redis):
    """alpha 1.0 in the catalogue, and its build job as a worker runs it."""
    config.data_dir.mkdir(parents=True, exist_ok=True)
    with closing(catalogue.connect(config.catalogue_path)) as conn:
        apply_events(conn, [("alpha", "1.0", "new release"),
                            ("alpha", "1.0", "add source file alpha-1.0.tar.gz")])
    abi = config.abis[0]
    return BuildOutcome(project="alpha", version="1.0", abi=abi, status="failed",
                        duration=1.0, log="it failed\n",
                        job_id=started_job(redis, "alpha", "1.0", abi))


def test_intake_answers_507_while_short_of_room(config, release):
    server = serve(FillsUp(config, short=10**6))
    try:
        reply = requests.post(server.url + "builds", files={"report": ("r.json", b"{}")},
                              headers={"Authorization": f"Bearer {config.worker_token}"},
                              timeout=30)
    finally:
        server.stop()
    assert reply.status_code == 507
    error = reply.json()["error"]
    assert error.startswith("only ") and " MB free on the file system of " in error
    assert "below WHEELWRIGHT_MIN_FREE_MB" in error


def test_push_is_retried_through_507_and_lands_once_there_is_room(config, release):
    intake_app = FillsUp(config, short=2)
    server = serve(intake_app)
    try:
        result = push(Intake(url=server.url, worker="test-worker", token=config.worker_token,
                             retries=4, backoff=0.05), release)
    finally:
        server.stop()
    assert intake_app.statuses == [507, 507, 200]
    assert result["recorded"] == f"alpha 1.0 {release.abi}"
    with closing(catalogue.connect(config.catalogue_path)) as conn:
        assert [tuple(r) for r in conn.execute("SELECT status FROM builds")] == [("failed",)]


# -- the worker -----------------------------------------------------------------------

def queued_build(redis, abi: str) -> AllowlistJob:
    """A build job that fails fast (a name that is not canonical) once a worker runs it."""
    queue = Queue(build_queue_name(abi), connection=redis, serializer=SERIALIZER)
    return queue.enqueue("worker.jobs.build", "WW_Pure", "1.0", abi)


def worker_states(redis) -> list[str]:
    return [str(getattr(w.get_state(), "value", w.get_state()))
            for w in Worker.all(connection=redis, serializer=SERIALIZER)]


def wait_for(condition, within: float, what: str):
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if value := condition():
            return value
        time.sleep(0.05)
    raise AssertionError(f"not within {within} s: {what}")


def test_worker_short_of_room_takes_no_job_and_stops_when_asked(config, redis, tmp_path):
    abi = probe(config.build_python).abi
    builds = tmp_path / "builds"
    job = queued_build(redis, abi)
    env = dict(os.environ, WHEELWRIGHT_BUILD_DIR=str(builds),
               WHEELWRIGHT_MIN_FREE_MB=str(above_free_space(tmp_path)))
    process = subprocess.Popen([sys.executable, "-m", "worker"], cwd=ROOT, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for(lambda: worker_states(redis) == ["suspended"], 30, "the worker paused")
        # Paused through a few of its looks at the disk (one a second), the job waits.
        for _ in range(3):
            time.sleep(1.0)
            assert job.get_status(refresh=True) == "queued"
            assert worker_states(redis) == ["suspended"]
    finally:
        process.send_signal(signal.SIGTERM)
        output = process.communicate(timeout=30)[0]
    assert process.returncode == 0, output
    assert "Traceback" not in output
    paused = [line for line in output.splitlines() if "taking no build job" in line]
    assert len(paused) == 1, output  # said once, not at every look
    assert "below WHEELWRIGHT_MIN_FREE_MB" in paused[0]


def test_paused_worker_carries_on_once_there_is_room(config, redis, tmp_path, caplog):
    abi = probe(config.build_python).abi
    job = queued_build(redis, abi)
    worker = make_worker(redis, dataclasses.replace(
        config, min_free_mb=above_free_space(tmp_path), build_dir=tmp_path / "builds"), abi)
    worker.build_root.mkdir(parents=True)
    seen_paused = []

    def lower_the_threshold() -> None:
        wait_for(lambda: worker_states(redis) == ["suspended"], 30, "the worker paused")
        seen_paused.append(job.get_status(refresh=True))
        worker.min_free = 2**20  # WHEELWRIGHT_MIN_FREE_MB=1: there is room now

    lowering = threading.Thread(target=lower_the_threshold, daemon=True)
    lowering.start()
    caplog.set_level(logging.INFO)
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        worker.work(max_jobs=1, with_scheduler=False)
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)
    lowering.join(5)
    assert seen_paused == ["queued"]
    job = AllowlistJob.fetch(job.id, connection=redis, serializer=SERIALIZER)
    assert job.is_failed and "BadJob" in job.latest_result().exc_string  # it ran
    messages = [r.getMessage() for r in caplog.records]
    assert sum("taking no build job" in m for m in messages) == 1
    assert sum("again: taking build jobs" in m for m in messages) == 1


def test_burst_worker_short_of_room_leaves_the_queue_alone(config, redis, tmp_path):
    abi = probe(config.build_python).abi
    job = queued_build(redis, abi)
    worker = make_worker(redis, dataclasses.replace(
        config, min_free_mb=above_free_space(tmp_path), build_dir=tmp_path / "builds"), abi)
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        assert worker.work(burst=True, with_scheduler=False) is False
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)
    assert job.get_status(refresh=True) == "queued"
