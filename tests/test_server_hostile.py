"""`publish serve`, and nginx with publish/nginx.conf, against hostile requests on raw
sockets: request smuggling with Content-Length and Transfer-Encoding, oversized heads,
a thousand idle connections, encoded traversal and symbolic links out of www/, bad
Range headers. Each gets a 4xx or a closed connection (a bad Range may also be
ignored, as RFC 9110 says, for the whole file), and no answer holds a byte of the
secret planted beside www/."""

from __future__ import annotations

import contextlib
import os
import re
import resource
import selectors
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from publish.server import IntakeLimits, Limits, start_in_thread
from tests.servers import nginx_binary, serve, start_nginx

IDLE_TIMEOUT = 2.0  # seconds; both servers are started with it for these tests
SECRET = b"wheelwright-secret-" + os.urandom(8).hex().encode()
FILE = b"0123456789" * 10  # www/file.txt
NOBODY = 65534
SMUGGLED = b"GET /simple/alpha/ HTTP/1.1\r\nHost: x\r\n\r\n"


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes


@dataclass
class Exchange:
    raw: bytes
    closed: bool  # the server closed the connection (or reset it)
    responses: list[Response] = field(default_factory=list)

    @property
    def statuses(self) -> list[int]:
        return [r.status for r in self.responses]


@dataclass
class Target:
    kind: str
    url: str
    port: int
    www: Path


def parse(raw: bytes) -> list[Response]:
    """The responses in a byte stream, framed by Content-Length as both servers send."""
    responses, rest = [], raw
    while rest.startswith(b"HTTP/1."):
        head, sep, rest = rest.partition(b"\r\n\r\n")
        if not sep:
            break
        lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", len(rest)))
        responses.append(Response(int(lines[0].split()[1]), headers, rest[:length]))
        rest = rest[length:]
    return responses


def exchange(target: Target, payload: bytes, wait: float = 5.0) -> Exchange:
    """Send `payload` and read until the server closes or `wait` seconds pass."""
    chunks, closed = [], False
    with socket.create_connection(("127.0.0.1", target.port), timeout=wait) as sock:
        # It may refuse before we finish sending: what it wrote is still readable.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(payload)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                break
            except ConnectionResetError:
                closed = True
                break
            if not chunk:
                closed = True
                break
            chunks.append(chunk)
    raw = b"".join(chunks)
    return Exchange(raw, closed, parse(raw))


def get(target: Target, path: str, *headers: str) -> Exchange:
    head = [f"GET {path} HTTP/1.1", "Host: x", "Connection: close", *headers]
    return exchange(target, ("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    """data/www with a few files and links out of it; data/secret.txt and
    data/outside/secret.txt hold the secret. The outside files belong to another
    user when we are root, as /etc or another service's files would: nginx's
    `disable_symlinks if_not_owner` refuses links whose target's owner differs."""
    data = tmp_path_factory.mktemp("hostile")
    www = data / "www"
    (www / "simple" / "alpha").mkdir(parents=True)
    (www / "index.html").write_text("<html>home</html>\n")
    (www / "simple" / "index.html").write_text("<html>simple</html>\n")
    (www / "simple" / "index.json").write_text('{"projects": []}\n')
    (www / "simple" / "alpha" / "index.html").write_text("<html>alpha</html>\n")
    (www / "simple" / "alpha" / "index.json").write_text('{"files": []}\n')
    (www / "file.txt").write_bytes(FILE)
    outside = data / "outside"
    outside.mkdir()
    for secret in (data / "secret.txt", outside / "secret.txt"):
        secret.write_bytes(SECRET)
    (www / "leak.txt").symlink_to("../outside/secret.txt")
    (www / "abs.txt").symlink_to(outside / "secret.txt")
    (www / "simple" / "leak").symlink_to("../../outside")
    if os.geteuid() == 0:
        for path in (outside, outside / "secret.txt", data / "secret.txt"):
            os.chown(path, NOBODY, NOBODY)
    return data


@pytest.fixture(scope="module", params=["publish-serve",
                                        pytest.param("nginx", marks=pytest.mark.nginx)])
def target(request, tree):
    if request.param == "nginx":
        if nginx_binary() is None:
            pytest.skip("nginx is not installed")
        timeout = f"{IDLE_TIMEOUT:.0f}s"
        nginx = start_nginx(tree, {"client_header_timeout": timeout,
                                   "keepalive_timeout": timeout})
        yield Target("nginx", nginx.url, nginx.port, tree / "www")
        nginx.stop()
    else:
        web = start_in_thread(tree / "www", tree / "logs" / "serve.log",
                              limits=Limits(idle_timeout=IDLE_TIMEOUT))
        port = int(web.url.rsplit(":", 1)[1].strip("/"))
        yield Target("publish-serve", web.url, port, tree / "www")
        web.stop()


def refused(result: Exchange) -> bool:
    """A 4xx and nothing more, or a close without an answer."""
    if not result.responses:
        return result.closed
    return len(result.responses) == 1 and 400 <= result.statuses[0] < 500


def still_answers(target: Target) -> None:
    response = get(target, "/file.txt")
    assert response.statuses == [200] and response.responses[0].body == FILE


SMUGGLING = {
    "conflicting Content-Length": (
        b"GET /file.txt HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\nContent-Length: 0\r\n"
        b"\r\n" % len(SMUGGLED) + SMUGGLED),
    "conflicting Content-Length, zero first": (
        b"GET /file.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nContent-Length: %d\r\n"
        b"\r\n" % len(SMUGGLED) + SMUGGLED),
    "duplicate Content-Length": (
        b"GET /file.txt HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\nContent-Length: %d\r\n"
        b"\r\n" % (len(SMUGGLED), len(SMUGGLED)) + SMUGGLED),
    "Content-Length as a list": (
        b"GET /file.txt HTTP/1.1\r\nHost: x\r\nContent-Length: %d, 0\r\n\r\n"
        % len(SMUGGLED) + SMUGGLED),
    "Transfer-Encoding with Content-Length": (
        b"GET /file.txt HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
        b"Content-Length: 5\r\n\r\n0\r\n\r\n" + SMUGGLED),
    "Content-Length with Transfer-Encoding": (
        b"GET /file.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + SMUGGLED),
    "Transfer-Encoding with a space before the colon": (
        b"GET /file.txt HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\n"
        b"Content-Length: 5\r\n\r\n0\r\n\r\n" + SMUGGLED),
}


@pytest.mark.parametrize("case", list(SMUGGLING))
def test_smuggling_is_refused(target, case):
    result = exchange(target, SMUGGLING[case])
    assert refused(result), (case, result.raw[:300])
    assert b"alpha" not in result.raw  # the smuggled request was never answered
    still_answers(target)


OVERSIZED = {
    "a 100 kB header": b"GET /file.txt HTTP/1.1\r\nHost: x\r\nX-Big: "
                       + b"a" * 100_000 + b"\r\n\r\n",
    "2,000 headers": b"GET /file.txt HTTP/1.1\r\nHost: x\r\n"
                     + b"".join(b"X-H%d: %s\r\n" % (i, b"v" * 40) for i in range(2000))
                     + b"\r\n",
    "a 100 kB request line": b"GET /" + b"a" * 100_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    "a 1 MB header without end": b"GET /file.txt HTTP/1.1\r\nHost: x\r\nX-Big: "
                                 + b"a" * 1_000_000,
}


@pytest.mark.parametrize("case", list(OVERSIZED))
def test_oversized_heads_are_refused(target, case):
    result = exchange(target, OVERSIZED[case])
    assert refused(result), (case, result.raw[:300])
    still_answers(target)


TRAVERSALS = [
    "/../secret.txt", "/%2e%2e/secret.txt", "/%2E%2E/secret.txt", "/.%2e/secret.txt",
    "/simple/%2e%2e/%2e%2e/secret.txt", "/simple/alpha/..%2f..%2f..%2fsecret.txt",
    "/simple/alpha/%2e%2e%2f%2e%2e%2f%2e%2e%2fsecret.txt", "/..%5csecret.txt",
    "/simple/..%5c..%5csecret.txt", "/simple\\..\\..\\secret.txt", "/%5c..%5csecret.txt",
    "/%252e%252e/secret.txt", "/simple/%00/../../secret.txt", "/./../secret.txt",
    "http://x/../secret.txt", "/leak.txt", "/abs.txt", "/simple/leak/secret.txt",
    "/simple/leak/../../secret.txt", "//outside/secret.txt", "/outside/secret.txt",
]


@pytest.mark.parametrize("path", TRAVERSALS)
def test_nothing_outside_www(target, path):
    links_out = "leak" in path or path == "/abs.txt"
    if target.kind == "nginx" and links_out and os.geteuid() != 0:
        pytest.skip("nginx follows links to files of the same owner; "
                    "the outside files can be given to another user only as root")
    result = get(target, path)
    assert SECRET not in result.raw, path
    assert refused(result), (path, result.raw[:300])


RANGES = ["bytes=5-1", "bytes=abc", "bytes=0-1,3-4", "bytes=0-1,0-1,0-1,0-1,0-1",
          "bytes=99999999999999999999999-", "bytes=0-99999999999999999999999",
          "bytes=-99999999999999999999999", "bytes=--1", "bytes=1-2-3", "bytes=-0",
          "bytes=" + "9" * 5000 + "-", "items=0-1", "bytes=100-", "bytes=-"]


@pytest.mark.parametrize("value", RANGES)
def test_bad_ranges(target, value):
    """416, or the Range ignored (the whole file), or a slice that is really the file's:
    never an error of the server, never other bytes."""
    result = get(target, "/file.txt", f"Range: {value}")
    [response] = result.responses
    assert SECRET not in result.raw
    assert response.status in (200, 206, 416), (value, result.raw[:300])
    if response.status == 200:
        assert response.body == FILE
    elif response.status == 206 and "content-range" in response.headers:
        first, last = map(int, re.match(r"bytes (\d+)-(\d+)/100$",
                                        response.headers["content-range"]).groups())
        assert response.body == FILE[first:last + 1]
    elif response.status == 206:  # several ranges in one multipart answer
        assert response.headers["content-type"].startswith("multipart/byteranges")
    still_answers(target)


def _allow_files(count: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < count:
        pytest.skip(f"RLIMIT_NOFILE hard limit {hard} is below {count}")
    if soft != resource.RLIM_INFINITY and soft < count:
        resource.setrlimit(resource.RLIMIT_NOFILE, (count, hard))


def test_idle_connections_are_closed_while_others_are_served(target):
    _allow_files(4096)  # ours and, for publish serve, the server's ends too
    silent = [socket.create_connection(("127.0.0.1", target.port), timeout=10)
              for _ in range(1000)]
    trickling = []  # a head begun and never finished
    for _ in range(10):
        sock = socket.create_connection(("127.0.0.1", target.port), timeout=10)
        sock.sendall(b"GET /file.txt HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        trickling.append(sock)
    kept = []  # answered once, then silent on a keep-alive connection
    for _ in range(10):
        sock = socket.create_connection(("127.0.0.1", target.port), timeout=10)
        sock.sendall(b"GET /file.txt HTTP/1.1\r\nHost: x\r\n\r\n")
        kept.append(sock)
    opened = time.monotonic()
    try:
        with requests.Session() as session:  # meanwhile another client is answered
            for _ in range(20):
                response = session.get(target.url + "file.txt", timeout=10)
                assert response.status_code == 200 and response.content == FILE
        still_answers(target)
        # Every idle connection is closed by the server within its timeout.
        selector = selectors.DefaultSelector()
        for sock in silent + trickling + kept:
            sock.setblocking(False)
            selector.register(sock, selectors.EVENT_READ)
        still_open = len(silent) + len(trickling) + len(kept)
        deadline = opened + IDLE_TIMEOUT + 10
        while still_open and time.monotonic() < deadline:
            for key, _ in selector.select(timeout=max(0.0, deadline - time.monotonic())):
                try:
                    data = key.fileobj.recv(65536)
                except ConnectionResetError:
                    data = b""
                if not data:
                    selector.unregister(key.fileobj)
                    still_open -= 1
        assert still_open == 0, f"{still_open} idle connections still open"
        elapsed = time.monotonic() - opened
        assert elapsed >= IDLE_TIMEOUT * 0.5, f"closed after {elapsed:.1f} s: too early"
        still_answers(target)
    finally:
        for sock in silent + trickling + kept:
            sock.close()


@pytest.fixture(scope="module")
def intake_target(tree):
    """A WSGI application on waitress with the intake's kind of limits."""
    def app(environ, start_response):
        body = environ["wsgi.input"].read()
        start_response("200 OK", [("Content-Type", "text/plain"),
                                  ("Content-Length", str(len(body)))])
        return [body]

    server = serve(app, IntakeLimits(max_body=1000, idle_timeout=int(IDLE_TIMEOUT), sweep=1))
    port = int(server.url.rsplit(":", 1)[1].strip("/"))
    yield Target("intake", server.url, port, tree / "www")
    server.stop()


@pytest.mark.parametrize("case", [c for c in SMUGGLING if "Transfer-Encoding" not in c]
                         + ["Transfer-Encoding with a space before the colon"])
def test_intake_refuses_conflicting_lengths(intake_target, case):
    # waitress reads Transfer-Encoding with Content-Length as RFC 9112 says (the
    # chunks frame the body, the length is ignored): no smuggling, but no refusal.
    assert refused(exchange(intake_target, SMUGGLING[case]))


@pytest.mark.parametrize("case", list(OVERSIZED))
def test_intake_refuses_oversized_heads(intake_target, case):
    assert refused(exchange(intake_target, OVERSIZED[case]))


def test_intake_refuses_a_body_over_its_limit_unread(intake_target):
    result = exchange(intake_target, b"POST /builds HTTP/1.1\r\nHost: x\r\n"
                                     b"Content-Length: 1000000\r\n\r\n")
    assert result.statuses == [413] and result.closed


def test_intake_closes_idle_connections(intake_target):
    opened = time.monotonic()
    idle = [socket.create_connection(("127.0.0.1", intake_target.port), timeout=10)
            for _ in range(50)]
    try:
        # The sweep runs each second: closed within the timeout and one sweep or two.
        for sock in idle:
            sock.settimeout(max(0.1, opened + IDLE_TIMEOUT + 5 - time.monotonic()))
            with contextlib.suppress(ConnectionResetError):  # a reset is a close too
                assert sock.recv(1) == b""
    finally:
        for sock in idle:
            sock.close()
