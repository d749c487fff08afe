"""Recording what workers built in the catalogue."""

from __future__ import annotations

import hashlib
import sqlite3
from dataclasses import dataclass, field
from datetime import datetime, timezone

from publish.wheel import WheelInfo


@dataclass
class ReportedFile:
    filename: str
    size: int
    sha256: str
    requires_python: str | None = None
    apt_dependencies: list[str] = field(default_factory=list)
    apt_preinstalled: list[str] = field(default_factory=list)  # a subset of the above
    unresolved_sonames: list[str] = field(default_factory=list)


@dataclass
class BuildReport:
    project: str
    version: str
    abi: str
    status: str  # "success" or "failed"
    duration: float
    worker: str
    files: list[ReportedFile] = field(default_factory=list)


def now_iso() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def record_build(conn: sqlite3.Connection, report: BuildReport, wheels: list[WheelInfo],
                 log_path: str | None) -> None:
    """Store a build and its wheels in one transaction, replacing any earlier record
    of the same build (a re-push is the same build told again)."""
    built_at = now_iso()
    reported = {f.filename: f for f in report.files}
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute(
            "INSERT OR REPLACE INTO builds (project, version, abi, status, worker, duration, "
            "built_at, log_path) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (report.project, report.version, report.abi, report.status, report.worker,
             report.duration, built_at, log_path),
        )
        for wheel in wheels:
            _record_wheel(conn, report, wheel, reported[wheel.filename], built_at)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def _record_wheel(conn: sqlite3.Connection, report: BuildReport, wheel: WheelInfo,
                  file: ReportedFile, built_at: str) -> None:
    # A re-push of the same file keeps its first upload time, as an index should.
    row = conn.execute("SELECT uploaded_at FROM wheels WHERE filename = ? AND sha256 = ?",
                       (wheel.filename, file.sha256)).fetchone()
    conn.execute(
        "INSERT OR REPLACE INTO wheels (filename, project, version, builder_abi, "
        "python_tag, abi_tag, platform_tag, size, sha256, requires_python, "
        "metadata_sha256, uploaded_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (wheel.filename, report.project, report.version, report.abi, wheel.python_tag,
         wheel.abi_tag, wheel.platform_tag, file.size, file.sha256,
         wheel.requires_python, hashlib.sha256(wheel.metadata).hexdigest(),
         row[0] if row else built_at),
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
