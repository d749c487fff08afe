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
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import accumulate, repeat
from operator import add
from pathlib import Path
from typing import BinaryIO

import sqlite_utils

from ingest.reading import collector_paused, read_chunks
from stats import paths
from stats.agents import AgentCache
from stats.clients import ClientHasher
from stats.logline import BAD_REQUEST, MalformedLine, split_fields, utc_time
from stats.store import Batch, Written, source_offset
from stats.writer import InlineWriter, ProcessWriter, database_file

BATCH_ROWS = 50_000  # rows a transaction writes; a file with more gets a writer process
GZIP_MAGIC = b"\x1f\x8b"
REQUEST_CACHE = 250_000  # distinct request lines kept (one per wheel file, mostly)
STATUS_CODES = {f"{code:03d}": code for code in range(1000)}
SECONDS = frozenset(f"{second:02d}" for second in range(60))


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


@dataclass(frozen=True, slots=True)
class Request:
    """What a request line asks for, as the columns of its row."""
    method: str
    kind: str               # the kind when the client is not an installer
    installer_kind: str     # the kind when it is (a simple page is then a search)
    project: str | None
    filename: str | None


def number(text: str) -> int:
    """A status or size that the grammar accepted as digits; int() refuses some
    Unicode digits that str.isdigit() accepts."""
    try:
        return int(text)
    except ValueError:
        raise MalformedLine(f"not a number: {text[:20]!r}") from None


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
    """Turns complete lines into batches of rows. Logs repeat agents, clients, request
    lines and timestamps constantly: each distinct one is worked out once, then found
    in a cache (kept across batches, emptied when it grows past its limit)."""
    hasher: ClientHasher
    agents: AgentCache = field(default_factory=AgentCache)
    requests: dict[str, Request] = field(default_factory=dict)
    times: dict[str, str] = field(default_factory=dict)
    minutes: dict[str, str] = field(default_factory=dict)
    known: dict[str, tuple[int, bool]] = field(default_factory=dict)

    def batch(self, fingerprint: str, path: str, start: int, data: bytes) -> Batch:
        """Rows for `data`, which holds whole lines from offset `start` of the source."""
        batch = Batch(fingerprint, path, start, start + len(data))
        if data.isascii():  # the usual case: one decode, and characters are bytes
            lines = sizes = data.decode("ascii").split("\n")
        else:
            sizes = data.split(b"\n")
            lines = [raw.decode("utf-8", "replace") for raw in sizes]
            sizes.pop()
        lines.pop()  # the empty string after the last newline
        # bounds[i] is where line i starts in the source, bounds[i + 1] where it ends
        bounds = list(accumulate(map(add, map(len, sizes), repeat(1)), initial=start))
        rows, rejects = batch.rows, batch.rejects
        rejected: list[int] = []  # numbers of the lines that made no row
        known, clients = self.known, self.hasher.cache
        requests, times = self.requests, self.times
        for line in lines:  # the hot loop: split, look up, build the row
            try:
                host, stamp, request, status, size, agent_text = split_fields(line)
                found = requests.get(request)
                if found is None:
                    found = self.request(request)
                when = times.get(stamp)
                if when is None:
                    when = self.time(stamp)
                code = STATUS_CODES.get(status)
                if code is None:
                    code = number(status)
                size = 0 if size == "-" else number(size)
            except MalformedLine as error:
                rejected.append(len(rows) + len(rejected))
                rejects.append((bounds[rejected[-1]], str(error)))
                continue
            agent = known.get(agent_text)
            if agent is None:
                agent = self.agent(agent_text)
            client = clients.get(host)
            if client is None:
                client = self.hasher(host)
            rows.append((when, found.installer_kind if agent[1] else found.kind,
                         found.project, found.filename, found.method, code, size, client,
                         agent[0]))
        ends = bounds[1:]
        for line_number in reversed(rejected):
            del ends[line_number]
        batch.ends = ends
        batch.agents = self.agents.take_fresh()
        return batch

    def agent(self, text: str) -> tuple[int, bool]:
        """(id, is an installer) of the agent logged as `text`."""
        if len(self.known) > self.agents.limit:
            self.known.clear()
        agent = self.agents.get(text)
        found = self.known[text] = (agent.id, agent.is_installer)
        return found

    def request(self, text: str) -> Request:
        """What the request line `text` asks for; MalformedLine if it is no request."""
        if len(self.requests) >= REQUEST_CACHE:
            self.requests.clear()
        parts = text.split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/"):
            raise MalformedLine(BAD_REQUEST)
        method, target_text, _ = parts
        target = paths.classify(target_text)
        # An installer fetching a simple page is searching; anyone else is reading.
        kind, installer_kind = ((paths.PAGE, paths.SEARCH) if target.kind == paths.SIMPLE
                                else (target.kind, target.kind))
        found = self.requests[text] = Request(method, kind, installer_kind, target.project,
                                              target.filename)
        return found

    def time(self, stamp: str) -> str:
        """`stamp` (as logged) in UTC."""
        if len(self.times) > 4096:
            self.times.clear()
        when = self.times[stamp] = self.by_minute(stamp) or utc_time(stamp)
        return when

    def by_minute(self, stamp: str) -> str | None:
        """`stamp` in UTC from the conversion of its minute (offsets are whole minutes,
        so the seconds carry over): a busy log converts once a minute, not once a
        second. None when the stamp is not in the usual shape, or is wrong: it is
        then converted alone, so that its error quotes it as logged."""
        seconds = stamp[18:20]
        if len(stamp) != 26 or stamp[17] != ":" or seconds not in SECONDS:
            return None
        minute = f"{stamp[:17]}{stamp[20:]}"
        base = self.minutes.get(minute)
        if base is None:
            try:
                base = utc_time(f"{stamp[:18]}00{stamp[20:]}")
            except MalformedLine:
                return None
            if len(self.minutes) > 4096:
                self.minutes.clear()
            self.minutes[minute] = base
        return f"{base[:-2]}{seconds}"


def load_file(db: sqlite_utils.Database, parser: Parser, path: Path,
              progress: Callable[[LoadResult], None] | None = None,
              batch_rows: int = BATCH_ROWS) -> LoadResult:
    """Load every line of `path` not loaded before. Once a file has given a full
    batch, the rest is written by a child process (stats.writer) while this one
    parses; a smaller file is written here."""
    result = LoadResult(str(path))
    with open_log(path) as handle, collector_paused():
        first = first_line(handle)
        compressed = isinstance(handle, gzip.GzipFile)
        if first is None:
            result.incomplete = not compressed and path.stat().st_size > 0
            return result
        source = fingerprint(first)
        start = source_offset(db, source)
        result.skipped_bytes = start
        writer: InlineWriter | ProcessWriter | None = None
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
                if rows >= batch_rows:
                    if writer is None:
                        writer = start_writer(db, result.add)
                    writer.submit(merge(pending))
                    pending, rows = [], 0
                    if progress:
                        progress(result)
            if pending:
                writer = writer or InlineWriter(db, result.add)
                writer.submit(merge(pending))
            if writer is not None:
                writer.close()
        except BaseException:
            if writer is not None:
                writer.abort()
            raise
    return result


def start_writer(db: sqlite_utils.Database,
                 done: Callable[[Written], None]) -> InlineWriter | ProcessWriter:
    """A writer process for a database in a file; an in-memory one stays here."""
    file = database_file(db)
    return ProcessWriter(file, done) if file else InlineWriter(db, done)


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
