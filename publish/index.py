"""Writing www/ from the catalogue: the simple index for pip, pages for people.

Publishing one project touches only that project's files and, when the project
appears or disappears, the root index. The home page, packages.json and the
stylesheet are written by a full rebuild and, at most once a minute, by the
publish worker (see publish.jobs)."""

from __future__ import annotations

import logging
import multiprocessing
import os
import sqlite3
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from publish import pages, simple
from publish.files import inside, inside_str, link_atomic, remove, write_atomic, write_directory
from publish.releases import (
    Project,
    is_valid_name,
    load_all,
    load_project,
    orphans_of_dead_project,
)
from worker.settings import Settings

log = logging.getLogger("publish")

# Top-level entries of www/ that are not per-project directories.
TOP_FILES = {"index.html", "index.json"}


def site_of(config: Settings) -> pages.Site:
    return pages.Site(abis=config.abis, public_url=config.public_url,
                      pypi_url=config.pypi_url)


@dataclass
class Outcome:
    project: str
    live: bool
    files_written: int = 0
    files_removed: int = 0
    root_written: bool = False


def publish_project(conn: sqlite3.Connection, www: Path, site: pages.Site, name: str
                    ) -> Outcome:
    """Bring one project's files in www/ in line with the catalogue."""
    if not is_valid_name(name):
        # PyPI cannot hold such a name; it never becomes a path or a page.
        log.warning("not publishing %r: not a valid project name", name)
        return Outcome(name, live=False)
    project = load_project(conn, name)
    outcome = Outcome(name, live=project is not None)
    listed = (www / "simple" / name / "index.html").exists()
    if listed != outcome.live:
        # The root first: a crash after it leaves the project's own files out of
        # step, which the next publish sees and repairs.
        outcome.root_written = write_root(conn, www)
    if project is None:
        outcome.files_removed = remove_project(conn, www, name)
    else:
        outcome.files_removed = remove_orphans(conn, www, project)
        outcome.files_written = write_project(www, site, project)
    return outcome


def write_project(www: Path, site: pages.Site, project: Project,
                  present: Callable[[str, str], bool] | None = None) -> int:
    """Write the project's simple pages, aliases and people's pages; the number of
    files that changed. A project without directories yet (every project of a
    rebuild into an empty www/) gets each directory whole, with no file compared.
    present(top, name) tells whether www/top/name exists (default: ask the file
    system); a rebuild answers from one listing of each top directory."""
    listed = simple.expand_aliases(simple.listing(project))
    index_files = {"index.html": simple.project_html(project, listed).encode(),
                   "index.json": simple.project_json(project, listed).encode()}
    page_files = {"index.html": pages.project_page(site, project).encode(),
                  "json/index.json": pages.project_json(site, project).encode()}
    written = 0
    for top, files in (("simple", index_files), ("project", page_files)):
        directory = inside_str(www, top, project.name)
        exists = present(top, project.name) if present else os.path.isdir(directory)
        if not exists and write_directory(directory, files):
            written += len(files)
            continue
        if top == "simple":
            written += _link_aliases(directory, project)
        for name, data in files.items():
            written += write_atomic(os.path.join(directory, name), data)
    return written


def _link_aliases(directory: str, project: Project) -> int:
    """The armv6l name of each armv7l wheel (and of its metadata) as a link to it."""
    linked = 0
    for wheel in project.wheels():
        alias = simple.armv6l_name(wheel.filename)
        if alias and os.path.exists(os.path.join(directory, wheel.filename)):
            linked += link_atomic(os.path.join(directory, alias), wheel.filename)
            if os.path.exists(os.path.join(directory, f"{wheel.filename}.metadata")):
                linked += link_atomic(os.path.join(directory, f"{alias}.metadata"),
                                      f"{wheel.filename}.metadata")
    return linked


def remove_orphans(conn: sqlite3.Connection, www: Path, project: Project) -> int:
    """Remove the wheels, aliases and logs of releases that are gone, files and rows."""
    if not project.orphan_wheels and not project.orphan_builds:
        return 0
    removed = 0
    directory = inside(www, "simple", project.name)
    for wheel in project.orphan_wheels:
        names = [wheel.filename]
        if alias := simple.armv6l_name(wheel.filename):
            names.append(alias)
        for name in names:
            removed += remove(inside(directory, name))
            removed += remove(inside(directory, f"{name}.metadata"))
    for build in project.orphan_builds:
        if build.log_path:
            path = inside(www, build.log_path)
            removed += remove(path)
            _remove_empty(path.parent, inside(www, "logs"))
    _delete_rows(conn, project.name,
                 filenames=[w.filename for w in project.orphan_wheels],
                 builds=[(b.version, b.abi) for b in project.orphan_builds])
    log.info("%s: removed %d files of deleted releases", project.name, removed)
    return removed


def remove_project(conn: sqlite3.Connection, www: Path, name: str) -> int:
    """Remove everything of a project that is gone: its directories and our rows."""
    removed = sum(remove(inside(www, top, name)) for top in ("simple", "project", "logs"))
    dead = orphans_of_dead_project(conn, name)
    if dead.orphan_wheels or dead.orphan_builds:
        _delete_rows(conn, name, filenames=[w.filename for w in dead.orphan_wheels],
                     builds=[(b.version, b.abi) for b in dead.orphan_builds])
    if removed:
        log.info("%s: removed, the project is gone", name)
    return removed


def _remove_empty(directory: Path, stop: Path) -> None:
    while directory != stop and directory.is_relative_to(stop):
        try:
            directory.rmdir()
        except OSError:
            return
        directory = directory.parent


def _delete_rows(conn: sqlite3.Connection, project: str, filenames: list[str],
                 builds: list[tuple[str, str]]) -> None:
    conn.execute("BEGIN IMMEDIATE")
    try:
        for table in ("dependencies", "unresolved_sonames", "wheels"):
            conn.executemany(f"DELETE FROM {table} WHERE filename = ?",  # noqa: S608
                             [(f,) for f in filenames])
        conn.executemany("DELETE FROM builds WHERE project = ? AND version = ? AND abi = ?",
                         [(project, version, abi) for version, abi in builds])
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def live_names(conn: sqlite3.Connection) -> list[str]:
    return [name for (name,) in conn.execute("SELECT name FROM live_projects ORDER BY name")
            if is_valid_name(name)]


def write_root(conn: sqlite3.Connection, www: Path, names: list[str] | None = None) -> bool:
    names = live_names(conn) if names is None else names
    html = write_atomic(inside(www, "simple", "index.html"), simple.root_html(names).encode())
    json = write_atomic(inside(www, "simple", "index.json"), simple.root_json(names).encode())
    return html or json


def write_home(conn: sqlite3.Connection, www: Path, site: pages.Site) -> int:
    """The home page with its totals, packages.json for search, and the stylesheet."""
    one = lambda sql: conn.execute(sql).fetchone()  # noqa: E731
    wheels, wheel_bytes = one("SELECT COUNT(*), COALESCE(SUM(size), 0) FROM wheels")
    statuses = dict(conn.execute("SELECT status, COUNT(*) FROM builds GROUP BY status"))
    totals = pages.Totals(
        projects=one("SELECT COUNT(*) FROM live_projects")[0],
        releases_built=one("SELECT COUNT(*) FROM (SELECT DISTINCT project, version "
                           "FROM wheels)")[0],
        wheels=wheels, wheel_bytes=wheel_bytes,
        builds_succeeded=statuses.get("success", 0), builds_failed=statuses.get("failed", 0),
    )
    recent = [pages.RecentBuild(*row) for row in conn.execute(
        "SELECT b.project, p.display_name, b.version, b.abi, b.status, b.built_at "
        "FROM builds b JOIN live_projects p ON p.name = b.project "
        "ORDER BY b.built_at DESC, b.project, b.version, b.abi LIMIT 20")
        if is_valid_name(row[0])]
    search_rows = [(name, summary, None) for name, summary in conn.execute(
        "SELECT name, summary FROM live_projects ORDER BY name") if is_valid_name(name)]
    totals.projects = len(search_rows)  # names PyPI could hold; the rest are never shown
    written = write_atomic(inside(www, "index.html"),
                           pages.home_page(site, totals, recent).encode())
    written += write_atomic(inside(www, "packages.json"),
                            pages.packages_json(search_rows).encode())
    written += write_atomic(inside(www, "style.css"), pages.STYLE.encode())
    return written


def publish_all(conn: sqlite3.Connection, www: Path, site: pages.Site,
                progress: Callable[[str], None] = lambda _: None,
                processes: int | None = None) -> int:
    """Rewrite all of www/ from the catalogue (unchanged files are left alone) and
    remove what belongs to projects that are gone. The number of live projects.

    Projects are split into ranges of names written by parallel processes, one per
    core by default: rendering and the kernel's work of making directories and files
    both keep a core busy."""
    names = live_names(conn)
    shards = _shards(names, default_processes(len(names)) if processes is None else processes)
    if len(shards) == 1:
        _publish_range(conn, www, site, *shards[0])
    else:
        database = conn.execute("PRAGMA database_list").fetchone()[2]
        # spawn, not fork: a forked child of a process with threads (a server, a
        # worker's heartbeat) can inherit a lock held by a thread that does not exist.
        context = multiprocessing.get_context("spawn")
        with context.Pool(len(shards)) as pool:
            jobs = [pool.apply_async(_publish_range_in, (database, www, site, *shard))
                    for shard in shards]
            for done, job in enumerate(jobs, 1):
                job.get()
                progress(f"{done}/{len(jobs)} parts written")
    live = set(names)
    for top in ("simple", "project", "logs"):
        directory = www / top
        if not directory.is_dir():
            continue
        for entry in os.scandir(directory):
            if entry.name not in live and entry.name not in TOP_FILES \
                    and is_valid_name(entry.name):
                remove_project(conn, www, entry.name)
    _delete_dead_rows(conn)
    write_root(conn, www, names)
    write_home(conn, www, site)
    progress(f"{len(names):,} projects written")
    return len(names)


def default_processes(projects: int) -> int:
    """One process per core, none for a few thousand projects (starting one costs
    more). More processes than cores only add switching: measured on 2 cores, the
    kernel's work of making inodes and the rendering are both CPU, not waiting."""
    return min(os.cpu_count() or 1, max(1, projects // 5000))


def _shards(names: list[str], count: int) -> list[tuple[str | None, str | None]]:
    """`count` ranges of names [first, last) covering every name."""
    if count <= 1 or len(names) < count:
        return [(None, None)]
    bounds = sorted({names[len(names) * i // count] for i in range(1, count)})
    return list(zip([None, *bounds], [*bounds, None], strict=True))


def _publish_range_in(database: str, www: Path, site: pages.Site, first: str | None,
                      last: str | None) -> None:
    from ingest import catalogue  # a fresh connection in each process

    with closing(catalogue.connect(database)) as conn:
        _publish_range(conn, www, site, first, last)


def _publish_range(conn: sqlite3.Connection, www: Path, site: pages.Site, first: str | None,
                   last: str | None) -> None:
    listed = {top: _entries(www / top) for top in ("simple", "project")}
    present = lambda top, name: name in listed[top]  # noqa: E731
    for project in load_all(conn, first, last):
        if not is_valid_name(project.name):
            continue
        remove_orphans(conn, www, project)
        write_project(www, site, project, present)


def _entries(directory: Path) -> frozenset[str]:
    """The names in a directory, none if it does not exist: one listing instead of a
    stat per project. A directory made after it is found when its rename fails."""
    try:
        return frozenset(os.listdir(directory))
    except FileNotFoundError:
        return frozenset()


DEAD_WHEELS = "SELECT filename FROM wheels WHERE project NOT IN (SELECT name FROM live_projects)"


def _delete_dead_rows(conn: sqlite3.Connection) -> None:
    """Our rows for projects that are gone (their files went with their directories)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        for table in ("dependencies", "unresolved_sonames"):
            conn.execute(f"DELETE FROM {table} WHERE filename IN ({DEAD_WHEELS})")  # noqa: S608
        conn.execute("DELETE FROM wheels WHERE project NOT IN (SELECT name FROM live_projects)")
        conn.execute("DELETE FROM builds WHERE project NOT IN (SELECT name FROM live_projects)")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
