"""The catalogue: one SQLite database (WAL) that is the truth about what PyPI holds
and what we have built.

PyPI facts are kept as max-registers of ordering keys rather than as flags: a
project is alive when the newest event that shows it is newer than the newest
removal, and so on down to files and yanks. Taking the maximum commutes, so the
same events applied in any order leave the same catalogue (see ingest.events).

ingest writes projects, aliases, versions and files; publish writes builds,
wheels and dependencies; both read through the views defined here.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

# Each entry upgrades the schema by one version; PRAGMA user_version says how many ran.
MIGRATIONS: list[str] = [
    """
    CREATE TABLE projects (
        name         TEXT PRIMARY KEY,          -- PEP 503 canonical name
        display_name TEXT NOT NULL,             -- the most recently seen spelling
        display_key  INTEGER NOT NULL,
        seen_key     INTEGER NOT NULL DEFAULT 0,  -- newest event showing it exists
        deleted_key  INTEGER NOT NULL DEFAULT 0,  -- newest removal of the whole project
        summary      TEXT,
        skip_reason  TEXT,
        metadata_at  TEXT                         -- when the JSON API last answered for it
    ) WITHOUT ROWID;
    CREATE TABLE aliases (
        project TEXT NOT NULL,
        alias   TEXT NOT NULL,
        PRIMARY KEY (project, alias)
    ) WITHOUT ROWID;
    CREATE TABLE versions (
        project         TEXT NOT NULL,
        version         TEXT NOT NULL,
        seen_key        INTEGER NOT NULL DEFAULT 0,
        removed_key     INTEGER NOT NULL DEFAULT 0,
        yank_key        INTEGER NOT NULL DEFAULT 0,
        unyank_key      INTEGER NOT NULL DEFAULT 0,
        yank_reason     TEXT,                        -- from the JSON API, when it gives one
        released_rank   INTEGER NOT NULL DEFAULT 0,  -- which event set `released`
        released        TEXT,                        -- ISO 8601, UTC
        requires_python TEXT,
        metadata_state  TEXT,  -- NULL: not fetched yet; 'ok'; 'unavailable' (gave up)
        skip_reason     TEXT,
        PRIMARY KEY (project, version)
    ) WITHOUT ROWID;
    CREATE TABLE files (
        project     TEXT NOT NULL,
        version     TEXT NOT NULL,
        filename    TEXT NOT NULL,
        kind        TEXT NOT NULL CHECK (kind IN ('source', 'binary')),
        seen_key    INTEGER NOT NULL DEFAULT 0,
        removed_key INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (project, version, filename)
    ) WITHOUT ROWID;
    CREATE TABLE skips (  -- builds the scheduler will not queue, and why
        project TEXT NOT NULL,
        version TEXT NOT NULL,
        abi     TEXT NOT NULL,
        reason  TEXT NOT NULL,
        PRIMARY KEY (project, version, abi)
    ) WITHOUT ROWID;
    CREATE TABLE seen_serials (  -- serials applied lately, to drop them when re-read
        serial INTEGER PRIMARY KEY
    );
    CREATE TABLE state (
        name  TEXT PRIMARY KEY,
        value TEXT
    );
    CREATE TABLE builds (
        project   TEXT NOT NULL,
        version   TEXT NOT NULL,
        abi       TEXT NOT NULL,
        status    TEXT NOT NULL CHECK (status IN ('success', 'failed')),
        worker    TEXT,
        duration  REAL,
        built_at  TEXT NOT NULL,
        log_path  TEXT,                 -- relative to www/
        -- the release's newest removal when it was built: a build of a release
        -- since deleted and re-created under the same number is not its build
        barrier_key INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (project, version, abi)
    ) WITHOUT ROWID;
    CREATE TRIGGER builds_barrier AFTER INSERT ON builds BEGIN
        UPDATE builds SET barrier_key = COALESCE((
            SELECT MAX(v.removed_key, p.deleted_key) FROM versions v
            JOIN projects p ON p.name = v.project
            WHERE v.project = NEW.project AND v.version = NEW.version), 0)
        WHERE project = NEW.project AND version = NEW.version AND abi = NEW.abi;
    END;
    CREATE TABLE wheels (
        filename        TEXT NOT NULL PRIMARY KEY,
        project         TEXT NOT NULL,
        version         TEXT NOT NULL,
        builder_abi     TEXT NOT NULL,
        python_tag      TEXT NOT NULL,
        abi_tag         TEXT NOT NULL,
        platform_tag    TEXT NOT NULL,
        size            INTEGER NOT NULL,
        sha256          TEXT NOT NULL,
        requires_python TEXT,
        metadata_sha256 TEXT,
        uploaded_at     TEXT NOT NULL
    );
    CREATE INDEX wheels_release ON wheels (project, version);
    CREATE TABLE dependencies (
        filename TEXT NOT NULL,
        tool     TEXT NOT NULL CHECK (tool IN ('apt', 'pip')),
        name     TEXT NOT NULL,
        preinstalled INTEGER NOT NULL DEFAULT 0,  -- apt: on the ABI's OS image already
        PRIMARY KEY (filename, tool, name)
    ) WITHOUT ROWID;
    CREATE TABLE unresolved_sonames (           -- libraries no file on the builder had
        filename TEXT NOT NULL,
        soname   TEXT NOT NULL,
        PRIMARY KEY (filename, soname)
    ) WITHOUT ROWID;
    CREATE INDEX versions_released ON versions (released);
    CREATE VIEW live_projects AS
        SELECT * FROM projects WHERE seen_key > deleted_key;
    CREATE VIEW live_versions AS
        SELECT v.*, (v.yank_key > MAX(v.unyank_key, v.removed_key, p.deleted_key)) AS yanked
        FROM versions v JOIN projects p ON p.name = v.project
        WHERE v.seen_key > MAX(v.removed_key, p.deleted_key);
    CREATE VIEW live_builds AS
        SELECT b.* FROM builds b
        JOIN versions v ON v.project = b.project AND v.version = b.version
        JOIN projects p ON p.name = b.project
        WHERE b.barrier_key = MAX(v.removed_key, p.deleted_key);
    CREATE VIEW live_files AS
        SELECT f.* FROM files f
        JOIN versions v ON v.project = f.project AND v.version = f.version
        JOIN projects p ON p.name = f.project
        WHERE f.seen_key > MAX(f.removed_key, v.removed_key, p.deleted_key);
    """,
]

SCHEMA_VERSION = len(MIGRATIONS)


def migrate(conn: sqlite3.Connection, progress: Callable[[str], None] = lambda _: None) -> None:
    """Bring the schema up to SCHEMA_VERSION, one migration per transaction."""
    current = conn.execute("PRAGMA user_version").fetchone()[0]
    if current > SCHEMA_VERSION:
        raise RuntimeError(
            f"catalogue schema {current} is newer than this code ({SCHEMA_VERSION})"
        )
    for number in range(current, SCHEMA_VERSION):
        progress(f"migrating catalogue to schema {number + 1}")
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in _statements(MIGRATIONS[number]):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {number + 1}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise


def _statements(script: str) -> list[str]:
    """Split a migration into statements (sqlite3.complete_statement knows the grammar)."""
    statements, buffer = [], ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            statements.append(buffer.strip())
            buffer = ""
    if buffer.strip():
        statements.append(buffer.strip())
    return statements


def connect(path: Path | str, *, readonly: bool = False) -> sqlite3.Connection:
    """Open the catalogue in WAL mode, migrated to the current schema."""
    if readonly:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
    else:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(path, isolation_level=None, timeout=60)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        # Long replays touch pages all over the keyed tables: 64 MB of cache keeps
        # them from being read again and again.
        conn.execute("PRAGMA cache_size = -65536")
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA busy_timeout = 60000")
    if not readonly:
        migrate(conn)
    return conn


def get_state(conn: sqlite3.Connection, name: str, default: str | None = None) -> str | None:
    row = conn.execute("SELECT value FROM state WHERE name = ?", (name,)).fetchone()
    return row[0] if row else default


def set_state(conn: sqlite3.Connection, name: str, value: str) -> None:
    conn.execute(
        "INSERT INTO state (name, value) VALUES (?, ?) "
        "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
        (name, value),
    )
