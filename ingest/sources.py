"""Where events come from: PyPI's XML-RPC changelog or a JSONL file, behind one interface.

A source hands back events after a cursor; the follower applies them and stores
the new cursor in the same transaction, so the cursor never runs ahead of the
state it covers."""

from __future__ import annotations

import http.client
import json
import logging
import xmlrpc.client
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn, Protocol
from xml.parsers.expat import ExpatError

from ingest.events import Batch, Event, MalformedEvent
from ingest.reading import read_chunks
from worker.errors import Fatal

log = logging.getLogger("ingest")

FILE_CHUNK = 350_000  # events per read of a file, and so per transaction (about)


class SourceUnavailable(Exception):
    """The source cannot answer now (rate limit, server error, timeout, garbage):
    try again later, after a pause."""


class NotXmlRpc(Exception):
    """The upstream answered, but not as an XML-RPC endpoint does: a client error
    status other than a rate limit (404, 405, a redirect), or a web page."""

    def __init__(self, status: int, content_type: str) -> None:
        super().__init__(f"answered {status} {content_type or 'with no content type'}")
        self.status, self.content_type = status, content_type


class UpstreamMisconfigured(Fatal):
    """The first answers of the upstream show it is not PyPI's XML-RPC endpoint:
    waiting cannot help, the setting must change."""

    def __init__(self, url: str, answer: NotXmlRpc) -> None:
        super().__init__(f"{url} {answer}: WHEELWRIGHT_PYPI_URL (or --pypi-url) must be "
                         f"the base URL whose /pypi answers XML-RPC (PyPI's changelog)")
        self.url, self.answer = url, answer


# Answers that say "not now" rather than "not here".
TRANSIENT_STATUSES = frozenset({408, 425, 429})


@dataclass
class Fetched:
    events: list[Event]
    cursor: str  # store it with the events; hand it back to the next fetch
    caught_up: bool  # nothing more is available right now
    malformed: int = 0
    newest_serial: int | None = None  # the source's newest serial, when it says
    batch: Batch | None = None  # the events already folded (sources that never re-read)


class Source(Protocol):
    state_key: str  # where the follower keeps this source's cursor
    rereads: bool  # True when fetches overlap and events must be told apart by serial

    def fetch(self, cursor: str | None) -> Fetched: ...


@dataclass
class FileSource:
    """A newline-delimited JSON file of events; the cursor is a byte offset. Lines
    appended later are read by later fetches; a line still being written (no
    newline yet) waits for the next one."""

    path: Path
    chunk: int = FILE_CHUNK
    rereads: bool = False
    state_key: str = field(init=False)

    def __post_init__(self) -> None:
        self.state_key = f"file-offset:{self.path.resolve()}"

    def fetch(self, cursor: str | None) -> Fetched:
        """About `chunk` events from the cursor on, folded as they are parsed: a
        block of lines at a time, so that memory holds the folded rows and one
        block, however many events a fetch covers."""
        offset = int(cursor or 0)
        if offset > self.path.stat().st_size:
            log.warning("%s is shorter than before: reading it from the start", self.path)
            offset = 0
        batch, malformed, caught_up = Batch(), 0, True
        with self.path.open("rb") as f:
            for block in read_chunks(f, offset):
                if not block.endswith(b"\n"):
                    break  # a line still being written: the next fetch reads it whole
                malformed += _fold_block(batch, block, offset, self.path)
                offset += len(block)
                if batch.count + malformed >= self.chunk:
                    caught_up = False
                    break
        return Fetched([], str(offset), caught_up, malformed, batch=batch)


def _fold_block(batch: Batch, block: bytes, offset: int, path: Path) -> int:
    """Fold a block of whole lines into the batch; return how many lines were
    malformed (and skipped). The block is parsed as one JSON array, one call into
    the C parser; only a block with a bad line is read line by line."""
    try:
        rows = json.loads(b"[" + block.rstrip(b"\n").replace(b"\n", b",") + b"]")
        if len(rows) == block.count(b"\n"):  # else a blank line, or two values on one
            batch.add_rows(rows)
            return 0
    except (ValueError, MalformedEvent):
        pass
    malformed = 0
    for line in block[:-1].split(b"\n"):
        if line.strip():
            try:
                batch.add_rows([json.loads(line)])
            except (ValueError, MalformedEvent) as error:
                malformed += 1
                log.warning("%s: skipping malformed event at byte %d: %s", path, offset, error)
        offset += len(line) + 1
    return malformed


class _TimeoutTransport(xmlrpc.client.SafeTransport):
    def __init__(self, timeout: float, secure: bool):
        super().__init__()
        self.timeout, self.secure = timeout, secure

    def parse_response(self, response):
        # A 200 web page (a project site, the simple index) is not XML-RPC; a
        # maintenance page is usually a 5xx, which stays a transient fault.
        content_type = response.getheader("Content-Type", "") or ""
        if "html" in content_type.lower():
            raise NotXmlRpc(response.status, content_type.partition(";")[0])
        return super().parse_response(response)

    def make_connection(self, host):
        if self.secure:
            conn = super().make_connection(host)
        else:
            conn = xmlrpc.client.Transport.make_connection(self, host)
        conn.timeout = self.timeout
        return conn


@dataclass
class XmlRpcSource:
    """PyPI's changelog over XML-RPC. Each fetch re-reads `margin` serials behind the
    newest one applied, because a serial can become visible after a higher one
    (concurrent transactions); the follower drops the serials it has seen."""

    url: str  # the XML-RPC endpoint
    margin: int = 2000
    timeout: float = 30.0
    page: int = 50_000  # the most rows PyPI returns per call
    rereads: bool = True
    state_key: str = "pypi-serial"
    answered: bool = False  # it has answered as XML-RPC since this process started

    def _proxy(self) -> xmlrpc.client.ServerProxy:
        transport = _TimeoutTransport(self.timeout, self.url.startswith("https:"))
        return xmlrpc.client.ServerProxy(self.url, transport=transport)

    def _call(self, method: str, *args):
        try:
            result = getattr(self._proxy(), method)(*args)
        except xmlrpc.client.Fault as fault:
            self.answered = True  # a fault is an XML-RPC answer: the URL is right
            raise SourceUnavailable(f"{method}: fault {fault.faultCode} "
                                    f"{fault.faultString[:200]}") from None
        except xmlrpc.client.ProtocolError as error:
            if error.errcode >= 500 or error.errcode in TRANSIENT_STATUSES:
                raise SourceUnavailable(f"{method}: HTTP {error.errcode}") from None
            content_type = (error.headers or {}).get("Content-Type", "")
            self._not_xmlrpc(method, NotXmlRpc(error.errcode, content_type.partition(";")[0]))
        except NotXmlRpc as answer:
            self._not_xmlrpc(method, answer)
        except (OSError, http.client.HTTPException, ExpatError, xmlrpc.client.ResponseError,
                ValueError) as error:
            raise SourceUnavailable(f"{method}: {type(error).__name__}: {error}") from None
        self.answered = True
        return result

    def _not_xmlrpc(self, method: str, answer: NotXmlRpc) -> NoReturn:
        """Fail at once if the upstream has not answered as XML-RPC yet: a wrong URL
        shows at start. Once it has, the URL is right and this is a passing fault
        of the upstream (a CDN's error page), paused on like the others."""
        if not self.answered:
            raise UpstreamMisconfigured(self.url, answer) from None
        raise SourceUnavailable(f"{method}: {self.url} {answer}, where XML-RPC was "
                                "expected") from None

    def fetch(self, cursor: str | None) -> Fetched:
        applied = int(cursor or 0)
        newest = self._call("changelog_last_serial")
        if not isinstance(newest, int):
            raise SourceUnavailable(f"changelog_last_serial: not a serial: {newest!r}"[:200])
        since = max(0, applied - self.margin)
        rows = self._call("changelog_since_serial", since)
        if not isinstance(rows, list):
            raise SourceUnavailable("changelog_since_serial: not a list")
        events, malformed = [], 0
        for row in rows:
            try:
                events.append(Event.from_row(row))
            except MalformedEvent as error:
                malformed += 1
                log.warning("skipping malformed changelog row %r: %s", row, error)
        top = max([applied, *(e.serial for e in events)])
        caught_up = len(rows) < self.page and top >= newest
        return Fetched(events, str(top), caught_up, malformed, newest)
