"""Errors a person fixes by hand, told in one line: what failed and what to do.

Every `python -m` entry point runs its command inside `one_line_errors`, which turns
a `Fatal` error, and the few operating-system errors a person fixes by hand (a full
disk, a directory they may not write, Redis out of reach), into one line on stderr
and exit status 1, in place of a traceback. Anything else is a bug and keeps its
traceback. The master adds its databases' errors in ingest/errors.py; this module is
the worker's, which a Pi runs without the master's code."""

from __future__ import annotations

import errno
import getpass
import os
import re
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from redis.exceptions import ConnectionError as RedisConnectionError

from worker import settings

EXIT_CODE = 1
# A write that failed for want of room: a full disk, a quota, or a file size limit
# (RLIMIT_FSIZE answers EFBIG where a full disk answers ENOSPC).
NO_ROOM = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
NOT_WRITABLE = frozenset({errno.EACCES, errno.EPERM, errno.EROFS})
# The password of redis://user:password@host/ (up to the last @ before the path)
# and of a ?password= query.
_USER_PASSWORD = re.compile(r"(://[^/@:]*:)[^/]*@")
_QUERY_PASSWORD = re.compile(r"([?&]password=)[^&#]*")


class Fatal(Exception):
    """An error whose message says, in one line, what failed and what to do."""


class RedisUnreachable(Fatal, RedisConnectionError):
    """Redis does not answer at `url` (a ConnectionError still, for callers that
    catch those)."""

    def __init__(self, url: str, reason: str) -> None:
        if url.startswith("unix://"):
            todo = ("run the system with `python -m ingest up` (it starts the embedded "
                    "Redis), or set REDIS_URL to a Redis that runs")
        else:
            todo = "start Redis there, or fix REDIS_URL"
        super().__init__(f"cannot reach Redis at {masked_url(url)} ({reason}): {todo}")
        self.url = url


class LowDisk(Fatal):
    """Free space under `path` is below the configured minimum."""

    def __init__(self, path: Path, free: int, minimum: int) -> None:
        super().__init__(f"only {megabytes(free)} free on the file system of {path}, "
                         f"below WHEELWRIGHT_MIN_FREE_MB ({megabytes(minimum)}): free "
                         "some space there, or lower the setting")
        self.path, self.free, self.minimum = path, free, minimum


def masked_url(url: str) -> str:
    """`url` with any password (in its user part or a `password=` query) as ****."""
    url = _USER_PASSWORD.sub(r"\1****@", url)
    return _QUERY_PASSWORD.sub(r"\1****", url)


def megabytes(count: int) -> str:
    return f"{count / 2**20:,.1f} MB" if count < 10 * 2**20 else f"{count / 2**20:,.0f} MB"


def free_space(path: Path) -> int:
    """Bytes free to this user on the file system holding `path` (or, if it does not
    exist yet, its nearest existing parent)."""
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return shutil.disk_usage(path).free


def no_room(path: Path | str, reason: str) -> Fatal:
    """A write to `path` failed for want of room."""
    try:
        free = f"{megabytes(free_space(Path(path)))} free there"
    except OSError:
        free = "free space unknown"
    return Fatal(f"cannot write {path}: {reason} ({free}): free some space on that "
                 "file system, or move the directory to a larger one")


def not_writable(path: Path | str, reason: str, config: settings.Settings | None) -> Fatal:
    """`path` may not be written by this process."""
    todo = f"make it writable by user {_user()}"
    if config is not None:
        for variable, directory in (("WHEELWRIGHT_DATA", config.data_dir),
                                    ("WHEELWRIGHT_BUILD_DIR", config.build_dir)):
            if directory is not None and _under(Path(path), directory):
                todo = (f"make {directory} writable by user {_user()}, or set {variable} "
                        "to a directory it can write")
                break
    return Fatal(f"cannot write {path}: {reason}: {todo}")


def explain(error: BaseException, config: settings.Settings | None) -> Fatal | None:
    """The one-line form of `error`, or None if it is not one a person fixes by hand."""
    if isinstance(error, Fatal):
        return error
    if isinstance(error, RedisConnectionError) and config is not None:
        return RedisUnreachable(config.effective_redis_url, str(error) or type(error).__name__)
    if isinstance(error, OSError) and error.filename is not None:
        reason = (error.strerror or str(error)).lower()
        if error.errno in NO_ROOM:
            return no_room(error.filename, reason)
        if error.errno in NOT_WRITABLE:
            return not_writable(error.filename, reason, config)
    return None


@contextmanager
def one_line_errors(name: str, config: settings.Settings | None = None) -> Iterator[None]:
    """Run the body of the command `name`; a Fatal error, or an error `explain` knows,
    ends the process with status 1 and one line on stderr: "name: what failed: what
    to do". `config` tells which Redis and which directories the command uses."""
    try:
        yield
    except Exception as error:  # noqa: BLE001 - what `explain` does not know is raised again
        fatal = explain(error, config)
        if fatal is None:
            raise
        print(f"{name}: {one_line(str(fatal))}", file=sys.stderr, flush=True)
        sys.exit(EXIT_CODE)


def one_line(text: str) -> str:
    return " ".join(text.split())


def _under(path: Path, directory: Path) -> bool:
    path, directory = Path(os.path.abspath(path)), Path(os.path.abspath(directory))
    return path == directory or directory in path.parents


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())
