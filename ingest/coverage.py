"""Which wheels PyPI already serves a Raspberry Pi OS release's users.

An ABI we build stands for one Raspberry Pi OS release: its Python, its glibc, and
the machines its users run (armv7l on a Pi 2 and later, armv6l on a Pi Zero/1). For
each such target the tags pip accepts are built with packaging's tag machinery, the
way pip on that Pi builds them, and a PyPI wheel covers the target when one of its
tags is among them. A release PyPI covers on every platform of an ABI needs no build
of ours for that ABI; building it anyway would put a second file under a name PyPI
already serves, or a worse one beside it."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache, lru_cache

from packaging.tags import Tag, compatible_tags, cpython_tags
from packaging.utils import InvalidWheelFilename, parse_wheel_filename
from packaging.version import InvalidVersion

# manylinux policies for ARM start at glibc 2.17 (manylinux2014 added armv7l and
# aarch64); the older names, manylinux2010 and manylinux1, were x86 only.
MANYLINUX_FLOOR = 17
LEGACY_MANYLINUX = {17: "manylinux2014"}


@dataclass(frozen=True)
class Target:
    """Where an ABI's wheels are installed: a Raspberry Pi OS release's Python on
    one kind of machine."""

    abi: str  # the ABI tag we build for it, e.g. cp311
    platform: str  # the machine pip reports, e.g. armv7l
    codename: str  # the Raspberry Pi OS release, e.g. bookworm
    python: tuple[int, int]
    glibc: tuple[int, int]
    manylinux: bool  # is there a manylinux policy for this machine at all

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


def _release(abi: str, codename: str, python: tuple[int, int], glibc: tuple[int, int]
             ) -> list[Target]:
    """A 32-bit Raspberry Pi OS release's targets: the Pi 2 and later (armv7l), and
    the Pi Zero/1 (armv6l), for which no manylinux policy exists."""
    return [Target(abi, "armv7l", codename, python, glibc, manylinux=True),
            Target(abi, "armv6l", codename, python, glibc, manylinux=False)]


# Every (ABI, platform) whose users we serve: the one table of releases. Older ABIs
# (cp34m, cp35m) are end of life and absent: nothing is covered for them.
TARGETS: dict[tuple[str, str], Target] = {
    (t.abi, t.platform): t for t in [
        *_release("cp37m", "buster", (3, 7), (2, 28)),
        *_release("cp39", "bullseye", (3, 9), (2, 31)),
        *_release("cp311", "bookworm", (3, 11), (2, 36)),
        *_release("cp313", "trixie", (3, 13), (2, 41)),
    ]
}


def targets_of(abi: str) -> list[Target]:
    """The targets an ABI's wheels serve, in the table's order; none for an ABI
    the table does not know (such an ABI is never covered)."""
    return [target for (target_abi, _), target in TARGETS.items() if target_abi == abi]


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
    """Which PyPI wheel pip would install on each platform of an ABI's users."""

    abi: str
    wheels: dict[str, str | None]  # platform -> the PyPI file, or None

    @property
    def complete(self) -> bool:
        """Every platform has a PyPI wheel (and the ABI has platforms at all)."""
        return bool(self.wheels) and all(self.wheels.values())

    @property
    def reason(self) -> str:
        """The skip reason: the PyPI files that cover the platforms, each once."""
        names = list(dict.fromkeys(f for f in self.wheels.values() if f))
        return f"PyPI has {' and '.join(names)}" if names else ""


def coverage(abi: str, filenames: Iterable[str]) -> Coverage:
    """What a release's PyPI files (any kind; non-wheels are ignored) give the
    ABI's users."""
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
