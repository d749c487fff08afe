"""Real HTTP servers on loopback for the tests: WSGI applications on waitress in a
thread of the test process, as `publish intake` runs them, and Debian's nginx with
publish/nginx.conf in a process of its own."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from publish.server import IntakeLimits, WsgiServer, start_wsgi_in_thread

NGINX_CONF = Path(__file__).resolve().parent.parent / "publish" / "nginx.conf"

RunningServer = WsgiServer


def serve(app, limits: IntakeLimits | None = None) -> WsgiServer:
    return start_wsgi_in_thread(app, "127.0.0.1", 0, limits)


@dataclass
class Nginx:
    url: str  # ends in /
    port: int
    process: subprocess.Popen

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(20)


def nginx_binary() -> str | None:
    return shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx")
                                      else None)


def start_nginx(data: Path, directives: dict[str, str] | None = None) -> Nginx:
    """nginx serving data/www with publish/nginx.conf, logging to data/logs;
    `directives` (name: value) replace the http block's or are added to it, such as
    shorter timeouts for a test."""
    nginx = nginx_binary()
    assert nginx is not None, "callers skip when nginx is absent"
    (data / "logs").mkdir(parents=True, exist_ok=True)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    conf = NGINX_CONF.read_text().replace("/srv/wheelwright/var", str(data))
    conf = conf.replace("listen 8080;", f"listen 127.0.0.1:{port};")
    # Test files are private to the user running the tests.
    conf = conf.replace("user www-data;", "user root;" if os.geteuid() == 0 else "")
    for name, value in (directives or {}).items():
        line = f"    {name} {value};"
        conf, found = re.subn(rf"^    {name} [^;]*;$", line, conf, count=1, flags=re.M)
        if not found:
            conf = conf.replace("http {\n", f"http {{\n{line}\n", 1)
    (data / "nginx.conf").write_text(conf)
    process = subprocess.Popen([nginx, "-c", str(data / "nginx.conf"), "-g", "daemon off;"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return Nginx(f"http://127.0.0.1:{port}/", port, process)
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError(f"nginx did not start: {process.stdout.read()!r}") from None
            time.sleep(0.05)
