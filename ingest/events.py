"""PyPI's event log: reading its rows and applying them to the catalogue.

Every event becomes a handful of max-register updates keyed by its ordering key
(see order_key), so applying a history in any order, or twice, gives the same
catalogue."""

from __future__ import annotations

import json
import logging
import re
import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone

from packaging.utils import canonicalize_name

log = logging.getLogger("ingest")

# Below this serial PyPI's log is not in event order, but its timestamps are right.
EARLY_SERIAL = 628_000
LATE_BASE = 1 << 52  # above every early key: (timestamp << 20) stays below 2**52


def order_key(serial: int, timestamp: int) -> int:
    """The order in which an event's change happened: timestamp order (serial
    breaking ties) for the disordered early history, serial order after it."""
    if serial < EARLY_SERIAL:
        return (max(timestamp, 0) << 20) | serial
    return LATE_BASE + serial


class MalformedEvent(ValueError):
    pass


@dataclass(frozen=True)
class Event:
    serial: int
    timestamp: int  # seconds since the epoch, UTC
    name: str
    version: str | None
    action: str

    @property
    def key(self) -> int:
        return order_key(self.serial, self.timestamp)

    @property
    def project(self) -> str:
        return canonicalize_name(self.name)

    @classmethod
    def from_row(cls, row: dict | list | tuple) -> Event:
        """From a replay-file object or an XML-RPC row [name, version, timestamp,
        action, serial]; anything else raises MalformedEvent."""
        if isinstance(row, (list, tuple)):
            if len(row) != 5:
                raise MalformedEvent(f"want 5 fields, got {len(row)}")
            row = dict(zip(("name", "version", "timestamp", "action", "serial"), row,
                           strict=True))
        if not isinstance(row, dict):
            raise MalformedEvent("an event is an object")
        try:
            serial, timestamp = row["serial"], row["timestamp"]
            name, version, action = row["name"], row.get("version"), row["action"]
        except KeyError as missing:
            raise MalformedEvent(f"missing {missing}") from None
        if isinstance(serial, bool) or not isinstance(serial, int) or serial < 0:
            raise MalformedEvent(f"bad serial {serial!r}")
        if isinstance(timestamp, bool) or not isinstance(timestamp, (int, float)):
            raise MalformedEvent(f"bad timestamp {timestamp!r}")
        if not isinstance(name, str) or not name.strip() or len(name) > 200:
            raise MalformedEvent(f"bad name {name!r}")
        if version is not None and (not isinstance(version, str) or len(version) > 200):
            raise MalformedEvent(f"bad version {version!r}")
        if not isinstance(action, str):
            raise MalformedEvent(f"bad action {action!r}")
        return cls(serial, int(timestamp), name.strip(), version or None, action)


def read_jsonl(lines: Iterable[str]) -> Iterator[Event | MalformedEvent]:
    """Events from newline-delimited JSON; a bad line yields a MalformedEvent."""
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            yield Event.from_row(json.loads(line))
        except (ValueError, MalformedEvent) as error:
            yield MalformedEvent(f"line {number}: {error}")


@dataclass(frozen=True)
class Change:
    """What one event does, in catalogue terms."""

    kind: str  # see ACTIONS
    filename: str | None = None


# Anchored patterns, tried in order. Owner and role changes are matched first and
# do nothing: an unanchored "remove" once deleted a live project elsewhere.
ACTIONS: list[tuple[re.Pattern, str]] = [
    (re.compile(r"^(add|remove|invite|accepted|revoke|change|decline)\b.*\b(Owner|Maintainer)\b"),
     "ignore"),
    (re.compile(r"^create$"), "project"),
    (re.compile(r"^new release$"), "release"),
    (re.compile(r"^add source file (?P<file>\S+)$"), "source"),
    (re.compile(r"^add (?P<pyver>\S+) file (?P<file>\S+)$"), "binary"),
    (re.compile(r"^remove file (?P<file>\S+)$"), "remove-file"),
    (re.compile(r"^remove release$"), "remove-release"),
    (re.compile(r"^remove project$"), "remove-project"),
    (re.compile(r"^remove$"), "remove"),
    (re.compile(r"^yank release$"), "yank"),
    (re.compile(r"^unyank release$"), "unyank"),
]


def classify(event: Event) -> Change | None:
    """The change an event makes, or None when it changes nothing we keep."""
    for pattern, kind in ACTIONS:
        match = pattern.match(event.action)
        if not match:
            continue
        if kind == "ignore":
            return None
        if kind == "remove":  # the old spelling: a project when no version is given
            kind = "remove-project" if event.version is None else "remove-release"
        if kind in ("release", "source", "binary", "remove-file", "remove-release",
                    "yank", "unyank") and event.version is None:
            log.warning("serial %d: %r needs a version; skipped", event.serial, event.action)
            return None
        return Change(kind, match.groupdict().get("file"))
    log.info("serial %d: unknown action %r skipped", event.serial, event.action)
    return None


def iso(timestamp: int) -> str:
    return datetime.fromtimestamp(timestamp, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Batch:
    """Rows for one executemany per table: the fast path for long replays."""

    projects: list[tuple] = field(default_factory=list)
    aliases: list[tuple] = field(default_factory=list)
    versions: list[tuple] = field(default_factory=list)
    files: list[tuple] = field(default_factory=list)
    touched: set[str] = field(default_factory=set)  # pages that deletions or yanks change

    def add(self, event: Event, change: Change) -> None:
        project, key, kind = event.project, event.key, change.kind
        shows_project = kind not in ("remove-project", "remove-release", "remove-file",
                                     "yank", "unyank")
        self.projects.append((project, event.name, key, key if shows_project else 0,
                              key if kind == "remove-project" else 0))
        self.aliases.append((project, event.name))
        if kind == "remove-project":
            self.touched.add(project)
            return
        if kind == "project":
            return
        shows_version = kind in ("release", "source", "binary")
        # A "new release" event outranks file uploads in saying when it was released.
        rank = (key | (1 << 62)) if kind == "release" else key if shows_version else 0
        self.versions.append((
            project, event.version,
            key if shows_version else 0,
            key if kind == "remove-release" else 0,
            key if kind == "yank" else 0,
            key if kind == "unyank" else 0,
            rank, iso(event.timestamp) if rank else None,
        ))
        if kind in ("remove-release", "yank", "unyank"):
            self.touched.add(project)
        if change.filename:
            file_kind = "binary" if kind == "binary" else "source"
            if kind == "remove-file":
                file_kind = "source" if _looks_like_source(change.filename) else "binary"
                self.touched.add(project)
            self.files.append((
                project, event.version, change.filename, file_kind,
                key if shows_version else 0, key if kind == "remove-file" else 0,
            ))


def _looks_like_source(filename: str) -> bool:
    return not filename.endswith((".whl", ".egg", ".exe", ".msi", ".dmg", ".rpm"))


UPSERT_PROJECTS = """
INSERT INTO projects (name, display_name, display_key, seen_key, deleted_key)
VALUES (?, ?, ?, ?, ?)
ON CONFLICT (name) DO UPDATE SET
    display_name = CASE WHEN excluded.display_key > display_key
                        THEN excluded.display_name ELSE display_name END,
    display_key = MAX(display_key, excluded.display_key),
    seen_key = MAX(seen_key, excluded.seen_key),
    deleted_key = MAX(deleted_key, excluded.deleted_key)
"""
UPSERT_ALIASES = "INSERT OR IGNORE INTO aliases (project, alias) VALUES (?, ?)"
UPSERT_VERSIONS = """
INSERT INTO versions (project, version, seen_key, removed_key, yank_key, unyank_key,
                      released_rank, released)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (project, version) DO UPDATE SET
    seen_key = MAX(seen_key, excluded.seen_key),
    removed_key = MAX(removed_key, excluded.removed_key),
    yank_key = MAX(yank_key, excluded.yank_key),
    unyank_key = MAX(unyank_key, excluded.unyank_key),
    released = CASE WHEN excluded.released_rank > released_rank
                    THEN excluded.released ELSE released END,
    released_rank = MAX(released_rank, excluded.released_rank)
"""
UPSERT_FILES = """
INSERT INTO files (project, version, filename, kind, seen_key, removed_key)
VALUES (?, ?, ?, ?, ?, ?)
ON CONFLICT (project, version, filename) DO UPDATE SET
    kind = CASE WHEN excluded.seen_key > seen_key THEN excluded.kind ELSE kind END,
    seen_key = MAX(seen_key, excluded.seen_key),
    removed_key = MAX(removed_key, excluded.removed_key)
"""


def apply_batch(conn: sqlite3.Connection, batch: Batch) -> None:
    """Write a batch's rows; the caller owns the transaction."""
    conn.executemany(UPSERT_PROJECTS, batch.projects)
    conn.executemany(UPSERT_ALIASES, batch.aliases)
    conn.executemany(UPSERT_VERSIONS, batch.versions)
    conn.executemany(UPSERT_FILES, batch.files)


def batch_of(events: Iterable[Event]) -> Batch:
    batch = Batch()
    for event in events:
        change = classify(event)
        if change is not None:
            batch.add(event, change)
    return batch
