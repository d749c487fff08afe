"""Pages for people: the home page, a page per project, and the JSON beside them.

The HTML comes from Jinja2 templates in publish/templates/, rendered with autoescape
on, so everything a stranger wrote (names, versions, summaries, reasons, dependency
names, filenames) is escaped by the template engine, not by remembering to call a
function. The stylesheet and the home page's script are files in publish/static/.
The pages need no JavaScript; the home page's search box uses it when it is there.
The JSON is json.dumps, not a template."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup

from publish import badge, feeds
from publish.failures import Failure, label
from publish.releases import (
    RELEASE_INDEXES,
    Build,
    Project,
    Release,
    ReleaseIndex,
    Wheel,
    release_indexes,
)
from publish.simple import COMPACT_JSON, armv6l_name, quote_url
from stats.downloads import Downloads
from worker.targets import parse_target, target_label
from worker.wire import Machine

HERE = Path(__file__).resolve().parent
STATIC = HERE / "static"


@dataclass
class Site:
    """What pages need to know about where they are served."""

    abis: tuple[str, ...]
    public_url: str  # ends in a slash
    pypi_url: str | None  # the upstream index, for links to its project pages
    # The record of the downloads pages show (publish.downloads); None: no downloads.
    downloads_path: Path | None = None

    @cached_property
    def releases(self) -> list[ReleaseIndex]:
        """The releases with an index of their own: those of the ABIs we build."""
        return release_indexes(self.abis)

    def images(self, release: ReleaseIndex) -> str:
        """The images of the release we build for, when that is more than its 32-bit
        one alone (whose farms' pages say nothing of it): one index serves them all,
        and pip on each picks the wheels its platform tag takes."""
        bits = list(dict.fromkeys(parse_target(key).bits for key in release.keys
                                  if key in self.abis))
        if bits == ["32-bit"] or not bits:
            return ""
        if len(bits) == 1:
            return f", {bits[0]}"
        return ", 32- and 64-bit (one index serves both: pip on each takes the wheels " \
            "for its platform)"


@dataclass
class Totals:
    projects: int
    releases_built: int
    wheels: int
    wheel_bytes: int
    builds_succeeded: int
    builds_failed: int


@dataclass
class RecentBuild:
    project: str
    display_name: str
    version: str
    abi: str
    status: str
    built_at: str


def human_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def thousands(number: int) -> str:
    return f"{number:,}"


def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        # Every template is HTML or XML (the feeds, the badge), whose escaping is the
        # same, so escape always rather than by file extension: a template added
        # under another name cannot silently go unescaped.
        autoescape=True,
        # Block tags on lines of their own leave no blank lines behind, so the
        # templates can be laid out for reading and still give the same bytes.
        trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
        undefined=StrictUndefined,  # a misspelt field fails the render, not the page
        auto_reload=False,  # templates are read once per process
    )
    env.filters.update(quote_url=quote_url, human_size=human_size, thousands=thousands,
                       xml_text=feeds.xml_text, target_label=target_label)
    return env


ENV = _environment()
# Compiled once at import; renders reuse them (a spawned rebuild process imports
# this module once). Children extend the base by object, not by name, so no render
# looks a template up.
BASE = ENV.get_template("base.html")
PROJECT_PAGE = ENV.get_template("project.html")
HOME_PAGE = ENV.get_template("home.html")
# XML, escaped by the same autoescape (MarkupSafe's entities are XML's too).
FEED = ENV.get_template("feed.xml")
BADGE = ENV.get_template("badge.svg")

# The stylesheet is served as www/style.css; the search script is inlined in the
# home page. Both are our own files, the only text the templates take as markup.
STYLE = (STATIC / "style.css").read_text(encoding="utf-8")
SEARCH_SCRIPT = Markup((STATIC / "search.js").read_text(encoding="utf-8"))  # noqa: S704


def _as_published(html: str) -> str:
    """MarkupSafe writes " and ' as &#34; and &#39;; the pages have always had
    html.escape's &quot; and &#x27;, and stay byte-for-byte what they were. Safe to
    replace anywhere: the templates hold neither, and a stranger's "&#34;" is
    escaped to "&amp;#34;" before it gets here."""
    if "&#" not in html:
        return html
    return html.replace("&#34;", "&quot;").replace("&#39;", "&#x27;")


@dataclass
class ReleaseRow:
    """A release as its page shows it: a build or None under each ABI column."""

    release: Release
    released: str  # the date
    builds: list[Build | None]
    # why each column without a build is skipped ("" if it is pending), as `builds`
    skip_reasons: list[str]
    wheels: list[Wheel]  # by filename
    # for each column's build, as `builds`: the machine that made it and why it
    # failed, in words ("" when not known); worked out here, since rows make no calls
    machines: list[str] = field(default_factory=list)
    machine_names: list[str] = field(default_factory=list)  # the short line under a build
    failures: list[str] = field(default_factory=list)


def release_rows(abis: list[str], project: Project) -> list[ReleaseRow]:
    rows = []
    for release in project.releases:
        builds = [release.builds.get(abi) for abi in abis]
        rows.append(ReleaseRow(
            release=release, released=(release.released or "")[:10], builds=builds,
            skip_reasons=[skip_reason(project, release, abi) for abi in abis],
            wheels=sorted(release.wheels, key=lambda w: w.filename),
            machines=[machine_text(b.machine) if b else "" for b in builds],
            machine_names=[f"{b.machine.name}, {profile_text(b.machine.profile)}"
                           if b and b.machine else "" for b in builds],
            failures=[failure_text(b.failure) if b else "" for b in builds],
        ))
    return rows


def machine_text(machine: Machine | None) -> str:
    """The machine that made a build, in one line for its cell's tooltip."""
    if machine is None:
        return ""
    return (f"built on {machine.name}: {machine.os_release or 'an unknown OS'}, "
            f"{machine.toolchain or 'no gcc'}, {profile_text(machine.profile)}")


def profile_text(version: int) -> str:
    # Version 0: the builder never ran `python -m worker profile --install`.
    return f"builder profile {version}" if version else "no builder profile"


def failure_text(failure: Failure | None) -> str:
    """Why a build failed, for people (publish.failures.label): with the Debian
    package to install, when the log named a file one provides."""
    return "" if failure is None else label(failure)


def build_json(site: Site, build: Build) -> dict:
    """A build as the project JSON gives it: its status, when, its log, why it failed
    (null: it did not, or its log said nothing we know) and the machine that made it
    (null: a worker older than the record)."""
    return {
        "status": build.status,
        "built": build.built_at.replace("T", " ").rstrip("Z"),
        "log_url": f"{site.public_url}{quote_url(build.log_path)}" if build.log_path
        else None,
        "failure": None if build.failure is None else {
            "reason": build.failure.reason, "detail": build.failure.detail,
            "package": build.failure.package},
        "machine": None if build.machine is None else {
            "name": build.machine.name, "profile": build.machine.profile,
            "os_release": build.machine.os_release, "toolchain": build.machine.toolchain},
    }


def _release_wide_reason(project: Project, release: Release) -> str:
    return release.skip_reason or project.skip_reason or (
        "" if release.has_source else "no source distribution")


def skip_reason(project: Project, release: Release, abi: str) -> str:
    """Why the release is not built for `abi` ("" when it is only pending): a reason
    set on the project or the release, no source distribution to build from, or the
    scheduler's reason for that ABI (Requires-Python, a wheel PyPI already serves).
    The page's cells and, through release_skip_reason, the JSON both say this."""
    return _release_wide_reason(project, release) or release.skips.get(abi, "")


def release_skip_reason(abis: list[str], project: Project, release: Release) -> str:
    """The project JSON's one skip_reason for a release: what its page's skipped
    cells say. A reason for the whole release is said as it is; the ABIs' own
    reasons (of columns without a build) are said once when every column gives the
    same one, and otherwise each after the ABIs it is for."""
    if reason := _release_wide_reason(project, release):
        return reason
    by_reason: dict[str, list[str]] = {}
    for abi in abis:
        if abi not in release.builds and (reason := skip_reason(project, release, abi)):
            by_reason.setdefault(reason, []).append(abi)
    if len(by_reason) == 1 and len(next(iter(by_reason.values()))) == len(abis):
        return next(iter(by_reason))
    return "; ".join(f"{', '.join(names)}: {reason}" for reason, names in by_reason.items())


def abi_columns(site: Site, project: Project) -> list[str]:
    built = {abi for r in project.releases for abi in r.builds}
    return list(site.abis) + sorted(built - set(site.abis))


def install_release(project: Project) -> Release | None:
    """The release `pip install` would pick: newest with wheels, not yanked, not a
    pre-release (falling back to any with wheels)."""
    with_wheels = [r for r in project.releases if r.wheels]
    for release in with_wheels:
        if not release.yanked and not release.prerelease:
            return release
    return with_wheels[0] if with_wheels else None


@dataclass
class AptLine:
    """The Debian packages to install before the project's wheels of `target` (its
    label; "" when every target needs the same)."""

    target: str
    packages: list[str]


def apt_to_install(release: Release) -> list[AptLine]:
    """One line if every target's wheels need the same packages, else one per target
    that needs any: a Pi is told only what its own wheel needs."""
    needs: dict[str, set[str]] = {}
    for wheel in release.wheels:
        needs.setdefault(wheel.builder_abi, set()).update(wheel.apt)
    if len({frozenset(names) for names in needs.values()}) <= 1:
        names = next(iter(needs.values()), set())
        return [AptLine("", sorted(names))] if names else []
    return [AptLine(target_label(key), sorted(names)) for key, names in sorted(needs.items())
            if names]


@dataclass
class ReleaseInstall:
    """How to install a project from one release's index."""

    codename: str
    python: str
    url: str  # the release's index
    images: str = ""  # Site.images


@dataclass
class CopyRow:
    """A release's own bytes of a file name built differently by another release."""

    codename: str
    url: str  # relative to the project page
    size: int
    sha256: str
    apt: list[str]


def release_installs(site: Site, project: Project,
                     listing: list[ReleaseIndex] | None = None) -> list[ReleaseInstall]:
    """The releases whose index lists a wheel of the project (`listing`, when the
    caller knows them already)."""
    if listing is None:
        listing = [r for r in site.releases
                   if any(w.release_choice(r) is not None for w in project.wheels())]
    return [ReleaseInstall(r.codename, r.python, f"{site.public_url}{r.codename}/simple/",
                           site.images(r))
            for r in listing]


def per_release_copies(project: Project) -> dict[str, list[CopyRow]]:
    """For each wheel built by several releases with different bytes, the other
    releases' files (the wheel's own row is its first builder's)."""
    found: dict[str, list[CopyRow]] = {}
    for wheel in project.wheels():
        if not wheel.copies or not wheel.differs_between_releases:
            continue
        found[wheel.filename] = [
            CopyRow(release.codename,
                    f"../../{release.codename}/simple/{project.name}/{quote_url(wheel.filename)}",
                    copy.size, copy.sha256, copy.apt)
            for copy in wheel.copies
            if copy.sha256 != wheel.sha256 and (release := RELEASE_INDEXES.get(copy.builder_abi))]
    return found


def codename_of(abi: str) -> str:
    release = RELEASE_INDEXES.get(abi)
    return release.codename if release else abi


def project_page(site: Site, project: Project,
                 listing: list[ReleaseIndex] | None = None,
                 downloads: Downloads | None = None) -> str:
    """The project's page; `listing`: the releases whose index lists a wheel of it,
    when the caller knows them (see release_installs); `downloads`: its figures, if
    it has any (publish.downloads)."""
    abis = abi_columns(site, project)
    install = install_release(project)
    copies = per_release_copies(project)
    return _as_published(PROJECT_PAGE.render(
        base=BASE, up="../../", project=project, abis=abis,
        rows=release_rows(abis, project), has_wheels=install is not None,
        install=install, apt=apt_to_install(install) if install else [],
        newest=project.releases[0].version if project.releases else None,
        pypi_url=pypi_project_url(site, project),
        release_installs=release_installs(site, project, listing) if install else [],
        per_release=copies,
        builder_codename={f: codename_of(w.builder_abi) for w in project.wheels()
                          if (f := w.filename) in copies},
        downloads=downloads, badge_markdown=badge_markdown(site, project),
    ))


def badge_markdown(site: Site, project: Project) -> str:
    """What a README embeds to show the project's badge, linked to its page. Its
    text is the canonical name, which cannot hold Markdown's brackets."""
    page = f"{site.public_url}project/{project.name}/"
    return f"[![{project.name} on the Raspberry Pi]({page}badge.svg)]({page})"


def fallback_badge_svg() -> str:
    """badge.FALLBACK: what a project without a badge of its own (deleted, never
    built) shows."""
    return BADGE.render(b=badge.badge("This project", None))


def badge_svg(project: Project) -> str:
    """The badge of what `pip install` gets from us (install_release): when that is
    a yanked release (every release with wheels is), pip takes it only with a
    warning, and the badge says it is yanked rather than showing it as installable."""
    install = install_release(project)
    return BADGE.render(b=badge.badge(project.display_name,
                                      install.version if install else None,
                                      yanked=install is not None and install.yanked))


def feed_xml(feed: feeds.Feed) -> str:
    return FEED.render(feed=feed)


def pypi_project_url(site: Site, project: Project) -> str | None:
    if not site.pypi_url:
        return None
    return f"{site.pypi_url.rstrip('/')}/project/{project.name}/"


def project_json(site: Site, project: Project, downloads: Downloads | None = None) -> str:
    """The project's JSON, with the keys third parties already read from piwheels;
    and, when it has any, its downloads under keys of our own (piwheels' project
    JSON has none): downloads_recent (the last 30 days), downloads_all, and
    downloads_as_of, the day they are from."""
    abis = abi_columns(site, project)
    releases = {}
    for release in project.releases:
        files = {}
        for wheel in release.wheels:
            names = [wheel.filename]
            if wheel.armv6 and (alias := armv6l_name(wheel.filename)) is not None:
                names.append(alias)
            for name in names:
                files[name] = {
                    "file_url": f"{site.public_url}simple/{project.name}/{quote_url(name)}",
                    "filehash": wheel.sha256,
                    "filesize": wheel.size,
                    "builder_abi": wheel.builder_abi,
                    "file_abi_tag": wheel.abi_tag,
                    "platform": name[:-4].rsplit("-", 1)[-1],
                    "requires_python": wheel.requires_python,
                    "apt_dependencies": wheel.apt,
                    "pip_dependencies": wheel.pip,
                    # false: tagged for a platform, yet no compiled code in it
                    "compiled": wheel.compiled,
                }
                if wheel.differing:  # only then: the keys piwheels' readers know stay as they were
                    files[name]["differing_builds"] = [
                        {"filehash": d.sha256, "builder_abi": d.abi, "pushed": d.pushed_at}
                        for d in wheel.differing]
        releases[release.version] = {
            "released": (release.released or "").replace("T", " ").rstrip("Z"),
            "prerelease": release.prerelease,
            "yanked": release.yanked,
            "skip_reason": release_skip_reason(abis, project, release),
            "files": dict(sorted(files.items())),
            "builds": {abi: build_json(site, build)
                       for abi, build in sorted(release.builds.items())},
        }
    document = {
        "package": project.name,
        "summary": project.summary or "",
        "pypi_url": pypi_project_url(site, project),
        "piwheels_url": f"{site.public_url}project/{project.name}/",
    }
    if downloads is not None:
        document.update(downloads_recent=downloads.last_30_days,
                        downloads_all=downloads.all_time, downloads_as_of=downloads.as_of)
    document["releases"] = releases
    return COMPACT_JSON.encode(document) + "\n"


def home_page(site: Site, totals: Totals, recent: list[RecentBuild]) -> str:
    return _as_published(HOME_PAGE.render(
        base=BASE, up="", site=site, totals=totals, recent=recent,
        search_script=SEARCH_SCRIPT, releases=site.releases))


@dataclass
class SearchRow:
    """A project as packages.json lists it."""

    name: str
    summary: str | None
    downloads: Downloads | None  # None: never downloaded


def packages_json(rows: list[SearchRow]) -> str:
    """[name, downloads in the last 30 days, downloads of all time, summary] for every
    project, most downloaded (last 30 days, then all time, then name) first: the
    home page's search (static/search.js) relies on that order. The first three are
    piwheels' packages.json, whose readers take `name, recent, all, *_` from each
    row."""
    counted = [(row, row.downloads.counts if row.downloads else (0, 0)) for row in rows]
    counted.sort(key=lambda pair: (-pair[1][0], -pair[1][1], pair[0].name))
    return json.dumps([[row.name, *counts, row.summary or ""] for row, counts in counted],
                      separators=(",", ":"), ensure_ascii=False) + "\n"
