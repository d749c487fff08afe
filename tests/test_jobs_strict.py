"""Jobs are restored from the fields our jobs use and nothing else: a job written
into Redis by someone else, with anything rq would act on besides running an
allowlisted function, fails as refused, imports nothing and sends nothing."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from rq import Queue
from rq.job import Job

from worker.interpreter import probe
from worker.queues import (
    BUILD_FUNCTION,
    SERIALIZER,
    AllowlistJob,
    build_job_id,
    build_queue_name,
)
from worker.runner import make_worker


@pytest.fixture
def listener():
    """A local HTTP server that counts every request it gets (a webhook target)."""
    received = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - the base class's name
            received.append(self.rfile.read(int(self.headers.get("Content-Length", 0))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/hook", received
    server.shutdown()
    server.server_close()


def webhook(url: str, status: str = "failed") -> str:
    return json.dumps([{"url": url, "job_status": status}])


# Each case: what an intruder writes into a queued job's hash.
CASES = {
    "webhook on failure": lambda url: {"webhooks": webhook(url)},
    "webhook on success": lambda url: {"webhooks": webhook(url, "finished")},
    "success callback": lambda url: {"success_callback_name": "os.system"},
    "failure callback": lambda url: {"failure_callback_name": "os.system"},
    "stopped callback": lambda url: {"stopped_callback_name": "os.system"},
    "dependents": lambda url: {"dependency_ids": json.dumps(["other"])},
    "meta": lambda url: {"meta": json.dumps({"report_to": url})},
    "repeats": lambda url: {"repeats_left": "5", "repeat_intervals": "[0]"},
    "result kept forever": lambda url: {"result_ttl": "-1"},
    "result kept a year": lambda url: {"result_ttl": str(365 * 86400)},
    "a field rq never writes for us": lambda url: {"callback_url": url},
}


def queued_build(redis, abi: str, project: str) -> Job:
    queue = Queue(build_queue_name(abi), connection=redis, serializer=SERIALIZER)
    return queue.enqueue_call(BUILD_FUNCTION, args=(project, "1.0", abi),
                              job_id=build_job_id(project, "1.0", abi), result_ttl=3600)


def run_burst(redis, config, abi: str) -> None:
    worker = make_worker(redis, config, abi)
    worker.work(burst=True, with_scheduler=False)


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_job_carrying_more_than_ours_is_refused(redis, config, listener, case):
    url, received = listener
    abi = probe(config.build_python).abi
    job = queued_build(redis, abi, "never-built")
    redis.hset(job.key, mapping=CASES[case](url))
    run_burst(redis, config, abi)
    job = AllowlistJob.fetch(job.id, connection=redis, serializer=SERIALIZER)
    assert job.is_failed
    assert "job refused" in job.latest_result().exc_string
    assert received == []
    assert not redis.exists("rq:job:other")


def test_a_foreign_function_is_refused_without_import(redis, config, listener):
    url, received = listener
    abi = probe(config.build_python).abi
    queue = Queue(build_queue_name(abi), connection=redis, serializer=SERIALIZER)
    job = queue.enqueue_call("os.system", args=("touch /tmp/never",), result_ttl=60)
    redis.hset(job.key, "webhooks", webhook(url))
    run_burst(redis, config, abi)
    job = AllowlistJob.fetch(job.id, connection=redis, serializer=SERIALIZER)
    assert job.is_failed and "refused" in job.latest_result().exc_string
    assert received == []


def test_our_own_job_is_not_refused(redis, config):
    """The check above can pass: the scheduler's own jobs restore clean."""
    abi = probe(config.build_python).abi
    job = queued_build(redis, abi, "ours")
    restored = AllowlistJob.fetch(job.id, connection=redis, serializer=SERIALIZER)
    assert restored.refusal is None
    assert restored.func_name == BUILD_FUNCTION
