"""Applying a newline-delimited JSON event file to the catalogue.

The file's read position is stored in the same transaction as the events it
covers, so a kill at any instant and a restart neither skip nor double anything
(and applying an event twice changes nothing anyway)."""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ingest.catalogue import get_state, set_state
from ingest.events import Event, MalformedEvent, apply_batch, batch_of

log = logging.getLogger("ingest")

CHUNK = 20_000  # events per transaction


@dataclass
class ReplayStats:
    events: int = 0
    malformed: int = 0
    touched: set[str] = field(default_factory=set)  # projects with deletions or yanks


def _offset_key(path: Path) -> str:
    return f"replay-offset:{path.resolve()}"


def replay_file(
    conn: sqlite3.Connection,
    path: Path,
    progress: Callable[[ReplayStats], None] = lambda _: None,
) -> ReplayStats:
    """Apply the events of `path` not applied before; return what was done."""
    stats = ReplayStats()
    offset = int(get_state(conn, _offset_key(path), "0"))
    with path.open("rb") as f:
        if offset > path.stat().st_size:
            log.warning("%s is shorter than before: reading it from the start", path)
            offset = 0
        f.seek(offset)
        while True:
            events, end = _read_chunk(f, stats)
            if end == offset:
                break
            offset = end
            batch = batch_of(events)
            conn.execute("BEGIN IMMEDIATE")
            try:
                apply_batch(conn, batch)
                set_state(conn, _offset_key(path), str(offset))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            stats.events += len(events)
            stats.touched |= batch.touched
            progress(stats)
    return stats


def _read_chunk(f, stats: ReplayStats) -> tuple[list[Event], int]:
    """Up to CHUNK events from whole lines; a final line with no newline yet is
    left for the next read (the writer may still be writing it)."""
    events: list[Event] = []
    offset = f.tell()
    while len(events) < CHUNK:
        line = f.readline()
        if not line:
            break
        if not line.endswith(b"\n"):
            f.seek(offset)
            break
        offset += len(line)
        if not line.strip():
            continue
        try:
            events.append(Event.from_row(json.loads(line)))
        except (ValueError, MalformedEvent) as error:
            stats.malformed += 1
            log.warning("skipping malformed event at byte %d: %s", offset - len(line), error)
    return events, offset
