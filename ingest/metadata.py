"""Summary, Requires-Python and yank reasons from PyPI's JSON API.

Fetches run in a small thread pool beside the event stream and never hold it up:
the follower hands over project names and, on each pass, writes whatever answers
have arrived. Until a version's metadata is known (or given up on) the scheduler
holds its builds back, so a build is never queued for a Python its release rules out."""

from __future__ import annotations

import logging
import sqlite3
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import requests

from ingest import catalogue

log = logging.getLogger("ingest")

ATTEMPTS = 5  # passes a project's metadata is tried before its versions are given up on


@dataclass
class ReleaseInfo:
    requires_python: str | None
    yank_reason: str | None


@dataclass
class ProjectInfo:
    name: str  # canonical
    found: bool  # False: the API says no such project (404)
    summary: str | None = None
    releases: dict[str, ReleaseInfo] = field(default_factory=dict)


def fetch_project(base_url: str, name: str, timeout: float = 10.0,
                  session: requests.Session | None = None) -> ProjectInfo:
    """One project's metadata; raises requests.RequestException or ValueError when
    the API fails or answers nonsense (the caller tries again later)."""
    url = f"{base_url.rstrip('/')}/pypi/{name}/json"
    response = (session or requests).get(url, timeout=timeout)
    if response.status_code == 404:
        return ProjectInfo(name, found=False)
    response.raise_for_status()
    data = response.json()
    info = data.get("info") or {}
    releases = {}
    for version, files in (data.get("releases") or {}).items():
        if not isinstance(files, list):
            raise ValueError(f"releases[{version!r}] is not a list")
        requires = next((f.get("requires_python") for f in files
                         if isinstance(f, dict) and f.get("requires_python")), None)
        reason = next((f.get("yanked_reason") for f in files
                       if isinstance(f, dict) and f.get("yanked_reason")), None)
        releases[version] = ReleaseInfo(requires or None, reason or None)
    summary = info.get("summary")
    return ProjectInfo(name, True, summary if isinstance(summary, str) else None, releases)


class MetadataFetcher:
    """Fetch in the background; write in the caller's thread (SQLite has one writer)."""

    def __init__(self, base_url: str, threads: int = 4, timeout: float = 10.0):
        self.base_url, self.timeout = base_url, timeout
        self.pool = ThreadPoolExecutor(threads, thread_name_prefix="metadata")
        self.session = requests.Session()
        self.pending: dict[str, Future] = {}
        self.attempts: dict[str, int] = {}

    def request(self, names: set[str]) -> None:
        for name in names - self.pending.keys():
            self.pending[name] = self.pool.submit(fetch_project, self.base_url, name,
                                                  self.timeout, self.session)

    def request_missing(self, conn: sqlite3.Connection) -> None:
        """Ask again for every project with versions whose metadata is unknown."""
        rows = conn.execute("SELECT DISTINCT project FROM live_versions "
                            "WHERE metadata_state IS NULL LIMIT 1000")
        self.request({r[0] for r in rows})

    def collect(self, conn: sqlite3.Connection) -> int:
        """Write every answer that has arrived; return how many projects were written."""
        done = [name for name, future in self.pending.items() if future.done()]
        for name in done:
            future = self.pending.pop(name)
            try:
                info = future.result()
            except (requests.RequestException, ValueError) as error:
                self._failed(conn, name, error)
                continue
            store(conn, info)
            if still_unknown(conn, name):
                self._failed(conn, name, ValueError("the API does not list every release yet"))
            else:
                self.attempts.pop(name, None)
        return len(done)

    def _failed(self, conn: sqlite3.Connection, name: str, error: Exception) -> None:
        self.attempts[name] = self.attempts.get(name, 0) + 1
        log.warning("metadata for %s: %s (attempt %d)", name, error, self.attempts[name])
        if self.attempts[name] >= ATTEMPTS:
            catalogue.give_up_metadata(conn, name)
            del self.attempts[name]

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)


def store(conn: sqlite3.Connection, info: ProjectInfo) -> None:
    """Write one project's metadata. Versions the API does not list yet stay unknown
    (its answer can lag the event log) unless the project itself is missing."""
    if info.found:
        catalogue.store_metadata(conn, info.name, info.summary, info.releases)
    else:
        catalogue.give_up_metadata(conn, info.name)


def still_unknown(conn: sqlite3.Connection, name: str) -> bool:
    return conn.execute("SELECT 1 FROM live_versions WHERE project = ? "
                        "AND metadata_state IS NULL", (name,)).fetchone() is not None
