"""`publish serve`: www/ served over HTTP the way production's nginx serves it."""

from __future__ import annotations

import mimetypes
from pathlib import Path
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import bottle

# bottle would guess text/html for .whl; pip and browsers want these.
CONTENT_TYPES = {
    ".whl": "application/octet-stream",
    ".metadata": "text/plain; charset=utf-8",
    ".json": "application/json",
    ".gz": "application/gzip",
    ".html": "text/html; charset=utf-8",
}


def content_type(path: Path) -> str:
    return CONTENT_TYPES.get(path.suffix) or mimetypes.guess_type(path.name)[0] or \
        "application/octet-stream"


def make_app(www: Path) -> bottle.Bottle:
    app = bottle.Bottle()
    root = www.resolve()

    @app.get("/")
    @app.get("/<path:path>")
    def serve(path: str = ""):
        target = (root / path).resolve()
        if not target.is_relative_to(root):
            raise bottle.HTTPError(404)
        if target.is_dir():
            if path and not path.endswith("/"):
                raise bottle.redirect(f"/{path}/", 301)
            target = target / "index.html"
        if not target.is_file():
            raise bottle.HTTPError(404, "not found")
        return bottle.static_file(str(target.relative_to(root)), root=str(root),
                                  mimetype=content_type(target))

    return app


class ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        pass


def run(app: bottle.Bottle, host: str, port: int) -> None:
    server = make_server(host, port, app, server_class=ThreadingServer)
    print(f"listening on http://{host}:{server.server_port}/", flush=True)
    server.serve_forever()
