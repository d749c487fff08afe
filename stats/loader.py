"""Access log files into stats.db.

A log file is known by its fingerprint, a hash of its first line: a file renamed by
rotation, or gzipped afterwards, keeps it. stats.db records how many bytes of each
fingerprint have been loaded (table `sources`), in the same transaction as the rows
those bytes made, so loading the same lines again skips them and a restarted
`follow` resumes where it stopped. Only complete lines are read from a plain file
(a line still being written is left for next time); a gzipped file is complete.
"""

from __future__ import annotations

import gzip
import hashlib
import queue
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import sqlite_utils

from stats import paths
from stats.agents import AgentCache
from stats.clients import ClientHasher
from stats.logline import BAD_REQUEST, MalformedLine, split_fields, utc_time
from stats.store import Batch, Written, source_offset, write_batch

CHUNK = 1 << 20
BATCH_ROWS = 50_000
GZIP_MAGIC = b"\x1f\x8b"


@dataclass
class LoadResult:
    path: str
    lines: int = 0          # complete lines read past what was loaded before
    stored: int = 0
    rejected: int = 0       # malformed lines, recorded in `rejects` by offset
    already: int = 0        # lines found already loaded (a race with another loader)
    skipped_bytes: int = 0  # the prefix loaded before, not read again
    incomplete: bool = False  # the file ends in a line still being written

    def add(self, written: Written) -> None:
        self.stored += written.stored
        self.rejected += written.rejected
        self.already += written.already

    def summary(self) -> str:
        text = (f"{self.path}: {self.lines:,} lines read, {self.stored:,} stored, "
                f"{self.rejected:,} malformed")
        if self.skipped_bytes:
            text += f", {self.skipped_bytes:,} bytes loaded before"
        if self.already:
            text += f", {self.already:,} lines loaded meanwhile by another process"
        if self.incomplete:
            text += ", last line incomplete (left for later)"
        return text


def fingerprint(first_line: bytes) -> str:
    return hashlib.blake2b(first_line, digest_size=16).hexdigest()


def open_log(path: Path) -> BinaryIO:
    """A plain or gzipped log, opened for binary reading (decompressed)."""
    handle = path.open("rb")
    if handle.read(2) == GZIP_MAGIC:
        handle.close()
        return gzip.open(path, "rb")
    handle.seek(0)
    return handle


def first_line(handle: BinaryIO) -> bytes | None:
    """The file's first complete line, or None while it has none."""
    handle.seek(0)
    line = handle.readline(64 * 1024)
    return line if line.endswith(b"\n") else None


@dataclass
class Parser:
    """Turns complete lines into batches of rows. Caches agents, clients, times and
    paths across batches: logs repeat them constantly."""
    hasher: ClientHasher
    agents: AgentCache = field(default_factory=AgentCache)
    times: dict[str, str] = field(default_factory=dict)
    targets: dict[str, paths.Target] = field(default_factory=dict)
    known: dict[str, tuple[int, bool]] = field(default_factory=dict)

    def batch(self, fingerprint: str, path: str, start: int, data: bytes) -> Batch:
        """Rows for `data`, which holds whole lines from offset `start` of the source."""
        batch = Batch(fingerprint, path, start, start + len(data))
        if data.isascii():  # the usual case: one decode, and characters are bytes
            lines = data.decode("ascii").split("\n")
            sizes = None
        else:
            raw_lines = data.split(b"\n")
            lines = [raw.decode("utf-8", "replace") for raw in raw_lines]
            sizes = [len(raw) for raw in raw_lines]
        lines.pop()  # the empty string after the last newline
        rows, ends, rejects = batch.rows, batch.ends, batch.rejects
        known, clients = self.known, self.hasher.cache
        times, targets = self.times, self.targets
        simple, search, page = paths.SIMPLE, paths.SEARCH, paths.PAGE
        position = start
        for number, line in enumerate(lines):
            line_start = position
            position += (len(line) if sizes is None else sizes[number]) + 1
            try:
                host, stamp, request, status, size, agent_text = split_fields(line)
                method, target, protocol = request.split(" ")
                if not protocol.startswith("HTTP/"):
                    raise ValueError
            except MalformedLine as error:
                rejects.append((line_start, str(error)))
                continue
            except ValueError:
                rejects.append((line_start, BAD_REQUEST))
                continue
            when = times.get(stamp)
            if when is None:
                try:
                    when = self.time(stamp)
                except MalformedLine as error:
                    rejects.append((line_start, str(error)))
                    continue
            found = targets.get(target)
            if found is None:
                found = self.target(target)
            agent = known.get(agent_text)
            if agent is None:
                agent = self.agent(agent_text)
            client = clients.get(host)
            if client is None:
                client = self.hasher(host)
            kind = found.kind
            if kind is simple:
                kind = search if agent[1] else page
            rows.append((when, kind, found.project, found.filename, method, int(status),
                         0 if size == "-" else int(size), client, agent[0]))
            ends.append(position)
        batch.agents = self.agents.take_fresh()
        return batch

    def agent(self, text: str) -> tuple[int, bool]:
        """(id, is an installer) of the agent logged as `text`."""
        if len(self.known) > self.agents.limit:
            self.known.clear()
        agent = self.agents.get(text)
        found = self.known[text] = (agent.id, agent.is_installer)
        return found

    def time(self, stamp: str) -> str:
        if len(self.times) > 4096:
            self.times.clear()
        when = self.times[stamp] = utc_time(stamp)
        return when

    def target(self, target: str) -> paths.Target:
        if len(self.targets) > 100_000:
            self.targets.clear()
        found = self.targets[target] = paths.classify(target)
        return found


class Writer:
    """Writes batches on a thread of its own, so that parsing (which holds the GIL)
    overlaps SQLite's work (which releases it)."""

    def __init__(self, db: sqlite_utils.Database, depth: int = 2) -> None:
        self.db = db
        self.queue: queue.Queue = queue.Queue(maxsize=depth)
        self.results: dict[int, Written] = {}
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="stats-writer", daemon=True)
        self.thread.start()

    def submit(self, batch: Batch, result: LoadResult) -> None:
        if self.error is not None:
            raise self.error
        self.queue.put((batch, result))

    def close(self) -> None:
        self.queue.put(None)
        self.thread.join()
        if self.error is not None:
            raise self.error

    def _run(self) -> None:
        while (item := self.queue.get()) is not None:
            if self.error is not None:
                continue
            batch, result = item
            try:
                result.add(write_batch(self.db, batch))
            except BaseException as error:  # handed to the submitting thread
                self.error = error


def read_chunks(handle: BinaryIO, start: int, chunk: int = CHUNK) -> Iterator[bytes]:
    """Whole lines from `start` on, in chunks of about `chunk` bytes. A final
    fragment without its newline is yielded alone, last, for the caller to judge."""
    handle.seek(start)
    tail = b""
    while data := handle.read(chunk):
        data = tail + data
        cut = data.rfind(b"\n") + 1
        tail = data[cut:]
        if cut:
            yield data[:cut]
    if tail:
        yield tail


def load_file(db: sqlite_utils.Database, parser: Parser, path: Path,
              progress: Callable[[LoadResult], None] | None = None) -> LoadResult:
    """Load every line of `path` not loaded before."""
    result = LoadResult(str(path))
    with open_log(path) as handle:
        first = first_line(handle)
        compressed = isinstance(handle, gzip.GzipFile)
        if first is None:
            result.incomplete = not compressed and path.stat().st_size > 0
            return result
        source = fingerprint(first)
        start = source_offset(db, source)
        result.skipped_bytes = start
        writer = Writer(db)
        try:
            pending: list[Batch] = []
            rows = 0
            offset = start
            for data in read_chunks(handle, start):
                if not data.endswith(b"\n"):
                    if not compressed:
                        result.incomplete = True
                        break
                    data += b"\n"  # a finished file's last line is whole
                batch = parser.batch(source, str(path), offset, data)
                offset = batch.end
                result.lines += len(batch.rows) + len(batch.rejects)
                pending.append(batch)
                rows += len(batch.rows)
                if rows >= BATCH_ROWS:
                    writer.submit(merge(pending), result)
                    pending, rows = [], 0
                    if progress:
                        progress(result)
            if pending:
                writer.submit(merge(pending), result)
        finally:
            writer.close()
    return result


def merge(batches: list[Batch]) -> Batch:
    """Consecutive batches of one source as one (one transaction)."""
    if len(batches) == 1:
        return batches[0]
    first = batches[0]
    merged = Batch(first.fingerprint, first.path, first.start, batches[-1].end)
    for batch in batches:
        merged.rows += batch.rows
        merged.ends += batch.ends
        merged.rejects += batch.rejects
        merged.agents += batch.agents
    return merged


def progress_printer(every: float = 1.0) -> Callable[[LoadResult], None]:
    started = time.monotonic()
    last = [started]

    def report(result: LoadResult) -> None:
        now = time.monotonic()
        if now - last[0] >= every:
            last[0] = now
            rate = result.lines / max(now - started, 1e-9)
            print(f"{result.path}: {result.lines:,} lines ({rate:,.0f}/s)",
                  file=sys.stderr, flush=True)

    return report
