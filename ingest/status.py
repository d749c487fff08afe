"""`python -m ingest status`: the farm at a glance, for people and for scripts.

`gather` reads the facts (the catalogue, the follower's last pass, the build queues
per ABI, rq's workers and the health each build worker keeps in Redis, failed builds
of the last day) into a Status; `render` writes them for people, with durations and
rates in words; `--json` prints the same Status as JSON, in seconds and counts."""

from __future__ import annotations

import json
import time
from contextlib import closing
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone

from redis import Redis
from rq import Queue, Worker
from rq.registry import FailedJobRegistry, StartedJobRegistry

from ingest import catalogue, settings
from ingest.follower import STATUS_KEY
from worker.errors import RedisUnreachable, masked_url, megabytes
from worker.health import HEALTH_PREFIX
from worker.queues import PUBLISH_QUEUE, SERIALIZER, build_queue_name, connect, runs_on

DAY = 24 * 3600
FAILED_SHOWN = 20  # failed builds listed by name; the rest are counted
# What makes a worker's health worth a word: the CPU near its throttling point (a
# Pi throttles at 80-85 C), memory nearly gone, its report late.
HOT = 80.0  # degrees C
LOW_MEMORY = 0.05  # of the total
LATE_REPORT = 90  # seconds (reports come every 30 s; the key lives 120 s)


@dataclass
class Follow:
    serial: int | None = None
    newest_event_age: float | None = None  # seconds since PyPI saw the newest applied event
    serials_behind: int | None = None
    last_pass_age: float | None = None  # seconds since the follower last applied events
    events_per_second: float | None = None  # during its last run


@dataclass
class QueueDepth:
    abi: str
    waiting: int
    building: int
    failed_jobs: int  # rq's failed registry: jobs that failed, not failed builds


@dataclass
class WorkerHealth:
    age: float  # seconds since the report
    cpu_temperature: float | None
    load1: float
    memory_available: int
    memory_total: int
    disk_free: int
    builds_done: int
    profile: int = 0  # the builder profile version it has installed (worker.profile)
    problems: list[str] = field(default_factory=list)


@dataclass
class WorkerState:
    name: str
    queues: list[str]
    state: str  # rq's: idle, busy, suspended (a pause for low disk), ...
    job: str | None
    health: WorkerHealth | None  # build workers report it; None: no report in Redis

    @property
    def healthy(self) -> bool:
        builds = any(q.startswith("build-") for q in self.queues)
        return not builds or (self.health is not None and not self.health.problems)


@dataclass
class FailedBuild:
    project: str
    version: str
    abi: str
    worker: str | None
    built_at: str


@dataclass
class Status:
    projects: int
    versions: int
    builds: int
    follow: Follow
    builds_last_hour: int
    builds_last_day: int
    failed_last_day: int
    failed_builds: list[FailedBuild]  # the newest FAILED_SHOWN of them
    redis_url: str  # password masked
    redis_error: str | None = None  # why Redis could not be read; then no queues
    queues: list[QueueDepth] = field(default_factory=list)
    publish_waiting: int | None = None
    workers: list[WorkerState] = field(default_factory=list)

    def to_json(self) -> str:
        data = asdict(self)
        for worker, state in zip(data["workers"], self.workers, strict=True):
            worker["healthy"] = state.healthy
        return json.dumps(data, indent=2, sort_keys=True)


def gather(config: settings.Settings, now: float | None = None) -> Status:
    now = time.time() if now is None else now
    with closing(catalogue.connect(config.catalogue_path)) as conn:
        projects, versions, builds = conn.execute(
            "SELECT (SELECT COUNT(*) FROM live_projects), (SELECT COUNT(*) FROM live_versions),"
            " (SELECT COUNT(*) FROM builds)").fetchone()
        follow = _follow(json.loads(catalogue.get_state(conn, STATUS_KEY) or "{}"), now)
        hour_ago, day_ago = _iso(now - 3600), _iso(now - DAY)
        last_hour, last_day, failed = conn.execute(
            "SELECT COUNT(*) FILTER (WHERE built_at >= ?), COUNT(*), "
            "COUNT(*) FILTER (WHERE status = 'failed') FROM builds WHERE built_at >= ?",
            (hour_ago, day_ago)).fetchone()
        failed_builds = [FailedBuild(*row) for row in conn.execute(
            "SELECT project, version, abi, worker, built_at FROM builds "
            "WHERE status = 'failed' AND built_at >= ? "
            "ORDER BY built_at DESC, project, version, abi LIMIT ?", (day_ago, FAILED_SHOWN))]
    status = Status(projects, versions, builds, follow, last_hour, last_day, failed,
                    failed_builds, masked_url(config.effective_redis_url))
    try:
        redis = connect(config.effective_redis_url, wait=2)
    except RedisUnreachable as error:
        status.redis_error = str(error)
        return status
    try:
        status.queues = [_depth(redis, abi) for abi in config.abis]
        status.publish_waiting = Queue(PUBLISH_QUEUE, connection=redis,
                                       serializer=SERIALIZER).count
        status.workers = _workers(redis, config, now)
    finally:
        redis.close()
    return status


def _iso(moment: float) -> str:
    return datetime.fromtimestamp(moment, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _follow(saved: dict, now: float) -> Follow:
    if not saved:
        return Follow()
    upstream = saved.get("upstream_serial")
    return Follow(
        serial=saved.get("serial"),
        newest_event_age=now - saved["timestamp"] if saved.get("timestamp") else None,
        serials_behind=upstream - saved["serial"] if upstream else None,
        last_pass_age=now - saved["applied_at"] if saved.get("applied_at") else None,
        events_per_second=saved.get("rate"))


def _depth(redis: Redis, abi: str) -> QueueDepth:
    name = build_queue_name(abi)
    queue = Queue(name, connection=redis, serializer=SERIALIZER)
    return QueueDepth(abi, queue.count,
                      StartedJobRegistry(name, connection=redis, serializer=SERIALIZER).count,
                      FailedJobRegistry(name, connection=redis, serializer=SERIALIZER).count)


def _workers(redis: Redis, config: settings.Settings, now: float) -> list[WorkerState]:
    reports = {}
    for key in redis.scan_iter(f"{HEALTH_PREFIX}*"):
        try:
            report = json.loads(redis.get(key) or "null")
        except ValueError:
            continue
        if isinstance(report, dict) and isinstance(report.get("worker"), str):
            reports[(report["worker"], report.get("abi"))] = report
    states = []
    for worker in sorted(Worker.all(connection=redis, serializer=SERIALIZER),
                         key=lambda w: w.name):
        report = next((r for (name, abi), r in reports.items()
                       if runs_on(worker.name, name, abi or "")), None)
        states.append(WorkerState(
            name=worker.name, queues=worker.queue_names(), state=_text(worker.get_state()),
            job=worker.get_current_job_id(),
            health=_health(report, config, now) if report else None))
    return states


def _text(state) -> str:
    return str(getattr(state, "value", state))


def _health(report: dict, config: settings.Settings, now: float) -> WorkerHealth:
    try:
        taken = datetime.fromisoformat(report["time"].replace("Z", "+00:00")).timestamp()
    except (KeyError, ValueError, AttributeError):
        taken = 0.0
    health = WorkerHealth(
        age=max(0.0, now - taken), cpu_temperature=report.get("cpu_temperature"),
        load1=report.get("load1", 0.0), memory_available=report.get("memory_available", 0),
        memory_total=report.get("memory_total", 0), disk_free=report.get("disk_free", 0),
        builds_done=report.get("builds_done", 0), profile=report.get("profile", 0))
    if health.age > LATE_REPORT:
        health.problems.append(f"report {duration(health.age)} old")
    if health.cpu_temperature is not None and health.cpu_temperature >= HOT:
        health.problems.append(f"CPU at {health.cpu_temperature:.0f} C")
    if health.memory_total and health.memory_available < LOW_MEMORY * health.memory_total:
        health.problems.append(f"{megabytes(health.memory_available)} memory available")
    if config.min_free_mb and health.disk_free < config.min_free_mb * 2**20:
        health.problems.append(f"disk nearly full ({megabytes(health.disk_free)} free): "
                               "paused")
    return health


UNITS = (("day", DAY), ("h", 3600), ("min", 60), ("s", 1))


def duration(seconds: float) -> str:
    """Seconds in words, in the largest unit and the next one when it is not zero:
    "3 days 4 h", "5 min 2 s", "2 h", "12 s"."""
    left = max(0, round(seconds))
    for index, (name, size) in enumerate(UNITS):
        if left >= size or size == 1:
            count, rest = divmod(left, size)
            text = _unit(count, name)
            if index + 1 < len(UNITS) and (smaller := rest // UNITS[index + 1][1]):
                text += " " + _unit(smaller, UNITS[index + 1][0])
            return text
    raise AssertionError("unreachable")


def _unit(count: int, name: str) -> str:
    return f"{count:,} {name}" + ("s" if name == "day" and count != 1 else "")


def render(status: Status) -> list[str]:
    """The status as lines for people."""
    lines = [f"catalogue: {status.projects:,} projects, {status.versions:,} versions, "
             f"{status.builds:,} builds"]
    follow = status.follow
    if follow.serial is None:
        lines.append("events: none applied yet")
    else:
        line = f"events: serial {follow.serial:,}"
        if follow.newest_event_age is not None:
            line += f", newest event {duration(follow.newest_event_age)} old"
        if follow.serials_behind:
            line += f", {follow.serials_behind:,} serials behind PyPI"
        elif follow.serials_behind == 0:
            line += ", up to date with PyPI"
        if follow.last_pass_age is not None:
            line += f"; last applied {duration(follow.last_pass_age)} ago"
        if follow.events_per_second is not None:
            line += f" at {follow.events_per_second:,.0f} events/s"
        lines.append(line)
    lines.append(f"builds: {status.builds_last_hour:,} in the last hour, "
                 f"{status.builds_last_day:,} in the last day "
                 f"({status.builds_last_day / 24:,.1f}/h), "
                 f"{status.failed_last_day:,} of them failed")
    for build in status.failed_builds:
        lines.append(f"  failed: {build.project} {build.version} {build.abi} at "
                     f"{build.built_at} on {build.worker or 'an unknown worker'}")
    if status.failed_last_day > len(status.failed_builds):
        lines.append(f"  ... and {status.failed_last_day - len(status.failed_builds):,} more")
    if status.redis_error:
        lines.append(f"queues and workers: unknown: {status.redis_error}")
        return lines
    for depth in status.queues:
        lines.append(f"queue build-{depth.abi}: {depth.waiting:,} waiting, "
                     f"{depth.building:,} building, {depth.failed_jobs:,} failed jobs")
    lines.append(f"queue publish: {status.publish_waiting:,} waiting")
    if not status.workers:
        lines.append("workers: none running")
    for worker in status.workers:
        doing = f"building {worker.job}" if worker.job else worker.state
        line = f"worker {worker.name} ({', '.join(worker.queues)}): {doing}"
        health = worker.health
        if health is not None:
            temperature = (f", CPU {health.cpu_temperature:.0f} C"
                           if health.cpu_temperature is not None else "")
            line += (f"; load {health.load1:.2f}{temperature}, "
                     f"{megabytes(health.memory_available)} memory and "
                     f"{megabytes(health.disk_free)} disk free, "
                     f"{health.builds_done:,} builds since start, "
                     f"builder profile {health.profile or 'none'}")
            line += f"; {'; '.join(health.problems)}" if health.problems else "; healthy"
        elif not worker.healthy:
            line += "; no health report"
        lines.append(line)
    return lines

