"""Comparing a few projects in the catalogue with PyPI's JSON API, and repairing the
drift: a release PyPI deleted that we still list, one it has that we never saw, a
file added or removed, a yank or unyank we missed (an event lost upstream, or a
catalogue restored from an old copy).

Repairs are events, applied as the follower applies PyPI's: each carries an ordering
key at least as new as anything the catalogue has seen (the newest serial applied,
and every key of the project), so it outranks the history it corrects, while every
real event that comes later has a higher serial and still wins (see ingest.events and
the README's "Following PyPI")."""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass, field
from datetime import datetime

import requests

from ingest import catalogue, metadata
from ingest.events import (
    BINARY_SUFFIXES,
    EARLY_SERIAL,
    LATE_BASE,
    Event,
    apply_batch,
    batch_of,
)
from ingest.follower import STATUS_KEY
from ingest.metadata import ProjectInfo, ReleaseInfo
from ingest.sources import XmlRpcSource


@dataclass(frozen=True)
class PyPIFile:
    filename: str
    kind: str  # "source" or "binary"
    yanked: bool
    uploaded: int | None  # seconds since the epoch


@dataclass
class PyPIProject:
    """What PyPI's JSON API says of one project."""

    name: str  # canonical
    found: bool  # False: the API answers 404, no such project
    display_name: str = ""
    releases: dict[str, list[PyPIFile]] = field(default_factory=dict)
    info: ProjectInfo | None = None  # summary, Requires-Python, yank reasons

    def yanked(self, version: str) -> bool:
        """PyPI yanks whole releases: one is yanked when every file of it is."""
        files = self.releases.get(version, [])
        return bool(files) and all(f.yanked for f in files)


def fetch(base_url: str, name: str, timeout: float = 10.0) -> PyPIProject:
    """One project from the JSON API at base_url/pypi/NAME/json; raises
    requests.RequestException or ValueError when it fails or answers nonsense."""
    url = f"{base_url.rstrip('/')}/pypi/{name}/json"
    response = requests.get(url, timeout=timeout)
    if response.status_code == 404:
        return PyPIProject(name, found=False)
    response.raise_for_status()
    data = response.json()
    info = data.get("info") if isinstance(data, dict) else None
    listed = data.get("releases") if isinstance(data, dict) else None
    if not isinstance(info, dict) or not isinstance(listed, dict):
        raise ValueError(f"{url} is not a project's JSON (no info and releases)")
    releases: dict[str, list[PyPIFile]] = {}
    facts: dict[str, ReleaseInfo] = {}
    for version, files in listed.items():
        if not isinstance(files, list) or not all(isinstance(f, dict) for f in files):
            raise ValueError(f"releases[{version!r}] is not a list of files")
        releases[version] = [_file(f) for f in files]
        facts[version] = ReleaseInfo(
            next((f["requires_python"] for f in files if f.get("requires_python")), None),
            next((f["yanked_reason"] for f in files if f.get("yanked_reason")), None))
    summary = info.get("summary")
    display = info.get("name") if isinstance(info.get("name"), str) else name
    return PyPIProject(name, True, display, releases, ProjectInfo(
        name, True, summary if isinstance(summary, str) else None, facts))


def _file(data: dict) -> PyPIFile:
    filename = data.get("filename")
    if not isinstance(filename, str) or not filename or any(c.isspace() for c in filename):
        raise ValueError(f"a file without a usable name: {filename!r}")
    # PyPI says which files are sdists; without that, the suffix tells.
    packagetype = data.get("packagetype")
    binary = packagetype != "sdist" if packagetype else filename.endswith(BINARY_SUFFIXES)
    uploaded = data.get("upload_time_iso_8601") or data.get("upload_time")
    try:
        epoch = int(datetime.fromisoformat(uploaded.replace("Z", "+00:00")).timestamp()) \
            if isinstance(uploaded, str) else None
    except ValueError:
        epoch = None
    return PyPIFile(filename, "binary" if binary else "source", bool(data.get("yanked")),
                    epoch)


@dataclass
class Drift:
    """How the catalogue differs from PyPI for one project."""

    project: str
    project_removed: bool = False
    project_added: bool = False
    removed: list[str] = field(default_factory=list)  # versions
    added: list[str] = field(default_factory=list)
    files_added: list[tuple[str, str]] = field(default_factory=list)  # (version, file)
    files_removed: list[tuple[str, str]] = field(default_factory=list)
    yanked: list[str] = field(default_factory=list)
    unyanked: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return self.project_removed or self.project_added or any(
            (self.removed, self.added, self.files_added, self.files_removed, self.yanked,
             self.unyanked))

    def lines(self) -> list[str]:
        """What it found, one line each, as an operator reads it."""
        found = []
        if self.project_removed:
            found.append(f"{self.project}: not on PyPI any more: removed")
        if self.project_added:
            found.append(f"{self.project}: on PyPI but not in the catalogue: added")
        found += [f"{self.project} {v}: deleted on PyPI: removed" for v in self.removed]
        found += [f"{self.project} {v}: missing: added" for v in self.added]
        found += [f"{self.project} {v}: file {f} missing: added" for v, f in self.files_added]
        found += [f"{self.project} {v}: file {f} deleted on PyPI: removed"
                  for v, f in self.files_removed]
        found += [f"{self.project} {v}: yanked on PyPI: yanked" for v in self.yanked]
        found += [f"{self.project} {v}: not yanked on PyPI: unyanked" for v in self.unyanked]
        return found


def compare(conn: sqlite3.Connection, pypi: PyPIProject) -> Drift:
    drift = Drift(pypi.name)
    live = conn.execute("SELECT 1 FROM live_projects WHERE name = ?", (pypi.name,)).fetchone()
    versions = {r[0]: bool(r[1]) for r in conn.execute(
        "SELECT version, yanked FROM live_versions WHERE project = ?", (pypi.name,))}
    files: dict[str, set[str]] = {}
    for version, filename in conn.execute(
            "SELECT version, filename FROM live_files WHERE project = ?", (pypi.name,)):
        files.setdefault(version, set()).add(filename)
    if not pypi.found:
        drift.project_removed = live is not None
        return drift
    drift.project_added = live is None
    drift.removed = sorted(set(versions) - set(pypi.releases))
    drift.added = sorted(set(pypi.releases) - set(versions))
    for version, listed in sorted(pypi.releases.items()):
        names = {f.filename for f in listed}
        have = files.get(version, set())
        drift.files_added += [(version, f) for f in sorted(names - have)]
        drift.files_removed += [(version, f) for f in sorted(have - names)]
        if pypi.yanked(version) and not versions.get(version, False):
            drift.yanked.append(version)
        elif not pypi.yanked(version) and versions.get(version, False):
            drift.unyanked.append(version)
    return drift


def repair_serial(conn: sqlite3.Connection, project: str) -> int:
    """The serial of the repairs' events: that of the newest event the catalogue has
    applied (or of any key of the project, if newer), so that a repair outranks what
    it corrects and ties at most with events already seen; never below the first
    serial whose key is its serial (ingest.events.order_key)."""
    newest = [EARLY_SERIAL]
    status = json.loads(catalogue.get_state(conn, STATUS_KEY) or "{}")
    newest.append(int(status.get("serial", 0)))
    cursor = catalogue.get_state(conn, XmlRpcSource.state_key)
    if cursor and cursor.isdigit():
        newest.append(int(cursor))
    newest.append(conn.execute("SELECT COALESCE(MAX(serial), 0) FROM seen_serials")
                  .fetchone()[0])
    keys = conn.execute(
        "SELECT MAX(COALESCE((SELECT MAX(seen_key, deleted_key, display_key) FROM projects "
        "WHERE name = :p), 0), COALESCE((SELECT MAX(MAX(seen_key, removed_key, yank_key, "
        "unyank_key)) FROM versions WHERE project = :p), 0), COALESCE((SELECT "
        "MAX(MAX(seen_key, removed_key)) FROM files WHERE project = :p), 0))",
        {"p": project}).fetchone()[0]
    newest.append(keys - LATE_BASE)
    return max(newest)


def events_for(drift: Drift, pypi: PyPIProject, serial: int) -> list[Event]:
    """The events that bring the catalogue in line with PyPI, all at `serial`."""
    name, now = pypi.display_name or pypi.name, int(time.time())
    event = lambda version, action, when=now: Event(serial, when, name, version, action)  # noqa: E731
    if drift.project_removed:
        return [event(None, "remove project")]
    events = [event(None, "create")] if drift.project_added else []
    events += [event(v, "remove release") for v in drift.removed]
    for version in drift.added:
        times = [f.uploaded for f in pypi.releases[version] if f.uploaded is not None]
        events.append(event(version, "new release", min(times, default=now)))
    kinds = {(v, f.filename): f for v, files in pypi.releases.items() for f in files}
    for version, filename in drift.files_added:
        file = kinds[version, filename]
        head = "add source file" if file.kind == "source" else "add binary file"
        events.append(event(version, f"{head} {filename}", file.uploaded or now))
    events += [event(v, f"remove file {f}") for v, f in drift.files_removed]
    events += [event(v, "yank release") for v in drift.yanked]
    events += [event(v, "unyank release") for v in drift.unyanked]
    return events


def reconcile(conn: sqlite3.Connection, pypi: PyPIProject) -> Drift:
    """Compare one project with what PyPI says of it and apply the repairs, with its
    metadata (summary, Requires-Python, yank reasons) as the JSON API gives it."""
    drift = compare(conn, pypi)
    if drift:
        events = events_for(drift, pypi, repair_serial(conn, pypi.name))
        with catalogue.transaction(conn):
            apply_batch(conn, batch_of(events))
    if pypi.info is not None:
        metadata.store(conn, pypi.info)
    return drift


def still_differs(conn: sqlite3.Connection, pypi: PyPIProject) -> list[str]:
    """What the repairs could not change (an event already applied at the repairs'
    serial ties with them), one line each."""
    return compare(conn, pypi).lines()

