"""`python -m ingest up`: the whole system on one machine, one instance per data directory.

The supervisor takes the instance lock, starts the embedded Redis first, runs every
other process of the Procfile with honcho's manager (output prefixed by process
name), and on Ctrl-C or SIGTERM stops them all and then, once none of them can
still be writing to it, stops Redis, which saves its data as it goes. Stopping in
that order is what lets the next start carry on: every job a worker was running
is back on its queue (worker.runner) and saved before Redis goes.

The lock is an flock on DATA/instance.lock, held for the supervisor's life (the
kernel drops it when the process ends, however it ends). While it is held no
other process can be using the embedded Redis of that data directory, so the rq
worker registrations it holds at start are the last run's, and are forgotten.

While the system runs, a process that dies (killed, crashed, out of memory) is
started again after a pause, its rq registrations forgotten, and the others carry
on; a dead embedded Redis is started again at once, from its append-only file, and
its clients reconnect. Only a process that fails soon after each of CRASH_LOOP
starts in a row, which a restart cannot mend (a port in use, a bad setting), stops
the system as honcho would.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import multiprocessing
import os
import queue
import signal
import socket
import sys
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from honcho.environ import parse_procfile
from honcho.manager import KILL_WAIT, SIGNALS, Manager
from honcho.printer import Printer
from redis.exceptions import RedisError
from rq import Worker

from ingest import redis_server, settings
from worker.queues import connect

log = logging.getLogger("ingest")

LOCK_NAME = "instance.lock"
ROOT = Path(__file__).resolve().parent.parent  # where the Procfile's commands run
PROCFILE = ROOT / "Procfile"
REDIS_ENTRY = "redis"  # the Procfile's embedded Redis, which the supervisor runs itself
SIGNAL_CODES = (130, 143)  # honcho's return codes for a stop by SIGINT and SIGTERM
RESTART_PAUSE = 1.0  # seconds before a dead process starts again
QUICK = 10.0  # seconds: a failure this soon after a start may be the start's own fault
CRASH_LOOP = 3  # quick failures in a row that stop the system


class AlreadyRunning(Exception):
    """Another process holds the instance lock of the data directory."""

    def __init__(self, data_dir: Path, pid: int | None) -> None:
        super().__init__(data_dir, pid)
        self.data_dir = data_dir
        self.pid = pid

    def __str__(self) -> str:
        holder = f"pid {self.pid}" if self.pid else "another process"
        stop = f"kill -INT {self.pid}" if self.pid else "Ctrl-C in its terminal"
        return (f"wheelwright is already running on {self.data_dir} ({holder}): use that "
                f"one, stop it first ({stop}), or set WHEELWRIGHT_DATA to another directory")


@dataclass
class InstanceLock:
    """An exclusive flock on DATA/instance.lock, which also records the holder's pid.
    The descriptor is not inherited by the processes the holder starts."""

    data_dir: Path
    fd: int | None = None

    @property
    def path(self) -> Path:
        return self.data_dir / LOCK_NAME

    def acquire(self) -> None:
        """Take the lock, or raise AlreadyRunning naming its holder."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise AlreadyRunning(self.data_dir, self.holder()) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self.fd = fd

    def holder(self) -> int | None:
        """The pid written by the lock's holder, if it has written one yet."""
        try:
            text = self.path.read_text().strip()
        except OSError:
            return None
        return int(text) if text.isdigit() else None

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing the last descriptor drops the flock
            self.fd = None


def procfile_processes(procfile: Path) -> OrderedDict[str, str]:
    """The Procfile's processes (name: command) the supervisor runs: all but Redis."""
    processes = parse_procfile(procfile.read_text()).processes
    processes.pop(REDIS_ENTRY, None)
    return processes


def forget_stale_workers(redis_url: str) -> int:
    """Remove every rq worker registration from the embedded Redis, and the
    registry-cleaning locks they may have held (rq keeps one up to 15 minutes):
    called under the instance lock, before any process starts, when nothing alive
    can own them. Jobs those workers were running stay in rq's started registries,
    where rq's own abandoned-job sweep retries them (the one owner of that work)."""
    conn = connect(redis_url)
    try:
        stale = Worker.all(connection=conn)
        for worker in stale:
            worker.register_death()
        locks = list(conn.scan_iter("rq:clean_registries:*"))
        if locks:
            conn.delete(*locks)
        return len(stale)
    finally:
        conn.close()


def forget_workers_of(redis_url: str, pid: int | None) -> int:
    """Remove the rq registrations of the process `pid` of this machine, which has
    just died, so that dashboards and `ingest status` do not count it. Jobs it was
    running stay in rq's started registries, for their own handling (worker.runner)."""
    if pid is None:
        return 0
    try:
        conn = connect(redis_url, wait=0)
    except RedisError:
        return 0  # Redis died too: it is started again, and the registration expires
    try:
        dead = [worker for worker in Worker.all(connection=conn)
                if worker.pid == pid and worker.hostname == socket.gethostname()]
        for worker in dead:
            worker.register_death()
        return len(dead)
    except RedisError:
        return 0
    finally:
        conn.close()


def child_environment() -> dict[str, str]:
    """The environment of every process: ours, with output unbuffered (honcho reads
    it line by line) and this interpreter first on PATH, so that the Procfile's
    `python` is the one running the supervisor."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def run(config: settings.Settings, procfile: Path = PROCFILE) -> int:
    """Run the system until SIGINT or SIGTERM (0) or until a process fails (its code).
    Raises AlreadyRunning when another instance holds the data directory."""
    lock = InstanceLock(config.data_dir)
    lock.acquire()
    server = manager = None
    try:
        processes = procfile_processes(procfile)
        if not config.redis_url:
            log_file = config.redis_socket.parent / "redis.log"
            server = redis_server.start(config.redis_socket, log=log_file)
            print(f"embedded redis-server on {config.redis_socket} (log: {log_file})",
                  flush=True)
            if forgotten := forget_stale_workers(server.url):
                print(f"forgot {forgotten} worker registrations of the last run", flush=True)
        manager = Supervisor(Printer(sys.stdout), server)
        env = child_environment()
        for name, command in processes.items():
            # honcho runs each command with a shell, which SIGTERM would end first:
            # exec makes the process itself the one signalled, and its status ours.
            manager.add_process(name, f"exec {command}", env=env, cwd=str(ROOT))
        manager.loop()  # returns once every process has stopped
        # Stopped on request, or because a process kept failing (then the rest stop).
        code = manager.returncode
        return 0 if code in SIGNAL_CODES else (code or 1)
    finally:
        server = manager.redis if manager is not None else server
        if server is not None:
            server.stop()  # SIGTERM: redis-server saves its data, then exits
            print("embedded redis-server stopped", flush=True)
        lock.release()


class Supervisor(Manager):
    """honcho's Manager with a restart policy: a process that dies while the system
    runs is started again after RESTART_PAUSE, and so is the embedded Redis
    (`redis`, which we run ourselves), instead of every process being stopped."""

    def __init__(self, printer: Printer, redis: redis_server.RedisServer | None) -> None:
        super().__init__(printer)
        self.redis = redis
        self.restarts: dict[str, float] = {}  # name: when it starts again
        self.started: dict[str, float] = {}  # name: when it last started
        self.quick_failures: dict[str, int] = {}  # name: in a row

    def loop(self) -> None:
        def stop(signum, frame) -> None:
            self._system_print(f"{SIGNALS[signum]['name']} received\n")
            self.returncode = SIGNALS[signum]["rc"]
            self.terminate()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        self._start()
        stopping_since = None
        while not (self._terminating and self._all_stopped()):
            with contextlib.suppress(queue.Empty):
                self._handle(self.events.get(timeout=0.1))
            if self._terminating:
                stopping_since = stopping_since or time.monotonic()
                if time.monotonic() - stopping_since > KILL_WAIT:
                    self.kill()
                continue
            self._revive_redis()
            for name, when in list(self.restarts.items()):
                if time.monotonic() >= when:
                    del self.restarts[name]
                    self._start_one(name)

    def _handle(self, msg) -> None:
        entry = self._processes.get(msg.name, {})
        if msg.type == "line":
            self._printer.write(msg)
        elif msg.type == "start":
            entry["pid"] = msg.data["pid"]
            self.started[msg.name] = time.monotonic()
            self._system_print(f"{msg.name} started (pid={msg.data['pid']})\n")
            if self._terminating:  # restarted just as the stop came
                self._procmgr.terminate(msg.data["pid"])
        elif msg.type == "stop":
            code = entry["returncode"] = msg.data["returncode"]
            self._system_print(f"{msg.name} stopped (rc={code})\n")
            if not self._terminating:
                self._died(msg.name, code)

    def _died(self, name: str, code: int) -> None:
        # A kill from outside (a negative code: the signal) is never the start's fault;
        # an exit, even a clean one (nothing here ends by itself), soon after it may be.
        quick = code >= 0 and time.monotonic() - self.started.get(name, 0) < QUICK
        self.quick_failures[name] = self.quick_failures.get(name, 0) + 1 if quick else 0
        if self.quick_failures[name] >= CRASH_LOOP:
            self._system_print(f"{name} failed {CRASH_LOOP} times in a row: stopping\n")
            self.returncode = code
            self.terminate()
            return
        if self.redis is not None:
            forget_workers_of(self.redis.url, self._processes[name]["pid"])
        self._system_print(f"{name} starts again in {RESTART_PAUSE:g} s\n")
        self.restarts[name] = time.monotonic() + RESTART_PAUSE

    def _start_one(self, name: str) -> None:
        entry = self._processes[name]
        entry["process"].join(1)  # honcho's reader of the dead one, which has ended
        del entry["returncode"]  # its old pid stays until the new one is known
        entry["process"] = multiprocessing.Process(name=name, target=entry["obj"].run,
                                                   args=(self.events, True))
        entry["process"].start()

    def _revive_redis(self) -> None:
        if self.redis is None or self.redis.process.poll() is None:
            return
        self._system_print(f"embedded redis-server stopped (rc={self.redis.process.returncode})"
                           "; starting it again\n")
        try:
            self.redis = redis_server.start(self.redis.socket_path,
                                            log=self.redis.socket_path.parent / "redis.log")
        except RuntimeError as error:  # its log says why
            self._system_print(f"embedded redis-server: {error}: stopping\n")
            self.returncode = 1
            self.terminate()
