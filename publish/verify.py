"""Checking www/ against the catalogue (python -m ingest admin verify): every file the
index lists is there with its size and hash, no file is there that nothing accounts
for, and every page is what the publisher would write now. Pages are compared with a
rendering by the publisher's own code into a scratch directory, so the check cannot
drift from what publishing writes.

Repairing does what publishing does (rewrite a project's pages and links, remove the
files of withdrawn or deleted releases and of projects that are gone, rewrite the
root and home pages) and removes files nothing accounts for. A wheel that is listed
but missing or damaged cannot be made again here: it is reported, for an operator to
rebuild or import."""

from __future__ import annotations

import os
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from publish import badge, index, pages
from publish import downloads as shown_downloads
from publish.files import inside, remove
from publish.releases import Project, is_valid_name, load_all
from publish.simple import armv6l_name
from stats.downloads import Downloads
from worker.build import sha256_of

# A publisher's temporary file or directory (publish.files) younger than this is
# one being written now, not debris of a crash.
TEMPORARY_AGE = 3600.0


@dataclass(frozen=True)
class Finding:
    """One way www/ differs from the catalogue."""

    kind: str  # "missing", "damaged", "orphan" (nothing lists it) or "stale"
    path: str  # relative to www/
    detail: str
    # How a repair fixes it: "publish" (the project's publish), "remove" (the path),
    # "gone" (remove a project that is gone), "root", "home", or None (it cannot).
    fix: str | None
    project: str | None = None

    def line(self) -> str:
        return f"{self.kind:8} {self.path}: {self.detail}"


def verify(conn: sqlite3.Connection, www: Path, site: pages.Site) -> list[Finding]:
    """Every finding, projects in name order, then the top of www/."""
    findings: list[Finding] = []
    live: set[str] = set()
    shown = shown_downloads.shown(site.downloads_path)  # once, not once a project
    with tempfile.TemporaryDirectory(prefix="verify-") as scratch:
        for project in load_all(conn):
            if is_valid_name(project.name):
                live.add(project.name)
                findings += _check_project(www, Path(scratch), site, project, shown)
        findings += _check_top(conn, www, Path(scratch), site, live)
    return findings


def repair(conn: sqlite3.Connection, www: Path, site: pages.Site,
           findings: list[Finding]) -> int:
    """Fix what can be fixed; the number of findings acted on."""
    acted = 0
    for finding in findings:
        if finding.fix == "remove":
            remove(inside(www, *finding.path.split("/")))
            acted += 1
    for name in sorted({f.project for f in findings if f.fix == "gone" and f.project}):
        index.remove_project(conn, www, name)
    for name in sorted({f.project for f in findings if f.fix == "publish" and f.project}):
        index.publish_project(conn, www, site, name)
    if any(f.fix == "root" for f in findings):
        index.write_root(conn, www)
    if any(f.fix == "home" for f in findings):
        index.write_home(conn, www, site)
    return acted + sum(f.fix not in (None, "remove") for f in findings)


def _check_project(www: Path, scratch: Path, site: pages.Site, project: Project,
                   shown: Mapping[str, Downloads]) -> list[Finding]:
    name = project.name
    found: list[Finding] = []
    stale = lambda path, detail: found.append(Finding("stale", path, detail, "publish", name))  # noqa: E731
    simple = www / "simple" / name
    expected = {"index.html", "index.json"}
    for wheel in project.wheels():
        expected |= {wheel.filename, f"{wheel.filename}.metadata"}
        found += _check_file(simple / wheel.filename, f"simple/{name}/{wheel.filename}",
                             wheel.size, wheel.sha256)
        found += _check_file(simple / f"{wheel.filename}.metadata",
                             f"simple/{name}/{wheel.filename}.metadata", None,
                             wheel.metadata_sha256)
        alias = armv6l_name(wheel.filename)
        if alias and wheel.armv6:
            expected |= {alias, f"{alias}.metadata"}
            if os.path.lexists(simple / wheel.filename) and not os.path.islink(simple / alias):
                stale(f"simple/{name}/{alias}", f"the armv6l name of {wheel.filename} is "
                      "not linked")
    # Wheels and logs of withdrawn or deleted releases: publishing removes them.
    pending = {w.filename for w in project.orphan_wheels}
    pending |= {f"{a}{suffix}" for w in project.orphan_wheels
                if (a := armv6l_name(w.filename)) for suffix in ("", ".metadata")}
    pending |= {f"{f}.metadata" for f in list(pending)}
    for wheel in project.orphan_wheels:
        stale(f"simple/{name}/{wheel.filename}", "a wheel of a release that is gone or "
              "withdrawn, not removed yet")
    logs = {b.log_path for r in project.releases for b in r.builds.values() if b.log_path}
    old_logs = {b.log_path for b in project.orphan_builds if b.log_path}
    for build in project.orphan_builds:
        if build.log_path and (www / build.log_path).exists():
            stale(build.log_path, "the log of a build that is gone, not removed yet")
    for log_path in sorted(logs):
        if not (www / log_path).is_file():
            found.append(Finding("missing", log_path, "a build's log is missing", None, name))
    # The pages as the publisher writes them now (the per-release pages among them),
    # side by side with those served.
    index.write_project(scratch, site, project, downloads=shown)
    pages_dir = scratch / "simple" / name
    if pages_dir.is_dir():
        expected |= {path.name for path in pages_dir.iterdir() if path.is_file()}
    found += _strays(www, f"simple/{name}", expected | pending, name)
    found += _strays(www, f"logs/{name}", {p.removeprefix(f"logs/{name}/")
                                           for p in logs | old_logs}, name)
    written = {path.relative_to(scratch).as_posix(): path
               for top in ("simple", "project") for path in (scratch / top / name).rglob("*")
               if path.is_file()}
    for relative, path in sorted(written.items()):
        served = www / relative
        if not served.is_file() or served.read_bytes() != path.read_bytes():
            stale(relative, "missing" if not served.exists() else "not the current page")
    found += _strays(www, f"project/{name}", {p.removeprefix(f"project/{name}/")
                                              for p in written}, name)
    for top in ("simple", "project"):
        shutil.rmtree(scratch / top / name, ignore_errors=True)
    return found


def _check_file(path: Path, relative: str, size: int | None, sha256: str | None
                ) -> list[Finding]:
    if not path.is_file():
        return [Finding("missing", relative, "listed but not there", None)]
    if size is not None and path.stat().st_size != size:
        return [Finding("damaged", relative, f"{path.stat().st_size} bytes, not {size}", None)]
    if sha256 is not None and sha256_of(path) != sha256:
        return [Finding("damaged", relative, "its sha256 is not the one listed", None)]
    return []


def _strays(www: Path, top: str, expected: set[str], project: str | None) -> list[Finding]:
    """Files under www/top (recursively) that are not `expected` (paths relative to
    it): nothing lists them."""
    directory = www / top
    if not directory.is_dir():
        return []
    found = []
    for path in sorted(directory.rglob("*")):
        relative = path.relative_to(directory).as_posix()
        if path.is_dir() and not path.is_symlink():
            continue
        if relative in expected or _being_written(path):
            continue
        found.append(Finding("orphan", f"{top}/{relative}", "no catalogue row lists it",
                             "remove", project))
    return found


def _being_written(path: Path) -> bool:
    if not any(part.startswith(".tmp-") for part in path.parts):
        return False
    try:
        return time.time() - path.lstat().st_mtime < TEMPORARY_AGE
    except FileNotFoundError:
        return True  # gone while we looked: it was being written


def _check_top(conn: sqlite3.Connection, www: Path, scratch: Path, site: pages.Site,
               live: set[str]) -> list[Finding]:
    found = []
    for top in ("simple", "project", "logs"):
        directory = www / top
        if not directory.is_dir():
            continue
        for entry in sorted(os.scandir(directory), key=lambda e: e.name):
            if entry.name in live or entry.name in index.TOP_FILES:
                continue
            if entry.is_dir(follow_symlinks=False) and is_valid_name(entry.name):
                found.append(Finding("orphan", f"{top}/{entry.name}", "a project that is gone",
                                     "gone", entry.name))
            elif not _being_written(Path(entry.path)):
                found.append(Finding("orphan", f"{top}/{entry.name}",
                                     "no catalogue row lists it", "remove"))
    dead = conn.execute("SELECT DISTINCT project FROM wheels WHERE project NOT IN "
                        "(SELECT name FROM live_projects) UNION SELECT DISTINCT project "
                        "FROM builds WHERE project NOT IN (SELECT name FROM live_projects)")
    for (name,) in dead:
        if is_valid_name(name) and not any(f.project == name for f in found):
            found.append(Finding("stale", f"simple/{name}", "rows of a project that is gone",
                                 "gone", name))
    index.write_root(conn, scratch)
    index.write_home(conn, scratch, site)
    for relative, fix in (("simple/index.html", "root"), ("simple/index.json", "root"),
                          ("index.html", "home"), ("packages.json", "home"),
                          ("feed.xml", "home"), ("style.css", "home"),
                          (badge.FALLBACK, "home")):
        served = www / relative
        if not served.is_file() or served.read_bytes() != (scratch / relative).read_bytes():
            found.append(Finding("stale", relative, "missing" if not served.exists()
                                 else "not the current page", fix))
    return found
