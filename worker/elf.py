"""Which shared libraries a wheel's ELF files need, found the way the dynamic
loader would find them on the build host (see ld.so(8)).

For each ELF file: its DT_NEEDED sonames are looked up in its DT_RPATH (only when
it has no DT_RUNPATH), then its DT_RUNPATH, then the directories of
/etc/ld.so.conf, then the trusted defaults. `$ORIGIN` means the file's own
directory. Only libraries of the same ELF class and machine count, as for the
loader. A soname that a file inside the wheel provides is satisfied by the wheel."""

from __future__ import annotations

import glob
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from elftools.common.exceptions import ELFError
from elftools.elf.dynamic import DynamicSection
from elftools.elf.elffile import ELFFile

ELF_MAGIC = b"\x7fELF"
LD_SO_CONF = Path("/etc/ld.so.conf")


@dataclass(frozen=True)
class ElfKind:
    elfclass: int  # 32 or 64
    machine: str  # e.g. EM_X86_64, EM_ARM


@dataclass
class ElfInfo:
    path: Path
    kind: ElfKind
    soname: str | None
    needed: list[str] = field(default_factory=list)
    rpath: list[str] = field(default_factory=list)
    runpath: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Resolution:
    soname: str
    needed_by: str  # path of the needing file, relative to the wheel
    path: Path | None  # where the loader would find it; None when nowhere
    bundled: bool  # found inside the wheel


def read_elf(path: Path) -> ElfInfo | None:
    """The dynamic-linking facts of `path`, or None if it is not an ELF file."""
    try:
        with path.open("rb") as f:
            if f.read(4) != ELF_MAGIC:
                return None
            f.seek(0)
            elf = ELFFile(f)
            info = ElfInfo(path=path, kind=ElfKind(elf.elfclass, elf["e_machine"]), soname=None)
            for section in elf.iter_sections():
                if isinstance(section, DynamicSection):
                    _read_dynamic(section, info)
            return info
    except (ELFError, OSError, ValueError, KeyError):
        return None


def _read_dynamic(section: DynamicSection, info: ElfInfo) -> None:
    for tag in section.iter_tags():
        if tag.entry.d_tag == "DT_NEEDED":
            info.needed.append(tag.needed)
        elif tag.entry.d_tag == "DT_SONAME":
            info.soname = tag.soname
        elif tag.entry.d_tag == "DT_RPATH":
            info.rpath += [p for p in tag.rpath.split(":") if p]
        elif tag.entry.d_tag == "DT_RUNPATH":
            info.runpath += [p for p in tag.runpath.split(":") if p]


def elf_files(root: Path) -> list[ElfInfo]:
    """Every ELF file under root (an unpacked wheel), whatever its name."""
    found = []
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink():
            info = read_elf(path)
            if info is not None:
                found.append(info)
    return found


def ld_so_conf_dirs(conf: Path = LD_SO_CONF) -> list[str]:
    """The directories of ld.so.conf and the files it includes, in order."""
    dirs: list[str] = []
    _read_conf(conf, dirs, seen=set())
    return dirs


def _read_conf(conf: Path, dirs: list[str], seen: set[Path]) -> None:
    if conf in seen or not conf.is_file():
        return
    seen.add(conf)
    for raw in conf.read_text(errors="replace").splitlines():
        line = raw.split("#", 1)[0].strip()
        if line.startswith("include"):
            pattern = line.split(None, 1)[1] if " " in line or "\t" in line else ""
            if pattern and not pattern.startswith("/"):
                pattern = str(conf.parent / pattern)
            for included in sorted(glob.glob(pattern)):
                _read_conf(Path(included), dirs, seen)
        elif line:
            dirs.append(line)


def default_dirs(kind: ElfKind) -> list[str]:
    if kind.elfclass == 64:
        return ["/lib64", "/usr/lib64", "/lib", "/usr/lib"]
    return ["/lib", "/usr/lib"]


def _expand(entry: str, origin: Path, kind: ElfKind) -> str:
    lib = "lib64" if kind.elfclass == 64 else "lib"
    for token, value in (("${ORIGIN}", str(origin)), ("$ORIGIN", str(origin)),
                         ("${LIB}", lib), ("$LIB", lib)):
        entry = entry.replace(token, value)
    return entry


class Resolver:
    """Finds sonames for ELF files of one wheel, unpacked under `root`."""

    def __init__(self, root: Path, system_dirs: list[str] | None = None):
        self.root = root.resolve()
        self.system_dirs = ld_so_conf_dirs() if system_dirs is None else system_dirs
        self._kinds: dict[Path, ElfKind | None] = {}

    def resolve_all(self, files: list[ElfInfo]) -> list[Resolution]:
        provided = {name for f in files for name in (f.soname, f.path.name) if name}
        resolutions = []
        for info in files:
            for soname in info.needed:
                resolutions.append(self.resolve(info, soname, provided))
        return resolutions

    def resolve(self, info: ElfInfo, soname: str, provided: set[str]) -> Resolution:
        needed_by = str(info.path.resolve().relative_to(self.root))
        found = self._search(info, soname)
        inside = found is not None and found.resolve().is_relative_to(self.root)
        if found is None and soname in provided:
            inside = True  # loaded from the wheel some other way (preloaded by the package)
        return Resolution(soname=soname, needed_by=needed_by,
                          path=None if inside else found, bundled=inside)

    def _search(self, info: ElfInfo, soname: str) -> Path | None:
        origin = info.path.resolve().parent
        if "/" in soname:
            candidates = [Path(_expand(soname, origin, info.kind))]
        else:
            dirs = [] if info.runpath else list(info.rpath)
            dirs += info.runpath
            dirs = [_expand(d, origin, info.kind) for d in dirs]
            dirs += self.system_dirs + default_dirs(info.kind)
            candidates = [Path(d) / soname for d in dirs]
        for candidate in candidates:
            if self._compatible(candidate, info.kind):
                return candidate
        return None

    def _compatible(self, path: Path, kind: ElfKind) -> bool:
        if path not in self._kinds:
            found = read_elf(path) if path.is_file() else None
            self._kinds[path] = found.kind if found else None
        return self._kinds[path] == kind


def unpack(wheel: Path, dest: Path) -> Path:
    """Unpack a wheel we just built, for scanning; zipfile refuses to write
    outside dest, so a hostile member name lands inside it."""
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(dest)
    return dest
