"""Where the loader's batches are written: in the loading process, or in a child
process that has a connection of its own to stats.db.

A thread would not overlap the two halves of a load: sqlite3 binds every row of
`executemany` while holding the GIL, and the parser holds it the rest of the time,
so a writer thread and the parser take turns. A child process writes on the other
core while this one parses. Each batch is still one transaction holding its rows
and the source's new offset, so a writer that dies mid-batch loses nothing that
the next load does not redo.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import pickle
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import sqlite_utils

from stats.store import Batch, Written, open_db, write_batch

DEPTH = 2  # batches handed over and not yet written: enough to keep both cores busy


class WriterError(RuntimeError):
    """The writer process failed or died; the message says how."""


class InlineWriter:
    """Writes each batch as it comes, in the calling thread."""

    def __init__(self, db: sqlite_utils.Database, done: Callable[[Written], None]) -> None:
        self.db = db
        self.done = done

    def submit(self, batch: Batch) -> None:
        self.done(write_batch(self.db, batch))

    def close(self) -> None:
        pass

    def abort(self) -> None:
        pass


class ProcessWriter:
    """Writes batches, in order, in a child process. `done` is called in this process
    with what each batch wrote, as the child reports it."""

    def __init__(self, db_path: str, done: Callable[[Written], None],
                 depth: int = DEPTH) -> None:
        self.done = done
        self.depth = depth
        self.in_flight = 0
        # A fresh interpreter, not a fork: a forked child would inherit this process's
        # SQLite state (connections, file locks), which SQLite forbids using; and not
        # multiprocessing's spawn, which runs the caller's main module again.
        root = str(Path(__file__).resolve().parent.parent)
        env = {**os.environ,
               "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
        self.process = subprocess.Popen([sys.executable, "-m", "stats.writer", db_path],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)

    def submit(self, batch: Batch) -> None:
        while self.in_flight >= self.depth:
            self._receive()
        try:
            pickler = pickle.Pickler(self.process.stdin, pickle.HIGHEST_PROTOCOL)
            # No memo: rows hold no cycles, and memoising their ten objects each costs
            # this process (the busier one) twice what writing repeated strings does.
            pickler.fast = True
            pickler.dump(batch)
            self.process.stdin.flush()
        except (BrokenPipeError, ConnectionResetError):
            raise self._died() from None
        self.in_flight += 1

    def close(self) -> None:
        """Wait for every batch handed over to be written, then stop the child."""
        while self.in_flight:
            self._receive()
        self.abort()

    def abort(self) -> None:
        """The child writes what it was handed, then exits (at the end of its input)."""
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self.process.stdin.close()
        try:
            self.process.wait(timeout=120)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process.stdout.close()

    def _receive(self) -> None:
        try:
            written, error = pickle.load(self.process.stdout)  # noqa: S301 (our child)
        except (EOFError, pickle.UnpicklingError, ConnectionResetError):
            raise self._died() from None
        self.in_flight -= 1
        if error is not None:
            raise WriterError(f"writing stats.db failed: {error}")
        self.done(written)

    def _died(self) -> WriterError:
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=5)
        return WriterError(f"the stats writer process died (exit code "
                           f"{self.process.returncode}); loading again resumes after "
                           f"the last batch it wrote")


def serve(db_path: str, requests: BinaryIO, replies: BinaryIO) -> None:
    """The child's loop: write each batch received, answer (Written, error text)."""
    # Ctrl-C reaches the whole process group: the loading process decides what stops.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    db = open_db(db_path)
    while True:
        try:
            batch = pickle.load(requests)  # noqa: S301 (from our parent)
        except (EOFError, pickle.UnpicklingError):
            return  # the end of the input (cut short if the parent stopped mid-batch)
        try:
            reply = (write_batch(db, batch), None)
        except Exception as error:  # reported to the loading process, which raises it
            reply = (None, f"{type(error).__name__}: {error}")
        try:
            pickle.dump(reply, replies)
            replies.flush()
        except (BrokenPipeError, ConnectionResetError):
            return  # the loading process is gone
        if reply[1] is not None:
            return


def database_file(db: sqlite_utils.Database) -> str | None:
    """The file behind `db`, or None for a database only this connection can see."""
    for _, name, file in db.execute("PRAGMA database_list"):
        if name == "main":
            return file or None
    return None


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m stats.writer",
        description="The writer process that `stats load` starts for a large file: it "
                    "reads pickled batches from its parent on stdin and answers on "
                    "stdout. Not for use by hand.")
    parser.add_argument("database", help="path of stats.db")
    args = parser.parse_args()
    replies = sys.stdout.buffer
    sys.stdout = sys.stderr  # a stray print must not corrupt the answers
    serve(args.database, sys.stdin.buffer, replies)


if __name__ == "__main__":
    main()
