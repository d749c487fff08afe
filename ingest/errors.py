"""The master's one-line errors, beside the worker's (worker/errors.py): its SQLite
databases out of room or out of reach, and a port some other process holds."""

from __future__ import annotations

import errno
import os
import socket
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ingest import settings
from worker.errors import Fatal, no_room, not_writable, one_line_errors

# SQLite's primary result codes (error.sqlite_errorcode & 0xff) a person fixes by
# hand. RLIMIT_FSIZE and some full disks give IOERR rather than FULL: SQLite answers
# FULL only for ENOSPC, and IOERR for a write refused with any other errno.
SQLITE_READONLY, SQLITE_IOERR, SQLITE_FULL, SQLITE_CANTOPEN = 8, 10, 13, 14


class PortInUse(Fatal):
    """Another process listens where the setting `variable` says we should."""

    def __init__(self, variable: str, host: str, port: int, holder: str | None) -> None:
        who = holder or "another process"
        super().__init__(f"{host}:{port} is in use by {who}: stop it, or set {variable} "
                         "to a free address")
        self.variable, self.host, self.port, self.holder = variable, host, port, holder


def claim_port(variable: str, host: str, port: int) -> None:
    """Raise PortInUse if (host, port), the value of the setting `variable`, cannot
    be bound. The servers bind themselves a moment later (uvicorn and werkzeug end
    the process with a log line of their own when they cannot): this names the
    setting to change and the process in the way. SO_REUSEADDR, as the servers set
    it, so that connections of a process just stopped do not count."""
    if port == 0:
        return
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            if error.errno != errno.EADDRINUSE:
                raise
            raise PortInUse(variable, host, port, port_holder(port)) from None


def port_holder(port: int) -> str | None:
    """"pid N (command line)" of a process listening on TCP `port`, when this user
    may see it (from /proc: Linux only, as the farm is), else None."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            # local_address is HEX_IP:HEX_PORT; state 0A is LISTEN
            if len(fields) > 9 and fields[3] == "0A" and \
                    int(fields[1].rpartition(":")[2], 16) == port:
                inodes.add(f"socket:[{fields[9]}]")
    if not inodes:
        return None
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            links = {os.readlink(fd) for fd in (proc / "fd").iterdir()}
        except OSError:
            continue
        if links & inodes:
            try:
                command = (proc / "cmdline").read_bytes().replace(b"\0", b" ").strip()
            except OSError:
                command = b""
            return f"pid {proc.name} ({command.decode(errors='replace')[:120]})"
    return None


def database_error(error: sqlite3.Error, database: Path,
                   config: settings.Settings) -> Fatal | None:
    """The one-line form of an SQLite error on `database`, or None."""
    code = getattr(error, "sqlite_errorcode", 0) & 0xFF
    if code in (SQLITE_FULL, SQLITE_IOERR):
        return no_room(database, str(error))
    if code in (SQLITE_READONLY, SQLITE_CANTOPEN):
        return not_writable(database, str(error), config)
    return None


@contextmanager
def master_errors(name: str, config: settings.Settings, database: Path) -> Iterator[None]:
    """one_line_errors for a command of the master that writes `database` (the
    catalogue or stats.db): SQLite names no file in its errors, the command does."""
    with one_line_errors(name, config):
        try:
            yield
        except sqlite3.Error as error:
            fatal = database_error(error, database, config)
            if fatal is None:
                raise
            raise fatal from error
