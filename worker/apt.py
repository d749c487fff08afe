"""From library files on the build host to the Debian packages that hold them,
and which of those the target OS image has preinstalled.

Preinstalled means Debian's base system, read from the builder's dpkg database:
the Essential packages, those of priority required or important, and everything
they Depend or Pre-Depend on, to the end. The closure matters: on Debian 12 libc6
is priority optional and is there only because everything depends on it. Add the
operator's per-ABI list of what the OS image ships besides (operator_preinstalled)."""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from worker.elf import Resolution

BASE_PRIORITIES = ("required", "important")
DPKG_FIELDS = ("Package", "db:Status-Status", "Essential", "Priority", "Provides",
               "Depends", "Pre-Depends")
# "name", "name:any", "name (>= 1.0)", "name:amd64 (= 2) [!i386] <!nocheck>"
RELATION_NAME = re.compile(r"\s*([a-z0-9][a-z0-9+.-]*)")


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


@dataclass
class Installed:
    """One package installed on the builder, as its dpkg database says."""

    name: str
    base: bool  # Essential, or of a base priority: a seed of the closure
    depends: list[list[str]] = field(default_factory=list)  # Depends and Pre-Depends,
    # each a list of alternatives ("a | b")
    provides: list[str] = field(default_factory=list)


def relation_names(text: str) -> list[list[str]]:
    """'a (>= 1) | b:any, c' -> [['a', 'b'], ['c']]: names without version,
    architecture qualifier or restrictions."""
    groups = []
    for group in text.split(","):
        names = [m.group(1) for alt in group.split("|") if (m := RELATION_NAME.match(alt))]
        if names:
            groups.append(names)
    return groups


def parse_installed(lines: Iterable[str]) -> dict[str, Installed]:
    """Installed packages from dpkg-query lines of DPKG_FIELDS, tab-separated. A
    package installed for two architectures is one entry (users install it by name)."""
    installed: dict[str, Installed] = {}
    for line in lines:
        parts = line.rstrip("\n").split("\t")
        if len(parts) != len(DPKG_FIELDS) or parts[1] != "installed":
            continue
        name, _, essential, priority, provides, depends, pre_depends = parts
        package = installed.setdefault(name, Installed(name, base=False))
        package.base |= essential == "yes" or priority in BASE_PRIORITIES
        package.depends += relation_names(pre_depends) + relation_names(depends)
        package.provides += [alt for group in relation_names(provides) for alt in group]
    return installed


def base_closure(installed: dict[str, Installed]) -> frozenset[str]:
    """The base packages and everything they need, transitively. A dependency is met
    by the first of its alternatives that is installed, or by an installed package
    providing it (virtual packages); one already in the closure meets it first. Of
    two ways to meet it the closure takes one: counting a package as preinstalled
    when it is not would hide it from the users who must install it."""
    providers: dict[str, list[str]] = {}
    for package in installed.values():
        for virtual in package.provides:
            providers.setdefault(virtual, []).append(package.name)
    closure = {name for name, package in installed.items() if package.base}
    queue = deque(sorted(closure))
    while queue:
        for group in installed[queue.popleft()].depends:
            chosen = _meet(group, installed, providers, closure)
            if chosen is not None and chosen not in closure:
                closure.add(chosen)
                queue.append(chosen)
    return frozenset(closure)


def _meet(group: list[str], installed: dict[str, Installed],
          providers: dict[str, list[str]], closure: set[str]) -> str | None:
    for name in group:
        if name in closure or any(p in closure for p in providers.get(name, ())):
            return None
    for name in group:
        if name in installed:
            return name
        if provided := sorted(providers.get(name, ())):
            return provided[0]
    return None  # not met on the builder: nothing of it is known to be there


@functools.cache
def base_system() -> frozenset[str]:
    """The builder's base closure (see the module's docstring), read from dpkg once per
    process; empty where there is no dpkg."""
    if not shutil.which("dpkg-query"):
        return frozenset()
    out = subprocess.run(["dpkg-query", "--show", "--showformat=" + "\t".join(
                          f"${{{name}}}" for name in DPKG_FIELDS) + "\n"],
                         capture_output=True, text=True, check=False,
                         env=dict(os.environ, LC_ALL="C"))
    return base_closure(parse_installed(out.stdout.splitlines()))


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


def apt_report(resolutions: list[Resolution], preinstalled: set[str],
               base: frozenset[str] | None = None) -> AptReport:
    """Turn the loader's findings for one wheel into apt package names. Preinstalled
    are the base system (`base`, by default the builder's: base_system()) and the
    operator's list `preinstalled`."""
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
    there = (base_system() if base is None else base) | preinstalled
    report.dependencies = sorted({bare_name(p) for p in packages})
    report.preinstalled = [name for name in report.dependencies if name in there]
    report.unresolved = sorted(set(report.unresolved))
    return report
