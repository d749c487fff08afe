"""Reading big files of lines fast: whole-line blocks, and the cyclic garbage
collector out of the way. Used by event replays and by the stats loader."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager
from typing import BinaryIO

BLOCK = 1 << 20


def read_chunks(handle: BinaryIO, start: int, chunk: int = BLOCK) -> Iterator[bytes]:
    """Whole lines from `start` on, in chunks of about `chunk` bytes. A final
    fragment without its newline is yielded alone, last, for the caller to judge."""
    handle.seek(start)
    tail = b""
    while data := handle.read(chunk):
        data = tail + data
        cut = data.rfind(b"\n") + 1
        tail = data[cut:]
        if cut:
            yield data[:cut]
    if tail:
        yield tail


@contextmanager
def collector_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector. Bulk work allocates millions of rows
    (tuples and lists of strings and numbers: no cycles) next to large caches, which
    the collector would traverse again and again (a fifth of the time or more); it
    collects whatever cycles arose once it resumes."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
