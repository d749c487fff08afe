"""Real HTTP servers on loopback for the tests, each in a thread of the test process."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from wsgiref.simple_server import WSGIRequestHandler, make_server

from publish.server import ThreadingServer


class _Quiet(WSGIRequestHandler):
    def log_message(self, *args) -> None:
        pass


@dataclass
class RunningServer:
    url: str
    server: ThreadingServer
    thread: threading.Thread

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)


def serve(app) -> RunningServer:
    server = make_server("127.0.0.1", 0, app, server_class=ThreadingServer,
                         handler_class=_Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return RunningServer(f"http://127.0.0.1:{server.server_port}/", server, thread)
