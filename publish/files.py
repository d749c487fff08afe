"""Writing files into www/ so that readers never see half of one."""

from __future__ import annotations

import errno
import itertools
import os
import shutil
from contextlib import suppress
from functools import lru_cache
from pathlib import Path

_counter = itertools.count()
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC


def _temporary_name(path: str) -> str:
    # Unique per process and call; the leading dot keeps servers from showing it.
    head, tail = os.path.split(path)
    return os.path.join(head, f".tmp-{os.getpid()}-{next(_counter)}-{tail}"[:250])


def _create(path: str, data: bytes) -> None:
    """Write a file that must not exist yet. No fsync: a file lost in a crash is
    written again by the next publish, which finds it missing."""
    fd = os.open(path, _CREATE, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    except OSError as error:
        # A full disk: leave no partial file, and name the one (os.write does not).
        os.unlink(path)
        raise OSError(error.errno, error.strerror, path) from error
    finally:
        os.close(fd)


def _holds(path: str, data: bytes) -> bool:
    """True if the file at `path` holds exactly `data` (False if there is none)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        return False
    try:
        return os.fstat(fd).st_size == len(data) and os.read(fd, len(data)) == data
    finally:
        os.close(fd)


def write_atomic(path: Path | str, data: bytes) -> bool:
    """Write `data` to `path` through a temporary file and a rename; leave the file
    alone (mtime and all) when it already holds exactly `data`. True if written."""
    path = os.fspath(path)
    if _holds(path, data):
        return False
    tmp = _temporary_name(path)
    try:
        _create(tmp, data)
    except FileNotFoundError:  # the first file of a new directory
        os.makedirs(os.path.dirname(path), exist_ok=True)
        _create(tmp, data)
    _replace(tmp, path)
    return True


def _replace(tmp: str, path: str) -> None:
    """Rename `tmp` over `path`, leaving no temporary file behind if that fails."""
    try:
        os.replace(tmp, path)
    except BaseException:
        with suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_directory(path: Path | str, files: dict[str, bytes]) -> bool:
    """Create the directory `path` holding `files` (names relative to it, with "/"
    for subdirectories) all at once: it is filled under a temporary name beside it
    and renamed into place, so readers see all of it or nothing, and a new project
    costs one rename rather than one per file. False, with nothing done, if `path`
    exists already (a publisher racing this one made it): write file by file then."""
    path = os.fspath(path)
    tmp = _temporary_name(path)
    try:
        os.mkdir(tmp)
    except FileNotFoundError:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        os.mkdir(tmp)
    try:
        made = {""}
        for name, data in files.items():
            sub = os.path.dirname(name)
            if sub not in made:
                os.makedirs(os.path.join(tmp, sub), exist_ok=True)
                made.add(sub)
            _create(os.path.join(tmp, name), data)
        os.rename(tmp, path)
    except OSError as error:
        shutil.rmtree(tmp, ignore_errors=True)
        if error.errno in (errno.EEXIST, errno.ENOTEMPTY):
            return False
        raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return True


def link_atomic(path: Path | str, target: str) -> bool:
    """Make `path` a symbolic link to `target` (a name in the same directory), replacing
    whatever is there by a rename. True if it changed."""
    path = os.fspath(path)
    try:
        if os.readlink(path) == target:
            return False
    except OSError:
        pass
    tmp = _temporary_name(path)
    os.symlink(target, tmp)
    _replace(tmp, path)
    return True


def remove(path: Path) -> bool:
    """Remove a file, a link or a whole directory; True if there was one."""
    if path.is_symlink() or path.is_file():
        path.unlink()
        return True
    if path.is_dir():
        shutil.rmtree(path)
        return True
    return False


def inside(root: Path, *parts: str) -> Path:
    """root/parts, refusing anything that would land outside root or on root itself.

    The check is on the names alone: the last part is never resolved, so a symbolic
    link (an armv6l alias) is itself named, not the file it points to."""
    return Path(inside_str(root, *parts))


def inside_str(root: Path | str, *parts: str) -> str:
    """inside() as a plain string, for the paths a full rebuild makes by the million."""
    base = _resolved(os.fspath(root))
    path = os.path.normpath(os.path.join(base, *parts))
    if not path.startswith(base + os.sep) or "\0" in path:
        raise ValueError(f"path escapes {root}: {parts!r}")
    return path


@lru_cache(maxsize=64)
def _resolved(root: str) -> str:
    return str(Path(root).resolve())
