"""Names shared by everyone who talks to the build queues: queue names, job ids,
the Redis connection, and the job class that runs only allowlisted functions."""

from __future__ import annotations

import hashlib
import time

from redis import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from rq.job import Job
from rq.serializers import JSONSerializer

SERIALIZER = JSONSerializer
BUILD_FUNCTION = "worker.jobs.build"


def build_queue_name(abi: str) -> str:
    return f"build-{abi}"


def build_job_id(project: str, version: str, abi: str, incarnation: int = 0) -> str:
    """A deterministic rq job id: rq allows only [A-Za-z0-9_-] in ids, and
    versions carry dots, pluses and bangs, so the names are hashed. `incarnation`
    tells apart a release deleted and released again under the same number."""
    key = f"{project}\0{version}\0{abi}" + (f"\0{incarnation}" if incarnation else "")
    return f"build-{abi}-{hashlib.sha256(key.encode()).hexdigest()[:32]}"


def connect(url: str, wait: float = 30.0) -> Redis:
    """Connect to Redis, waiting up to `wait` seconds for it to come up.

    No socket timeout: workers block on queues for long stretches, and a timeout
    there would read as a broken connection."""
    conn = Redis.from_url(url, socket_timeout=None, health_check_interval=30)
    deadline = time.monotonic() + wait
    while True:
        try:
            conn.ping()
            return conn
        except RedisConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


class AllowlistJob(Job):
    """An rq job that refuses to import or run any function outside ALLOWED.

    Anyone who can write to Redis can enqueue a job; this keeps that from
    becoming code execution on the machines that run our workers."""

    ALLOWED: frozenset[str] = frozenset({BUILD_FUNCTION})

    @property
    def func(self):
        if self.func_name not in self.ALLOWED:
            raise PermissionError(f"job function {self.func_name!r} is not allowlisted")
        if self.instance is not None:
            raise PermissionError("jobs call module functions, not methods of an instance")
        named = [n for n in self._callback_names() if n]
        if named:
            raise PermissionError(f"job callbacks {named!r} are not allowlisted")
        return super().func

    def _callback_names(self) -> list[str | None]:
        return [getattr(self, f"_{kind}_callback_name", None)
                for kind in ("success", "failure", "stopped")]

    # rq imports a job's callbacks by name too, even for a job it refused to run:
    # none is ever imported here.
    @property
    def success_callback(self):
        return None

    @property
    def failure_callback(self):
        return None

    @property
    def stopped_callback(self):
        return None
