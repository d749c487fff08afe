"""The one rule for what a project name, a version, an ABI tag and a wheel filename may
be. Every side applies it: the worker before a name reaches pip's command line, the
intake before a name becomes a path, the publisher before it becomes a page. A name
refused here is refused everywhere, so no side holds what another cannot serve."""

from __future__ import annotations

import re
from dataclasses import dataclass

from packaging.utils import (
    InvalidWheelFilename,
    canonicalize_name,
    is_normalized_name,
    parse_wheel_filename,
)
from packaging.version import InvalidVersion, Version

# Longer than any name we have seen on PyPI, short enough that a wheel filename made
# of it stays one path segment on the file systems www/ lives on.
MAX_PROJECT = 200
MAX_VERSION = 100
MAX_FILENAME = 255  # bytes: one path segment
# A version is kept as PyPI spells it (the catalogue's key), so it is not normalised;
# it must still be safe as a path segment and after `==` on pip's command line: no
# separator, no space, nothing pip could read as an option (a leading `-`).
VERSION_CHARS = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+!-]*")
ABI_TAG = re.compile(r"[a-z0-9_]{1,32}")  # a build target's key is checked in worker.targets
# What a wheel filename is made of (escaped name, version, build tag, tags): anything
# else, from a slash to a newline, has no business in a file name we serve.
WHEEL_CHARS = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+!-]*\.whl")


class BadName(ValueError):
    """A project name, version, ABI tag or wheel filename outside the rule."""


@dataclass(frozen=True)
class WheelTags:
    """A wheel filename's tags, each a dot-joined sorted set (the catalogue's columns)."""

    python: str
    abi: str
    platform: str

    @property
    def abis(self) -> frozenset[str]:
        return frozenset(self.abi.split("."))

    @property
    def platforms(self) -> frozenset[str]:
        return frozenset(self.platform.split("."))


def is_project_name(name: object) -> bool:
    """Whether `name` is a project name in its canonical (PEP 503) form.

    A name with `--` is refused: canonicalize_name collapses every run of `-_.` into
    one `-`, so a canonical name never holds `--`; such a name is another spelling of
    a canonical one, and taking it would give one project two paths and two pages.
    Non-ASCII letters, a leading or trailing `-` and a trailing newline are refused
    likewise: PyPI accepts none of them."""
    return isinstance(name, str) and len(name) <= MAX_PROJECT and is_normalized_name(name)


def is_version(version: object) -> bool:
    """Whether `version` parses as a PEP 440 version and is safe as a path segment
    and a pip argument, spelled as given."""
    if not isinstance(version, str) or len(version) > MAX_VERSION \
            or not VERSION_CHARS.fullmatch(version):
        return False
    try:
        Version(version)
    except InvalidVersion:
        return False
    return True


def check_project(name: object) -> str:
    if not isinstance(name, str) or not is_project_name(name):
        raise BadName(f"project {name!r} is not a canonical project name "
                      f"(lower-case ASCII letters, digits and single '-', "
                      f"at most {MAX_PROJECT} characters)")
    return name


def check_version(version: object) -> str:
    if not isinstance(version, str) or not is_version(version):
        raise BadName(f"version {version!r} is not a version (PEP 440, "
                      f"at most {MAX_VERSION} characters of [A-Za-z0-9._+!-])")
    return version


def check_wheel_filename(filename: object, project: str, version: str) -> WheelTags:
    """The tags of `filename` if it is a plain wheel filename of `project==version`
    that is safe as a path segment; BadName otherwise."""
    if not isinstance(filename, str) or not WHEEL_CHARS.fullmatch(filename) \
            or len(filename.encode()) > MAX_FILENAME:
        raise BadName(f"unsafe wheel filename {filename!r}")
    try:
        name, wheel_version, _build, tags = parse_wheel_filename(filename)
    except InvalidWheelFilename as error:
        raise BadName(str(error)) from None
    if name != canonicalize_name(project):
        raise BadName(f"{filename} is not a wheel of {project}")
    try:
        same = wheel_version == Version(version)
    except InvalidVersion:
        raise BadName(f"version {version!r} is not a version") from None
    if not same:
        raise BadName(f"{filename} is not version {version}")
    return WheelTags(python=".".join(sorted({t.interpreter for t in tags})),
                     abi=".".join(sorted({t.abi for t in tags})),
                     platform=".".join(sorted({t.platform for t in tags})))
