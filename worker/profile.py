"""The builder profile and the build dependencies per project, both shipped in the
repository and reviewed like code: builder-profile.txt lists the Debian packages every
builder has, under a version bumped at every change; build-deps.txt lists the extra
packages some projects need. Plain text, since the stdlib of the oldest Python a
builder may run reads it (no TOML before 3.11).

The version a machine has installed is recorded in a marker file when
`python -m worker profile --install` (or the armhf chroot's setup) installs it;
workers report it in their health and with every build."""

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
from worker.settings import Settings

PACKAGE = Path(__file__).resolve().parent
DEFAULT = PACKAGE / "builder-profile.txt"
BUILD_DEPS = PACKAGE / "build-deps.txt"
# Outside the data directory: the packages belong to the system, and `profile --install`
# runs as root while the worker runs as its own user with its own data directory.
MARKER = Path("/etc/wheelwright/builder-profile")
# Debian policy 5.6.1: lower case letters, digits, + - and ., at least two characters,
# starting with a letter or digit (so a name is never read as an option of apt-get).
DEBIAN_NAME = re.compile(r"[a-z0-9][a-z0-9+.-]+")
VERSION_LINE = re.compile(r"#\s*version:\s*(\S+)\s*")


class ProfileError(ValueError):
    """A profile or build-dependency file that does not parse."""


@dataclass
class Profile:
    version: int  # bumped whenever `packages` changes
    packages: list[str]  # Debian package names, in the file's order


@dataclass
class BuildDeps:
    """The Debian packages each project's build needs beyond the profile."""

    by_project: dict[str, list[str]]  # canonical project name -> package names

    def packages(self) -> list[str]:
        """Every package named, each once, sorted."""
        return sorted({p for packages in self.by_project.values() for p in packages})


def _package(name: str, where: str) -> str:
    if not DEBIAN_NAME.fullmatch(name):
        raise ProfileError(f"{where}: {name!r} is not a Debian package name")
    return name


def load_profile(path: Path = DEFAULT) -> Profile:
    """The profile in `path`: a `# version: N` line, then one package a line, each
    followed by a comment saying who needs it."""
    version = None
    packages: list[str] = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        where = f"{path}:{number}"
        header = VERSION_LINE.fullmatch(line.strip())
        if header:
            if version is not None:
                raise ProfileError(f"{where}: a second version line")
            if not header.group(1).isdigit() or int(header.group(1)) < 1:
                raise ProfileError(f"{where}: the version must be a positive integer")
            version = int(header.group(1))
            continue
        words = line.split("#", 1)[0].split()
        if len(words) > 1:
            raise ProfileError(f"{where}: one package a line, not {' '.join(words)!r}")
        if words and _package(words[0], where) in packages:
            raise ProfileError(f"{where}: {words[0]} is listed twice")
        packages += words
    if version is None:
        raise ProfileError(f"{path}: no '# version: N' line")
    return Profile(version=version, packages=packages)


def load_build_deps(path: Path = BUILD_DEPS) -> BuildDeps:
    """The mapping in `path`: lines `project-name: package package  # comment`."""
    by_project: dict[str, list[str]] = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        where = f"{path}:{number}"
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
    return BuildDeps(by_project)


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
            *profile.packages,
            f"# build dependencies of {len(deps.by_project)} projects, "
            f"besides the profile: {len(extra)}",
            *extra]


def install(profile: Profile, deps: BuildDeps, marker: Path) -> None:
    """Install the profile and every project's build dependencies with apt-get, then
    record the profile's version (only once apt-get has succeeded)."""
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-q"], check=True, env=env)
    subprocess.run(install_command(wanted_packages(profile, deps)), check=True, env=env)
    record_installed(profile.version, marker)


def main(config: Settings, install_it: bool = False) -> int:
    """`python -m worker profile [--install]`."""
    try:
        profile = load_profile()
        deps = load_build_deps(config.build_deps_file or BUILD_DEPS)
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
        install(profile, deps, config.profile_marker)
    except (OSError, subprocess.CalledProcessError) as error:
        print(f"error: installing the builder profile failed: {error}", file=sys.stderr)
        return 1
    print(f"builder profile version {profile.version} installed "
          f"(recorded in {config.profile_marker})")
    return 0
