"""A worker's health, published to Redis for the master to record and show:
a Pi that runs hot, swaps, or fills its card builds slowly or not at all."""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

from redis import Redis
from redis.exceptions import RedisError

HEALTH_TTL = 120  # seconds; reports are refreshed well within it
THERMAL = Path("/sys/class/thermal")

log = logging.getLogger(__name__)


HEALTH_PREFIX = "wheelwright:health:"


def health_key(worker: str) -> str:
    return f"{HEALTH_PREFIX}{worker}"


@dataclass
class Health:
    worker: str
    abi: str
    time: str  # ISO 8601, UTC
    cpu_temperature: float | None  # degrees C
    load1: float
    load5: float
    load15: float
    memory_total: int  # bytes, all of them
    memory_available: int
    swap_total: int
    swap_free: int
    disk_total: int
    disk_free: int
    builds_done: int
    profile: int = 0  # the builder profile version installed (worker.profile); 0: none


def cpu_temperature(thermal: Path = THERMAL) -> float | None:
    """The CPU's temperature: the zone typed cpu-thermal on a Pi, else the first zone."""
    zones = sorted(thermal.glob("thermal_zone*"))
    for zone in sorted(zones, key=lambda z: "cpu" not in _read(z / "type")):
        millidegrees = _read(zone / "temp")
        if millidegrees.lstrip("-").isdigit():
            return int(millidegrees) / 1000
    return None


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def meminfo(path: Path = Path("/proc/meminfo")) -> dict[str, int]:
    """/proc/meminfo's fields in bytes."""
    fields = {}
    for line in _read(path).splitlines():
        name, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            fields[name] = int(parts[0]) * (1024 if parts[1:] == ["kB"] else 1)
    return fields


def collect(worker: str, abi: str, builds_done: int, disk: Path, profile: int = 0) -> Health:
    load1, load5, load15 = os.getloadavg()
    memory = meminfo()
    usage = shutil.disk_usage(disk)
    return Health(
        worker=worker, abi=abi,
        time=datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        cpu_temperature=cpu_temperature(),
        load1=load1, load5=load5, load15=load15,
        memory_total=memory.get("MemTotal", 0),
        memory_available=memory.get("MemAvailable", memory.get("MemFree", 0)),
        swap_total=memory.get("SwapTotal", 0), swap_free=memory.get("SwapFree", 0),
        disk_total=usage.total, disk_free=usage.free, builds_done=builds_done,
        profile=profile,
    )


def publish(conn: Redis, health: Health) -> None:
    conn.set(health_key(health.worker), json.dumps(asdict(health)), ex=HEALTH_TTL)


def profiles(conn: Redis) -> dict[str, int]:
    """The newest builder profile (worker.profile) a live worker of each ABI reports:
    read from the health records, which expire when their worker stops reporting.
    A record that does not parse says nothing."""
    newest: dict[str, int] = {}
    for key in conn.scan_iter(match=f"{HEALTH_PREFIX}*", count=500):
        try:
            record = json.loads(conn.get(key) or "null")
        except ValueError:
            continue
        if not isinstance(record, dict):
            continue
        abi, profile = record.get("abi"), record.get("profile")
        if isinstance(abi, str) and isinstance(profile, int) and not isinstance(profile, bool):
            newest[abi] = max(newest.get(abi, 0), profile)
    return newest


class HealthReporter(threading.Thread):
    """Publishes health every `interval` seconds until stopped. It has its own
    Redis connection: the worker's is busy blocking on the queue."""

    def __init__(self, conn: Redis, worker: str, abi: str, disk: Path, interval: float,
                 builds_done=lambda: 0, profile=lambda: 0):
        super().__init__(name="health", daemon=True)
        self.conn, self.worker, self.abi, self.disk = conn, worker, abi, disk
        self.interval = interval
        self.builds_done = builds_done
        self.profile = profile  # read at each report: an operator may install a new one
        self.stopping = threading.Event()

    def report(self) -> None:
        try:
            publish(self.conn, collect(self.worker, self.abi, self.builds_done(), self.disk,
                                       self.profile()))
        except (RedisError, OSError) as error:
            log.warning("could not publish health: %s", error)

    def run(self) -> None:
        while True:
            self.report()
            if self.stopping.wait(self.interval):
                return

    def stop(self) -> None:
        self.stopping.set()
        self.join(5)
        self.conn.delete(health_key(self.worker))
