"""The whole system as `python -m ingest up` runs it: the real Procfile's processes
with the embedded Redis, stopped with Ctrl-C (SIGINT) in the middle of builds and
started again at once, and a second start on the same data directory."""

from __future__ import annotations

import os
import random
import re
import subprocess
import sys
import time
from collections import Counter

import pytest
from rq.registry import FailedJobRegistry, StartedJobRegistry

from ingest.supervisor import InstanceLock
from tests.system import ROOT, System, catalogue_rows, job_lines, make_system, wait_for
from worker.queues import PUBLISH_QUEUE, build_queue_name


def interrupted_then_finished(system: System, stops: int) -> None:
    """Stop the system with SIGINT `stops` times while it builds, starting it again
    at once each time; then let it build everything and stop it once more."""
    rng = random.Random(os.environ.get("PYTEST_SEED", "11"))
    count = len(system.releases)
    for stop in range(stops):
        process = system.start()
        try:
            # Stops spread over the releases: the k-th once k builds are done.
            done = min(stop, count - 1)
            wait_for(lambda done=done: system.built() >= done and system.building(),
                     60 + 15 * done,
                     f"a build after {done} (start {stop + 1})", alive=process)
            time.sleep(rng.uniform(0.0, 1.5))  # somewhere in the build
            assert process.poll() is None, system.output()[-3000:]
            took = system.stop(process)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        assert process.returncode == 0, system.output()[-3000:]
        print(f"stop {stop + 1}: {took:.1f} s, {system.built()} of {count} built")
    process = system.start()
    try:
        wait_for(lambda: system.built() == count, 60 + 15 * count, "every build", alive=process)
        redis = system.redis()
        # The publisher and the queues settle: nothing running, nothing failed.
        wait_for(lambda: StartedJobRegistry(build_queue_name(system.abi),
                                            connection=redis).count == 0, 30, "the last job")
        failed = {name: FailedJobRegistry(name, connection=redis).get_job_ids()
                  for name in (build_queue_name(system.abi), PUBLISH_QUEUE)}
        assert failed == {build_queue_name(system.abi): [], PUBLISH_QUEUE: []}
        # A stop is no failure: every job still has the one retry it was given.
        assert {redis.hget(f"rq:job:{job_id}", "retries_left") for job_id in
                system.job_ids()} == {str(system.config.build_retries).encode()}
        system.stop(process)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0


def assert_built_exactly_once(system: System, stops: int) -> None:
    output = system.output()
    assert "Traceback" not in output, output[output.index("Traceback") - 2000:][:6000]
    # Every start started every process: none stopped before it was asked to.
    for log in system.runs:
        text = log.read_text(errors="replace")
        ended = text.split("SIGINT received")[0]
        assert not re.search(r"stopped \(rc=", ended), text[-3000:]
    rows = catalogue_rows(system.config, "SELECT project, version, abi, status FROM builds "
                          "ORDER BY project")
    assert rows == [(name, version, system.abi, "success") for name, version in
                    sorted(system.releases)]
    ids = system.job_ids()
    # One successful execution per release; each interrupted one ran once more.
    assert job_lines(output, "Job OK") == Counter({job_id: 1 for job_id in ids})
    # rq logs each job it takes as "<queue>: <description> (<id>)".
    runs = job_lines(output, f"{build_queue_name(system.abi)}: build ")
    interrupted = job_lines(output, "interrupted by a stop")
    assert sum(interrupted.values()) >= 1  # the stops did land in builds
    assert runs == Counter({job_id: interrupted[job_id] + 1 for job_id in ids}), output
    assert "refused a push" not in output and "AbandonedJobError" not in output
    assert len(system.runs) == stops + 1


def test_interrupted_builds_run_once_more(tmp_path, backend_wheels):
    """Two Ctrl-Cs in the middle of builds, each followed by an immediate start."""
    system = make_system(tmp_path, backend_wheels, count=3, sleep=1.0)
    interrupted_then_finished(system, stops=2)
    assert_built_exactly_once(system, stops=2)


@pytest.mark.slow
def test_five_interruptions_at_random_points(tmp_path, backend_wheels):
    system = make_system(tmp_path, backend_wheels, count=6, sleep=2.5)
    interrupted_then_finished(system, stops=5)
    assert_built_exactly_once(system, stops=5)


def test_second_start_on_the_same_data_directory(tmp_path, backend_wheels):
    """It says so in one line and exits non-zero; the first keeps serving."""
    system = make_system(tmp_path, backend_wheels, count=1, sleep=0)
    first = system.start()
    try:
        wait_for(system.serving, 60, "the system to serve", alive=first)
        second = subprocess.run([sys.executable, "-m", "ingest", "up"], cwd=ROOT,
                                env=system.env, capture_output=True, text=True, timeout=60)
        assert second.returncode != 0
        lines = (second.stdout + second.stderr).splitlines()
        assert len(lines) == 1, lines
        assert str(system.config.data_dir) in lines[0] and f"pid {first.pid}" in lines[0]
        assert system.config.redis_socket.exists()
        assert system.serving()  # Redis, the index and the dashboard still answer
        assert first.poll() is None
        system.stop(first)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert first.returncode == 0
    assert "Traceback" not in system.output(), system.output()[-4000:]


def test_lock_names_its_holder(tmp_path):
    from ingest.supervisor import AlreadyRunning

    first = InstanceLock(tmp_path)
    first.acquire()
    try:
        with pytest.raises(AlreadyRunning) as raised:
            InstanceLock(tmp_path).acquire()
        assert raised.value.pid == os.getpid()
    finally:
        first.release()
    again = InstanceLock(tmp_path)
    again.acquire()  # released: free again
    again.release()
