"""Opening a pushed wheel as the untrusted zip it is."""

from __future__ import annotations

import zipfile
from dataclasses import dataclass, field
from email.parser import BytesParser
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename
from packaging.version import InvalidVersion, Version

from worker.wheel import plain_requirements

MAX_METADATA = 4 * 1024**2


@dataclass(frozen=True)
class ZipLimits:
    """How big a pushed wheel may be once opened; past these it is refused unread."""

    members: int = 20_000
    member_size: int = 1024**3  # bytes, any one member expanded
    expanded: int = 2 * 1024**3  # bytes, all members together


class BadWheel(ValueError):
    """The wheel is not what it claims to be; the message says why."""


@dataclass
class WheelInfo:
    filename: str
    name: str  # canonical
    version: str
    python_tag: str
    abi_tag: str
    platform_tag: str
    metadata: bytes  # the dist-info METADATA, served as <file>.metadata
    requires_python: str | None
    requires_dist: list[str] = field(default_factory=list)  # without extras


def check_filename(filename: str, project: str, version: str) -> tuple[str, str, str]:
    """The wheel's (python, abi, platform) tags if its name is a plain wheel
    filename for project==version; BadWheel otherwise."""
    if "/" in filename or "\\" in filename or filename.startswith(".") or "\0" in filename:
        raise BadWheel(f"unsafe filename {filename!r}")
    try:
        name, wheel_version, _build, tags = parse_wheel_filename(filename)
    except InvalidWheelFilename as error:
        raise BadWheel(str(error)) from None
    if name != canonicalize_name(project):
        raise BadWheel(f"{filename} is not a wheel of {project}")
    try:
        if wheel_version != Version(version):
            raise BadWheel(f"{filename} is not version {version}")
    except InvalidVersion:
        raise BadWheel(f"invalid version {version!r}") from None
    python = ".".join(sorted({t.interpreter for t in tags}))
    abi = ".".join(sorted({t.abi for t in tags}))
    platform = ".".join(sorted({t.platform for t in tags}))
    return python, abi, platform


def inspect_wheel(path: Path, filename: str, project: str, version: str,
                  limits: ZipLimits = ZipLimits()) -> WheelInfo:  # noqa: B008 - frozen
    """Check a wheel against the job it claims to answer and read its metadata."""
    python, abi, platform = check_filename(filename, project, version)
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as error:
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
        metadata_names = [m for m in members if m.filename.count("/") == 1
                          and m.filename.endswith(".dist-info/METADATA")]
        if len(metadata_names) != 1:
            raise BadWheel("no single .dist-info/METADATA")
        member = metadata_names[0]
        if member.file_size > MAX_METADATA:
            raise BadWheel("METADATA is too large")
        with archive.open(member) as f:
            metadata = f.read(MAX_METADATA + 1)
    if len(metadata) > MAX_METADATA:
        raise BadWheel("METADATA is too large")
    message = BytesParser().parsebytes(metadata)
    meta_name, meta_version = message.get("Name", ""), message.get("Version", "")
    if canonicalize_name(meta_name) != canonicalize_name(project):
        raise BadWheel(f"METADATA names {meta_name!r}, not {project!r}")
    try:
        if Version(meta_version) != Version(version):
            raise BadWheel(f"METADATA says version {meta_version!r}, not {version!r}")
    except InvalidVersion:
        raise BadWheel(f"METADATA has an invalid version {meta_version!r}") from None
    return WheelInfo(
        filename=filename, name=canonicalize_name(project), version=version,
        python_tag=python, abi_tag=abi, platform_tag=platform, metadata=metadata,
        requires_python=message.get("Requires-Python"),
        requires_dist=_plain_requirements(message.get_all("Requires-Dist") or []),
    )


def _unsafe_member(name: str) -> bool:
    parts = name.replace("\\", "/").split("/")
    return name.startswith("/") or ".." in parts or "\0" in name or ":" in parts[0]


def _plain_requirements(lines: list[str]) -> list[str]:
    """Names of what a plain install pulls in (extras' requirements left out)."""
    return sorted({canonicalize_name(Requirement(r).name) for r in plain_requirements(lines)})
