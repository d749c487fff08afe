"""A deterministic, PyPI-shaped event history for benchmarks and long tests.

About `early` of the events fall in the early era (serials below EARLY_SERIAL), where
serial order and time order disagree by up to a month; the rest come in serial
order with timestamps that run up to three minutes backwards, as PyPI's do."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path

from ingest.events import EARLY_SERIAL

LATE_START = 1_400_000_000  # seconds: where the late era's clock starts


def _spelling(rng: random.Random, stem: str) -> str:
    """Mostly the project's own spelling; now and then another of the same name."""
    if rng.random() < 0.97:
        return stem
    return rng.choice([stem.replace("-", "_"), stem.title(), stem.replace("-", ".")])


def generate(count: int, early: float = 0.02, seed: int = 0) -> Iterator[dict]:
    rng = random.Random(seed)
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
        yield {"serial": serial, "timestamp": timestamp, "name": name, "version": version,
               "action": action}


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


def write(path: Path, count: int, early: float = 0.02, seed: int = 0) -> Path:
    with path.open("w") as f:
        for event in generate(count, early, seed):
            f.write(json.dumps(event) + "\n")
    return path
