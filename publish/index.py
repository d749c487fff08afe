"""Writing www/ from the catalogue: the simple index for pip, pages for people.

Publishing one project touches only that project's files and, when the project
appears or disappears, the root index. The home page, the index's feed,
packages.json and the stylesheet are written by a full rebuild and, within seconds
of a publish, by the publish worker (see publish.jobs), which also asks, once a day,
for a publish of each project whose downloads changed (publish.downloads)."""

from __future__ import annotations

import json as json_module
import logging
import multiprocessing
import os
import sqlite3
from collections.abc import Callable, Iterator, Mapping
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from ingest.catalogue import delete_dead_project_rows, delete_orphan_rows
from ingest.settings import Settings
from publish import badge, feeds, pages, simple
from publish import downloads as shown_downloads
from publish.files import inside, inside_str, link_atomic, remove, write_atomic, write_directory
from publish.releases import (
    CODENAMES,
    RELEASE_INDEXES,
    Project,
    ReleaseIndex,
    is_valid_name,
    load_all,
    load_project,
    orphans_of_dead_project,
)
from stats.downloads import Downloads

log = logging.getLogger("publish")

# Top-level entries of www/ that are not per-project directories.
TOP_FILES = {"index.html", "index.json"}
# The per-release indexes' directories of projects, beside simple/ and project/.
RELEASE_TOPS = tuple(f"{codename}/simple" for codename in CODENAMES)


# The publisher's record of the downloads its pages show, beside the catalogue.
DOWNLOADS_RECORD = "publish-downloads.db"


def site_of(config: Settings) -> pages.Site:
    return pages.Site(abis=config.abis, public_url=config.public_url,
                      pypi_url=config.pypi_url,
                      downloads_path=config.data_dir / DOWNLOADS_RECORD)


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
    for release in site.releases:
        # As above, each release's root first, with or without this project.
        before = os.path.exists(inside_str(www, "simple", name, f"{release.codename}.html"))
        after = project is not None and bool(simple.release_listing(project, release))
        if before != after:
            outcome.root_written |= write_release_root(
                www, release, _release_root_names(www, release) ^ {name})
    if project is None:
        outcome.files_removed = remove_project(conn, www, name)
    else:
        outcome.files_removed = remove_orphans(conn, www, project)
        outcome.files_written = write_project(www, site, project)
    return outcome


def write_project(www: Path, site: pages.Site, project: Project,
                  present: Callable[[str, str], bool] | None = None,
                  in_release: dict[str, list[str]] | None = None,
                  downloads: Mapping[str, Downloads] | None = None) -> int:
    """Write the project's simple pages (its own, and each release index's that
    lists a wheel of it), aliases and people's pages; the number of files that
    changed. A project without directories yet (every project of a rebuild into an
    empty www/) gets each directory whole, with no file compared. present(top, name)
    tells whether www/top/name exists (default: ask the file system); a rebuild
    answers from one listing of each top directory. The project's name is added
    to in_release[codename] for each release index that lists it. `downloads`: the
    record's figures, if the caller has read them (a rebuild reads them once).

    Beside the page and its JSON: the project's two feeds and its badge."""
    listed = simple.expand_aliases(simple.listing(project))
    index_files = {"index.html": simple.project_html(project, listed).encode(),
                   "index.json": simple.project_json(project, listed).encode()}
    releases, unlisted = [], []
    for release in site.releases:
        if release_files := simple.expand_aliases(simple.release_listing(project, release)):
            index_files.update(release_pages(project, release, release_files))
            releases.append(release)
            if in_release is not None:
                in_release[release.codename].append(project.name)
        else:
            unlisted.append(release)
    if downloads is None:
        downloads = shown_downloads.shown(site.downloads_path, project.name)
    shown = downloads.get(project.name)
    page_files = {
        "index.html": pages.project_page(site, project, releases, shown).encode(),
        "json/index.json": pages.project_json(site, project, shown).encode(),
        "feed.xml": pages.feed_xml(feeds.project_feed(site.public_url, project)).encode(),
        "failures.xml": pages.feed_xml(
            feeds.failures_feed(site.public_url, project)).encode(),
        "badge.svg": pages.badge_svg(project).encode(),
    }
    written = 0
    for top, files in (("simple", index_files), ("project", page_files)):
        directory = inside_str(www, top, project.name)
        exists = present(top, project.name) if present else os.path.isdir(directory)
        if not exists and write_directory(directory, files):
            written += len(files)
            continue
        if top == "simple":
            written += _link_aliases(directory, project)
            written += _drop_release_pages(directory, unlisted)
        for name, data in files.items():
            written += write_atomic(os.path.join(directory, name), data)
    if any(w.copies for w in project.wheels()):
        for release in site.releases:
            written += _link_copy_aliases(www, project, release)
    return written


def release_pages(project: Project, release: ReleaseIndex, files: list[simple.Listed]
                  ) -> dict[str, bytes]:
    """The project's page in a release's index, both forms, named for the project's
    simple/ directory: www/simple/<project>/<codename>.html and .json are served as
    /<codename>/simple/<project>/ (nginx.conf, publish.server). Kept beside the
    project's own pages rather than in a directory of their own: a new directory
    costs the file system several times what a file in an existing one does, and a
    rebuild makes one per project."""
    return {f"{release.codename}.html": simple.project_html(project, files).encode(),
            f"{release.codename}.json": simple.project_json(project, files).encode()}


def _drop_release_pages(directory: str, releases: list[ReleaseIndex]) -> int:
    """Remove the pages of releases that no longer list a wheel of the project."""
    removed = 0
    for release in releases:
        for suffix in (".html", ".json"):
            try:
                os.unlink(os.path.join(directory, release.codename + suffix))
                removed += 1
            except FileNotFoundError:
                pass
    return removed


def _link_aliases(directory: str, project: Project) -> int:
    """The armv6l name of each armv7l wheel that runs on a Pi Zero/1 (and of its
    metadata) as a link to it; the links of any other are taken away (published
    before its verdict was known, or the verdict changed)."""
    linked = 0
    for wheel in project.wheels():
        alias = simple.armv6l_name(wheel.filename)
        if alias and not wheel.armv6:
            linked += _unlink_alias(directory, alias, wheel.filename)
        elif alias:
            linked += _link_alias(directory, alias, wheel.filename)
    return linked


def _link_copy_aliases(www: Path, project: Project, release: ReleaseIndex) -> int:
    """_link_aliases for a release's own bytes of names built differently by
    another release, which are kept in www/<codename>/simple/<project>/ (see
    publish.intake)."""
    directory = inside_str(www, release.codename, "simple", project.name)
    if not os.path.isdir(directory):
        return 0
    linked = 0
    for wheel in project.wheels():
        if not wheel.copies or not (alias := simple.armv6l_name(wheel.filename)):
            continue
        chosen = wheel.release_choice(release)
        if chosen is None or chosen.sha256 == wheel.sha256 or not chosen.armv6:
            linked += _unlink_alias(directory, alias, wheel.filename)
        else:
            linked += _link_alias(directory, alias, wheel.filename)
    return linked


def _link_alias(directory: str, alias: str, filename: str) -> int:
    """Link `alias` (and its metadata's alias) to `filename` in `directory`, if the
    file is there."""
    if not os.path.exists(os.path.join(directory, filename)):
        return 0
    linked = link_atomic(os.path.join(directory, alias), filename)
    if os.path.exists(os.path.join(directory, f"{filename}.metadata")):
        linked += link_atomic(os.path.join(directory, f"{alias}.metadata"),
                              f"{filename}.metadata")
    return linked


def _unlink_alias(directory: str, alias: str, filename: str) -> int:
    """Remove `alias` and its metadata's alias if they are our links to `filename`:
    a real file of that name is not ours to remove."""
    removed = 0
    for name, target in ((alias, filename), (f"{alias}.metadata", f"{filename}.metadata")):
        path = os.path.join(directory, name)
        try:
            if os.readlink(path) == target:
                os.unlink(path)
                removed += 1
        except OSError:
            pass  # no link there
    return removed


def remove_orphans(conn: sqlite3.Connection, www: Path, project: Project) -> int:
    """Remove the wheels, aliases and logs of releases that are gone, files and rows."""
    if not project.orphan_wheels and not project.orphan_builds and not project.orphan_copies:
        return 0
    removed = 0
    directory = inside(www, "simple", project.name)
    for wheel in project.orphan_wheels:
        for name in _names_of(wheel.filename):
            removed += remove(inside(directory, name))
            for codename in CODENAMES:  # its copies' files, if other bytes were kept
                removed += remove(inside(www, codename, "simple", project.name, name))
    for filename, abi in project.orphan_copies:
        if release := RELEASE_INDEXES.get(abi):
            for name in _names_of(filename):
                removed += remove(inside(www, release.codename, "simple", project.name, name))
    for build in project.orphan_builds:
        if build.log_path:
            path = inside(www, build.log_path)
            removed += remove(path)
            _remove_empty(path.parent, inside(www, "logs"))
    delete_orphan_rows(conn, project.name,
                       filenames=[w.filename for w in project.orphan_wheels],
                       builds=[(b.version, b.abi) for b in project.orphan_builds],
                       copies=project.orphan_copies)
    log.info("%s: removed %d files of deleted releases", project.name, removed)
    return removed


def _names_of(filename: str) -> list[str]:
    """A wheel's file, its armv6l alias, and their metadata."""
    names = [filename]
    if alias := simple.armv6l_name(filename):
        names.append(alias)
    return [*names, *(f"{name}.metadata" for name in names)]


def remove_project(conn: sqlite3.Connection, www: Path, name: str) -> int:
    """Remove everything of a project that is gone: its directories and our rows."""
    removed = sum(remove(inside(www, *top.split("/"), name))
                  for top in ("simple", "project", "logs", *RELEASE_TOPS))
    dead = orphans_of_dead_project(conn, name)
    if dead.orphan_wheels or dead.orphan_builds:
        delete_orphan_rows(conn, name, filenames=[w.filename for w in dead.orphan_wheels],
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


def live_names(conn: sqlite3.Connection) -> list[str]:
    return [name for (name,) in conn.execute("SELECT name FROM live_projects ORDER BY name")
            if is_valid_name(name)]


def write_release_root(www: Path, release: ReleaseIndex, names: set[str]) -> bool:
    """/<codename>/simple/: the projects the release's index lists a wheel of. True
    if it changed."""
    ordered = sorted(names)
    html = write_atomic(inside(www, release.codename, "simple", "index.html"),
                        simple.root_html(ordered).encode())
    json = write_atomic(inside(www, release.codename, "simple", "index.json"),
                        simple.root_json(ordered).encode())
    return html or json


def _release_root_names(www: Path, release: ReleaseIndex) -> set[str]:
    """The names the release's root lists now (none before its first write)."""
    try:
        with open(inside(www, release.codename, "simple", "index.json"), "rb") as f:
            return {p["name"] for p in json_module.load(f)["projects"]}
    except FileNotFoundError:
        return set()


def write_root(conn: sqlite3.Connection, www: Path, names: list[str] | None = None) -> bool:
    names = live_names(conn) if names is None else names
    html = write_atomic(inside(www, "simple", "index.html"), simple.root_html(names).encode())
    json = write_atomic(inside(www, "simple", "index.json"), simple.root_json(names).encode())
    return html or json


def write_home(conn: sqlite3.Connection, www: Path, site: pages.Site) -> int:
    """The home page with its totals, the index's feed of new builds, packages.json
    for search (with the downloads of the record, most downloaded first), and the
    stylesheet."""
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
    recent, built = _newest_builds(conn)
    shown = shown_downloads.shown(site.downloads_path)
    search_rows = [pages.SearchRow(name, summary, shown.get(name))
                   for name, summary in conn.execute(
                       "SELECT name, summary FROM live_projects ORDER BY name")
                   if is_valid_name(name)]
    totals.projects = len(search_rows)  # names PyPI could hold; the rest are never shown
    written = write_atomic(inside(www, "index.html"),
                           pages.home_page(site, totals, recent).encode())
    written += write_atomic(inside(www, "packages.json"),
                            pages.packages_json(search_rows).encode())
    written += write_atomic(inside(www, "feed.xml"), pages.feed_xml(feeds.index_feed(
        site.public_url, built, recent[0].built_at if recent else None)).encode())
    written += write_atomic(inside(www, "style.css"), pages.STYLE.encode())
    written += write_atomic(inside(www, badge.FALLBACK), pages.fallback_badge_svg().encode())
    return written


# The builds of releases that still exist (live_builds: not of a release or project
# deleted since), newest first, read along the index on built_at (builds_built) and
# only as far as the home page needs.
NEWEST_BUILDS = """
SELECT b.project, p.display_name, b.version, b.abi, b.status, b.built_at, b.log_path
FROM live_builds b JOIN projects p ON p.name = b.project
ORDER BY b.built_at DESC, b.project, b.version, b.abi
"""
RECENT_BUILDS = 20  # on the home page


def _newest_builds(conn: sqlite3.Connection
                   ) -> tuple[list[pages.RecentBuild], list[feeds.FeedBuild]]:
    """The home page's recent builds (any status) and the index feed's successful
    ones, from one walk down the newest builds: the first are among the second's
    rows, so the walk stops once both have enough."""
    recent: list[pages.RecentBuild] = []
    built: list[feeds.FeedBuild] = []
    for row in _rows(conn, NEWEST_BUILDS):
        if len(recent) >= RECENT_BUILDS and len(built) >= feeds.INDEX_ENTRIES:
            break
        build = feeds.FeedBuild(*row)
        if not is_valid_name(build.project):
            continue
        if len(recent) < RECENT_BUILDS:
            recent.append(pages.RecentBuild(build.project, build.display_name, build.version,
                                            build.abi, build.status, build.built_at))
        if build.status == "success" and len(built) < feeds.INDEX_ENTRIES:
            built.append(build)
    return recent, built


def _rows(conn: sqlite3.Connection, sql: str) -> Iterator[tuple]:
    """The rows of `sql`, as plain tuples, with the cursor closed when the caller
    stops early (not left holding a read on the catalogue)."""
    cursor = conn.execute(sql)
    try:
        for row in cursor:
            yield tuple(row)
    finally:
        cursor.close()


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
    listed: dict[str, set[str]] = {r.codename: set() for r in site.releases}
    if len(shards) == 1:
        _merge(listed, _publish_range(conn, www, site, *shards[0]))
    else:
        database = conn.execute("PRAGMA database_list").fetchone()[2]
        # spawn, not fork: a forked child of a process with threads (a server, a
        # worker's heartbeat) can inherit a lock held by a thread that does not exist.
        context = multiprocessing.get_context("spawn")
        with context.Pool(len(shards)) as pool:
            jobs = [pool.apply_async(_publish_range_in, (database, www, site, *shard))
                    for shard in shards]
            for done, job in enumerate(jobs, 1):
                _merge(listed, job.get())
                progress(f"{done}/{len(jobs)} parts written")
    live = set(names)
    for top in ("simple", "project", "logs", *RELEASE_TOPS):
        directory = www / top
        if not directory.is_dir():
            continue
        for entry in os.scandir(directory):
            if entry.name not in live and entry.name not in TOP_FILES \
                    and is_valid_name(entry.name):
                remove_project(conn, www, entry.name)
    # Our rows of projects that are gone (their files went with their directories).
    delete_dead_project_rows(conn)
    write_root(conn, www, names)
    for release in site.releases:
        write_release_root(www, release, listed[release.codename])
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


def _merge(listed: dict[str, set[str]], found: dict[str, list[str]]) -> None:
    for codename, names in found.items():
        listed[codename].update(names)


def _publish_range_in(database: str, www: Path, site: pages.Site, first: str | None,
                      last: str | None) -> dict[str, list[str]]:
    from ingest import catalogue  # a fresh connection in each process

    with closing(catalogue.connect(database)) as conn:
        return _publish_range(conn, www, site, first, last)


def _publish_range(conn: sqlite3.Connection, www: Path, site: pages.Site, first: str | None,
                   last: str | None) -> dict[str, list[str]]:
    """Write the projects from `first` and before `last`; for each release with an
    index, the names it lists (for its root)."""
    listed = {top: _entries(www / top) for top in ("simple", "project")}
    present = lambda top, name: name in listed[top]  # noqa: E731
    in_release: dict[str, list[str]] = {r.codename: [] for r in site.releases}
    shown = shown_downloads.shown(site.downloads_path)  # once, not once a project
    for project in load_all(conn, first, last):
        if not is_valid_name(project.name):
            continue
        remove_orphans(conn, www, project)
        write_project(www, site, project, present, in_release, shown)
    return in_release


def _entries(directory: Path) -> frozenset[str]:
    """The names in a directory, none if it does not exist: one listing instead of a
    stat per project. A directory made after it is found when its rename fails."""
    try:
        return frozenset(os.listdir(directory))
    except FileNotFoundError:
        return frozenset()
