"""The catalogue's schema, its migrations, and opening it.

PyPI facts are kept as max-registers of ordering keys rather than as flags: a
project is alive when the newest event that shows it is newer than the newest
removal, and so on down to files and yanks. Taking the maximum commutes, so the
same events applied in any order leave the same catalogue (see ingest.events).
Every write is in ingest.catalogue.writes; the live_* views are what readers use.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

from ingest import migrations

# Each entry upgrades the schema by one version; PRAGMA user_version says how many ran.
#
# Every `abi` and `builder_abi` column holds a build target's key (worker.targets): the
# bare ABI (cp311) for Raspberry Pi OS's 32-bit image, the ABI and a platform suffix
# (cp311-aarch64) for its 64-bit one. Rows written before targets had platforms hold
# bare ABIs, which are exactly the 32-bit image's keys: they name the right target as
# they are, so that change needed no migration, no table rewrite and no rebuild.
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
    # Does the wheel run on a Pi Zero/1 (ARMv6)? 1 yes, 0 no, NULL unknown (recorded
    # before the intake read ELF build attributes, or not ARM code): NULL is not yes.
    """
    ALTER TABLE wheels ADD COLUMN armv6 INTEGER CHECK (armv6 IN (0, 1));
    """,
    # A pushed wheel whose bytes differ from the file already served under its name
    # (a rebuild that was not reproducible): the served file stays, and this says so.
    """
    CREATE TABLE differing_pushes (
        filename      TEXT NOT NULL,
        sha256        TEXT NOT NULL,     -- of the pushed bytes, which are not kept
        size          INTEGER NOT NULL,
        project       TEXT NOT NULL,
        version       TEXT NOT NULL,
        abi           TEXT NOT NULL,     -- the ABI of the build that pushed them
        worker        TEXT NOT NULL,
        served_sha256 TEXT NOT NULL,     -- of the file served under the name then
        pushed_at     TEXT NOT NULL,     -- the latest push of these bytes
        PRIMARY KEY (filename, sha256)
    ) WITHOUT ROWID;
    """,
    # An operator's decisions (python -m ingest admin). A per-ABI skip says whose it
    # is: the scheduler forgets and rewrites its own, never an operator's; one with
    # version '' holds for every release of the project. A project whose maintainer
    # opted out is never built. A rebuild asked for is replaced by its next push
    # rather than recorded as a differing one.
    """
    ALTER TABLE skips ADD COLUMN source TEXT NOT NULL DEFAULT 'scheduler'
        CHECK (source IN ('scheduler', 'operator'));
    ALTER TABLE projects ADD COLUMN opted_out_at TEXT;
    CREATE TABLE rebuilds (
        project      TEXT NOT NULL,
        version      TEXT NOT NULL,
        abi          TEXT NOT NULL,
        requested_at TEXT NOT NULL,
        PRIMARY KEY (project, version, abi)
    ) WITHOUT ROWID;
    """,
    # An abi3 or pure wheel's file name built by another ABI than the one `wheels`
    # records (the name's first builder): one row per (name, ABI). Equal bytes share
    # the file in www/simple/; other bytes (another glibc, other libraries) are kept
    # per release in www/<codename>/simple/<project>/<filename> and listed only by
    # that release's index (publish.simple). Not a differing push: that is the SAME
    # ABI pushing other bytes, which are not kept.
    """
    CREATE TABLE wheel_copies (
        filename        TEXT NOT NULL,
        builder_abi     TEXT NOT NULL,
        project         TEXT NOT NULL,
        version         TEXT NOT NULL,
        size            INTEGER NOT NULL,
        sha256          TEXT NOT NULL,
        requires_python TEXT,
        metadata_sha256 TEXT,
        uploaded_at     TEXT NOT NULL,
        armv6           INTEGER CHECK (armv6 IN (0, 1)),
        apt             TEXT NOT NULL DEFAULT '',  -- still to install, space-separated
        PRIMARY KEY (filename, builder_abi)
    ) WITHOUT ROWID;
    CREATE INDEX wheel_copies_project ON wheel_copies (project);
    """,
    # Each build records the machine that made it, as the worker describes itself
    # (`worker` stays the name its token authenticates: a chroot worker pushes with
    # its host's token), and a failed build why it failed (publish.failures), NULL
    # when the log says nothing we recognise or the build is older than this. A
    # wheel says whether it holds compiled code: 1 it has ELF files; 0 it is tagged
    # for a platform or ABI yet has none (its optional extension failed to build,
    # and it fell back to pure Python); NULL a pure wheel, or recorded before. A
    # wheel without its code is rebuilt once per newer builder profile
    # (ingest.profile_rebuilds), remembered in profile_rebuilds: the `rebuilds` row
    # goes with the push, and a builder still on the old profile must not loop.
    """
    ALTER TABLE builds ADD COLUMN machine TEXT;
    ALTER TABLE builds ADD COLUMN profile INTEGER;
    ALTER TABLE builds ADD COLUMN os_release TEXT;
    ALTER TABLE builds ADD COLUMN toolchain TEXT;
    ALTER TABLE builds ADD COLUMN failure_reason TEXT;
    ALTER TABLE builds ADD COLUMN failure_detail TEXT;
    ALTER TABLE builds ADD COLUMN failure_package TEXT;
    ALTER TABLE wheels ADD COLUMN compiled INTEGER CHECK (compiled IN (0, 1));
    CREATE INDEX wheels_without_code ON wheels (project, version) WHERE compiled = 0;
    CREATE TABLE profile_rebuilds (
        project      TEXT NOT NULL,
        version      TEXT NOT NULL,
        abi          TEXT NOT NULL,
        profile      INTEGER NOT NULL,   -- the builder profile version it was queued for
        requested_at TEXT NOT NULL,
        PRIMARY KEY (project, version, abi, profile)
    ) WITHOUT ROWID;
    """,
    # The newest builds, for the home page's recent builds and the index's feed
    # (publish.index.NEWEST_BUILDS), read in built_at order without a sort of them all.
    """
    CREATE INDEX builds_built ON builds (built_at);
    """,
    # Profile rebuilds (ingest.profile_rebuilds) are asked for up to a few times per
    # (release, ABI, profile): again when a rebuild lands from a builder still on an
    # older profile, or its job is lost; `attempts` counts them. Builds refused for
    # missing build dependencies are asked for again too: the partial index finds them.
    """
    ALTER TABLE profile_rebuilds ADD COLUMN attempts INTEGER NOT NULL DEFAULT 1;
    CREATE INDEX builds_missing_deps ON builds (project, version, abi)
        WHERE failure_reason = 'missing-build-deps';
    """,
]

SCHEMA_VERSION = len(MIGRATIONS)


def migrate(conn: sqlite3.Connection, progress: Callable[[str], None] = lambda _: None) -> None:
    """Bring the schema up to SCHEMA_VERSION, one migration per transaction."""
    migrations.migrate(conn, MIGRATIONS, "catalogue", progress)


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

