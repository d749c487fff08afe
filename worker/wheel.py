"""Reading what a build produced: tags, core metadata, hash and size of each wheel,
checked against the job it answers."""

from __future__ import annotations

import zipfile
from dataclasses import dataclass, field
from email.parser import BytesParser
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename
from packaging.version import InvalidVersion, Version

from worker.build import sha256_of
from worker.interpreter import BuildInterpreter

MAX_METADATA = 4 * 1024 * 1024


class WrongWheel(ValueError):
    """The build produced something other than the wheel the job asked for."""


@dataclass
class WheelFile:
    path: Path
    filename: str
    size: int
    sha256: str
    name: str  # canonical, from METADATA
    version: str  # from METADATA
    tags: list[str]  # python-abi-platform triples from the filename
    requires_python: str | None
    requires_dist: list[str] = field(default_factory=list)  # plain installs only


def inspect_wheel(path: Path, project: str, version: str,
                  interpreter: BuildInterpreter) -> WheelFile:
    """Read one built wheel; WrongWheel if it is not `project==version` for us."""
    try:
        name, wheel_version, _build, tags = parse_wheel_filename(path.name)
    except InvalidWheelFilename as error:
        raise WrongWheel(str(error)) from None
    if name != canonicalize_name(project) or wheel_version != Version(version):
        raise WrongWheel(f"{path.name} is not a wheel of {project} {version}")
    if not any(interpreter.accepts(t.abi, t.platform) for t in tags):
        raise WrongWheel(f"{path.name} is not for {interpreter.abi} on {interpreter.platform}")
    message = BytesParser().parsebytes(_read_metadata(path))
    meta_name, meta_version = message.get("Name", ""), message.get("Version", "")
    try:
        same_version = Version(meta_version) == Version(version)
    except InvalidVersion:
        same_version = False
    if canonicalize_name(meta_name) != canonicalize_name(project) or not same_version:
        raise WrongWheel(f"{path.name}: METADATA says {meta_name} {meta_version}")
    return WheelFile(
        path=path, filename=path.name, size=path.stat().st_size, sha256=sha256_of(path),
        name=canonicalize_name(meta_name), version=meta_version,
        tags=sorted(str(t) for t in tags),
        requires_python=message.get("Requires-Python"),
        requires_dist=plain_requirements(message.get_all("Requires-Dist") or []),
    )


def _read_metadata(path: Path) -> bytes:
    try:
        with zipfile.ZipFile(path) as archive:
            found = [m for m in archive.infolist() if m.filename.count("/") == 1
                     and m.filename.endswith(".dist-info/METADATA")]
            if len(found) != 1 or found[0].file_size > MAX_METADATA:
                raise WrongWheel(f"{path.name} has no single readable .dist-info/METADATA")
            return archive.read(found[0])
    except (zipfile.BadZipFile, OSError) as error:
        raise WrongWheel(f"{path.name} is not a zip file: {error}") from None


def plain_requirements(lines: list[str]) -> list[str]:
    """The requirements a plain install pulls in: those of extras left out."""
    kept = []
    for line in lines:
        try:
            requirement = Requirement(line)
        except InvalidRequirement:
            continue
        if requirement.marker and "extra" in str(requirement.marker):
            continue
        kept.append(str(requirement))
    return sorted(set(kept))
