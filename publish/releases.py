"""What the catalogue says about a project, read into records the pages are made from.

One project is read with a handful of keyed queries (incremental publishing); every
project is read by walking the same queries in name order side by side (a full
rebuild), so both paths build the same records."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache

from packaging.version import InvalidVersion, Version

from ingest.coverage import TARGETS, Target, supported_tags, wheel_tags
from publish.failures import Failure
from worker.names import is_project_name
from worker.wire import Machine


def is_valid_name(name: str) -> bool:
    """A canonical name PyPI accepts (worker.names, the rule the worker and the intake
    apply too); anything else never becomes a path or a page."""
    return is_project_name(name)


@dataclass
class DifferingBuild:
    """A rebuild that pushed other bytes under a served wheel's name (not served)."""

    sha256: str
    abi: str
    pushed_at: str


@dataclass(frozen=True)
class ReleaseIndex:
    """A Raspberry Pi OS release's own index, /<codename>/simple/: the wheels its build
    targets' builders made, those of its 32-bit image and of its 64-bit one (one index
    serves both: pip on each takes the wheels whose platform tag it accepts), and pure
    ones (see release_choice). The release is the one ingest.coverage's TARGETS names
    for the target, the one table of releases."""

    keys: tuple[str, ...]  # its build targets (worker.targets), the 32-bit image's first
    codename: str
    target: Target  # its Pi 2 and later (armv7l): whose tags a pure wheel must carry

    @property
    def python(self) -> str:
        return ".".join(map(str, self.target.python))

    def accepts(self, filename: str) -> bool:
        """Whether pip on this release installs a wheel of this name at all."""
        ranks = supported_tags(self.target)
        return any(tag in ranks for tag in wheel_tags(filename))


def _release_indexes() -> dict[str, ReleaseIndex]:
    """Each build target's release index, keyed by target key; a release's targets
    share one."""
    indexes = {}
    for t in TARGETS.values():
        if t.platform == "armv7l":
            keys = tuple(dict.fromkeys(o.key for o in TARGETS.values()
                                       if o.codename == t.codename))
            index = ReleaseIndex(keys, t.codename, t)
            indexes.update(dict.fromkeys(keys, index))
    return indexes


# Every build target's release index, in TARGETS' order (oldest first).
RELEASE_INDEXES = _release_indexes()
CODENAMES = tuple(dict.fromkeys(index.codename for index in RELEASE_INDEXES.values()))


def release_indexes(abis: tuple[str, ...] | list[str]) -> list[ReleaseIndex]:
    """The indexes of the releases with a build target among `abis` (target keys),
    each once, oldest first; a target TARGETS does not know has none (its wheels are
    in /simple/ only)."""
    return list(dict.fromkeys(index for key, index in RELEASE_INDEXES.items()
                              if key in abis))


@dataclass
class WheelCopy:
    """Another ABI's build of an abi3 or pure wheel's file name (wheel_copies): the
    same bytes as the wheel, or that release's own, kept and listed apart."""

    builder_abi: str
    size: int
    sha256: str
    requires_python: str | None
    metadata_sha256: str | None
    uploaded_at: str
    armv6: bool | None
    apt: list[str] = field(default_factory=list)


@dataclass
class Wheel:
    filename: str
    version: str
    builder_abi: str
    python_tag: str
    abi_tag: str
    platform_tag: str
    size: int
    sha256: str
    requires_python: str | None
    metadata_sha256: str | None
    uploaded_at: str
    armv6: bool | None = None  # runs on a Pi Zero/1; None: unknown, so not said to
    # holds ELF files; False: tagged for a platform yet has none ("built without
    # compiled code"); None: pure, or not known
    compiled: bool | None = None
    apt: list[str] = field(default_factory=list)  # still to install on the target
    apt_preinstalled: list[str] = field(default_factory=list)
    pip: list[str] = field(default_factory=list)
    unresolved_sonames: list[str] = field(default_factory=list)
    alias_of: str | None = None  # set on an armv6l name listed for an armv7l file
    differing: list[DifferingBuild] = field(default_factory=list)  # rebuilds not these bytes
    copies: list[WheelCopy] = field(default_factory=list)  # other ABIs' builds of the name

    @property
    def pure(self) -> bool:
        return self.abi_tag == "none" and self.platform_tag == "any"

    @property
    def differs_between_releases(self) -> bool:
        """Built by several ABIs with different bytes: one name, several files, so
        never listed in /simple/, only in each release's own index."""
        return any(copy.sha256 != self.sha256 for copy in self.copies)

    def release_choice(self, index: ReleaseIndex) -> Wheel | WheelCopy | None:
        """What the release's index lists under this name: its own builder's bytes
        (this wheel, or its copy); else a pure wheel, when every build of the name
        has the same bytes and the release's pip takes its tags; else nothing. An
        abi3 wheel another release built is never listed: its code is linked
        against that release's glibc and libraries, the very mix-up per-release
        indexes exist to prevent. Pure Python has no such code, and without it a
        release whose builder has not built (or does not build) a release would
        miss what /simple/ offers; when builders disagree on a pure wheel's bytes
        (markers read at build time), each release gets only its own."""
        if self.builder_abi in index.keys:
            return self
        for copy in self.copies:
            if copy.builder_abi in index.keys:
                return copy
        if self.pure and not self.differs_between_releases and index.accepts(self.filename):
            return self
        return None

    @property
    def pi2_and_later(self) -> bool:
        """An armv7l wheel not known to run on a Pi Zero/1: it gets no armv6l name, so
        pip there never sees it."""
        platforms = self.platform_tag.split(".")
        return not self.armv6 and "linux_armv7l" in platforms \
            and "linux_armv6l" not in platforms


@dataclass
class Build:
    version: str
    abi: str
    status: str  # success or failed
    duration: float | None
    built_at: str
    log_path: str | None
    # The builder as its report described it; None: a worker older than the record.
    machine: Machine | None = None
    failure: Failure | None = None  # None: succeeded, or the log said nothing known


@dataclass
class Release:
    version: str
    released: str | None
    requires_python: str | None
    yank_reason: str | None
    skip_reason: str | None
    yanked: bool
    has_source: bool = False
    wheels: list[Wheel] = field(default_factory=list)
    skips: dict[str, str] = field(default_factory=dict)  # ABI -> why it is not built
    builds: dict[str, Build] = field(default_factory=dict)

    @property
    def prerelease(self) -> bool:
        parsed = parse_version(self.version)
        return parsed is not None and parsed.is_prerelease


@dataclass
class Project:
    name: str
    display_name: str
    summary: str | None
    skip_reason: str | None
    releases: list[Release] = field(default_factory=list)  # newest first
    # of releases no longer live, and those PyPI now serves under the same name
    orphan_wheels: list[Wheel] = field(default_factory=list)
    orphan_builds: list[Build] = field(default_factory=list)
    orphan_copies: list[tuple[str, str]] = field(default_factory=list)  # filename, ABI

    def wheels(self) -> list[Wheel]:
        return [w for r in self.releases for w in r.wheels]


@lru_cache(maxsize=65536)
def parse_version(version: str) -> Version | None:
    try:
        return Version(version)
    except InvalidVersion:
        return None


def sort_releases(releases: list[Release]) -> list[Release]:
    """Newest first; versions PEP 440 cannot order go last, in plain string order."""
    valid = sorted((r for r in releases if parse_version(r.version) is not None),
                   key=lambda r: parse_version(r.version), reverse=True)
    invalid = sorted((r for r in releases if parse_version(r.version) is None),
                     key=lambda r: r.version)
    return valid + invalid


# Each query yields rows whose first column is the project; {where} picks one
# project, a range of names, or every row, and rows come in name order.
QUERIES = {
    "projects": "SELECT name, display_name, summary, skip_reason FROM live_projects "
                "WHERE {where} ORDER BY name",
    "versions": "SELECT project, version, released, requires_python, yank_reason, "
                "skip_reason, yanked FROM live_versions WHERE {where} ORDER BY project, version",
    "sources": "SELECT DISTINCT project, version FROM live_files "
               "WHERE {where} AND kind = 'source' ORDER BY project",
    # A build of an earlier incarnation of a release (deleted, then released again
    # under the same number) is not a build of the live one: it comes back not live.
    "builds": "SELECT b.project, b.version, b.abi, b.status, b.duration, b.built_at, "
              "b.log_path, b.barrier_key = MAX(v.removed_key, p.deleted_key), "
              "b.machine, b.profile, b.os_release, b.toolchain, b.failure_reason, "
              "b.failure_detail, b.failure_package "
              "FROM builds b JOIN versions v ON v.project = b.project "
              "AND v.version = b.version JOIN projects p ON p.name = b.project "
              "WHERE {where} ORDER BY b.project, b.version, b.abi",
    "wheels": "SELECT project, filename, version, builder_abi, python_tag, abi_tag, "
              "platform_tag, size, sha256, requires_python, metadata_sha256, uploaded_at, "
              "armv6, compiled FROM wheels WHERE {where} ORDER BY project, filename",
    "dependencies": "SELECT w.project, d.filename, d.tool, d.name, d.preinstalled "
                    "FROM wheels w JOIN dependencies d ON d.filename = w.filename "
                    "WHERE {where} ORDER BY w.project",
    "sonames": "SELECT w.project, s.filename, s.soname FROM wheels w "
               "JOIN unresolved_sonames s ON s.filename = w.filename "
               "WHERE {where} ORDER BY w.project",
    # Rebuilds that pushed other bytes than the file served (publish.intake).
    "differing": "SELECT w.project, d.filename, d.sha256, d.abi, d.pushed_at FROM wheels w "
                 "JOIN differing_pushes d ON d.filename = w.filename "
                 "AND d.served_sha256 = w.sha256 "
                 "WHERE {where} ORDER BY w.project, d.filename, d.pushed_at, d.sha256",
    # Other ABIs' builds of abi3 and pure wheels' names (publish.intake).
    "copies": "SELECT project, filename, builder_abi, version, size, sha256, "
              "requires_python, metadata_sha256, uploaded_at, armv6, apt FROM wheel_copies "
              "WHERE {where} ORDER BY project, filename, builder_abi",
    # Builds the scheduler will not queue, per ABI (ingest.scheduler).
    "skips": "SELECT project, version, abi, reason FROM skips WHERE {where} "
             "ORDER BY project",
    # Our wheels named like a live PyPI file of the release: one name, one file, and
    # PyPI's is the one installers and lockfiles already know.
    "on_pypi": "SELECT w.project, w.filename FROM wheels w JOIN live_files f "
               "ON f.project = w.project AND f.version = w.version AND f.filename = w.filename "
               "WHERE {where} ORDER BY w.project",
}
KEY_COLUMN = {"projects": "name", "dependencies": "w.project", "sonames": "w.project",
              "differing": "w.project",
              "builds": "b.project", "on_pypi": "w.project"}


def _query(table: str, where: str) -> str:
    """where: "one" (key = ?), "from" (key >= ?), "before" (key < ?), "range" (both),
    or "all"."""
    key = KEY_COLUMN.get(table, "project")
    condition = {"one": f"{key} = ?", "from": f"{key} >= ?", "before": f"{key} < ?",
                 "range": f"{key} >= ? AND {key} < ?", "all": "1"}[where]
    return QUERIES[table].format(where=condition)


def load_project(conn: sqlite3.Connection, name: str) -> Project | None:
    """The live project `name` with its releases, builds and wheels; None if it is not
    live. Wheels and builds of releases that are gone come back as orphans."""
    rows = {table: _rows(conn, _query(table, "one"), (name,)).fetchall()
            for table in QUERIES}
    if not rows["projects"]:
        return None
    return _assemble(rows["projects"][0], rows)


def load_all(conn: sqlite3.Connection, first: str | None = None, last: str | None = None
             ) -> Iterator[Project]:
    """Every live project in name order (those from `first` and before `last`, when
    given), each read once: the full rebuild's path."""
    where, args = "all", ()
    if first is not None and last is not None:
        where, args = "range", (first, last)
    elif first is not None:
        where, args = "from", (first,)
    elif last is not None:
        where, args = "before", (last,)
    cursors = {table: _Groups(_rows(conn, _query(table, where), args))
               for table in QUERIES if table != "projects"}
    for project in _rows(conn, _query("projects", where), args):
        rows = {table: groups.take(project[0]) for table, groups in cursors.items()}
        yield _assemble(project, rows)


def orphans_of_dead_project(conn: sqlite3.Connection, name: str) -> Project:
    """Everything we built for a project that is no longer live, as orphans."""
    rows = {table: _rows(conn, _query(table, "one"), (name,)).fetchall()
            for table in QUERIES if table != "projects"}
    project = _assemble((name, name, None, None), {**rows, "versions": [], "sources": []})
    return project


def _rows(conn: sqlite3.Connection, sql: str, args: tuple) -> sqlite3.Cursor:
    """The rows as plain tuples, whatever the connection's row factory: a rebuild
    reads millions of them by position."""
    cursor = conn.cursor()
    cursor.row_factory = None
    return cursor.execute(sql, args)


class _Groups:
    """Rows of a cursor ordered by project, handed out one project at a time."""

    def __init__(self, cursor: sqlite3.Cursor):
        self.rows = iter(cursor)
        self.head = next(self.rows, None)

    def take(self, project: str) -> list:
        taken = []
        while self.head is not None and self.head[0] < project:
            self.head = next(self.rows, None)
        while self.head is not None and self.head[0] == project:
            taken.append(self.head)
            self.head = next(self.rows, None)
        return taken


def _assemble(project_row, rows: dict[str, list]) -> Project:
    project = Project(name=project_row[0], display_name=project_row[1],
                      summary=project_row[2], skip_reason=project_row[3])
    releases = {
        r[1]: Release(version=r[1], released=r[2], requires_python=r[3], yank_reason=r[4],
                      skip_reason=r[5], yanked=bool(r[6]))
        for r in rows["versions"]
    }
    for r in rows["sources"]:
        if r[1] in releases:
            releases[r[1]].has_source = True
    for _project, version, abi, reason in rows["skips"]:
        if version in releases:
            releases[version].skips[abi] = reason
    for _project, version, abi, reason in rows["skips"]:
        if version == "":  # an operator's skip of every release for the ABI (ingest.admin)
            for release in releases.values():
                release.skips.setdefault(abi, reason)
    on_pypi = {r[1] for r in rows["on_pypi"]}
    stale = set()
    for r in rows["builds"]:
        build = Build(version=r[1], abi=r[2], status=r[3], duration=r[4], built_at=r[5],
                      log_path=r[6],
                      machine=None if r[8] is None else Machine(*r[8:12]),
                      failure=None if r[12] is None else Failure(*r[12:15]))
        if build.version in releases and r[7]:
            releases[build.version].builds[build.abi] = build
        else:
            project.orphan_builds.append(build)
            stale.add((build.version, build.abi))
    wheels = {}
    for r in rows["wheels"]:
        wheel = Wheel(filename=r[1], version=r[2], builder_abi=r[3], python_tag=r[4],
                      abi_tag=r[5], platform_tag=r[6], size=r[7], sha256=r[8],
                      requires_python=r[9], metadata_sha256=r[10], uploaded_at=r[11],
                      armv6=None if r[12] is None else bool(r[12]),
                      compiled=None if r[13] is None else bool(r[13]))
        wheels[wheel.filename] = wheel
        if wheel.version in releases and (wheel.version, wheel.builder_abi) not in stale \
                and wheel.filename not in on_pypi:
            releases[wheel.version].wheels.append(wheel)
        else:
            project.orphan_wheels.append(wheel)
    for _project, filename, tool, name, preinstalled in rows["dependencies"]:
        wheel = wheels[filename]
        if tool == "pip":
            wheel.pip.append(name)
        elif preinstalled:
            wheel.apt_preinstalled.append(name)
        else:
            wheel.apt.append(name)
    for _project, filename, soname in rows["sonames"]:
        wheels[filename].unresolved_sonames.append(soname)
    for _project, filename, sha256, abi, pushed_at in rows["differing"]:
        wheels[filename].differing.append(DifferingBuild(sha256, abi, pushed_at))
    orphaned = {w.filename for w in project.orphan_wheels} if rows["copies"] else set()
    for (_project, filename, abi, version, size, sha256, requires_python, metadata_sha256,
         uploaded_at, armv6, apt) in rows["copies"]:
        wheel = wheels.get(filename)
        if wheel is None or (version, abi) in stale or filename in orphaned:
            project.orphan_copies.append((filename, abi))
            continue
        wheel.copies.append(WheelCopy(abi, size, sha256, requires_python, metadata_sha256,
                                      uploaded_at, None if armv6 is None else bool(armv6),
                                      apt.split()))
    for wheel in wheels.values():
        for names in (wheel.apt, wheel.apt_preinstalled, wheel.pip, wheel.unresolved_sonames):
            names.sort()
    project.releases = sort_releases(list(releases.values()))
    return project


@dataclass(frozen=True)
class BuiltName:
    """Who built a wheel's file name, as the intake asks before keeping a push."""

    builder_abi: str  # its first builder, whose bytes are in www/simple/
    sha256: str
    copies: dict[str, str]  # other ABIs that built it: ABI -> sha256


def built_name(conn: sqlite3.Connection, filename: str) -> BuiltName | None:
    """The builds recorded under a wheel's file name; None if there is none."""
    row = conn.execute("SELECT builder_abi, sha256 FROM wheels WHERE filename = ?",
                       (filename,)).fetchone()
    if row is None:
        return None
    copies = {abi: sha256 for abi, sha256 in conn.execute(
        "SELECT builder_abi, sha256 FROM wheel_copies WHERE filename = ?", (filename,))}
    return BuiltName(row[0], row[1], copies)
