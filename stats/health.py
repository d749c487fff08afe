"""Worker health: the records workers keep in Redis, sampled into stats.db.

Every worker sets `wheelwright:health:<worker>` to a JSON object (TTL 120 s, refreshed
at least every 30 s). A sample copies each record present into `worker_health`,
keyed by (worker, time): sampling the same record twice keeps one row, so sampling
more often than workers refresh costs nothing but a lookup.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import datetime, timezone

import sqlite_utils
from redis import Redis

from stats.store import HEALTH_COLUMNS
from worker.health import HEALTH_PREFIX

PATTERN = f"{HEALTH_PREFIX}*"
log = logging.getLogger("stats.health")


@dataclass
class Sample:
    stored: int = 0                      # records new to stats.db
    seen: int = 0                        # records found in Redis
    bad: list[str] = field(default_factory=list)  # keys whose record was unusable


def record_row(key: str, raw: bytes | str) -> dict:
    """The worker_health row for one record; ValueError says what is wrong with it."""
    try:
        record = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"not JSON: {error}") from None
    if not isinstance(record, dict):
        raise ValueError("not a JSON object")
    worker = record.get("worker") or key.rsplit(":", 1)[-1]
    when = record.get("time")
    if not isinstance(worker, str) or not isinstance(when, str):
        raise ValueError("worker and time must be strings")
    try:
        moment = datetime.fromisoformat(when.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"time is not ISO 8601: {when[:40]!r}") from None
    if moment.tzinfo is not None:
        moment = moment.astimezone(timezone.utc).replace(tzinfo=None)
    row = {"worker": worker, "time": moment.strftime("%Y-%m-%d %H:%M:%S")}
    for name, kind in HEALTH_COLUMNS.items():
        if name in row:
            continue
        value = record.get(name)
        if isinstance(value, bool) or not (value is None or isinstance(value, int | float | str)):
            raise ValueError(f"{name} has the wrong type")
        try:
            row[name] = None if value is None else kind(value)
        except (TypeError, ValueError):
            raise ValueError(f"{name} is not a {kind.__name__}: {value!r}") from None
    return row


def sample(redis: Redis, db: sqlite_utils.Database) -> Sample:
    """Copy every health record now in Redis into worker_health."""
    result = Sample()
    rows = []
    for key in redis.scan_iter(match=PATTERN, count=500):
        raw = redis.get(key)
        name = key.decode() if isinstance(key, bytes) else key
        if raw is None:  # expired between SCAN and GET
            continue
        result.seen += 1
        try:
            rows.append(record_row(name, raw))
        except ValueError as error:
            result.bad.append(name)
            log.warning("ignoring %s: %s", name, error)
    if rows:
        with db.atomic():
            before = db.conn.total_changes
            db["worker_health"].insert_all(rows, ignore=True)
            result.stored = db.conn.total_changes - before
    return result
