"""Reading a wheel as the untrusted zip it is: its filename's tags, its core metadata,
its size and hash, checked against the release it claims to be. The worker reads
what its build made with it, the intake what a worker pushed."""

from __future__ import annotations

import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from packaging.metadata import parse_email
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from worker.build import sha256_of
from worker.names import BadName, check_wheel_filename

MAX_METADATA = 4 * 1024**2
# What zipfile raises on a damaged or exotic archive (a bad CRC, a truncated stream,
# a compression method it lacks): each means the wheel cannot be read.
UNREADABLE = (zipfile.BadZipFile, OSError, EOFError, NotImplementedError, zlib.error)


@dataclass(frozen=True)
class ZipLimits:
    """How big a wheel may be once opened; past these it is refused unread."""

    members: int = 20_000
    member_size: int = 1024**3  # bytes, any one member expanded
    expanded: int = 2 * 1024**3  # bytes, all members together


class BadWheel(ValueError):
    """The wheel is not what it claims to be; the message says why."""


@dataclass
class WheelInfo:
    path: Path  # where it was read (the intake's upload moves on afterwards)
    filename: str
    name: str  # canonical
    version: str  # as the release spells it
    python_tag: str  # dot-joined sorted sets of the filename's tags
    abi_tag: str
    platform_tag: str
    metadata: bytes  # the dist-info METADATA, served as <file>.metadata
    requires_python: str | None
    size: int
    sha256: str
    requires_dist: list[str] = field(default_factory=list)  # canonical names, no extras'


def inspect_wheel(path: Path, project: str, version: str, filename: str | None = None,
                  limits: ZipLimits = ZipLimits()) -> WheelInfo:  # noqa: B008 - frozen
    """Read the wheel at `path` (named `filename`, by default the path's name) and check
    it is a wheel of `project==version`; BadWheel if it is not, or is not a safe zip."""
    filename = path.name if filename is None else filename
    try:
        tags = check_wheel_filename(filename, project, version)
    except BadName as error:
        raise BadWheel(str(error)) from None
    metadata = _read_metadata(path, limits)
    # parse_email, not Metadata.from_email: the strict parser refuses a whole wheel
    # for one field it cannot read (a description that is not UTF-8, one malformed
    # Requires-Dist from an old setuptools), which pip installs without a word. We
    # check the few fields we use ourselves; a repeated or unreadable one is absent.
    raw, _unparsed = parse_email(metadata)
    meta_name, meta_version = raw.get("name", ""), raw.get("version", "")
    if canonicalize_name(meta_name) != canonicalize_name(project):
        raise BadWheel(f"METADATA names {meta_name!r}, not {project!r}")
    try:
        same_version = Version(meta_version) == Version(version)
    except InvalidVersion:
        raise BadWheel(f"METADATA has an invalid version {meta_version!r}") from None
    if not same_version:
        raise BadWheel(f"METADATA says version {meta_version!r}, not {version!r}")
    return WheelInfo(
        path=path, filename=filename, name=canonicalize_name(project), version=version,
        python_tag=tags.python, abi_tag=tags.abi, platform_tag=tags.platform,
        metadata=metadata, requires_python=raw.get("requires_python"),
        size=path.stat().st_size, sha256=sha256_of(path),
        requires_dist=plain_requirements(raw.get("requires_dist", [])),
    )


def _read_metadata(path: Path, limits: ZipLimits) -> bytes:
    """The one .dist-info/METADATA, after the whole archive is found within limits."""
    try:
        archive = zipfile.ZipFile(path)
    except UNREADABLE as error:
        raise BadWheel(f"not a zip file: {error}") from None
    with archive:
        members = archive.infolist()
        if len(members) > limits.members:
            raise BadWheel(f"{len(members)} members (at most {limits.members})")
        for m in members:
            if m.file_size > limits.member_size:
                raise BadWheel(f"member {m.filename!r} expands past {limits.member_size} "
                               "bytes")
            if _unsafe_member(m.filename):
                raise BadWheel(f"member name {m.filename!r} leaves the install directory")
        if sum(m.file_size for m in members) > limits.expanded:
            raise BadWheel(f"expands to more than {limits.expanded} bytes")
        found = [m for m in members if m.filename.count("/") == 1
                 and m.filename.endswith(".dist-info/METADATA")]
        if len(found) != 1:
            raise BadWheel("no single .dist-info/METADATA")
        if found[0].file_size > MAX_METADATA:
            raise BadWheel("METADATA is too large")
        try:
            with archive.open(found[0]) as f:
                metadata = f.read(MAX_METADATA + 1)  # the size above is the zip's claim
        except UNREADABLE as error:
            raise BadWheel(f"METADATA cannot be read: {error}") from None
    if len(metadata) > MAX_METADATA:
        raise BadWheel("METADATA is too large")
    return metadata


def _unsafe_member(name: str) -> bool:
    parts = name.replace("\\", "/").split("/")
    return name.startswith("/") or ".." in parts or "\0" in name or ":" in parts[0]


def plain_requirements(lines: list[str]) -> list[str]:
    """Canonical names of what a plain install pulls in: the requirements of extras
    are left out, and so is a line that is no requirement at all."""
    kept = set()
    for line in lines:
        try:
            requirement = Requirement(line)
        except InvalidRequirement:
            continue
        if requirement.marker and "extra" in str(requirement.marker):
            continue
        kept.add(canonicalize_name(requirement.name))
    return sorted(kept)
