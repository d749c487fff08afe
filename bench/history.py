"""A deterministic, PyPI-shaped event history for benchmarks and long tests.

About `early` of the events fall in the early era (serials below EARLY_SERIAL), where
serial order and time order disagree by up to a month; the rest come in serial
order with timestamps that run up to three minutes backwards, as PyPI's do.

With a FileMix, each project is of a kind (pure Python, compiled, sdist only) and
its wheel uploads are the kind's, and most sdist uploads of a project that has
wheels are followed by one of its wheels (a late-era event of its own); the other
events are the same history's."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ingest.events import EARLY_SERIAL

LATE_START = 1_400_000_000  # seconds: where the late era's clock starts


def _spelling(rng: random.Random, stem: str) -> str:
    """Mostly the project's own spelling; now and then another of the same name."""
    if rng.random() < 0.97:
        return stem
    return rng.choice([stem.replace("-", "_"), stem.title(), stem.replace("-", ".")])


@dataclass(frozen=True)
class FileMix:
    """Which wheels projects upload, as shares of projects. These are assumptions,
    not measurements: most projects, and most popular ones, are pure Python and
    upload a py3-none-any wheel with each release; a fifth build C (or Rust)
    extensions and upload wheels for the platforms cibuildwheel covers by default
    (x86_64, aarch64, Windows, macOS), few of them for armv7l too (cibuildwheel
    builds it only since 2024, and only when asked) and fewer for armv6l; the rest
    upload only an sdist."""

    pure: float = 0.70
    compiled: float = 0.20  # the rest (0.10 by default) upload sdists only
    # of the sdist uploads of projects with wheels: a wheel uploaded with it, as
    # `python -m build` and `twine upload dist/*` do
    with_sdist: float = 0.90
    armv7l: float = 0.15  # of compiled projects: manylinux armv7l wheels too
    armv6l: float = 0.02  # of compiled projects: linux_armv6l wheels too


COMPILED_PYTHONS = ("cp37-cp37m", "cp39-cp39", "cp310-cp310", "cp311-cp311", "cp312-cp312",
                    "cp313-cp313")
COMPILED_PLATFORMS = ("manylinux_2_17_x86_64.manylinux2014_x86_64",
                      "manylinux_2_17_aarch64.manylinux2014_aarch64", "win_amd64",
                      "macosx_11_0_arm64")


def generate(count: int, early: float = 0.02, seed: int = 0,
             mix: FileMix | None = None) -> Iterator[dict]:
    rng = random.Random(seed)
    kinds = _Kinds(mix, seed) if mix else None
    early_count = int(count * early)
    early_serials = sorted(rng.sample(range(1, EARLY_SERIAL), early_count))
    projects: list[tuple[str, list[str]]] = []
    serial_iter = iter(early_serials)
    late_serial = EARLY_SERIAL
    for index in range(count):
        if index < early_count:
            serial = next(serial_iter)
            # Right timestamps, wrong order: each event lands up to a month off.
            timestamp = 1_100_000_000 + serial * 400 + rng.randint(-2_600_000, 2_600_000)
        else:
            late_serial += rng.choice((1, 1, 1, 2))  # gaps from rolled-back transactions
            serial = late_serial
            timestamp = LATE_START + serial * 10 - rng.randint(0, 180)
        name, version, action = _event(rng, projects)
        if kinds is not None and action.startswith("add ") and action.endswith(".whl"):
            action = kinds.upload(version, action)
        yield {"serial": serial, "timestamp": timestamp, "name": name, "version": version,
               "action": action}
        if kinds is not None and index >= early_count and action.startswith("add source") \
                and (companion := kinds.with_sdist(version, action)):
            late_serial += 1
            yield {"serial": late_serial, "timestamp": timestamp + 1, "name": name,
                   "version": version, "action": companion}


def _event(rng: random.Random, projects: list[tuple[str, list[str]]]) -> tuple:
    roll = rng.random()
    if not projects or roll < 0.08:
        stem = f"project-{len(projects)}"
        projects.append((stem, []))
        return _spelling(rng, stem), None, "create"
    stem, versions = projects[int(len(projects) * rng.random() ** 0.5)]  # recent ones busier
    name = _spelling(rng, stem)
    file_stem = stem.replace("-", "_")
    if not versions or roll < 0.30:
        version = f"{len(versions)}.{rng.randint(0, 9)}"
        versions.append(version)
        return name, version, "new release"
    version = rng.choice(versions)
    if roll < 0.55:
        return name, version, f"add source file {file_stem}-{version}.tar.gz"
    if roll < 0.85:
        tag = rng.choice(("cp311-cp311-manylinux_2_17_x86_64", "py3-none-any",
                          "cp310-cp310-win_amd64"))
        return name, version, f"add {tag.split('-')[0]} file {file_stem}-{version}-{tag}.whl"
    if roll < 0.93:
        return name, None, rng.choice(("add Owner someone", "remove Owner someone",
                                       "invite Maintainer other", "accepted Maintainer other"))
    if roll < 0.96:
        return name, version, rng.choice(("yank release", "unyank release"))
    if roll < 0.98:
        return name, version, f"remove file {file_stem}-{version}.tar.gz"
    if roll < 0.995:
        return name, version, "remove release"
    return name, None, "remove project"


class _Kinds:
    """A project's kind, drawn when first seen, and the wheels it uploads. Draws come
    from a generator of their own, so the history's other events stay the same."""

    def __init__(self, mix: FileMix, seed: int) -> None:
        self.mix = mix
        self.rng = random.Random(seed + 1)
        self.kinds: dict[str, tuple[str, ...]] = {}

    def upload(self, version: str, action: str) -> str:
        # The file stem is the project's own spelling's, as _event writes it.
        stem = action.rsplit(" ", 1)[1].split("-")[0]
        kind = self._kind(stem)
        if not kind:  # sdist only: the upload is its sdist's
            return f"add source file {stem}-{version}.tar.gz"
        tag = self.rng.choice(kind)
        if tag != "py3-none-any":
            tag = f"{self.rng.choice(COMPILED_PYTHONS)}-{tag}"
        return f"add {tag.split('-')[0]} file {stem}-{version}-{tag}.whl"

    def with_sdist(self, version: str, action: str) -> str | None:
        """The wheel upload that follows an sdist's, if any."""
        stem = action.rsplit(" ", 1)[1].removesuffix(".tar.gz").rsplit("-", 1)[0]
        if not self._kind(stem) or self.rng.random() >= self.mix.with_sdist:
            return None
        return self.upload(version, f"add x file {stem}-{version}-x.whl")

    def _kind(self, stem: str) -> tuple[str, ...]:
        kind = self.kinds.get(stem)
        if kind is None:
            kind = self.kinds[stem] = self._draw()
        return kind

    def _draw(self) -> tuple[str, ...]:
        """The platforms a project's wheels are for: py3-none-any alone for pure
        Python, none for sdist only."""
        roll = self.rng.random()
        if roll < self.mix.pure:
            return ("py3-none-any",)
        if roll >= self.mix.pure + self.mix.compiled:
            return ()
        platforms = list(COMPILED_PLATFORMS)
        if self.rng.random() < self.mix.armv7l:
            platforms.append("manylinux_2_17_armv7l.manylinux2014_armv7l")
        if self.rng.random() < self.mix.armv6l:
            platforms.append("linux_armv6l")
        return tuple(platforms)


def write(path: Path, count: int, early: float = 0.02, seed: int = 0,
          mix: FileMix | None = None) -> Path:
    with path.open("w") as f:
        for event in generate(count, early, seed, mix):
            f.write(json.dumps(event) + "\n")
    return path
