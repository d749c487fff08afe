"""The queue contracts, shared by everyone who talks to the queues: the build
queues' and the publish queue's names, functions and job ids, the Redis
connection, and the job class that runs only allowlisted functions."""

from __future__ import annotations

import hashlib
import secrets
import time

from redis import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from rq.job import Job
from rq.serializers import JSONSerializer

from worker.errors import RedisUnreachable
from worker.targets import target_key

SERIALIZER = JSONSerializer
BUILD_FUNCTION = "worker.jobs.build"


def build_queue_name(abi: str, platform: str | None = None) -> str:
    """The queue of a build target: `abi` is its target key (worker.targets), or,
    with `platform`, its ABI tag: build-cp311 for the 32-bit image, build-cp311-aarch64
    for the 64-bit one."""
    return f"build-{abi if platform is None else target_key(abi, platform)}"


def build_job_id(project: str, version: str, abi: str, incarnation: int = 0) -> str:
    """A deterministic rq job id: rq allows only [A-Za-z0-9_-] in ids, and
    versions carry dots, pluses and bangs, so the names are hashed. `abi` is the
    build target's key (worker.targets), so each target's job has its own id; a
    32-bit target's key is its bare ABI, so its ids are those of jobs queued before
    targets had platforms. `incarnation` tells apart a release deleted and released
    again under the same number."""
    key = f"{project}\0{version}\0{abi}" + (f"\0{incarnation}" if incarnation else "")
    return f"build-{abi}-{hashlib.sha256(key.encode()).hexdigest()[:32]}"


def rq_worker_name(worker: str, abi: str) -> str:
    """The rq name of a build worker called `worker` serving the target key `abi`
    (a machine may run one worker per target): a random suffix, since after a
    power cut the dead worker's name stays registered in Redis for minutes and a
    restarted worker must not wait for it."""
    return f"{worker}-{abi}-{secrets.token_hex(3)}"


def runs_on(rq_name: str | None, worker: str, abi: str) -> bool:
    """Whether `rq_name` is one of `worker`'s build workers for the target key `abi`.
    The suffix is exactly six hex digits, so `pi1-cp311-` never matches the name of
    pi1's cp311-aarch64 worker."""
    prefix = f"{worker}-{abi}-"
    suffix = (rq_name or "").removeprefix(prefix)
    return bool(rq_name) and rq_name != suffix and len(suffix) == 6 and \
        all(c in "0123456789abcdef" for c in suffix)


# The publish queue: ingest and the intake ask the publisher (python -m publish
# worker) to rewrite a project's pages.
PUBLISH_QUEUE = "publish"
PUBLISH_FUNCTION = "publish.jobs.publish_project"


def publish_job_id(name: str) -> str:
    """Canonical names are [a-z0-9-], which rq accepts in ids; anything else is
    hex-encoded behind an underscore, which no canonical name contains."""
    if all(c.isascii() and (c.isalnum() or c == "-") for c in name):
        return f"publish-{name}"
    return f"publish-_{name.encode().hex()}"


# Seconds a process waits for Redis at start: long enough for the embedded Redis,
# started beside the other processes by `honcho start`, to come up; short enough
# that a wrong REDIS_URL is told in one line within 5 s, not after a long silence.
CONNECT_WAIT = 3.0


def connect(url: str, wait: float = CONNECT_WAIT) -> Redis:
    """Connect to Redis, waiting up to `wait` seconds for it to come up; raise
    RedisUnreachable (a ConnectionError, told in one line) if it does not.

    No socket timeout: workers block on queues for long stretches, and a timeout
    there would read as a broken connection. Connecting has one, so that a host
    that drops packets is noticed as fast as one that refuses them."""
    conn = Redis.from_url(url, socket_timeout=None, socket_connect_timeout=max(wait, 1.0),
                          health_check_interval=30)
    deadline = time.monotonic() + wait
    while True:
        try:
            conn.ping()
            return conn
        except RedisConnectionError as error:
            if time.monotonic() > deadline:
                conn.close()
                raise RedisUnreachable(url, _reason(error)) from None
            time.sleep(0.1)
        except RedisError as error:  # something answered, but not a Redis we may use
            conn.close()
            raise RedisUnreachable(url, _reason(error)) from None


def _reason(error: RedisError) -> str:
    """The cause in a few words: redis-py's message names the address (with a
    password, for some URLs), which the caller names itself, masked."""
    text = str(error)
    cause = text.rpartition(". ")[2] if ". " in text else text
    return cause.rstrip(".") or type(error).__name__


# The fields of a job's hash that rq writes for jobs like ours (Job.to_dict, and
# the status and timing fields it sets as the job runs). A field outside this set
# is not ours: someone else wrote the job.
KNOWN_FIELDS = frozenset({
    "created_at", "data", "origin", "description", "enqueued_at", "started_at",
    "ended_at", "last_heartbeat", "worker_name", "group_id", "status", "timeout",
    "result_ttl", "failure_ttl", "ttl", "retries_left", "retry_intervals",
    "number_of_retries", "enqueue_at_front_on_retry", "result", "exc_info",
    "success_callback_name", "failure_callback_name", "stopped_callback_name",
})
# Fields that make rq act beyond running the function (call back, POST to a URL,
# run dependents, repeat the job, keep a result for long): ours never carry them,
# or carry them empty.
ACTING_FIELDS = ("success_callback_name", "failure_callback_name", "stopped_callback_name",
                 "success_callback_timeout", "failure_callback_timeout",
                 "stopped_callback_timeout", "webhooks", "dependency_id", "dependency_ids",
                 "allow_dependency_failures", "meta", "repeats_left", "repeat_intervals",
                 "group_id", "enqueue_at_front")
EMPTY_VALUES = (b"", b"[]", b"{}", b"0")
MAX_RESULT_TTL = 24 * 3600  # seconds: our results are kept for an hour


class AllowlistJob(Job):
    """An rq job restored from the fields our jobs use and nothing else.

    Anyone who can write to Redis can enqueue a job, or rewrite one. A job that
    names a function outside ALLOWED, or carries anything rq would act on besides
    running that function (callbacks, webhooks, dependencies, repeats, meta, a long
    result TTL, fields rq does not write for us), is disarmed as it is read and
    fails as refused when run: nothing is imported, called back or sent."""

    ALLOWED: frozenset[str] = frozenset({BUILD_FUNCTION})

    def restore(self, raw_data) -> None:
        fields = {_text(k): v for k, v in raw_data.items()}
        super().restore(raw_data)
        self.refusal = _refusal(fields)
        if self.refusal:
            self._disarm()

    def _disarm(self) -> None:
        self.webhooks = []
        self._success_callback_name = self._failure_callback_name = None
        self._stopped_callback_name = None
        self._dependency_ids = []
        self.allow_dependency_failures = None
        self.meta = {}
        self.repeats_left = None
        self.repeat_intervals = None
        self.retries_left = None  # a refused job is not tried again
        self.result_ttl = min(self.result_ttl or 0, MAX_RESULT_TTL)

    @property
    def func(self):
        if getattr(self, "refusal", None):
            raise PermissionError(f"job refused: {self.refusal}")
        if self.func_name not in self.ALLOWED:
            raise PermissionError(f"job function {self.func_name!r} is not allowlisted")
        if self.instance is not None:
            raise PermissionError("jobs call module functions, not methods of an instance")
        if self.kwargs:
            raise PermissionError("jobs take positional arguments only")
        return super().func

    # rq imports a job's callbacks by name, even for a job it refused to run, and
    # sends its webhooks: ours have neither, so none is ever imported or sent.
    @property
    def success_callback(self):
        return None

    @property
    def failure_callback(self):
        return None

    @property
    def stopped_callback(self):
        return None

    def send_webhooks(self, *args, **kwargs) -> None:
        return None


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def _refusal(fields: dict[str, bytes]) -> str | None:
    """Why a job's hash is not one of ours, or None."""
    unknown = sorted(set(fields) - KNOWN_FIELDS - set(ACTING_FIELDS))
    if unknown:
        return f"fields rq would not write for our jobs: {', '.join(unknown)}"
    acting = sorted(name for name in ACTING_FIELDS
                    if name in fields and _raw(fields[name]) not in EMPTY_VALUES)
    if acting:
        return f"carries {', '.join(acting)}"
    ttl = _raw(fields.get("result_ttl", b""))
    if ttl and (not ttl.lstrip(b"-").isdigit() or not -1 < int(ttl) <= MAX_RESULT_TTL):
        return f"result_ttl {ttl.decode(errors='replace')} (at most {MAX_RESULT_TTL} s)"
    return None


def _raw(value: bytes | str) -> bytes:
    return value.encode() if isinstance(value, str) else value
