"""Numbered schema migrations for our SQLite files (the catalogue, stats.db).

A file's migrations are a list of SQL scripts; entry N upgrades schema N to N + 1,
and PRAGMA user_version says how many have run. A migration, once released, is
never edited: a change to the schema is a new entry at the end.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence

# Importing this runs the catalogue package, whose schema module imports this one
# back: it does so as `from ingest import migrations`, which works whichever loads first.
from ingest.catalogue.writes import transaction


def schema_version(conn: sqlite3.Connection) -> int:
    return conn.execute("PRAGMA user_version").fetchone()[0]


def migrate(conn: sqlite3.Connection, migrations: Sequence[str], name: str,
            progress: Callable[[str], None] = lambda _: None) -> None:
    """Bring `conn`'s schema up to len(migrations), one migration per transaction.
    `name` says which file in messages; a file newer than the code is refused."""
    target = len(migrations)
    current = schema_version(conn)
    if current > target:
        raise RuntimeError(f"{name} schema {current} is newer than this code ({target})")
    for number in range(current, target):
        progress(f"migrating {name} to schema {number + 1}")
        with transaction(conn):
            # Another process opening the file may have run it while this one
            # waited for the write lock.
            if schema_version(conn) > number:
                continue
            for statement in statements(migrations[number]):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {number + 1}")


def statements(script: str) -> list[str]:
    """Split a migration into statements (sqlite3.complete_statement knows the grammar)."""
    found, buffer = [], ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            found.append(buffer.strip())
            buffer = ""
    if buffer.strip():
        found.append(buffer.strip())
    return found
