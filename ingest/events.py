"""PyPI's event log: reading its rows and applying them to the catalogue.

Every event becomes a handful of max-register updates keyed by its ordering key
(see order_key), so applying a history in any order, or twice, gives the same
catalogue."""

from __future__ import annotations

import logging
import re
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass

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


_CANONICAL: dict[str, str] = {}


def canonical(name: str) -> str:
    """PEP 503's canonical form; cached, since a log names the same projects often."""
    result = _CANONICAL.get(name)
    if result is None:
        if len(_CANONICAL) > 200_000:
            _CANONICAL.clear()
        result = _CANONICAL[name] = canonicalize_name(name)
    return result


def fields_of(row: dict | list | tuple) -> tuple[int, int, str, str | None, str]:
    """(serial, timestamp, name, version, action) of a row, checked; MalformedEvent
    for anything else."""
    # type() rather than isinstance(): True is an int to isinstance, not a serial.
    if type(row) in (list, tuple):
        if len(row) != 5:
            raise MalformedEvent(f"want 5 fields, got {len(row)}")
        name, version, timestamp, action, serial = row
    elif type(row) is dict:
        try:
            serial, timestamp = row["serial"], row["timestamp"]
            name, version, action = row["name"], row.get("version"), row["action"]
        except KeyError as missing:
            raise MalformedEvent(f"missing {missing}") from None
    else:
        raise MalformedEvent("an event is an object")
    if type(serial) is not int or serial < 0:
        raise MalformedEvent(f"bad serial {serial!r}")
    if type(timestamp) not in (int, float):
        raise MalformedEvent(f"bad timestamp {timestamp!r}")
    if type(name) is not str or not 0 < len(name) <= 200 or not name.strip():
        raise MalformedEvent(f"bad name {name!r}")
    if version is not None and (type(version) is not str or len(version) > 200):
        raise MalformedEvent(f"bad version {version!r}")
    if type(action) is not str:
        raise MalformedEvent(f"bad action {action!r}")
    return serial, int(timestamp), name.strip(), version or None, action


@dataclass(slots=True)
class Event:
    serial: int
    timestamp: int  # seconds since the epoch, UTC
    name: str
    version: str | None
    action: str

    @classmethod
    def from_row(cls, row: dict | list | tuple) -> Event:
        """From a replay-file object or an XML-RPC row [name, version, timestamp,
        action, serial]; anything else raises MalformedEvent."""
        return cls(*fields_of(row))


@dataclass(slots=True)
class Change:
    """What one event does, in catalogue terms."""

    kind: str  # a group name of ACTION_RE
    filename: str | None = None


# One anchored pattern, one alternative per action. Owner and role changes come
# first and do nothing: an unanchored "remove" once deleted a live project elsewhere.
ACTION_RE = re.compile(r"""^(?:
    (?P<ignore>(?:add|remove|accepted|change|invite|revoke\ invite|decline\ invite)
               \ (?:Owner|Maintainer)\b.*)
  | (?P<project>create)
  | (?P<release>new\ release)
  | add\ source\ file\ (?P<source>\S+)
  | add\ \S+\ file\ (?P<binary>\S+)
  | remove\ file\ (?P<remove_file>\S+)
  | (?P<remove_release>remove\ release)
  | (?P<remove_project>remove\ project)
  | (?P<remove>remove)
  | (?P<yank>yank\ release)
  | (?P<unyank>unyank\ release)
)$""", re.VERBOSE)

NEEDS_VERSION = frozenset({"release", "source", "binary", "remove_file", "remove_release",
                           "yank", "unyank"})
FILE_KINDS = frozenset({"source", "binary", "remove_file"})


def classify(event: Event) -> Change | None:
    """The change an event makes, or None when it changes nothing we keep."""
    return classify_action(event.action, event.version, event.serial)


_EXACT: dict[str, str | None] = {}  # actions without a file name: their kind (or None)


def classify_action(action: str, version: str | None, serial: int) -> Change | None:
    kind = _EXACT.get(action, "") if len(action) < 40 else ""
    filename = None
    if kind == "":
        match = ACTION_RE.match(action)
        if match is None:
            log.info("serial %d: unknown action %r skipped", serial, action)
            return None
        kind = match.lastgroup
        if kind in FILE_KINDS:
            filename = match.group(kind)
        elif len(_EXACT) < 10_000:  # a few spellings, and owner changes by name
            _EXACT[action] = None if kind == "ignore" else kind
    if kind is None or kind == "ignore":
        return None
    if kind == "remove":  # the old spelling: a project when no version is given
        kind = "remove_project" if version is None else "remove_release"
    if kind in NEEDS_VERSION and version is None:
        log.warning("serial %d: %r needs a version; skipped", serial, action)
        return None
    return Change(kind, filename)


class Batch:
    """Many events folded into one row per project, version and file (each column
    the maximum of its keys), written with one executemany per table. Folding
    first is what makes long replays fast, and it is exact because every column
    is a max-register."""

    def __init__(self) -> None:
        self.projects: dict[str, list] = {}  # name: [display_key, display, seen, deleted]
        self.aliases: set[tuple[str, str]] = set()
        self.versions: dict[tuple[str, str], list] = {}  # [seen, removed, yank, unyank,
        #                                                   released_rank, timestamp]
        self.files: dict[tuple[str, str, str], list] = {}  # [kind, seen, removed]
        self.touched: set[str] = set()  # projects whose pages deletions or yanks change
        self.released: set[str] = set()  # projects with new releases or source files
        self.count = 0  # events read into the batch, including those that change nothing
        self.newest: tuple[int, int] | None = None  # (serial, timestamp) of the newest

    def add(self, event: Event) -> None:
        self._fold(event.serial, event.timestamp, event.name, event.version, event.action)

    def add_row(self, row: dict | list | tuple) -> None:
        """Fold a raw row without making an Event of it (the replay fast path);
        MalformedEvent for a row that is not an event."""
        self._fold(*fields_of(row))

    def _fold(self, serial: int, timestamp: int, name: str, version: str | None,
              action: str) -> None:
        self.count += 1
        if self.newest is None or serial > self.newest[0]:
            self.newest = (serial, timestamp)
        change = classify_action(action, version, serial)
        if change is None:
            return
        # The hot loop of a replay: plain comparisons rather than max() calls.
        kind, key = change.kind, order_key(serial, timestamp)
        project = _CANONICAL.get(name) or canonical(name)
        row = self.projects.get(project)
        if row is None:
            row = self.projects[project] = [key, name, 0, 0]
            self.aliases.add((project, name))
        elif key > row[0]:
            row[0], row[1] = key, name
            self.aliases.add((project, name))
        elif name != row[1]:
            self.aliases.add((project, name))
        if kind in SHOWS:
            if key > row[2]:
                row[2] = key
            if kind == "project":
                return
            self.released.add(project)
        elif kind == "remove_project":
            if key > row[3]:
                row[3] = key
            self.touched.add(project)
            return
        else:
            self.touched.add(project)
        release = self.versions.get((project, version))
        if release is None:
            release = self.versions[(project, version)] = [0, 0, 0, 0, 0, None]
        column = VERSION_COLUMN.get(kind, 0)
        if column is not None and key > release[column]:
            release[column] = key
        if column == 0:
            # A "new release" event outranks file uploads in saying when it was released.
            rank = key | RELEASE_RANK if kind == "release" else key
            if rank > release[4]:
                release[4], release[5] = rank, timestamp
        if change.filename is not None:
            self._add_file(project, version, change, key)

    def _add_file(self, project: str, version: str, change: Change, key: int) -> None:
        file = self.files.get((project, version, change.filename))
        if file is None:
            guess = "binary" if change.filename.endswith(BINARY_SUFFIXES) else "source"
            file = self.files[(project, version, change.filename)] = [guess, 0, 0]
        if change.kind == "remove_file":
            if key > file[2]:
                file[2] = key
        elif key > file[1]:
            file[0], file[1] = change.kind, key

    def rows(self) -> tuple[list, list, list, list]:
        return (
            [(name, r[1], r[0], r[2], r[3]) for name, r in self.projects.items()],
            list(self.aliases),
            [(p, v, *r) for (p, v), r in self.versions.items()],
            [(p, v, f, *r) for (p, v, f), r in self.files.items()],
        )


BINARY_SUFFIXES = (".whl", ".egg", ".exe", ".msi", ".dmg", ".rpm")
SHOWS = frozenset({"project", "release", "source", "binary"})  # events that say "it exists"
# The version register each kind raises: 0 seen, 1 removed, 2 yanked, 3 unyanked;
# removing a file raises none of them.
VERSION_COLUMN = {"remove_release": 1, "yank": 2, "unyank": 3, "remove_file": None}
RELEASE_RANK = 1 << 62

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
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, strftime('%Y-%m-%dT%H:%M:%SZ', ?8, 'unixepoch'))
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


def apply_batch(conn: sqlite3.Connection, batch: Batch,
                known_aliases: set[tuple[str, str]] | frozenset = frozenset()) -> None:
    """Write a batch's rows; the caller owns the transaction. `known_aliases` are
    spellings the caller knows the catalogue holds already (most events repeat one)."""
    projects, aliases, versions, files = batch.rows()
    conn.executemany(UPSERT_PROJECTS, projects)
    conn.executemany(UPSERT_ALIASES, [a for a in aliases if a not in known_aliases])
    conn.executemany(UPSERT_VERSIONS, versions)
    conn.executemany(UPSERT_FILES, files)


def batch_of(events: Iterable[Event]) -> Batch:
    batch = Batch()
    for event in events:
        batch.add(event)
    return batch
