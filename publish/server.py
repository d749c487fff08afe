"""`publish serve`: www/ served over HTTP the way production's nginx serves it.

One resolver decides every answer (negotiation, redirects, ETag, Range, content
types); an asyncio server with keep-alive carries it for `publish serve`, and a
WSGI adapter carries it for tests and embedding. Small files are kept in memory
with their headers made once, and re-read when their mtime, size or inode
change, so the publisher can rewrite www/ under a running server."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import stat
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import formatdate, parsedate_to_datetime
from pathlib import Path
from socketserver import ThreadingMixIn
from urllib.parse import quote, unquote
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from packaging.utils import canonicalize_name

from publish.negotiation import choose

log = logging.getLogger("publish")

CONTENT_TYPES = {
    ".whl": "application/octet-stream",
    ".metadata": "text/plain; charset=utf-8",
    ".json": "application/json",
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "application/javascript; charset=utf-8",
    ".png": "image/png",
    ".svg": "image/svg+xml",
    ".txt": "text/plain; charset=utf-8",
    ".gz": "application/gzip",
}
# Pages whose form is negotiated on Accept (PEP 691): the root and each project.
NEGOTIATED_TOPS = ("simple",)
CANONICAL_TOPS = ("simple", "project")
CACHE_LIMIT = 256 * 1024  # files up to this size are kept in memory
REASONS = {200: "OK", 206: "Partial Content", 301: "Moved Permanently",
           304: "Not Modified", 400: "Bad Request", 404: "Not Found",
           405: "Method Not Allowed", 406: "Not Acceptable",
           416: "Range Not Satisfiable", 431: "Request Header Fields Too Large",
           500: "Internal Server Error"}


def content_type(name: str) -> str:
    return CONTENT_TYPES.get(os.path.splitext(name)[1], "application/octet-stream")


@dataclass
class Reply:
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    file: str | None = None  # a file to send instead of body: path, offset, length
    offset: int = 0
    length: int = 0

    @property
    def size(self) -> int:
        return self.length if self.file else len(self.body)


@dataclass
class _Cached:
    key: tuple[int, int, int]  # mtime_ns, size, inode
    etag: str
    last_modified: str
    body: bytes | None


class Resolver:
    """What www/ answers to one request."""

    def __init__(self, www: Path):
        self.root = str(www.resolve())
        self.cache: dict[str, _Cached] = {}

    def handle(self, method: str, target: str, headers: dict[str, str]) -> Reply:
        if method not in ("GET", "HEAD"):
            return _plain(405, "method not allowed\n", [("Allow", "GET, HEAD")])
        raw_path = target.split("?", 1)[0]
        path = unquote(raw_path)
        segments = path.split("/")
        if not path.startswith("/") or "\0" in path or "\\" in path \
                or any(s in (".", "..") or s.startswith(".") and s for s in segments):
            return _plain(404, "not found\n")
        redirect = _canonical_redirect(segments)
        if redirect is not None:
            return _plain(301, f"see {redirect}\n", [("Location", quote(redirect))])
        fs_path = self.root + path
        try:
            info = os.stat(fs_path)
        except (FileNotFoundError, NotADirectoryError):
            return _plain(404, "not found\n")
        except OSError:
            return _plain(404, "not found\n")
        extra: list[tuple[str, str]] = []
        forced_type = None
        if stat.S_ISDIR(info.st_mode):
            if not path.endswith("/"):
                return _plain(301, "", [("Location", quote(path) + "/")])
            index = "index.html"
            if len(segments) in (3, 4) and segments[1] in NEGOTIATED_TOPS:
                choice = choose(headers.get("accept"))
                extra.append(("Vary", "Accept"))
                if choice is None:
                    return _plain(406, "acceptable forms: application/vnd.pypi.simple.v1+json,"
                                  " application/vnd.pypi.simple.v1+html, text/html\n", extra)
                index = f"index.{choice.suffix}"
                forced_type = choice.content_type
            # As nginx's `index index.html index.json`: project JSON lives in json/.
            for candidate in (index, "index.json") if forced_type is None else (index,):
                try:
                    info = os.stat(fs_path + candidate)
                except OSError:
                    continue
                fs_path += candidate
                break
            else:
                return _plain(404, "not found\n", extra)
        if not stat.S_ISREG(info.st_mode):
            return _plain(404, "not found\n")
        return self._file(fs_path, info, headers, extra, forced_type, path)

    def _file(self, fs_path: str, info: os.stat_result, headers: dict[str, str],
              extra: list[tuple[str, str]], forced_type: str | None, path: str) -> Reply:
        key = (info.st_mtime_ns, info.st_size, info.st_ino)
        cached = self.cache.get(fs_path)
        if cached is None or cached.key != key:
            body = None
            if info.st_size <= CACHE_LIMIT:
                with open(fs_path, "rb") as f:
                    body = f.read()
                if len(body) != info.st_size:  # replaced while we read: do not keep
                    body = None
            cached = _Cached(key, f'"{info.st_mtime_ns // 10**9:x}-{info.st_size:x}"',
                             formatdate(info.st_mtime, usegmt=True), body)
            if len(self.cache) > 50_000:
                self.cache.clear()
            if body is not None:
                self.cache[fs_path] = cached
        common = [("ETag", cached.etag), ("Last-Modified", cached.last_modified), *extra]
        if _not_modified(headers, cached):
            return Reply(304, common)
        ctype = forced_type or content_type(fs_path)
        if path.startswith("/logs/") and fs_path.endswith(".txt.gz"):
            # Build logs are stored gzipped and shown as text by any browser.
            ctype, common = "text/plain; charset=utf-8", [*common, ("Content-Encoding", "gzip")]
        common = [("Content-Type", ctype), ("Accept-Ranges", "bytes"), *common]
        size = info.st_size
        span = _range(headers.get("range"), size, headers.get("if-range"), cached)
        if span == "unsatisfiable":
            return _plain(416, "", [("Content-Range", f"bytes */{size}")])
        status, start, length = 200, 0, size
        if span is not None:
            start, end = span
            status, length = 206, end - start + 1
            common.append(("Content-Range", f"bytes {start}-{end}/{size}"))
        if cached.body is not None:
            return Reply(status, common, cached.body[start:start + length])
        return Reply(status, common, file=fs_path, offset=start, length=length)


def _plain(status: int, text: str, headers: list[tuple[str, str]] = ()) -> Reply:
    return Reply(status, [("Content-Type", "text/plain; charset=utf-8"), *headers],
                 text.encode())


def _canonical_redirect(segments: list[str]) -> str | None:
    """/simple/Foo_Bar/ and /simple/Foo_Bar go to /simple/foo-bar/ (and so for
    /project/): pip asks by canonical name, people may not."""
    if len(segments) < 3 or segments[1] not in CANONICAL_TOPS or not segments[2]:
        return None
    name = segments[2]
    if name in ("index.html", "index.json"):
        return None
    canonical = canonicalize_name(name)
    if canonical == name:
        return None
    rest = "/".join(segments[3:])
    return f"/{segments[1]}/{canonical}/{rest}"


def _not_modified(headers: dict[str, str], cached: _Cached) -> bool:
    if "if-none-match" in headers:
        tags = [t.strip() for t in headers["if-none-match"].split(",")]
        return "*" in tags or cached.etag in tags or f"W/{cached.etag}" in tags
    since = headers.get("if-modified-since")
    if since:
        try:
            return parsedate_to_datetime(since) >= parsedate_to_datetime(cached.last_modified)
        except (TypeError, ValueError):
            return False
    return False


def _range(header: str | None, size: int, if_range: str | None, cached: _Cached):
    """(first, last) byte of a single satisfiable range, "unsatisfiable", or None for
    the whole file (no header, several ranges, or a stale If-Range)."""
    if not header or not header.startswith("bytes=") or "," in header:
        return None
    if if_range is not None and if_range.strip() not in (cached.etag, cached.last_modified):
        return None
    first, _, last = header[6:].strip().partition("-")
    try:
        if first == "":
            count = int(last)
            if count <= 0:
                return "unsatisfiable"
            return max(0, size - count), size - 1
        start = int(first)
        end = int(last) if last else size - 1
    except ValueError:
        return None
    if start >= size or end < start:
        return "unsatisfiable"
    return start, min(end, size - 1)


class AccessLog:
    """The Combined Log Format, as nginx writes it, buffered and flushed each second."""

    def __init__(self, path: Path | None):
        self.file = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.file = open(path, "a", buffering=1 << 16, encoding="utf-8")  # noqa: SIM115
        self.lock = threading.Lock()
        self._second, self._stamp = -1, ""

    def write(self, host: str, request_line: str, status: int, size: int, referer: str,
              agent: str) -> None:
        if self.file is None:
            return
        now = int(time.time())
        if now != self._second:
            self._second = now
            self._stamp = time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now))
        line = (f'{host} - - [{self._stamp}] "{_escape(request_line)}" {status} {size} '
                f'"{_escape(referer or "-")}" "{_escape(agent or "-")}"\n')
        with self.lock:
            self.file.write(line)

    def flush(self) -> None:
        if self.file is not None:
            with self.lock:
                self.file.flush()

    def close(self) -> None:
        if self.file is not None:
            self.flush()
            self.file.close()
            self.file = None


def _escape(text: str) -> str:
    # As nginx does: quotes, backslashes and control bytes become \xHH.
    if all(32 <= ord(c) < 127 and c not in '"\\' for c in text):
        return text
    return "".join(c if 32 <= ord(c) < 127 and c not in '"\\' else
                   "".join(f"\\x{b:02X}" for b in c.encode()) for c in text)


def _head_bytes(status: int, headers: list[tuple[str, str]], length: int,
                keep_alive: bool) -> bytes:
    lines = [f"HTTP/1.1 {status} {REASONS.get(status, 'Unknown')}",
             "Server: wheelwright", f"Date: {formatdate(usegmt=True)}"]
    lines += [f"{k}: {v}" for k, v in headers]
    lines.append(f"Content-Length: {length}")
    if not keep_alive:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


class _Http(asyncio.Protocol):
    """HTTP/1.1 with keep-alive and pipelining, GET and HEAD only."""

    def __init__(self, resolver: Resolver, access: AccessLog):
        self.resolver, self.access = resolver, access
        self.buffer = bytearray()
        self.busy = False
        self.transport: asyncio.Transport | None = None
        self.peer = "-"

    def connection_made(self, transport) -> None:
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.peer = peer[0] if isinstance(peer, tuple) else "-"

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        self._process()

    def _process(self) -> None:
        while not self.busy and self.transport is not None:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buffer) > 32 * 1024:
                    self._fail(431)
                return
            head = bytes(self.buffer[:end]).decode("latin-1")
            del self.buffer[:end + 4]
            if not self._answer(head):
                return

    def _fail(self, status: int) -> None:
        self.transport.write(_head_bytes(status, [], 0, keep_alive=False))
        self.transport.close()
        self.transport = None

    def _answer(self, head: str) -> bool:
        lines = head.split("\r\n")
        request_line = lines[0]
        parts = request_line.split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            self._fail(400)
            return False
        method, target, version = parts
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if headers.get("content-length", "0") != "0" or "transfer-encoding" in headers:
            self._fail(400)  # we take no bodies; do not guess where the next request starts
            return False
        connection = headers.get("connection", "").lower()
        keep_alive = "close" not in connection if version == "HTTP/1.1" \
            else "keep-alive" in connection
        try:
            reply = self.resolver.handle(method, target, headers)
        except Exception:
            log.exception("error answering %s", request_line)
            reply = _plain(500, "internal error\n")
        self.transport.write(_head_bytes(reply.status, reply.headers, reply.size, keep_alive))
        self.access.write(self.peer, request_line, reply.status,
                          0 if method == "HEAD" else reply.size,
                          headers.get("referer", ""), headers.get("user-agent", ""))
        if method != "HEAD":
            if reply.file is not None:
                self.busy = True
                task = asyncio.get_running_loop().create_task(self._send_file(reply))
                task.add_done_callback(lambda _t, k=keep_alive: self._sent(k))
                return False
            self.transport.write(reply.body)
        if not keep_alive:
            self.transport.close()
            self.transport = None
            return False
        return True

    async def _send_file(self, reply: Reply) -> None:
        loop = asyncio.get_running_loop()
        with open(reply.file, "rb") as f:
            await loop.sendfile(self.transport, f, reply.offset, reply.length)

    def _sent(self, keep_alive: bool) -> None:
        self.busy = False
        if self.transport is None:
            return
        if not keep_alive:
            self.transport.close()
            self.transport = None
            return
        self._process()

    def connection_lost(self, exc) -> None:
        self.transport = None


@dataclass
class WebServer:
    url: str
    loop: asyncio.AbstractEventLoop
    server: asyncio.base_events.Server
    access: AccessLog
    thread: threading.Thread | None = None

    def stop(self) -> None:
        def close() -> None:
            self.server.close()
            self.loop.stop()
        self.loop.call_soon_threadsafe(close)
        if self.thread is not None:
            self.thread.join(10)
        self.access.close()


async def _start(www: Path, host: str, port: int, access: AccessLog,
                 reuse_port: bool = False):
    loop = asyncio.get_running_loop()
    resolver = Resolver(www)
    server = await loop.create_server(lambda: _Http(resolver, access), host, port,
                                      reuse_address=True, reuse_port=reuse_port or None,
                                      backlog=1024)

    def flush() -> None:
        access.flush()
        loop.call_later(1.0, flush)

    loop.call_later(1.0, flush)
    return server


def start_in_thread(www: Path, access_log: Path | None, host: str = "127.0.0.1",
                    port: int = 0) -> WebServer:
    """The web server on its own event loop in a thread; for tests and screenshots."""
    loop = asyncio.new_event_loop()
    access = AccessLog(access_log)
    server = loop.run_until_complete(_start(www, host, port, access))
    bound = server.sockets[0].getsockname()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    return WebServer(f"http://{bound[0]}:{bound[1]}/", loop, server, access, thread)


def serve_forever(www: Path, access_log: Path, host: str, port: int, processes: int = 1,
                  ready: Callable[[str], None] = print) -> None:
    """`publish serve`: one event loop per process, sharing the port (SO_REUSEPORT)."""
    children = []
    for _ in range(processes - 1):
        pid = os.fork()
        if pid == 0:
            _serve_one(www, access_log, host, port, processes > 1, lambda _: None)
            os._exit(0)
        children.append(pid)
    try:
        _serve_one(www, access_log, host, port, processes > 1, ready)
    finally:
        for pid in children:
            os.kill(pid, signal.SIGTERM)
            os.waitpid(pid, 0)


def _serve_one(www: Path, access_log: Path, host: str, port: int, reuse_port: bool,
               ready: Callable[[str], None]) -> None:
    loop = asyncio.new_event_loop()
    access = AccessLog(access_log)
    server = loop.run_until_complete(_start(www, host, port, access, reuse_port))
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, loop.stop)
    bound = server.sockets[0].getsockname()
    ready(f"serving {www} on http://{bound[0]}:{bound[1]}/")
    try:
        loop.run_forever()
    finally:
        server.close()
        access.close()


def make_app(www: Path, access_log: Path | None = None):
    """The same answers as a WSGI application."""
    resolver = Resolver(www)
    access = AccessLog(access_log)

    def app(environ, start_response):
        headers = {key[5:].replace("_", "-").lower(): value
                   for key, value in environ.items() if key.startswith("HTTP_")}
        target = quote(environ.get("PATH_INFO", "/"))
        if environ.get("QUERY_STRING"):
            target += "?" + environ["QUERY_STRING"]
        method = environ["REQUEST_METHOD"]
        reply = resolver.handle(method, target, headers)
        reason = REASONS.get(reply.status, "Unknown")
        start_response(f"{reply.status} {reason}",
                       [*reply.headers, ("Content-Length", str(reply.size))])
        access.write(environ.get("REMOTE_ADDR", "-"),
                     f"{method} {target} {environ.get('SERVER_PROTOCOL', 'HTTP/1.1')}",
                     reply.status, reply.size, headers.get("referer", ""),
                     headers.get("user-agent", ""))
        access.flush()
        if method == "HEAD":
            return [b""]
        if reply.file is not None:
            with open(reply.file, "rb") as f:
                f.seek(reply.offset)
                return [f.read(reply.length)]
        return [reply.body]

    return app


class ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        pass


def run(app, host: str, port: int) -> None:
    """Run a WSGI application (the intake) on a threaded server."""
    server = make_server(host, port, app, server_class=ThreadingServer,
                         handler_class=QuietHandler)
    print(f"listening on http://{host}:{server.server_port}/", flush=True)
    server.serve_forever()
