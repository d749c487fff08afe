"""Writing files into www/ so that readers never see half of one."""

from __future__ import annotations

import itertools
import os
import shutil
from functools import lru_cache
from pathlib import Path

_counter = itertools.count()


def _temporary_name(path: Path) -> Path:
    # Unique per process and call; the leading dot keeps servers from showing it.
    return path.with_name(f".tmp-{os.getpid()}-{next(_counter)}-{path.name}"[:250])


def write_atomic(path: Path, data: bytes) -> bool:
    """Write `data` to `path` through a temporary file and a rename; leave the file
    alone (mtime and all) when it already holds exactly `data`. True if written."""
    try:
        if os.stat(path).st_size == len(data):
            with open(path, "rb") as f:
                if f.read() == data:
                    return False
    except (FileNotFoundError, NotADirectoryError):
        pass
    tmp = _temporary_name(path)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
    try:
        fd = os.open(tmp, flags, 0o644)
    except FileNotFoundError:  # the first file of a new directory
        os.makedirs(path.parent, exist_ok=True)
        fd = os.open(tmp, flags, 0o644)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return True


def link_atomic(path: Path, target: str) -> bool:
    """Make `path` a symbolic link to `target` (a name in the same directory), replacing
    whatever is there by a rename. True if it changed."""
    try:
        if os.readlink(path) == target:
            return False
    except (FileNotFoundError, OSError):
        pass
    tmp = _temporary_name(path)
    os.symlink(target, tmp)
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
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
    base = _resolved(str(root))
    path = os.path.normpath(os.path.join(base, *parts))
    if not path.startswith(base + os.sep) or "\0" in path:
        raise ValueError(f"path escapes {root}: {parts!r}")
    return Path(path)


@lru_cache(maxsize=64)
def _resolved(root: str) -> str:
    return str(Path(root).resolve())
