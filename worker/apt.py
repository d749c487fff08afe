"""From library files on the build host to the Debian packages that hold them,
and which of those the target OS image has preinstalled."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from worker.elf import Resolution

PREINSTALLED_PRIORITIES = ("required", "important")


@dataclass
class AptReport:
    """The apt side of one wheel, in the report's terms."""

    dependencies: list[str] = field(default_factory=list)
    preinstalled: list[str] = field(default_factory=list)
    unresolved: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # for the build log


def path_variants(path: Path) -> list[str]:
    """Spellings dpkg may know a file by: on merged-/usr systems /lib is a link
    to /usr/lib, and a package lists whichever its own build used."""
    variants: list[str] = []
    for p in (str(path), os.path.realpath(path)):
        if p.startswith("/usr/lib/") or p.startswith("/usr/lib64/"):
            twin = p[len("/usr"):]
        elif p.startswith("/lib/") or p.startswith("/lib64/"):
            twin = "/usr" + p
        else:
            twin = p
        for v in (p, twin):
            if v not in variants:
                variants.append(v)
    return variants


def dpkg_owners(paths: list[str]) -> dict[str, str]:
    """Map each path dpkg knows to its package name (architecture qualifier kept)."""
    if not paths or not shutil.which("dpkg-query"):
        return {}
    out = subprocess.run(["dpkg-query", "--search", "--", *paths], capture_output=True,
                         text=True, env=dict(os.environ, LC_ALL="C"), check=False)
    owners: dict[str, str] = {}
    for line in out.stdout.splitlines():
        if line.startswith("diversion "):
            continue
        packages, sep, path = line.rpartition(": ")
        if sep and packages:
            owners[path.strip()] = packages.split(",")[0].strip()
    return owners


def dpkg_priorities(packages: list[str]) -> dict[str, str]:
    if not packages or not shutil.which("dpkg-query"):
        return {}
    out = subprocess.run(["dpkg-query", "--show", "--showformat=${Package}\t${Priority}\n",
                          "--", *packages], capture_output=True, text=True, check=False)
    return dict(line.split("\t", 1) for line in out.stdout.splitlines() if "\t" in line)


def bare_name(package: str) -> str:
    """zlib1g:armhf -> zlib1g: users install by name on their own architecture."""
    return package.split(":", 1)[0]


def operator_preinstalled(path_pattern: str | None, abi: str) -> set[str]:
    """The operator's list of packages preinstalled on the target image for `abi`."""
    if not path_pattern:
        return set()
    path = Path(path_pattern.replace("{abi}", abi))
    if not path.is_file():
        return set()
    names = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return {n for n in names if n}


def apt_report(resolutions: list[Resolution], preinstalled: set[str]) -> AptReport:
    """Turn the loader's findings for one wheel into apt package names."""
    report = AptReport()
    found = [r for r in resolutions if not r.bundled and r.path is not None]
    variants = {r.path: path_variants(r.path) for r in found}
    owners = dpkg_owners(sorted({v for vs in variants.values() for v in vs}))
    packages: set[str] = set()
    for r in resolutions:
        if r.bundled:
            continue
        owner = next((owners[v] for v in variants.get(r.path, []) if v in owners), None)
        if owner is None:
            report.unresolved.append(r.soname)
            where = f"{r.path}, which no package owns" if r.path else "nowhere"
            report.notes.append(f"{r.needed_by}: {r.soname} found {where}")
            continue
        packages.add(owner)
        report.notes.append(f"{r.needed_by}: {r.soname} => {r.path} ({bare_name(owner)})")
    priorities = dpkg_priorities(sorted(packages))
    report.dependencies = sorted({bare_name(p) for p in packages})
    report.preinstalled = sorted({
        bare_name(p) for p in packages
        if priorities.get(bare_name(p)) in PREINSTALLED_PRIORITIES
        or bare_name(p) in preinstalled
    })
    report.unresolved = sorted(set(report.unresolved))
    return report
