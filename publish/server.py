"""`publish serve`: www/ served over HTTP the way production's nginx serves it.

One resolver decides every answer (negotiation, redirects, ETag, Range, content
types). uvicorn (httptools' parser, llhttp) carries it for `publish serve` through a
small ASGI adapter, with a deadline and a size limit for every request head; a WSGI
adapter carries it for embedding. Small files are kept in memory with their headers
made once, and re-read when their mtime, size or inode change, so the publisher can
rewrite www/ under a running server. The intake, a WSGI application, runs on
waitress (`run`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import resource
import signal
import socket
import stat
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import formatdate, parsedate_to_datetime
from pathlib import Path
from urllib.parse import quote, unquote

from packaging.utils import canonicalize_name

from publish.badge import FALLBACK
from publish.negotiation import choose
from publish.releases import CODENAMES

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
    ".xml": "application/atom+xml",  # the only XML in www/ is Atom feeds
    ".txt": "text/plain; charset=utf-8",
    ".gz": "application/gzip",
}
# Pages whose form is negotiated on Accept (PEP 691): the root and each project,
# of /simple/ and of each release's index, /<codename>/simple/.
NEGOTIATED_TOPS = ("simple", *(f"{codename}/simple" for codename in CODENAMES))
CANONICAL_TOPS = ("simple", "project", *(f"{codename}/simple" for codename in CODENAMES))
CACHE_LIMIT = 256 * 1024  # files up to this size are kept in memory
FILE_CHUNK = 256 * 1024  # larger files are sent in pieces of this size
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
        if (len(segments) == 4 or len(segments) == 5 and not segments[4]) and segments[3] \
                and segments[1] != "simple" and f"{segments[1]}/{segments[2]}" in NEGOTIATED_TOPS:
            return self._release_page(path, segments, headers)
        fs_path = self.root + path
        try:
            info = os.stat(fs_path)
        except (FileNotFoundError, NotADirectoryError):
            if _is_badge(segments):  # as nginx.conf: a README's image does not break
                return self.handle(method, f"/{FALLBACK}", headers)
            return _plain(404, "not found\n")
        except OSError:
            return _plain(404, "not found\n")
        extra: list[tuple[str, str]] = []
        forced_type = None
        if stat.S_ISDIR(info.st_mode):
            if not path.endswith("/"):
                return _plain(301, "", [("Location", quote(path) + "/")])
            index = "index.html"
            if len(segments) in (3, 4) and segments[1] in NEGOTIATED_TOPS \
                    or len(segments) == 4 and f"{segments[1]}/{segments[2]}" in NEGOTIATED_TOPS:
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

    def _release_page(self, path: str, segments: list[str], headers: dict[str, str]
                      ) -> Reply:
        """/<codename>/simple/<project>/, whose two forms are kept beside the
        project's own pages, as www/simple/<project>/<codename>.html and .json
        (publish.index.release_pages), as nginx.conf maps them."""
        codename, name = segments[1], segments[3]
        page = f"{self.root}/simple/{name}/{codename}.html"
        if len(segments) == 4:  # no trailing slash: as for a directory
            if os.path.isfile(page):
                return _plain(301, "", [("Location", quote(path) + "/")])
            return _plain(404, "not found\n")
        extra = [("Vary", "Accept")]
        choice = choose(headers.get("accept"))
        if choice is None:
            return _plain(406, "acceptable forms: application/vnd.pypi.simple.v1+json,"
                          " application/vnd.pypi.simple.v1+html, text/html\n", extra)
        fs_path = page[:-len("html")] + choice.suffix
        try:
            info = os.stat(fs_path)
        except OSError:
            return _plain(404, "not found\n", extra)
        if not stat.S_ISREG(info.st_mode):
            return _plain(404, "not found\n", extra)
        return self._file(fs_path, info, headers, extra, choice.content_type, path)

    def _file(self, fs_path: str, info: os.stat_result, headers: dict[str, str],
              extra: list[tuple[str, str]], forced_type: str | None, path: str) -> Reply:
        key = (info.st_mtime_ns, info.st_size, info.st_ino)
        cached = self.cache.get(fs_path)
        if cached is None or cached.key != key:
            # A symbolic link in www/ may lead anywhere: serve only what lies inside.
            # Checked when a file is first read or has changed; a cached file that
            # became a link elsewhere has another inode, so it is checked again.
            if not os.path.realpath(fs_path).startswith(self.root + os.sep):
                return _plain(404, "not found\n")
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


def _is_badge(segments: list[str]) -> bool:
    """/project/<name>/badge.svg"""
    return len(segments) == 4 and segments[1] == "project" and segments[3] == "badge.svg"


def _canonical_redirect(segments: list[str]) -> str | None:
    """/simple/Foo_Bar/ and /simple/Foo_Bar go to /simple/foo-bar/ (and so for
    /project/ and /<codename>/simple/): pip asks by canonical name, people may not."""
    top = 1 if len(segments) > 1 and segments[1] in CANONICAL_TOPS else 2
    if len(segments) < top + 2 or "/".join(segments[1:top + 1]) not in CANONICAL_TOPS \
            or not segments[top + 1]:
        return None
    name = segments[top + 1]
    if name in ("index.html", "index.json"):
        return None
    canonical = canonicalize_name(name)
    if canonical == name:
        return None
    rest = "/".join(segments[top + 2:])
    return f"/{'/'.join(segments[1:top + 1])}/{canonical}/{rest}"


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


_UNSAFE = re.compile(r'[^\x20\x21\x23-\x5b\x5d-\x7e]')  # what _escape rewrites


def _escape(text: str) -> str:
    # As nginx does: quotes, backslashes and control bytes become \xHH.
    if not _UNSAFE.search(text):
        return text
    return "".join(c if 32 <= ord(c) < 127 and c not in '"\\' else
                   "".join(f"\\x{b:02X}" for b in c.encode()) for c in text)


@dataclass(frozen=True)
class Limits:
    """What one client may hold of `publish serve`. `idle_timeout` bounds both the
    wait for a new connection's first request and the keep-alive wait between
    requests; a request head must also arrive whole within it, so a client trickling
    bytes holds a connection no longer than one that sends nothing."""

    idle_timeout: float = 15.0
    max_head: int = 32 * 1024  # bytes of request line and headers, as nginx's 4 x 8k
    max_connections: int = 4096  # per process; past it new requests get 503
    backlog: int = 1024
    shutdown_grace: float = 5.0  # seconds for answers in flight on SIGTERM


class AsgiApp:
    """The resolver's answers as an ASGI application, with the access log."""

    def __init__(self, www: Path, access: AccessLog):
        self.resolver = Resolver(www)
        self.access = access

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] == "http":
            await self._http(scope, send)
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Callable, send: Callable) -> None:
        flusher = None
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                flusher = asyncio.get_running_loop().create_task(self._flush_each_second())
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if flusher is not None:
                    flusher.cancel()
                self.access.flush()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _flush_each_second(self) -> None:
        # The log is buffered; `stats follow` reads it within about a second.
        while True:
            await asyncio.sleep(1.0)
            self.access.flush()

    async def _http(self, scope: dict, send: Callable) -> None:
        headers = {name.decode("latin-1"): value.decode("latin-1")
                   for name, value in scope["headers"]}
        method = scope["method"]
        target = scope["raw_path"].decode("latin-1")
        if scope["query_string"]:
            target += "?" + scope["query_string"].decode("latin-1")
        extra: list[tuple[bytes, bytes]] = []
        if headers.get("content-length", "0") != "0" or "transfer-encoding" in headers:
            # We take no bodies; whatever follows the head is not trusted as a request.
            reply = _plain(400, "no request bodies here\n")
            extra.append((b"connection", b"close"))
        else:
            try:
                reply = self.resolver.handle(method, target, headers)
            except Exception:
                log.exception("error answering %s %s", method, target)
                reply = _plain(500, "internal error\n")
        await send({"type": "http.response.start", "status": reply.status, "headers": [
            (b"server", b"wheelwright"),
            *((k.encode("latin-1"), v.encode("latin-1")) for k, v in reply.headers),
            (b"content-length", str(reply.size).encode()), *extra]})
        client = scope.get("client")
        self.access.write(client[0] if client else "-",
                          f"{method} {target} HTTP/{scope['http_version']}", reply.status,
                          0 if method == "HEAD" else reply.size, headers.get("referer", ""),
                          headers.get("user-agent", ""))
        if method == "HEAD" or reply.file is None:
            await send({"type": "http.response.body", "body": b"" if method == "HEAD"
                        else reply.body})
            return
        # Large files (wheels) in pieces; send() waits while the client is slow to read.
        with open(reply.file, "rb") as f:
            f.seek(reply.offset)
            left = reply.length
            while left > 0:
                chunk = f.read(min(left, FILE_CHUNK))
                if not chunk:  # the file shrank under us: the server closes the connection
                    raise OSError(f"{reply.file} shorter than when it was opened")
                left -= len(chunk)
                await send({"type": "http.response.body", "body": chunk,
                            "more_body": left > 0})


def _protocol_class(limits: Limits) -> type:
    """uvicorn's httptools protocol with the two bounds it lacks: a deadline for each
    request head (uvicorn's keep-alive timer starts only after a first answer, so a
    connection that never sends a request stays open) and a size for it (llhttp
    accepts headers of any length)."""
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class Protocol(HttpToolsProtocol):
        head_deadline: asyncio.TimerHandle | None = None
        unparsed = 0  # bytes received since the last complete request head

        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            self._arm()

        def data_received(self, data: bytes) -> None:
            self.unparsed += len(data)
            if self.unparsed > limits.max_head:
                # Counted per read, so a client pipelining more than max_head bytes
                # in one packet is refused too; none we serve does.
                self._disarm()
                self.transport.write(b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
                                     b"content-length: 0\r\nconnection: close\r\n\r\n")
                self.transport.close()
                return
            super().data_received(data)

        def on_headers_complete(self) -> None:
            self.unparsed = 0
            self._disarm()
            super().on_headers_complete()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing() and not self.pipeline:
                self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _arm(self) -> None:
            self._disarm()
            self.head_deadline = self.loop.call_later(limits.idle_timeout, self._expired)

        def _disarm(self) -> None:
            if self.head_deadline is not None:
                self.head_deadline.cancel()
                self.head_deadline = None

        def _expired(self) -> None:
            self.head_deadline = None
            if self.cycle is None or self.cycle.response_complete:
                self.transport.close()

    return Protocol


def _uvicorn(app: AsgiApp, limits: Limits):
    import uvicorn

    config = uvicorn.Config(
        app, http=_protocol_class(limits), lifespan="on", access_log=False,
        log_config=None, log_level="error", server_header=False, proxy_headers=False,
        timeout_keep_alive=max(1, int(limits.idle_timeout)),
        limit_concurrency=limits.max_connections, backlog=limits.backlog,
        timeout_graceful_shutdown=max(1, int(limits.shutdown_grace)))
    return uvicorn.Server(config)


def _listen(host: str, port: int, backlog: int, reuse_port: bool) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(backlog)
    sock.set_inheritable(True)
    return sock


def _allow_connections(limits: Limits) -> None:
    """Raise the soft limit on open files so max_connections can be reached."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = limits.max_connections + 256
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (
            wanted if hard == resource.RLIM_INFINITY else min(wanted, hard), hard))


@dataclass
class WebServer:
    url: str
    server: object  # uvicorn.Server
    access: AccessLog
    thread: threading.Thread

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(30)
        self.access.close()


def start_in_thread(www: Path, access_log: Path | None, host: str = "127.0.0.1",
                    port: int = 0, limits: Limits | None = None) -> WebServer:
    """The web server on its own event loop in a thread; for tests and screenshots.
    The socket listens before this returns, so clients may connect at once."""
    limits = limits or Limits()
    access = AccessLog(access_log)
    sock = _listen(host, port, limits.backlog, reuse_port=False)
    server = _uvicorn(AsgiApp(www, access), limits)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    bound = sock.getsockname()
    return WebServer(f"http://{bound[0]}:{bound[1]}/", server, access, thread)


def serve_forever(www: Path, access_log: Path, host: str, port: int, processes: int = 1,
                  ready: Callable[[str], None] = print, limits: Limits | None = None) -> None:
    """`publish serve`: one uvicorn per process, each on its own SO_REUSEPORT socket
    so the kernel spreads connections; SIGINT or SIGTERM stop them all."""
    limits = limits or Limits()
    _allow_connections(limits)
    first = _listen(host, port, limits.backlog, reuse_port=processes > 1)
    bound = first.getsockname()
    sockets = [first] + [_listen(host, bound[1], limits.backlog, reuse_port=True)
                         for _ in range(processes - 1)]
    children = []
    for sock in sockets[1:]:
        pid = os.fork()
        if pid == 0:
            try:
                _serve_one(www, access_log, sock, limits)
            finally:
                os._exit(0)
        children.append(pid)
        sock.close()
    ready(f"serving {www} on http://{bound[0]}:{bound[1]}/")
    try:
        _serve_one(www, access_log, first, limits)
    finally:
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            os.waitpid(pid, 0)


def _serve_one(www: Path, access_log: Path, sock: socket.socket, limits: Limits) -> None:
    access = AccessLog(access_log)
    server = _uvicorn(AsgiApp(www, access), limits)

    def stop(_signum, _frame) -> None:
        server.should_exit = True

    # uvicorn catches these while it serves and raises them again once it has
    # stopped; ours then only ask it to stop, so there is no KeyboardInterrupt.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, stop)
    try:
        server.run(sockets=[sock])
    finally:
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


@dataclass(frozen=True)
class IntakeLimits:
    """waitress's bounds for the intake. waitress reads a whole request body (to a
    temporary file past 512 kB) before the application runs, and refuses one
    declared larger than max_body with a 413 of its own without reading it."""

    max_body: int = 1 << 30
    idle_timeout: int = 60  # seconds a connection may stay silent (checked each sweep)
    sweep: int = 10  # seconds between checks for silent connections
    max_head: int = 32 * 1024
    threads: int = 4  # requests handled at once (each a SQLite write and file moves)
    max_connections: int = 100


@dataclass
class WsgiServer:
    url: str
    server: object  # waitress's server
    thread: threading.Thread
    stopped: threading.Event

    def stop(self) -> None:
        self.stopped.set()
        self.server.pull_trigger()
        self.thread.join(30)


def _waitress(app, host: str, port: int, limits: IntakeLimits) -> tuple[object, dict]:
    from waitress.server import create_server

    sockets: dict = {}
    server = create_server(
        app, map=sockets, host=host, port=port, threads=limits.threads,
        channel_timeout=limits.idle_timeout, cleanup_interval=limits.sweep,
        max_request_header_size=limits.max_head, max_request_body_size=limits.max_body,
        connection_limit=limits.max_connections, asyncore_use_poll=True,
        ident="wheelwright", expose_tracebacks=False)
    return server, sockets


def _run_waitress(server, sockets: dict, stopped: threading.Event) -> None:
    from waitress import wasyncore

    try:
        while not stopped.is_set():
            wasyncore.loop(timeout=1.0, map=sockets, use_poll=True, count=1)
    finally:
        server.task_dispatcher.shutdown()
        wasyncore.close_all(sockets)


def start_wsgi_in_thread(app, host: str = "127.0.0.1", port: int = 0,
                         limits: IntakeLimits | None = None) -> WsgiServer:
    """A WSGI application (the intake, or make_app's) on waitress in a thread."""
    server, sockets = _waitress(app, host, port, limits or IntakeLimits())
    stopped = threading.Event()
    thread = threading.Thread(target=_run_waitress, args=(server, sockets, stopped),
                              daemon=True)
    thread.start()
    return WsgiServer(f"http://{host}:{server.effective_port}/", server, thread, stopped)


def run(app, host: str, port: int, limits: IntakeLimits | None = None) -> None:
    """Run a WSGI application (the intake) on waitress until SIGINT or SIGTERM."""
    server, sockets = _waitress(app, host, port, limits or IntakeLimits())
    stopped = threading.Event()

    def stop(_signum, _frame) -> None:
        stopped.set()
        server.pull_trigger()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, stop)
    print(f"listening on http://{host}:{server.effective_port}/", flush=True)
    _run_waitress(server, sockets, stopped)
