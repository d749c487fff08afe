"""`stats follow`: a live access log into stats.db, through rotation and truncation.

Each poll reads the complete lines that arrived since the last, and writes them with
the new position in one transaction (see stats.loader: a file is known by the hash of
its first line). Then it looks at the path:

- a different file there (renamed away by logrotate, a new one created): the old
  file is read to its end and kept open for `grace` seconds more, since a server
  writes to the file it has open until told to reopen; then the new file is read
  from its start.
- the same file, shorter than the position or with a different first line
  (copytruncate): it is read again from its start.

After a restart the position is taken from stats.db; if the file at the path is no
longer the one followed, the rotated siblings (`access.log.1`, ...) are searched for
it so that its tail is not lost.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import sqlite_utils

from ingest.reading import BLOCK
from stats.loader import LoadResult, Parser, fingerprint, first_line, open_log
from stats.rollups import Pruner
from stats.store import source_offset, write_batch
from stats.windows import Refresher


@dataclass
class Tail:
    """One open log file and how far into it we are. The fingerprint is unknown
    until the file has a complete first line."""
    path: Path
    handle: BinaryIO
    fingerprint: str | None = None
    offset: int = 0
    retire_at: float | None = None   # when a rotated-away file stops being read

    @property
    def inode(self) -> int:
        return os.fstat(self.handle.fileno()).st_ino

    def close(self) -> None:
        self.handle.close()


@dataclass
class Follower:
    db: sqlite_utils.Database
    parser: Parser
    path: Path
    grace: float = 5.0
    current: Tail | None = None
    retired: list[Tail] = field(default_factory=list)
    started: bool = False
    result: LoadResult = field(init=False)

    def __post_init__(self) -> None:
        self.result = LoadResult(str(self.path))

    def poll(self) -> int:
        """Read what is new; return how many lines were read."""
        lines = 0
        if not self.started:
            self.started = True
            lines += self._finish_rotated_siblings()
        for tail in list(self.retired):
            lines += self._read(tail)
            if time.monotonic() >= (tail.retire_at or 0):
                tail.close()
                self.retired.remove(tail)
        if self.current is None:
            self.current = self._open()
            if self.current is None:
                return lines
        lines += self._read(self.current)
        lines += self._check_rotation()
        return lines

    def close(self) -> None:
        for tail in [*self.retired, *([self.current] if self.current else [])]:
            tail.close()
        self.retired, self.current = [], None

    def _open(self, path: Path | None = None) -> Tail | None:
        try:
            return Tail(path or self.path, open_log(path or self.path))
        except FileNotFoundError:
            return None

    def _identify(self, tail: Tail) -> bool:
        """Learn the file's fingerprint, and where we stopped in it, once it has one."""
        if tail.fingerprint is None:
            first = first_line(tail.handle)
            if first is None:
                return False
            tail.fingerprint = fingerprint(first)
            tail.offset = source_offset(self.db, tail.fingerprint)
        return True

    def _finish_rotated_siblings(self) -> int:
        """After a restart: a file we were following may have been rotated meanwhile;
        read the rest of any sibling we have read part of."""
        lines = 0
        for sibling in sorted(self.path.parent.glob(self.path.name + ".*")):
            if sibling.suffix == ".gz":  # compressed later than any restart needs
                continue
            tail = self._open(sibling)
            if tail is None:
                continue
            try:
                if self._identify(tail) and tail.offset:
                    lines += self._read(tail)
            finally:
                tail.close()
        return lines

    def _read(self, tail: Tail) -> int:
        if not self._identify(tail):
            return 0
        lines = 0
        tail.handle.seek(tail.offset)
        while True:
            data = tail.handle.read(BLOCK)
            cut = data.rfind(b"\n") + 1
            if not cut:
                return lines
            batch = self.parser.batch(tail.fingerprint, str(tail.path), tail.offset,
                                      data[:cut])
            self.result.add(write_batch(self.db, batch))
            lines += len(batch.rows) + len(batch.rejects)
            self.result.lines += len(batch.rows) + len(batch.rejects)
            tail.offset = batch.end
            tail.handle.seek(tail.offset)

    def _check_rotation(self) -> int:
        tail = self.current
        try:
            inode = self.path.stat().st_ino
        except FileNotFoundError:
            inode = None
        if inode != tail.inode:
            tail.retire_at = time.monotonic() + self.grace
            self.retired.append(tail)
        elif tail.fingerprint is not None:
            first = first_line(tail.handle)
            size = os.fstat(tail.handle.fileno()).st_size
            if size >= tail.offset and first is not None and \
                    fingerprint(first) == tail.fingerprint:
                return 0
            tail.close()  # truncated in place: whatever is there now is a new file
        else:
            return 0
        self.current = self._open()
        return self._read(self.current) if self.current is not None else 0


def follow(db: sqlite_utils.Database, parser: Parser, path: Path, interval: float,
           stop: Callable[[], bool], report: Callable[[int], None] = lambda _: None,
           grace: float = 5.0, raw_days: int = 0, catalogue: Path | None = None,
           refresh_every: float = 600.0) -> LoadResult:
    """Follow `path` until `stop()` says so. With `raw_days`, raw rows older than
    that many days are pruned as it goes (stats.rollups.Pruner); rollups stay. The
    30-day sums (stats.windows) are refreshed every `refresh_every` seconds, with
    build times from `catalogue`."""
    follower = Follower(db, parser, path, grace=grace)
    pruner = Pruner(raw_days)
    refresher = Refresher(catalogue, every=refresh_every)
    try:
        while not stop():
            lines = follower.poll()
            if lines:
                report(lines)
            pruner.step(db)
            refresher.step(db)
            deadline = time.monotonic() + interval
            while not stop() and time.monotonic() < deadline:
                time.sleep(min(0.1, interval))
    finally:
        follower.close()
    return follower.result
