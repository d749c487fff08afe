"""The builder profile and the build dependencies per project, both shipped in the
repository and reviewed like code: builder-profile.txt lists the Debian packages every
builder has; build-deps.txt lists the extra packages some projects need. Each file
has a `# version: N` line, bumped at every change. Plain text, since the stdlib of
the oldest Python a builder may run reads it (no TOML before 3.11).

The builder profile version (Profile.version) is the sum of the two files' versions:
both only grow, so the sum grows when either file changes, and one number says what
a machine installed. `python -m worker profile --install` (or a chroot's setup)
records it in a marker file; workers report it in their health and with every
build, and the master asks for builds again when a newer one is installed
(ingest.profile_rebuilds)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from packaging.utils import canonicalize_name

from worker.names import BadName, check_project
from worker.settings import BUILD_DEPS, PROFILE_MARKER, Settings

DEFAULT = Path(__file__).resolve().parent / "builder-profile.txt"
MARKER = PROFILE_MARKER  # the default of WHEELWRIGHT_PROFILE_MARKER (worker.settings)
# Debian policy 5.6.1: lower case letters, digits, + - and ., at least two characters,
# starting with a letter or digit (so a name is never read as an option of apt-get).
DEBIAN_NAME = re.compile(r"[a-z0-9][a-z0-9+.-]+")
VERSION_LINE = re.compile(r"#\s*version:\s*(\S+)\s*")


class ProfileError(ValueError):
    """A profile or build-dependency file that does not parse."""


@dataclass
class Profile:
    version: int  # the builder profile version: file_version + deps_version
    packages: list[str]  # Debian package names, in the file's order
    file_version: int = 0  # builder-profile.txt's own, bumped whenever `packages` changes
    deps_version: int = 0  # build-deps.txt's (BuildDeps.version)


@dataclass
class BuildDeps:
    """The Debian packages each project's build needs beyond the profile."""

    by_project: dict[str, list[str]]  # canonical project name -> package names
    version: int = 0  # its `# version: N` line, bumped at every change; 0 without one

    def packages(self) -> list[str]:
        """Every package named, each once, sorted."""
        return sorted({p for packages in self.by_project.values() for p in packages})


def _package(name: str, where: str) -> str:
    if not DEBIAN_NAME.fullmatch(name):
        raise ProfileError(f"{where}: {name!r} is not a Debian package name")
    return name


def _version(line: str, where: str, seen: int | None) -> int | None:
    """The version a `# version: N` line gives (None: not such a line)."""
    header = VERSION_LINE.fullmatch(line.strip())
    if not header:
        return None
    if seen is not None:
        raise ProfileError(f"{where}: a second version line")
    if not header.group(1).isdigit() or int(header.group(1)) < 1:
        raise ProfileError(f"{where}: the version must be a positive integer")
    return int(header.group(1))


def load_profile(path: Path | None = None, deps: Path | None = None) -> Profile:
    """The profile in `path` (default: the shipped builder-profile.txt): a `# version:
    N` line, then one package a line, each followed by a comment saying who needs it;
    its version is N plus the version of the build dependencies in `deps` (default:
    the shipped build-deps.txt; a worker passes WHEELWRIGHT_BUILD_DEPS)."""
    path = DEFAULT if path is None else path
    version = None
    packages: list[str] = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        where = f"{path}:{number}"
        header = _version(line, where, version)
        if header is not None:
            version = header
            continue
        words = line.split("#", 1)[0].split()
        if len(words) > 1:
            raise ProfileError(f"{where}: one package a line, not {' '.join(words)!r}")
        if words and _package(words[0], where) in packages:
            raise ProfileError(f"{where}: {words[0]} is listed twice")
        packages += words
    if version is None:
        raise ProfileError(f"{path}: no '# version: N' line")
    deps_version = load_build_deps(BUILD_DEPS if deps is None else deps).version
    return Profile(version=version + deps_version, packages=packages, file_version=version,
                   deps_version=deps_version)


def load_build_deps(path: Path = BUILD_DEPS) -> BuildDeps:
    """The mapping in `path`: an optional `# version: N` line, then lines
    `project-name: package package  # comment`."""
    by_project: dict[str, list[str]] = {}
    version = None
    for number, line in enumerate(path.read_text().splitlines(), 1):
        where = f"{path}:{number}"
        header = _version(line, where, version)
        if header is not None:
            version = header
            continue
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        name, colon, rest = text.partition(":")
        if not colon:
            raise ProfileError(f"{where}: expected 'project: package ...'")
        try:
            project = check_project(canonicalize_name(name.strip()))
        except BadName as error:
            raise ProfileError(f"{where}: {error}") from None
        packages = [_package(p, where) for p in rest.split()]
        if not packages:
            raise ProfileError(f"{where}: expected 'project: package ...'")
        if project in by_project:
            raise ProfileError(f"{where}: {project} is listed twice")
        by_project[project] = packages
    return BuildDeps(by_project, version or 0)


def build_deps_for(project: str, path: Path = BUILD_DEPS) -> list[str]:
    """The extra Debian packages `project`'s build needs (none when it is not listed)."""
    return load_build_deps(path).by_project.get(canonicalize_name(project), [])


def missing_packages(packages: Iterable[str], root: Path | None = None) -> list[str]:
    """Those of `packages` not installed according to dpkg (of the chroot at `root`).
    One dpkg-query for all of them; a name dpkg has never heard of is missing too."""
    wanted = list(dict.fromkeys(packages))
    if not wanted:
        return []
    command = ["dpkg-query", "-W", "-f=${Package} ${db:Status-Status}\n", "--", *wanted]
    if root is not None:
        command = ["chroot", str(root), *command]
    done = subprocess.run(command, capture_output=True, text=True,
                          env=dict(os.environ, LC_ALL="C"))
    if done.returncode not in (0, 1):  # 1: some names unknown; anything else: no answer
        raise subprocess.CalledProcessError(done.returncode, command, done.stdout,
                                            done.stderr)
    installed = {line.split()[0] for line in done.stdout.splitlines()
                 if line.split()[1:] == ["installed"]}
    return [p for p in wanted if p not in installed]


def available_packages(policy: str, wanted: Iterable[str]) -> list[str]:
    """Those of `wanted` that `apt-cache policy`'s output `policy` gives a candidate
    version: what apt-get can install from this release's archive. A name the
    archive lacks is not in the output at all (apt-cache says so on stderr); a
    virtual or vanished one has "Candidate: (none)"."""
    candidates: dict[str, bool] = {}
    package = None
    for line in policy.splitlines():
        if line and not line[0].isspace() and line.endswith(":"):
            package = line[:-1]
        elif package is not None and line.strip().startswith("Candidate:"):
            candidates[package] = line.split(":", 1)[1].strip() != "(none)"
    return [p for p in dict.fromkeys(wanted) if candidates.get(p)]


def installable(packages: Iterable[str], root: Path | None = None) -> list[str]:
    """Those of `packages` apt knows a version of (in the chroot at `root`): one
    `apt-cache policy` for all of them, after `apt-get update`."""
    wanted = list(dict.fromkeys(packages))
    if not wanted:
        return []
    command = ["apt-cache", "policy", "--", *wanted]
    if root is not None:
        command = ["chroot", str(root), *command]
    done = subprocess.run(command, capture_output=True, text=True, check=True,
                          env=dict(os.environ, LC_ALL="C"))
    return available_packages(done.stdout, wanted)


def can_check() -> bool:
    """Whether this machine has dpkg to ask (a builder that is not Debian has not)."""
    return shutil.which("dpkg-query") is not None


def installed_profile(marker: Path = MARKER) -> int:
    """The profile version this machine has installed; 0 when none was recorded."""
    try:
        text = marker.read_text().strip()
    except OSError:
        return 0
    return int(text) if text.isdigit() else 0


def record_installed(version: int, marker: Path = MARKER) -> None:
    """Write `version` to `marker`, whole or not at all."""
    marker.parent.mkdir(parents=True, exist_ok=True)
    partial = marker.with_name(f"{marker.name}.{os.getpid()}.tmp")
    partial.write_text(f"{version}\n")
    partial.chmod(0o644)
    partial.replace(marker)


def install_command(packages: list[str]) -> list[str]:
    """apt-get's command line for `packages`: without recommends, so that a Pi and a
    chroot that install the same profile end up with the same set."""
    return ["apt-get", "install", "-y", "-q", "--no-install-recommends", *packages]


def wanted_packages(profile: Profile, deps: BuildDeps) -> list[str]:
    """What a builder installs: the profile, then every project's build dependencies."""
    return list(dict.fromkeys([*profile.packages, *deps.packages()]))


def describe(profile: Profile, deps: BuildDeps, installed: int) -> list[str]:
    """`python -m worker profile`'s lines: comments, then one package a line."""
    extra = [p for p in deps.packages() if p not in profile.packages]
    return [f"# builder profile version {profile.version} "
            f"(installed on this machine: {installed or 'none'})",
            f"# = builder-profile.txt version {profile.file_version} "
            f"+ build dependencies version {profile.deps_version}",
            *profile.packages,
            f"# build dependencies of {len(deps.by_project)} projects, "
            f"besides the profile: {len(extra)}",
            *extra]


def install(profile: Profile, deps: BuildDeps, marker: Path) -> list[str]:
    """Install the profile and every project's build dependencies with apt-get, then
    record the profile's version (only once apt-get has succeeded). The profile is
    chosen on Debian's newest release: a package this release's archive lacks (an
    older release names it otherwise, or has none) is left out rather than failing
    the rest; those are returned, for the caller to say."""
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-q"], check=True, env=env)
    wanted = wanted_packages(profile, deps)
    available = installable(wanted)
    subprocess.run(install_command(available), check=True, env=env)
    record_installed(profile.version, marker)
    return [p for p in wanted if p not in available]


def main(config: Settings, install_it: bool = False) -> int:
    """`python -m worker profile [--install]`."""
    try:
        profile = load_profile(deps=config.build_deps_file)
        deps = load_build_deps(config.build_deps_file)
    except (OSError, ProfileError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if not install_it:
        for line in describe(profile, deps, installed_profile(config.profile_marker)):
            print(line)
        return 0
    if os.geteuid() != 0:
        print("error: installing the profile needs root (apt-get): run it with sudo",
              file=sys.stderr)
        return 2
    try:
        absent = install(profile, deps, config.profile_marker)
    except (OSError, subprocess.CalledProcessError) as error:
        print(f"error: installing the builder profile failed: {error}", file=sys.stderr)
        return 1
    if absent:
        print(f"not in this release's archive, so not installed ({len(absent)}): "
              f"{' '.join(absent)}")
    print(f"builder profile version {profile.version} installed "
          f"(recorded in {config.profile_marker})")
    return 0
