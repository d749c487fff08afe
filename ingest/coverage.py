"""Which wheels PyPI already serves a Raspberry Pi OS release's users.

A build target (worker.targets: an ABI on one image) stands for one Raspberry Pi OS
release's image: its Python, its glibc, and the machines its users run. The 32-bit
image (target key `cp311`) runs on armv7l (Pi 2 and later) and armv6l (Pi Zero/1);
the 64-bit one (`cp311-aarch64`) on aarch64. For each such machine the tags pip
accepts are built with packaging's tag machinery, the way pip on that Pi builds them,
and a PyPI wheel covers the machine when one of its tags is among them. A release PyPI
covers on every machine of a build target needs no build of ours for that target;
building it anyway would put a second file under a name PyPI already serves, or a
worse one beside it. So a release with only a manylinux aarch64 wheel on PyPI is built
for the 32-bit image and not for the 64-bit one."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache, lru_cache

from packaging.tags import Tag, compatible_tags, cpython_tags
from packaging.utils import InvalidWheelFilename, parse_wheel_filename
from packaging.version import InvalidVersion

from worker.targets import target_key

# manylinux policies for ARM start at glibc 2.17 (manylinux2014 added armv7l and
# aarch64); the older names, manylinux2010 and manylinux1, were x86 only.
MANYLINUX_FLOOR = 17
LEGACY_MANYLINUX = {17: "manylinux2014"}


@dataclass(frozen=True)
class Target:
    """Where an ABI's wheels are installed: a Raspberry Pi OS release's Python on
    one kind of machine."""

    abi: str  # the ABI tag we build for it, e.g. cp311
    platform: str  # the machine pip reports, e.g. armv7l, aarch64
    codename: str  # the Raspberry Pi OS release, e.g. bookworm
    python: tuple[int, int]
    glibc: tuple[int, int]
    manylinux: bool  # is there a manylinux policy for this machine at all

    @property
    def key(self) -> str:
        """The build target whose wheels serve this machine: `cp311` for armv7l and
        armv6l (the 32-bit image), `cp311-aarch64` for aarch64."""
        return target_key(self.abi, f"linux_{self.platform}")

    def platform_tags(self) -> list[str]:
        """The platforms pip accepts here, most preferred first, as packaging
        orders them: manylinux from the release's glibc down, each legacy name
        after its own, and the plain linux tag last. musllinux never: the OS is
        glibc-based."""
        platforms = []
        if self.manylinux:
            for minor in range(self.glibc[1], MANYLINUX_FLOOR - 1, -1):
                platforms.append(f"manylinux_{self.glibc[0]}_{minor}_{self.platform}")
                if legacy := LEGACY_MANYLINUX.get(minor):
                    platforms.append(f"{legacy}_{self.platform}")
        platforms.append(f"linux_{self.platform}")
        return platforms


def _release(abi: str, codename: str, python: tuple[int, int], glibc: tuple[int, int],
             bits64: bool = False) -> list[Target]:
    """A Raspberry Pi OS release's targets: on its 32-bit image the Pi 2 and later
    (armv7l) and the Pi Zero/1 (armv6l), for which no manylinux policy exists; on its
    64-bit image (Bookworm and later), aarch64."""
    return [Target(abi, "armv7l", codename, python, glibc, manylinux=True),
            Target(abi, "armv6l", codename, python, glibc, manylinux=False),
            *([Target(abi, "aarch64", codename, python, glibc, manylinux=True)]
              if bits64 else [])]


# Every (ABI, platform) whose users we serve: the one table of releases. Older ABIs
# (cp34m, cp35m) are end of life and absent: nothing is covered for them. Buster and
# Bullseye had no 64-bit image of Raspberry Pi OS's own worth building for.
TARGETS: dict[tuple[str, str], Target] = {
    (t.abi, t.platform): t for t in [
        *_release("cp37m", "buster", (3, 7), (2, 28)),
        *_release("cp39", "bullseye", (3, 9), (2, 31)),
        *_release("cp311", "bookworm", (3, 11), (2, 36), bits64=True),
        *_release("cp313", "trixie", (3, 13), (2, 41), bits64=True),
    ]
}


def targets_of(key: str) -> list[Target]:
    """The machines a build target's wheels serve (`key`: worker.targets), in the
    table's order; none for a target the table does not know (never covered)."""
    return [target for target in TARGETS.values() if target.key == key]


@cache
def supported_tags(target: Target) -> dict[Tag, int]:
    """Each tag pip on the target installs, with its preference (0 is best)."""
    python = target.python
    platforms = target.platform_tags()
    found = [*cpython_tags(python, abis=[target.abi], platforms=platforms),
             *compatible_tags(python, interpreter=f"cp{python[0]}{python[1]}",
                              platforms=platforms)]
    ranks: dict[Tag, int] = {}
    for rank, tag in enumerate(found):
        ranks.setdefault(tag, rank)
    return ranks


@lru_cache(maxsize=65536)
def wheel_tags(filename: str) -> frozenset[Tag]:
    """The tags a wheel's name claims; none for a name that is not a wheel's."""
    if not filename.endswith(".whl"):
        return frozenset()
    try:
        return parse_wheel_filename(filename)[3]
    except (InvalidWheelFilename, InvalidVersion):
        return frozenset()


def best_wheel(target: Target, filenames: Iterable[str]) -> str | None:
    """The wheel pip on the target would pick among `filenames` (its most preferred
    tag; the first name in sorted order breaks a tie), or None if it takes none."""
    ranks = supported_tags(target)
    best: tuple[int, str] | None = None
    for filename in filenames:
        rank = min((ranks[tag] for tag in wheel_tags(filename) if tag in ranks),
                   default=None)
        if rank is not None and (best is None or (rank, filename) < best):
            best = (rank, filename)
    return best[1] if best else None


@dataclass(frozen=True)
class Coverage:
    """Which PyPI wheel pip would install on each platform of a build target's users."""

    abi: str  # the build target's key
    wheels: dict[str, str | None]  # platform -> the PyPI file, or None

    @property
    def complete(self) -> bool:
        """Every platform has a PyPI wheel (and the target has platforms at all)."""
        return bool(self.wheels) and all(self.wheels.values())

    @property
    def reason(self) -> str:
        """The skip reason: the PyPI files that cover the platforms, each once."""
        names = list(dict.fromkeys(f for f in self.wheels.values() if f))
        return f"PyPI has {' and '.join(names)}" if names else ""


def coverage(abi: str, filenames: Iterable[str]) -> Coverage:
    """What a release's PyPI files (any kind; non-wheels are ignored) give the users
    of the build target `abi` (its key)."""
    names = sorted(set(filenames))
    return Coverage(abi, {t.platform: best_wheel(t, names) for t in targets_of(abi)})


# A wheel of ours named like a live PyPI file of the same release: PyPI's file wins.
_SHADOWED = """
SELECT DISTINCT w.project FROM json_each(:projects) AS named
JOIN wheels w ON w.project = named.value
JOIN live_files f ON f.project = w.project AND f.version = w.version
                 AND f.filename = w.filename
"""


def shadowed_projects(conn: sqlite3.Connection, projects: Iterable[str]) -> set[str]:
    """Those of `projects` holding a wheel of ours under a filename PyPI now serves
    too: their publisher withdraws our file (never two files under one name)."""
    return {row[0] for row in conn.execute(_SHADOWED, {"projects": json.dumps(sorted(projects))})}
