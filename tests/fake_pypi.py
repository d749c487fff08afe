"""A local stand-in for PyPI: its XML-RPC changelog methods and its JSON API, with
faults that a test switches on. The only fake in the test suite: PyPI itself."""

from __future__ import annotations

import json
import threading
import time
import xmlrpc.client
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

FAULTS = ("429", "rate-limit", "500", "503", "timeout", "truncated", "garbage", "wrong-shape")


@dataclass
class FakePyPIState:
    rows: list[list] = field(default_factory=list)  # [name, version, timestamp, action, serial]
    page: int = 50_000
    faults: list[str] = field(default_factory=list)  # consumed one per XML-RPC request
    json_faults: list[str] = field(default_factory=list)  # consumed one per JSON request
    hidden: dict[int, int] = field(default_factory=dict)  # serial: calls before it shows
    projects: dict[str, dict] = field(default_factory=dict)  # canonical name: JSON body
    timeout_sleep: float = 1.0
    calls: int = 0
    json_calls: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def visible(self) -> list[list]:
        return [r for r in self.rows if self.hidden.get(r[4], 0) <= self.calls]


class _Handler(BaseHTTPRequestHandler):
    state: FakePyPIState

    def log_message(self, *args) -> None:
        pass

    def _send(self, status: int, body: bytes, content_type: str, length: int | None = None):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        self.end_headers()
        self.wfile.write(body)

    def _fault(self, fault: str, body: bytes) -> bool:
        """Answer with the fault; True if it was answered."""
        if fault == "429":
            self._send(429, b"slow down", "text/plain")
        elif fault == "rate-limit":
            fault_body = xmlrpc.client.dumps(
                xmlrpc.client.Fault(-32500, "HTTPTooManyRequests: slow down"), methodresponse=True)
            self._send(200, fault_body.encode(), "text/xml")
        elif fault in ("500", "503"):
            self._send(int(fault), b"upstream trouble", "text/plain")
        elif fault == "timeout":
            time.sleep(self.state.timeout_sleep)
            self._send(200, body, "text/xml")
        elif fault == "truncated":
            self._send(200, body[: len(body) // 2], "text/xml", length=len(body))
            self.close_connection = True
        elif fault == "garbage":
            self._send(200, b"<html><body>maintenance</body>", "text/xml")
        else:
            return False
        return True

    def do_POST(self) -> None:  # XML-RPC
        request = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        params, method = xmlrpc.client.loads(request)
        state = self.state
        with state.lock:
            fault = state.faults.pop(0) if state.faults else None
            if method == "changelog_last_serial":
                visible = state.visible()
                result = max((r[4] for r in visible), default=0)
            elif method == "changelog_since_serial":
                state.calls += 1
                since = params[0]
                result = sorted((r for r in state.visible() if r[4] > since),
                                key=lambda r: r[4])[: state.page]
            else:
                body = xmlrpc.client.dumps(xmlrpc.client.Fault(1, f"no method {method}"),
                                           methodresponse=True)
                self._send(200, body.encode(), "text/xml")
                return
        if fault == "wrong-shape":
            result = {"unexpected": "shape"}
        body = xmlrpc.client.dumps((result,), methodresponse=True, allow_none=True).encode()
        if fault is None or not self._fault(fault, body):
            self._send(200, body, "text/xml")

    def do_GET(self) -> None:  # the JSON API: /pypi/<name>/json
        parts = self.path.strip("/").split("/")
        state = self.state
        with state.lock:
            fault = state.json_faults.pop(0) if state.json_faults else None
            if len(parts) == 3 and parts[0] == "pypi" and parts[2] == "json":
                state.json_calls.append(parts[1])
        if fault in ("500", "503", "429"):
            self._send(int(fault), b"upstream trouble", "text/plain")
            return
        if fault == "garbage":
            self._send(200, b"{not json", "application/json")
            return
        if len(parts) != 3 or parts[0] != "pypi" or parts[2] != "json":
            self._send(404, b"not found", "text/plain")
            return
        project = state.projects.get(parts[1])
        if project is None:
            self._send(404, b'{"message": "Not Found"}', "application/json")
            return
        self._send(200, json.dumps(project).encode(), "application/json")


@dataclass
class FakePyPI:
    state: FakePyPIState
    server: ThreadingHTTPServer
    thread: threading.Thread

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}"

    @property
    def xmlrpc_url(self) -> str:
        return self.url + "/pypi"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)


def start(state: FakePyPIState | None = None) -> FakePyPI:
    state = state or FakePyPIState()
    handler = type("Handler", (_Handler,), {"state": state})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return FakePyPI(state, server, thread)


def project_json(name: str, releases: dict[str, str | None], summary: str = "") -> dict:
    """A JSON API body: releases maps version to Requires-Python."""
    return {
        "info": {"name": name, "summary": summary, "requires_python": None},
        "releases": {
            version: [{"filename": f"{name}-{version}.tar.gz", "requires_python": requires,
                       "yanked": False, "yanked_reason": None}]
            for version, requires in releases.items()
        },
    }
