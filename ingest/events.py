"""PyPI's event log: reading its rows and folding them into rows for the catalogue.

Every event becomes a handful of max-register updates keyed by its ordering key
(see order_key), so applying a history in any order, or twice, gives the same
catalogue."""

from __future__ import annotations

import logging
import re
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from operator import itemgetter

from packaging.utils import canonicalize_name

from ingest.catalogue import apply_event_rows

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
    if type(row) is dict:
        try:
            serial, timestamp = row["serial"], row["timestamp"]
            name, version, action = row["name"], row.get("version"), row["action"]
        except KeyError as missing:
            raise MalformedEvent(f"missing {missing}") from None
    elif type(row) in (list, tuple):
        if len(row) != 5:
            raise MalformedEvent(f"want 5 fields, got {len(row)}")
        name, version, timestamp, action, serial = row
    else:
        raise MalformedEvent("an event is an object")
    if type(serial) is not int or serial < 0:
        raise MalformedEvent(f"bad serial {serial!r}")
    if type(timestamp) is not int:
        if type(timestamp) is not float:
            raise MalformedEvent(f"bad timestamp {timestamp!r}")
        timestamp = int(timestamp)
    if type(name) is not str or not 0 < len(name) <= 200 or not (name := name.strip()):
        raise MalformedEvent(f"bad name {name!r}")
    if version is not None and (type(version) is not str or len(version) > 200):
        raise MalformedEvent(f"bad version {version!r}")
    if type(action) is not str:
        raise MalformedEvent(f"bad action {action!r}")
    return serial, timestamp, name, version or None, action


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


def classify(event: Event) -> tuple[str, str | None] | None:
    """(kind, file name) of the change an event makes, or None when it changes
    nothing we keep. The kind is a group name of ACTION_RE."""
    return classify_action(event.action, event.version, event.serial)


_ACTIONS: dict[str, str] = {}  # actions without a file name, and their kinds
_FILE_HEADS: dict[str, str] = {}  # "add source file" and the like, and their kinds


def classify_action(action: str, version: str | None,
                    serial: int) -> tuple[str, str | None] | None:
    kind = _ACTIONS.get(action)
    filename = None
    if kind is None:
        # A file action is its head and the file name; a name with no whitespace in
        # it (printable, no space) is what the pattern's \S+ takes, so a head seen
        # before gives the same answer as the pattern would.
        head, _, tail = action.rpartition(" ")
        kind = _FILE_HEADS.get(head)
        if kind is not None and tail and tail.isprintable():
            filename = tail
        else:
            kind, filename = _match_action(action, serial)
            if kind is None:
                return None
    if kind == "ignore":
        return None
    if kind == "remove":  # the old spelling: a project when no version is given
        kind = "remove_project" if version is None else "remove_release"
    if version is None and kind in NEEDS_VERSION:
        log.warning("serial %d: %r needs a version; skipped", serial, action)
        return None
    return kind, filename


def _match_action(action: str, serial: int) -> tuple[str | None, str | None]:
    match = ACTION_RE.match(action)
    if match is None:
        log.info("serial %d: unknown action %r skipped", serial, action)
        return None, None
    kind = match.lastgroup
    if kind not in FILE_KINDS:
        if len(_ACTIONS) < 10_000:  # a few spellings, and owner changes by name
            _ACTIONS[action] = kind
        return kind, None
    if len(_FILE_HEADS) < 10_000:
        _FILE_HEADS[action[:match.start(kind) - 1]] = kind
    return kind, match.group(kind)


class Batch:
    """Many events folded into one row per project, version and file (each column
    the maximum of its keys), written with one executemany per table. Folding
    first is what makes long replays fast, and it is exact because every column
    is a max-register. Rows are lists in their table's column order (see
    ingest.catalogue.apply_event_rows), ready to be written."""

    def __init__(self) -> None:
        # [name, display_name, display_key, seen_key, deleted_key]
        self.projects: dict[str, list] = {}
        self.spellings: dict[str, list] = {}  # the same rows, by each spelling seen
        self.aliases: set[tuple[str, str]] = set()
        # [project, version, seen_key, removed_key, yank_key, unyank_key,
        #  released_rank, released (a timestamp)]
        self.versions: dict[tuple[str, str], list] = {}
        # [project, version, filename, kind, seen_key, removed_key]
        self.files: dict[tuple[str, str, str], list] = {}
        self.touched: set[str] = set()  # projects whose pages deletions or yanks change
        self.released: set[str] = set()  # projects with new releases or source files
        self.count = 0  # events read into the batch, including those that change nothing
        self.newest_serial = -1  # and its timestamp: the newest event read
        self.newest_timestamp = 0

    def add(self, event: Event) -> None:
        self._fold(event.serial, event.timestamp, event.name, event.version, event.action)

    def add_rows(self, rows: list) -> None:
        """Fold raw rows without making Events of them (the replay fast path): all
        of them, or, when one is not an event, none (MalformedEvent)."""
        fold = self._fold
        for serial, timestamp, name, version, action in [fields_of(row) for row in rows]:
            fold(serial, timestamp, name, version, action)

    def _fold(self, serial: int, timestamp: int, name: str, version: str | None,
              action: str) -> None:
        # The hot loop of a replay: plain comparisons rather than max() calls.
        self.count += 1
        if serial > self.newest_serial:
            self.newest_serial, self.newest_timestamp = serial, timestamp
        change = classify_action(action, version, serial)
        if change is None:
            return
        kind, filename = change
        key = order_key(serial, timestamp)
        row = self.spellings.get(name)
        if row is None:  # a spelling new to this batch (_project records the alias)
            row = self.spellings[name] = self._project(name, key)
        if key > row[2]:
            row[1], row[2] = name, key
        project = row[0]
        if kind == "project":
            if key > row[3]:
                row[3] = key
            return
        if kind == "remove_project":
            if key > row[4]:
                row[4] = key
            self.touched.add(project)
            return
        release = self.versions.get((project, version))
        if release is None:
            release = self.versions[(project, version)] = [project, version, 0, 0, 0, 0, 0, None]
        if kind in SHOWS:
            if key > row[3]:
                row[3] = key
            if key > release[2]:
                release[2] = key
            # A "new release" event outranks file uploads in saying when it was released.
            rank = key | RELEASE_RANK if kind == "release" else key
            if rank > release[6]:
                release[6], release[7] = rank, timestamp
            self.released.add(project)
            if filename is not None:
                file = self._file(project, version, filename)
                if key > file[4]:
                    file[3], file[4] = kind, key
            return
        self.touched.add(project)
        if kind == "remove_file":
            file = self._file(project, version, filename)
            if key > file[5]:
                file[5] = key
        elif key > release[VERSION_COLUMN[kind]]:
            release[VERSION_COLUMN[kind]] = key

    def _project(self, name: str, key: int) -> list:
        project = canonical(name)
        self.aliases.add((project, name))
        row = self.projects.get(project)
        if row is None:
            row = self.projects[project] = [project, name, key, 0, 0]
        return row

    def _file(self, project: str, version: str, filename: str) -> list:
        file = self.files.get((project, version, filename))
        if file is None:
            guess = "binary" if filename.endswith(BINARY_SUFFIXES) else "source"
            file = self.files[(project, version, filename)] = [
                project, version, filename, guess, 0, 0]
        return file

    def rows(self) -> tuple[list, list, list, list]:
        # A project's rows together: SQLite then finds the pages they go to in its
        # cache, which pays for the sort several times over.
        return (sorted(self.projects.values(), key=_FIRST), list(self.aliases),
                sorted(self.versions.values(), key=_FIRST),
                sorted(self.files.values(), key=_FIRST))


_FIRST = itemgetter(0)
BINARY_SUFFIXES = (".whl", ".egg", ".exe", ".msi", ".dmg", ".rpm")
SHOWS = frozenset({"release", "source", "binary"})  # events that say a release exists
VERSION_COLUMN = {"remove_release": 3, "yank": 4, "unyank": 5}  # in a version row
RELEASE_RANK = 1 << 62


def apply_batch(conn: sqlite3.Connection, batch: Batch) -> None:
    """Write a batch's rows (see ingest.catalogue.transaction: the caller owns it)."""
    apply_event_rows(conn, *batch.rows())


def batch_of(events: Iterable[Event]) -> Batch:
    batch = Batch()
    for event in events:
        batch.add(event)
    return batch
