"""Pages for people: the home page, a page per project, and the JSON beside them.

Everything a stranger wrote (names, versions, summaries, reasons, dependency
names) goes through escape() on its way into HTML. The pages need no JavaScript;
the home page's search box uses it when it is there."""

from __future__ import annotations

import json
from dataclasses import dataclass

from publish.releases import Project, Release, Wheel
from publish.simple import COMPACT_JSON, armv6l_name
from publish.simple import escape_html as escape
from publish.simple import quote_url as quote


@dataclass
class Site:
    """What pages need to know about where they are served."""

    abis: tuple[str, ...]
    public_url: str  # ends in a slash
    pypi_url: str | None  # the upstream index, for links to its project pages


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


STYLE = """\
body { font: 16px/1.5 system-ui, sans-serif; margin: 0 auto; max-width: 72rem;
       padding: 0 1rem 3rem; color: #1d1f21; background: #fff; }
header { border-bottom: 3px solid #c51a4a; margin-bottom: 1.5rem; padding: .75rem 0; }
header a { color: #c51a4a; font-weight: 700; text-decoration: none; font-size: 1.25rem; }
h1 { margin: .25rem 0; word-break: break-word; }
a { color: #0b5cad; }
table { border-collapse: collapse; margin: 1rem 0; width: 100%; }
th, td { border-bottom: 1px solid #ddd; padding: .35rem .5rem; text-align: left;
         vertical-align: top; }
th { background: #f4f4f4; }
code, pre { font-family: ui-monospace, monospace; font-size: .9em; }
pre { background: #1d1f21; color: #f0f0f0; padding: .6rem .8rem; border-radius: 4px;
      overflow-x: auto; margin: .4rem 0; }
.summary { font-size: 1.1rem; color: #444; }
.badge { display: inline-block; font-size: .75rem; font-weight: 700; padding: 0 .4rem;
         border-radius: 3px; margin-left: .3rem; vertical-align: middle; }
.pre { background: #fff3cd; color: #7a5a00; border: 1px solid #e0c36a; }
.yanked { background: #f8d7da; color: #842029; border: 1px solid #e4a1a8; }
.success { background: #e3f4e8; }
.failed { background: #f8d7da; }
.skipped { background: #eee; color: #555; }
.pending { color: #777; }
.hash { word-break: break-all; font-size: .8em; }
.size { white-space: nowrap; }
.muted { color: #777; }
.totals td:first-child { font-weight: 700; font-size: 1.3rem; width: 10rem; }
input[type=search] { font-size: 1rem; padding: .3rem .5rem; width: 20rem;
                     max-width: 100%; }
"""


def human_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def _page(title: str, body: str, depth: int) -> str:
    up = "../" * depth
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{escape(title)}</title>\n"
        f'<link rel="stylesheet" href="{up}style.css">\n</head>\n<body>\n'
        f'<header><a href="{up}">wheelwright</a> · Python wheels for the Raspberry Pi'
        "</header>\n"
        f"{body}</body>\n</html>\n"
    )


def abi_columns(site: Site, project: Project) -> list[str]:
    built = {abi for r in project.releases for abi in r.builds}
    return list(site.abis) + sorted(built - set(site.abis))


def _release_date(release: Release) -> str:
    return (release.released or "")[:10]


def _badges(release: Release) -> str:
    badges = ""
    if release.prerelease:
        badges += ' <span class="badge pre">pre-release</span>'
    if release.yanked:
        reason = f' title="{escape(release.yank_reason)}"' if release.yank_reason else ""
        badges += f' <span class="badge yanked"{reason}>yanked</span>'
    return badges


def _cell(project: Project, release: Release, abi: str) -> str:
    build = release.builds.get(abi)
    if build is not None:
        mark = "✓ built" if build.status == "success" else "✗ failed"
        text = f'<a href="../../{quote(build.log_path)}">{mark}</a>' if build.log_path \
            else mark
        return f'<td class="{build.status}">{text}</td>'
    reason = release.skip_reason or project.skip_reason or (
        None if release.has_source else "no source distribution")
    if reason:
        return f'<td class="skipped" title="{escape(reason)}">skipped</td>'
    return '<td class="pending">pending</td>'


def install_release(project: Project) -> Release | None:
    """The release `pip install` would pick: newest with wheels, not yanked, not a
    pre-release (falling back to any with wheels)."""
    with_wheels = [r for r in project.releases if r.wheels]
    for release in with_wheels:
        if not release.yanked and not release.prerelease:
            return release
    return with_wheels[0] if with_wheels else None


def apt_to_install(release: Release) -> list[str]:
    return sorted({name for w in release.wheels for name in w.apt})


def _install_box(project: Project) -> str:
    release = install_release(project)
    if release is None:
        return "<p>No wheels are built for this project yet.</p>\n"
    apt = apt_to_install(release)
    box = "<h2>Install</h2>\n"
    if apt:
        box += f"<pre>sudo apt install {escape(' '.join(apt))}</pre>\n"
    box += f"<pre>pip3 install {escape(project.display_name)}</pre>\n"
    if release.version != (project.releases[0].version if project.releases else None):
        box += (f'<p class="muted">installs {escape(release.version)}, the newest '
                "release with wheels that is neither yanked nor a pre-release</p>\n")
    return box


def _releases_table(site: Site, project: Project) -> str:
    abis = abi_columns(site, project)
    head = "".join(f"<th>{escape(abi)}</th>" for abi in abis)
    rows = []
    for release in project.releases:
        cells = "".join(_cell(project, release, abi) for abi in abis)
        rows.append(f"<tr><td>{escape(release.version)}{_badges(release)}</td>"
                    f"<td>{escape(_release_date(release))}</td>{cells}</tr>\n")
    if not rows:
        return "<p>No releases.</p>\n"
    return ("<h2>Releases</h2>\n<table class=\"releases\">\n"
            f"<tr><th>Version</th><th>Released</th>{head}</tr>\n{''.join(rows)}</table>\n")


def _dependency_list(wheel: Wheel) -> tuple[str, str]:
    apt = [escape(n) for n in wheel.apt]
    apt += [f'<span class="muted" title="preinstalled">{escape(n)}</span>'
            for n in wheel.apt_preinstalled]
    apt += [f'<span class="badge yanked" title="no package provides it">{escape(s)}</span>'
            for s in wheel.unresolved_sonames]
    pip = [escape(n) for n in wheel.pip]
    return ", ".join(apt) or "—", ", ".join(pip) or "—"


def _files_table(project: Project) -> str:
    rows = []
    for release in project.releases:
        for wheel in sorted(release.wheels, key=lambda w: w.filename):
            apt, pip = _dependency_list(wheel)
            href = f"../../simple/{project.name}/{quote(wheel.filename)}"
            rows.append(
                f'<tr><td><a href="{href}">{escape(wheel.filename)}</a>{_badges(release)}'
                f'</td><td class="size">{human_size(wheel.size)}</td>'
                f'<td class="hash"><code>{wheel.sha256}</code></td>'
                f"<td>{apt}</td><td>{pip}</td></tr>\n")
    if not rows:
        return ""
    return ("<h2>Files</h2>\n<table class=\"files\">\n<tr><th>File</th><th>Size</th>"
            "<th>SHA-256</th><th>apt dependencies</th><th>pip dependencies</th></tr>\n"
            f"{''.join(rows)}</table>\n")


def project_page(site: Site, project: Project) -> str:
    upstream = ""
    if site.pypi_url:
        upstream = (f'<p><a href="{escape(pypi_project_url(site, project))}">'
                    "The project on PyPI</a></p>\n")
    body = (
        f"<h1>{escape(project.display_name)}</h1>\n"
        f'<p class="summary">{escape(project.summary or "")}</p>\n'
        f"{_install_box(project)}{_releases_table(site, project)}{_files_table(project)}"
        f'{upstream}<p><a href="json/">JSON</a> · '
        f'<a href="../../simple/{project.name}/">simple index</a></p>\n'
    )
    return _page(project.display_name, body, depth=2)


def pypi_project_url(site: Site, project: Project) -> str | None:
    if not site.pypi_url:
        return None
    return f"{site.pypi_url.rstrip('/')}/project/{project.name}/"


def project_json(site: Site, project: Project) -> str:
    """The project's JSON, with the keys third parties already read from piwheels."""
    releases = {}
    for release in project.releases:
        files = {}
        for wheel in release.wheels:
            names = [wheel.filename]
            if (alias := armv6l_name(wheel.filename)) is not None:
                names.append(alias)
            for name in names:
                files[name] = {
                    "file_url": f"{site.public_url}simple/{project.name}/{quote(name)}",
                    "filehash": wheel.sha256,
                    "filesize": wheel.size,
                    "builder_abi": wheel.builder_abi,
                    "file_abi_tag": wheel.abi_tag,
                    "platform": name[:-4].rsplit("-", 1)[-1],
                    "requires_python": wheel.requires_python,
                    "apt_dependencies": wheel.apt,
                    "pip_dependencies": wheel.pip,
                }
        releases[release.version] = {
            "released": (release.released or "").replace("T", " ").rstrip("Z"),
            "prerelease": release.prerelease,
            "yanked": release.yanked,
            "skip_reason": release.skip_reason or project.skip_reason or "",
            "files": dict(sorted(files.items())),
        }
    return COMPACT_JSON.encode({
        "package": project.name,
        "summary": project.summary or "",
        "pypi_url": pypi_project_url(site, project),
        "piwheels_url": f"{site.public_url}project/{project.name}/",
        "releases": releases,
    }) + "\n"


def home_page(site: Site, totals: Totals, recent: list[RecentBuild]) -> str:
    rows = "".join(
        f'<tr><td><a href="project/{r.project}/">{escape(r.display_name)}</a></td>'
        f"<td>{escape(r.version)}</td><td>{escape(r.abi)}</td>"
        f'<td class="{r.status}">{escape(r.status)}</td>'
        f"<td>{escape(r.built_at.replace('T', ' ').rstrip('Z'))}</td></tr>\n"
        for r in recent)
    body = (
        "<h1>Python wheels for the Raspberry Pi</h1>\n"
        "<p>Wheels built on Raspberry Pis for every release on PyPI, served as a pip "
        "index. Add it to <code>/etc/pip.conf</code>:</p>\n"
        f"<pre>[global]\nextra-index-url = {escape(site.public_url)}simple/</pre>\n"
        '<form action="project/" method="get" id="search" hidden>\n'
        '<label>Find a project: <input type="search" name="q" list="names" '
        'autocomplete="off"></label> <button>Go</button>\n<datalist id="names"></datalist>\n'
        "</form>\n"
        '<noscript><p>Every project is listed in the <a href="simple/">simple index</a>; '
        "a project's page is at <code>/project/&lt;name&gt;/</code>.</p></noscript>\n"
        '<table class="totals">\n'
        f"<tr><td>{totals.projects:,}</td><td>projects</td></tr>\n"
        f"<tr><td>{totals.releases_built:,}</td><td>releases with wheels</td></tr>\n"
        f"<tr><td>{totals.wheels:,}</td><td>wheels ({human_size(totals.wheel_bytes)})"
        "</td></tr>\n"
        f"<tr><td>{totals.builds_succeeded:,}</td><td>builds succeeded</td></tr>\n"
        f"<tr><td>{totals.builds_failed:,}</td><td>builds failed</td></tr>\n</table>\n"
        "<h2>Recent builds</h2>\n"
        "<table>\n<tr><th>Project</th><th>Version</th><th>ABI</th><th>Result</th>"
        f"<th>Built (UTC)</th></tr>\n{rows}</table>\n"
        f"<script>{SEARCH_SCRIPT}</script>\n"
    )
    return _page("wheelwright", body, depth=0)


# Suggests names from packages.json and goes to the chosen project's page.
SEARCH_SCRIPT = """
(function () {
  var form = document.getElementById("search"), list = document.getElementById("names");
  form.hidden = false;
  fetch("packages.json").then(function (r) { return r.json(); }).then(function (rows) {
    var input = form.q;
    input.addEventListener("input", function () {
      var q = input.value.toLowerCase().replace(/[-_.]+/g, "-"), shown = 0;
      list.textContent = "";
      for (var i = 0; i < rows.length && shown < 20; i++) {
        if (rows[i][0].indexOf(q) === 0) {
          var option = document.createElement("option");
          option.value = rows[i][0];
          list.appendChild(option);
          shown++;
        }
      }
    });
  });
  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var name = form.q.value.trim().toLowerCase().replace(/[-_.]+/g, "-");
    if (name) { window.location.href = "project/" + encodeURIComponent(name) + "/"; }
  });
})();
"""


def packages_json(rows: list[tuple[str, str | None, str | None]]) -> str:
    """[name, summary, newest version with wheels] for every project, for search."""
    return json.dumps([[name, summary or "", version or ""] for name, summary, version
                       in rows], separators=(",", ":"), ensure_ascii=False) + "\n"
