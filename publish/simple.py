"""The simple repository API pip reads: PEP 503 HTML and PEP 691 JSON, with the
additions of PEPs 592 (yanked), 629 (repository version), 658/714 (core metadata)
and 700 (versions, size, upload time)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from html import escape
from urllib.parse import quote

from publish.releases import Project, ReleaseIndex, Wheel

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
    armv6: bool = False  # runs on a Pi Zero/1, so listed under its armv6l name too
    base: str = ""  # where the file is, relative to the page ("": beside it)


def armv6l_name(filename: str) -> str | None:
    """The armv6l name of an armv7l wheel, or None. Whether the wheel may be listed
    under it is the wheel's armv6 verdict (worker.elf): an armv7l tag says nothing of
    the code inside, and Debian armhf's code dies on a Pi Zero or Pi 1."""
    if not filename.endswith(".whl"):
        return None
    parts = filename[:-4].split("-")
    platforms = parts[-1].split(".")
    if "linux_armv7l" not in platforms or "linux_armv6l" in platforms:
        return None
    parts[-1] = ".".join("linux_armv6l" if p == "linux_armv7l" else p for p in platforms)
    return "-".join(parts) + ".whl"


def with_aliases(wheels: list[Wheel]) -> list[Wheel]:
    """The wheels plus an armv6l alias of each armv7l one known to run on a Pi Zero/1
    (unless a real file has that name)."""
    names = {w.filename for w in wheels}
    listed = list(wheels)
    for wheel in wheels:
        alias = armv6l_name(wheel.filename) if wheel.armv6 else None
        if alias and alias not in names:
            listed.append(Wheel(**{**wheel.__dict__, "filename": alias,
                                   "alias_of": wheel.filename}))
    return sorted(listed, key=lambda w: w.filename)


def listing(project: Project) -> list[Listed]:
    """/simple/<project>/: every wheel, but for one built by several releases with
    different bytes (one name must mean one file; those are in the releases' own
    indexes)."""
    listed = []
    for release in project.releases:
        yanked = (release.yank_reason or "") if release.yanked else None
        for wheel in release.wheels:
            if wheel.copies and wheel.differs_between_releases:
                continue
            listed.append(Listed(wheel.filename, wheel.sha256, wheel.size, wheel.uploaded_at,
                                 wheel.requires_python, yanked, wheel.metadata_sha256,
                                 wheel.armv6 is True))
    return sorted(listed, key=lambda f: f.filename)


def union_base(project: Project) -> str:
    """From /<codename>/simple/<project>/ to the files in /simple/<project>/."""
    return f"../../../simple/{project.name}/"


def release_listing(project: Project, index: ReleaseIndex) -> list[Listed]:
    """/<codename>/simple/<project>/: what Wheel.release_choice picks for the release.
    Bytes shared with /simple/ are linked there; a release's own bytes of a name
    built differently by another release are beside the page's URL (their files are
    in www/<codename>/simple/<project>/)."""
    union = union_base(project)
    listed = []
    for release in project.releases:
        yanked = (release.yank_reason or "") if release.yanked else None
        for wheel in release.wheels:
            chosen = wheel.release_choice(index)
            if chosen is None:
                continue
            base = union if chosen.sha256 == wheel.sha256 else ""
            listed.append(Listed(wheel.filename, chosen.sha256, chosen.size,
                                 chosen.uploaded_at, chosen.requires_python, yanked,
                                 chosen.metadata_sha256, chosen.armv6 is True, base))
    return sorted(listed, key=lambda f: f.filename)


def expand_aliases(files: list[Listed]) -> list[Listed]:
    names = {f.filename for f in files}
    extra = [Listed(alias, f.sha256, f.size, f.upload_time, f.requires_python, f.yanked,
                    f.metadata_sha256, base=f.base)
             for f in files
             if f.armv6 and (alias := armv6l_name(f.filename)) and alias not in names]
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
        attrs = f'href="{f.base}{quote_url(f.filename)}#sha256={f.sha256}"'
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
    """The PEP 691 page: what COMPACT_JSON.encode would write for the dict
    _file_json describes, put together from strings (a rebuild writes three such
    pages per project, and the encoder's walk over dicts was most of their cost)."""
    versions = sorted({r.version for r in project.releases if r.wheels})
    return (f'{{"meta":{{"api-version":"{API_VERSION}"}},"name":{_json_str(project.name)},'
            f'"versions":{COMPACT_JSON.encode(versions)},"files":['
            + ",".join(map(_file_json_text, files)) + "]}\n")


_JSON_PLAIN = re.compile(r'[^"\\\x00-\x1f]*').fullmatch


def _json_str(text: str | None) -> str:
    """COMPACT_JSON.encode(text) for a string or None, quicker for the usual ones."""
    if text is None:
        return "null"
    return f'"{text}"' if _JSON_PLAIN(text) else COMPACT_JSON.encode(text)


def _file_json_text(f: Listed) -> str:
    """COMPACT_JSON.encode(_file_json(f)), key for key."""
    yanked = "false" if f.yanked is None else _json_str(f.yanked) if f.yanked else "true"
    metadata = f'{{"sha256":{_json_str(f.metadata_sha256)}}}' if f.metadata_sha256 \
        else "false"
    return (f'{{"filename":{_json_str(f.filename)},'
            f'"url":{_json_str(f.base + quote_url(f.filename))},'
            f'"hashes":{{"sha256":{_json_str(f.sha256)}}},'
            f'"requires-python":{_json_str(f.requires_python)},"yanked":{yanked},'
            f'"core-metadata":{metadata},"size":{int(f.size)},'
            f'"upload-time":{_json_str(f.upload_time)}}}')


def _file_json(f: Listed) -> dict:
    """A file as PEP 691 (with PEP 700's size and upload time) describes it."""
    return {
        "filename": f.filename,
        "url": f.base + quote_url(f.filename),
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
