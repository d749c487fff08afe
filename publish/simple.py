"""The simple repository API pip reads: PEP 503 HTML and PEP 691 JSON, with the
additions of PEPs 592 (yanked), 629 (repository version), 658/714 (core metadata)
and 700 (versions, size, upload time)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from html import escape
from urllib.parse import quote

from publish.releases import Project, Wheel

API_VERSION = "1.1"
JSON_TYPE = "application/vnd.pypi.simple.v1+json"
HTML_TYPE = "application/vnd.pypi.simple.v1+html"

# One encoder for every page: json.dumps with options builds a new one per call.
COMPACT_JSON = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)

_HTML_SPECIAL = re.compile("[&<>\"']").search
_URL_PLAIN = re.compile("[A-Za-z0-9_.~/-]*").fullmatch


def escape_html(text: str) -> str:
    """html.escape(text), without its five passes over text that needs none (most)."""
    return escape(text) if _HTML_SPECIAL(text) else text


def quote_url(text: str) -> str:
    """urllib's quote(text), without its work on text it would leave as it is."""
    return text if _URL_PLAIN(text) else quote(text)


@dataclass
class Listed:
    """One file as the simple API lists it."""

    filename: str
    sha256: str
    size: int
    upload_time: str
    requires_python: str | None
    yanked: str | None  # None when not yanked, else the reason ("" for none given)
    metadata_sha256: str | None


def armv6l_name(filename: str) -> str | None:
    """The armv6l name of an armv7l wheel, or None. Raspberry Pi OS compiles for
    armv6-compatible code, so a Pi Zero or Pi 1 can install the armv7l build."""
    if not filename.endswith(".whl"):
        return None
    parts = filename[:-4].split("-")
    platforms = parts[-1].split(".")
    if "linux_armv7l" not in platforms or "linux_armv6l" in platforms:
        return None
    parts[-1] = ".".join("linux_armv6l" if p == "linux_armv7l" else p for p in platforms)
    return "-".join(parts) + ".whl"


def with_aliases(wheels: list[Wheel]) -> list[Wheel]:
    """The wheels plus an armv6l alias of each armv7l one (unless a real file has
    that name)."""
    names = {w.filename for w in wheels}
    listed = list(wheels)
    for wheel in wheels:
        alias = armv6l_name(wheel.filename)
        if alias and alias not in names:
            listed.append(Wheel(**{**wheel.__dict__, "filename": alias,
                                   "alias_of": wheel.filename}))
    return sorted(listed, key=lambda w: w.filename)


def listing(project: Project) -> list[Listed]:
    listed = []
    for release in project.releases:
        yanked = (release.yank_reason or "") if release.yanked else None
        for wheel in release.wheels:
            listed.append(Listed(wheel.filename, wheel.sha256, wheel.size, wheel.uploaded_at,
                                 wheel.requires_python, yanked, wheel.metadata_sha256))
    return sorted(listed, key=lambda f: f.filename)


def expand_aliases(files: list[Listed]) -> list[Listed]:
    names = {f.filename for f in files}
    extra = [Listed(alias, f.sha256, f.size, f.upload_time, f.requires_python, f.yanked,
                    f.metadata_sha256)
             for f in files if (alias := armv6l_name(f.filename)) and alias not in names]
    return sorted(files + extra, key=lambda f: f.filename)


def _head(title: str) -> str:
    return (
        "<!DOCTYPE html>\n<html>\n<head>\n"
        f'<meta name="pypi:repository-version" content="{API_VERSION}">\n'
        f"<title>{escape_html(title)}</title>\n</head>\n<body>\n"
    )


def project_html(project: Project, files: list[Listed]) -> str:
    lines = [_head(f"Links for {project.display_name}"),
             f"<h1>Links for {escape_html(project.display_name)}</h1>\n"]
    for f in files:
        attrs = f'href="{quote_url(f.filename)}#sha256={f.sha256}"'
        if f.requires_python:
            attrs += f' data-requires-python="{escape_html(f.requires_python)}"'
        if f.metadata_sha256:
            attrs += (f' data-dist-info-metadata="sha256={f.metadata_sha256}"'
                      f' data-core-metadata="sha256={f.metadata_sha256}"')
        if f.yanked is not None:
            attrs += f' data-yanked="{escape_html(f.yanked)}"'
        lines.append(f"<a {attrs}>{escape_html(f.filename)}</a><br>\n")
    lines.append("</body>\n</html>\n")
    return "".join(lines)


def project_json(project: Project, files: list[Listed]) -> str:
    return COMPACT_JSON.encode({
        "meta": {"api-version": API_VERSION},
        "name": project.name,
        "versions": sorted({r.version for r in project.releases if r.wheels}),
        "files": [_file_json(f) for f in files],
    }) + "\n"


def _file_json(f: Listed) -> dict:
    return {
        "filename": f.filename,
        "url": quote_url(f.filename),
        "hashes": {"sha256": f.sha256},
        "requires-python": f.requires_python,
        "yanked": (f.yanked or True) if f.yanked is not None else False,
        "core-metadata": {"sha256": f.metadata_sha256} if f.metadata_sha256 else False,
        "size": f.size,
        "upload-time": f.upload_time,
    }


def root_html(names: list[str]) -> str:
    links = "".join(f'<a href="{n}/">{n}</a><br>\n' for n in names)
    return _head("Simple index") + links + "</body>\n</html>\n"


def root_json(names: list[str]) -> str:
    return json.dumps({"meta": {"api-version": API_VERSION},
                       "projects": [{"name": n} for n in names]},
                      separators=(",", ":")) + "\n"
