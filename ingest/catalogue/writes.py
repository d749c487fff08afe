"""Every write to the catalogue, and the one transaction helper they run in.

Functions that say "the caller owns the transaction" write inside the caller's
`with transaction(conn):` so that several writes commit together (the follower
stores a pass's events and its cursor at once); the others open their own. Nothing
outside this package writes a catalogue table (tests/test_catalogue.py checks it).
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Protocol


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """BEGIN IMMEDIATE (take the write lock now, not at the first write, so a reader
    turned writer cannot deadlock); COMMIT when the block ends, ROLLBACK when it
    raises anything, KeyboardInterrupt included. Not re-entrant: a transaction
    inside another raises sqlite3.OperationalError rather than committing early."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
        conn.execute("COMMIT")
    except BaseException:
        # Some errors (a full disk, an I/O error) make SQLite roll back by itself;
        # a ROLLBACK then would raise and hide the error that matters.
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def now_iso() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- PyPI facts, written by ingest -------------------------------------------------

# Folded event rows (see ingest.events.Batch) are max-registers: each upsert keeps
# the larger key, so any order of batches gives the same rows.
UPSERT_PROJECTS = """
INSERT INTO projects (name, display_name, display_key, seen_key, deleted_key)
VALUES (?, ?, ?, ?, ?)
ON CONFLICT (name) DO UPDATE SET
    display_name = CASE WHEN excluded.display_key > display_key
                        THEN excluded.display_name ELSE display_name END,
    display_key = MAX(display_key, excluded.display_key),
    seen_key = MAX(seen_key, excluded.seen_key),
    deleted_key = MAX(deleted_key, excluded.deleted_key)
"""
UPSERT_ALIASES = "INSERT OR IGNORE INTO aliases (project, alias) VALUES (?, ?)"
UPSERT_VERSIONS = """
INSERT INTO versions (project, version, seen_key, removed_key, yank_key, unyank_key,
                      released_rank, released)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, strftime('%Y-%m-%dT%H:%M:%SZ', ?8, 'unixepoch'))
ON CONFLICT (project, version) DO UPDATE SET
    seen_key = MAX(seen_key, excluded.seen_key),
    removed_key = MAX(removed_key, excluded.removed_key),
    yank_key = MAX(yank_key, excluded.yank_key),
    unyank_key = MAX(unyank_key, excluded.unyank_key),
    released = CASE WHEN excluded.released_rank > released_rank
                    THEN excluded.released ELSE released END,
    released_rank = MAX(released_rank, excluded.released_rank)
"""
UPSERT_FILES = """
INSERT INTO files (project, version, filename, kind, seen_key, removed_key)
VALUES (?, ?, ?, ?, ?, ?)
ON CONFLICT (project, version, filename) DO UPDATE SET
    kind = CASE WHEN excluded.seen_key > seen_key THEN excluded.kind ELSE kind END,
    seen_key = MAX(seen_key, excluded.seen_key),
    removed_key = MAX(removed_key, excluded.removed_key)
"""


def apply_event_rows(conn: sqlite3.Connection, projects: Sequence[Sequence],
                     aliases: Iterable[tuple[str, str]], versions: Sequence[Sequence],
                     files: Sequence[Sequence]) -> None:
    """Upsert folded event rows, each a list in its statement's column order:
    projects [name, display_name, display_key, seen_key, deleted_key]; aliases
    (project, alias); versions [project, version, seen_key, removed_key, yank_key,
    unyank_key, released_rank, released (epoch seconds)]; files [project, version,
    filename, kind, seen_key, removed_key]. One executemany per table: the replay's
    hot path, so the rows go to SQLite as given. The caller owns the transaction."""
    conn.executemany(UPSERT_PROJECTS, projects)
    conn.executemany(UPSERT_ALIASES, aliases)
    conn.executemany(UPSERT_VERSIONS, versions)
    conn.executemany(UPSERT_FILES, files)


class ReleaseFacts(Protocol):
    """What the JSON API says of one release (ingest.metadata.ReleaseInfo)."""

    @property
    def requires_python(self) -> str | None: ...
    @property
    def yank_reason(self) -> str | None: ...


def store_metadata(conn: sqlite3.Connection, name: str, summary: str | None,
                   releases: Mapping[str, ReleaseFacts]) -> None:
    """A project's summary and, for each version listed, its Requires-Python and yank
    reason; its skips are forgotten, since Requires-Python may have changed and the
    scheduler judges again (an operator's skips stay: they judge no metadata).
    Versions not listed keep what they had."""
    with transaction(conn):
        conn.execute("UPDATE projects SET summary = ?, metadata_at = ? WHERE name = ?",
                     (summary, now_iso(), name))
        conn.execute("DELETE FROM skips WHERE project = ? AND source = 'scheduler'", (name,))
        conn.executemany(
            "UPDATE versions SET requires_python = ?, yank_reason = ?, "
            "metadata_state = 'ok' WHERE project = ? AND version = ?",
            [(r.requires_python, r.yank_reason, name, version)
             for version, r in releases.items()],
        )


def give_up_metadata(conn: sqlite3.Connection, name: str) -> None:
    """Mark a project's versions whose metadata is still unknown as unavailable, so
    the scheduler stops waiting for it. One statement: atomic on its own."""
    conn.execute("UPDATE versions SET metadata_state = 'unavailable' "
                 "WHERE project = ? AND metadata_state IS NULL", (name,))


@dataclass(frozen=True, slots=True)
class Skip:
    """A build the scheduler will not queue, and why."""

    project: str
    version: str
    abi: str
    reason: str


def record_skips(conn: sqlite3.Connection, skips: Iterable[Skip]) -> None:
    """The scheduler's skips; an operator's skip of the same build stays as it is."""
    with transaction(conn):
        conn.executemany(
            "INSERT INTO skips (project, version, abi, reason) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (project, version, abi) DO UPDATE SET reason = excluded.reason "
            "WHERE source = 'scheduler'",
            [(s.project, s.version, s.abi, s.reason) for s in skips],
        )


def seen_serials(conn: sqlite3.Connection, low: int) -> set[int]:
    """The serials from `low` up that were applied lately (see remember_serials)."""
    return {r[0] for r in conn.execute("SELECT serial FROM seen_serials WHERE serial >= ?",
                                       (low,))}


def remember_serials(conn: sqlite3.Connection, serials: Iterable[int],
                     forget_below: int) -> None:
    """Remember applied serials, so a source that re-reads a margin can drop them,
    and forget those below `forget_below`, which it no longer re-reads. The caller
    owns the transaction (the one that applies those serials' events)."""
    conn.executemany("INSERT OR IGNORE INTO seen_serials (serial) VALUES (?)",
                     [(s,) for s in serials])
    conn.execute("DELETE FROM seen_serials WHERE serial < ?", (forget_below,))


def get_state(conn: sqlite3.Connection, name: str, default: str | None = None) -> str | None:
    row = conn.execute("SELECT value FROM state WHERE name = ?", (name,)).fetchone()
    return row[0] if row else default


def set_state(conn: sqlite3.Connection, name: str, value: str) -> None:
    """One statement; within a caller's transaction when it must move with other
    writes (a source's cursor with the events it covers)."""
    conn.execute(
        "INSERT INTO state (name, value) VALUES (?, ?) "
        "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
        (name, value),
    )


# --- what we built, written by publish ------------------------------------------------

# The build report is the wire format's (worker.wire.BuildReport); the catalogue
# does not import it, and these say which of its attributes are read here.
class ReportedFileLike(Protocol):
    @property
    def filename(self) -> str: ...
    @property
    def size(self) -> int: ...
    @property
    def sha256(self) -> str: ...
    @property
    def apt_dependencies(self) -> Sequence[str]: ...
    @property
    def apt_preinstalled(self) -> Sequence[str]: ...  # a subset of apt_dependencies
    @property
    def unresolved_sonames(self) -> Sequence[str]: ...
    @property
    def armv6(self) -> bool | None: ...  # runs on a Pi Zero/1; None: unknown


class MachineLike(Protocol):
    """The builder a report names (worker.wire.Machine)."""

    @property
    def name(self) -> str: ...
    @property
    def profile(self) -> int: ...
    @property
    def os_release(self) -> str: ...
    @property
    def toolchain(self) -> str: ...


class FailureLike(Protocol):
    """Why a build failed, read from its log (publish.failures.Failure)."""

    @property
    def reason(self) -> str: ...
    @property
    def detail(self) -> str: ...
    @property
    def package(self) -> str | None: ...


class BuildReportLike(Protocol):
    @property
    def project(self) -> str: ...
    @property
    def version(self) -> str: ...
    @property
    def abi(self) -> str: ...
    @property
    def status(self) -> str: ...  # "success" or "failed"
    @property
    def duration(self) -> float: ...
    @property
    def worker(self) -> str: ...
    @property
    def files(self) -> Sequence[ReportedFileLike]: ...
    @property
    def machine(self) -> MachineLike | None: ...  # None from workers older than it


class WheelLike(Protocol):
    """A wheel the intake has checked (worker.wheel.WheelInfo)."""

    @property
    def filename(self) -> str: ...
    @property
    def python_tag(self) -> str: ...
    @property
    def abi_tag(self) -> str: ...
    @property
    def platform_tag(self) -> str: ...
    @property
    def requires_python(self) -> str | None: ...
    @property
    def metadata(self) -> bytes: ...
    @property
    def requires_dist(self) -> Sequence[str]: ...


@dataclass(frozen=True, slots=True)
class WheelCopy:
    """An abi3 or pure wheel's file name built by another ABI than its first builder
    (the `wheels` row): that ABI's bytes, kept apart when they differ (see the
    wheel_copies migration). Not a DifferingPush, which is the same ABI again."""

    filename: str
    builder_abi: str
    project: str
    version: str
    size: int
    sha256: str
    requires_python: str | None
    metadata_sha256: str | None
    armv6: bool | None
    apt: tuple[str, ...] = ()  # packages still to install on the target


def record_build(conn: sqlite3.Connection, report: BuildReportLike,
                 wheels: Iterable[WheelLike], log_path: str | None,
                 copies: Iterable[WheelCopy] = (), failure: FailureLike | None = None,
                 compiled: Mapping[str, bool | None] | None = None) -> None:
    """Store a build and its wheels in one transaction, replacing any earlier record
    of the same build (a re-push is the same build told again). Every wheel is one
    of the report's files, by name; `copies` are the build's wheels whose names
    another ABI built first. `failure`: why a failed build failed, when its log
    says; `compiled`: by file name, whether each wheel holds compiled code (see the
    catalogue's migration that added it), None or missing when it is pure."""
    built_at = now_iso()
    reported = {f.filename: f for f in report.files}
    machine = report.machine
    compiled = compiled or {}
    with transaction(conn):
        conn.execute(
            "INSERT OR REPLACE INTO builds (project, version, abi, status, worker, duration, "
            "built_at, log_path, machine, profile, os_release, toolchain, failure_reason, "
            "failure_detail, failure_package) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (report.project, report.version, report.abi, report.status, report.worker,
             report.duration, built_at, log_path,
             *((machine.name, machine.profile, machine.os_release, machine.toolchain)
               if machine is not None else (None,) * 4),
             *((failure.reason, failure.detail, failure.package)
               if failure is not None else (None,) * 3)),
        )
        for wheel in wheels:
            _record_wheel(conn, report, wheel, reported[wheel.filename], built_at,
                          compiled.get(wheel.filename))
        for copy in copies:
            _record_copy(conn, copy, built_at)


def _record_copy(conn: sqlite3.Connection, copy: WheelCopy, built_at: str) -> None:
    # As for a wheel, a re-push of the same bytes keeps its first upload time.
    row = conn.execute("SELECT uploaded_at FROM wheel_copies WHERE filename = ? "
                       "AND builder_abi = ? AND sha256 = ?",
                       (copy.filename, copy.builder_abi, copy.sha256)).fetchone()
    conn.execute(
        "INSERT OR REPLACE INTO wheel_copies (filename, builder_abi, project, version, "
        "size, sha256, requires_python, metadata_sha256, uploaded_at, armv6, apt) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (copy.filename, copy.builder_abi, copy.project, copy.version, copy.size,
         copy.sha256, copy.requires_python, copy.metadata_sha256,
         row[0] if row else built_at, copy.armv6, " ".join(sorted(set(copy.apt)))),
    )


def _record_wheel(conn: sqlite3.Connection, report: BuildReportLike, wheel: WheelLike,
                  file: ReportedFileLike, built_at: str, compiled: bool | None) -> None:
    # A re-push of the same file keeps its first upload time, as an index should.
    row = conn.execute("SELECT uploaded_at FROM wheels WHERE filename = ? AND sha256 = ?",
                       (wheel.filename, file.sha256)).fetchone()
    conn.execute(
        "INSERT OR REPLACE INTO wheels (filename, project, version, builder_abi, "
        "python_tag, abi_tag, platform_tag, size, sha256, requires_python, "
        "metadata_sha256, uploaded_at, armv6, compiled) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (wheel.filename, report.project, report.version, report.abi, wheel.python_tag,
         wheel.abi_tag, wheel.platform_tag, file.size, file.sha256,
         wheel.requires_python, hashlib.sha256(wheel.metadata).hexdigest(),
         row[0] if row else built_at, file.armv6, compiled),
    )
    conn.execute("DELETE FROM dependencies WHERE filename = ?", (wheel.filename,))
    conn.execute("DELETE FROM unresolved_sonames WHERE filename = ?", (wheel.filename,))
    preinstalled = set(file.apt_preinstalled)
    conn.executemany(
        "INSERT INTO dependencies (filename, tool, name, preinstalled) VALUES (?, ?, ?, ?)",
        [(wheel.filename, "pip", name, 0) for name in wheel.requires_dist]
        + [(wheel.filename, "apt", name, int(name in preinstalled))
           for name in sorted(set(file.apt_dependencies))],
    )
    conn.executemany(
        "INSERT INTO unresolved_sonames (filename, soname) VALUES (?, ?)",
        [(wheel.filename, soname) for soname in sorted(set(file.unresolved_sonames))],
    )


@dataclass(frozen=True, slots=True)
class DifferingPush:
    """A pushed wheel whose bytes differ from the file already served under its name:
    a rebuild that did not reproduce it. The served file stays; this is the record."""

    filename: str
    sha256: str  # of the pushed bytes
    size: int
    project: str
    version: str
    abi: str  # of the build that pushed them
    worker: str
    served_sha256: str


def record_differing_push(conn: sqlite3.Connection, push: DifferingPush) -> None:
    """Remember a push of other bytes under a served name, once per name and bytes,
    with the latest push's build, worker and time. One statement: atomic on its own."""
    conn.execute(
        "INSERT INTO differing_pushes (filename, sha256, size, project, version, abi, "
        "worker, served_sha256, pushed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (filename, sha256) DO UPDATE SET abi = excluded.abi, "
        "worker = excluded.worker, served_sha256 = excluded.served_sha256, "
        "pushed_at = excluded.pushed_at",
        (push.filename, push.sha256, push.size, push.project, push.version, push.abi,
         push.worker, push.served_sha256, now_iso()),
    )


# The tables keyed by wheel file name, emptied before `wheels` itself.
_WHEEL_DETAILS = ("dependencies", "unresolved_sonames", "differing_pushes", "wheel_copies")


def delete_orphan_rows(conn: sqlite3.Connection, project: str, filenames: Iterable[str],
                       builds: Iterable[tuple[str, str]],
                       copies: Iterable[tuple[str, str]] = ()) -> None:
    """Forget wheels (by file name), builds (version, abi) and wheel copies
    (filename, builder_abi) of a project's releases that are gone; the publisher has
    removed their files."""
    files = [(f,) for f in filenames]
    with transaction(conn):
        for table in (*_WHEEL_DETAILS, "wheels"):
            conn.executemany(f"DELETE FROM {table} WHERE filename = ?", files)  # noqa: S608
        conn.executemany("DELETE FROM wheel_copies WHERE filename = ? AND builder_abi = ?",
                         list(copies))
        # A release deleted and released again starts with no profile rebuilds.
        keys = [(project, version, abi) for version, abi in builds]
        for table in ("builds", "profile_rebuilds"):
            conn.executemany(f"DELETE FROM {table} WHERE project = ? "  # noqa: S608
                             "AND version = ? AND abi = ?", keys)


_DEAD_WHEELS = "SELECT filename FROM wheels WHERE project NOT IN (SELECT name FROM live_projects)"


def delete_dead_project_rows(conn: sqlite3.Connection) -> None:
    """Forget the wheels and builds of every project that is gone."""
    with transaction(conn):
        for table in _WHEEL_DETAILS:
            conn.execute(f"DELETE FROM {table} WHERE filename IN ({_DEAD_WHEELS})")  # noqa: S608
        conn.execute("DELETE FROM wheels WHERE project NOT IN (SELECT name FROM live_projects)")
        conn.execute("DELETE FROM builds WHERE project NOT IN (SELECT name FROM live_projects)")
        conn.execute("DELETE FROM profile_rebuilds "
                     "WHERE project NOT IN (SELECT name FROM live_projects)")


# --- an operator's decisions, written by python -m ingest admin ------------------------

@dataclass(frozen=True, slots=True)
class OperatorSkip:
    """What an operator skips: a project (version None), one release, or either for
    one ABI only; `reason` None takes the skip away."""

    project: str
    version: str | None = None
    abi: str | None = None
    reason: str | None = None


def set_operator_skip(conn: sqlite3.Connection, skip: OperatorSkip) -> int:
    """Set or clear an operator's skip; the number of rows it changed. A skip of a
    project or a release is its skip_reason (only operators write those); one for an
    ABI is a skips row of the operator's, version '' standing for every release."""
    with transaction(conn):
        return _set_operator_skip(conn, skip)


def _set_operator_skip(conn: sqlite3.Connection, skip: OperatorSkip) -> int:
    if skip.abi is not None:
        version = skip.version or ""
        if skip.reason is None:
            return conn.execute(
                "DELETE FROM skips WHERE project = ? AND version = ? AND abi = ? "
                "AND source = 'operator'", (skip.project, version, skip.abi)).rowcount
        return conn.execute(
            "INSERT INTO skips (project, version, abi, reason, source) "
            "VALUES (?, ?, ?, ?, 'operator') ON CONFLICT (project, version, abi) "
            "DO UPDATE SET reason = excluded.reason, source = 'operator'",
            (skip.project, version, skip.abi, skip.reason)).rowcount
    if skip.version is not None:
        return conn.execute("UPDATE versions SET skip_reason = ? WHERE project = ? "
                            "AND version = ?", (skip.reason, skip.project,
                                                skip.version)).rowcount
    return conn.execute("UPDATE projects SET skip_reason = ? WHERE name = ?",
                        (skip.reason, skip.project)).rowcount


def _withdraw_builds(conn: sqlite3.Connection, project: str, version: str | None) -> int:
    # A barrier no release has (keys are never negative) makes the builds those of a
    # release that is gone: the publisher removes their wheels, logs and rows as it
    # does for a deleted release (publish.index.remove_orphans).
    if version is None:
        return conn.execute("UPDATE builds SET barrier_key = -1 WHERE project = ?",
                            (project,)).rowcount
    return conn.execute("UPDATE builds SET barrier_key = -1 WHERE project = ? "
                        "AND version = ?", (project, version)).rowcount


def withdraw_builds(conn: sqlite3.Connection, project: str, version: str | None,
                    reason: str) -> int:
    """Withdraw our builds of a project or of one release and skip it with `reason`,
    in one transaction, so that nothing builds it again until an operator unskips
    it. The number of builds withdrawn."""
    with transaction(conn):
        _set_operator_skip(conn, OperatorSkip(project, version, None, reason))
        return _withdraw_builds(conn, project, version)


def set_opt_out(conn: sqlite3.Connection, project: str, reason: str | None) -> int:
    """A maintainer's opt-out (`reason` becomes the project's skip reason, which its
    pages show) withdraws every build of the project; None opts it back in. The
    number of builds withdrawn."""
    with transaction(conn):
        conn.execute("UPDATE projects SET skip_reason = ?, opted_out_at = ? WHERE name = ?",
                     (reason, None if reason is None else now_iso(), project))
        return 0 if reason is None else _withdraw_builds(conn, project, None)


def request_rebuild(conn: sqlite3.Connection, project: str, version: str, abi: str) -> None:
    """Mark a build to be replaced by its next push (see publish.intake). One
    statement: atomic on its own."""
    conn.execute("INSERT OR REPLACE INTO rebuilds (project, version, abi, requested_at) "
                 "VALUES (?, ?, ?, ?)", (project, version, abi, now_iso()))


@dataclass(frozen=True, slots=True)
class ProfileRebuildRequest:
    """A build asked for again because a newer builder profile is installed
    (ingest.profile_rebuilds), and which attempt for that profile this is."""

    project: str
    version: str
    abi: str
    profile: int  # the builder profile version it is asked for with
    attempt: int  # 1 the first time; the caller caps it


def request_profile_rebuilds(conn: sqlite3.Connection,
                             requests: Sequence[ProfileRebuildRequest]) -> None:
    """Mark each build to be replaced by its next push (as request_rebuild) and
    remember the request's attempt for its profile, all in one transaction, before
    any job is queued: a crash after it leaves requests whose job the next pass
    finds missing, never a job without its request."""
    now = now_iso()
    with transaction(conn):
        conn.executemany(
            "INSERT OR REPLACE INTO rebuilds (project, version, abi, requested_at) "
            "VALUES (?, ?, ?, ?)", [(r.project, r.version, r.abi, now) for r in requests])
        conn.executemany(
            "INSERT INTO profile_rebuilds (project, version, abi, profile, requested_at, "
            "attempts) VALUES (?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (project, version, abi, profile) DO UPDATE SET "
            "requested_at = excluded.requested_at, attempts = excluded.attempts",
            [(r.project, r.version, r.abi, r.profile, now, r.attempt) for r in requests])


def record_compiled(conn: sqlite3.Connection, compiled: Mapping[str, bool | None]) -> int:
    """Whether each wheel (by file name) holds compiled code, for wheels recorded
    before the intake said (compiled NULL): `python -m ingest admin scan-compiled`.
    A wheel a push has said it of since is left as the push said. One transaction;
    the number of wheels changed."""
    with transaction(conn):
        before = conn.total_changes
        conn.executemany("UPDATE wheels SET compiled = ? WHERE filename = ? "
                         "AND compiled IS NULL",
                         [(value, name) for name, value in compiled.items()
                          if value is not None])
        return conn.total_changes - before


def clear_rebuild(conn: sqlite3.Connection, project: str, version: str, abi: str) -> None:
    """The rebuild's push has landed. One statement: atomic on its own."""
    conn.execute("DELETE FROM rebuilds WHERE project = ? AND version = ? AND abi = ?",
                 (project, version, abi))
