"""Which shared libraries a wheel's ELF files need, found the way the dynamic
loader would find them on the build host (see ld.so(8)).

For each ELF file: its DT_NEEDED sonames are looked up in its DT_RPATH (only when
it has no DT_RUNPATH), then its DT_RUNPATH, then the directories of
/etc/ld.so.conf, then the trusted defaults. `$ORIGIN` means the file's own
directory. Only libraries of the same ELF class and machine count, as for the
loader. A soname that a file inside the wheel provides is satisfied by the wheel.

And, from their ARM build attributes, whether a wheel's ELF files run on the ARMv6
of a Pi Zero or Pi 1 (armv6_of_tree, armv6_of_wheel): see the section below."""

from __future__ import annotations

import glob
import shutil
import tempfile
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from elftools.common.exceptions import ELFError
from elftools.elf.dynamic import DynamicSection
from elftools.elf.elffile import ELFFile
from elftools.elf.sections import ARMAttributesSection

if TYPE_CHECKING:
    from worker.wheel import WheelInfo

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


# --- where the code runs: ARM build attributes -------------------------------------
#
# A Pi Zero or Pi 1 has an ARM1176: ARMv6KZ, VFPv2, no NEON, Thumb-1 only. A compiler
# records in an ELF file's .ARM.attributes section what its code was allowed to use
# (the ARM ABI's "build attributes"), and the linker merges those of every object it
# links: so a library linked with Debian armhf's ARMv7 Thumb-2 startup files says
# ARMv7 even when its own code was compiled for ARMv6. That record is the truth about
# where a wheel runs; its platform tag (linux_armv7l) is not.

# Tag_CPU_arch values an ARMv6KZ executes: pre-v4 up to v6KZ, and v6K (numbered after
# v6T2, but a subset of v6KZ). v6T2 has Thumb-2; v7 and later are newer still.
ARM1176_CPU_ARCHS = frozenset(range(0, 8)) | {9}
CPU_ARCH_NAMES = {8: "ARMv6T2", 10: "ARMv7", 11: "ARMv6-M", 12: "ARMv6S-M", 13: "ARMv7E-M",
                  14: "ARMv8-A", 15: "ARMv8-R", 16: "ARMv8-M", 17: "ARMv8-M", 18: "ARMv8.1-M",
                  19: "ARMv9-A"}
FP_ARCH_NAMES = {3: "VFPv3", 4: "VFPv3-D16", 5: "VFPv4", 6: "VFPv4-D16", 7: "ARMv8 FP",
                 8: "ARMv8 FP-D16"}
VFPV2 = 2  # Tag_FP_arch
THUMB2 = 2  # Tag_THUMB_ISA_use: 1 is Thumb-1, 3 "as the architecture says"
DIV_USED = 2  # Tag_DIV_use: SDIV/UDIV, which the ARM1176 lacks
# An unreadable attributes section cannot be vouched for; so many entries in one
# cannot be real (a hostile length makes pyelftools' loops go round in place).
MAX_ATTRIBUTES = 10_000


@dataclass(frozen=True)
class Armv6:
    """Whether a wheel runs on the ARM1176 of a Pi Zero or Pi 1.

    runs is True when every ELF file in it is 32-bit ARM code that the ARM1176
    executes (so also when it has no ELF file at all: pure Python runs anywhere);
    False when some ELF file is not; None when its ELF files are all for other
    machines (a wheel built on a PC: not an ARM wheel)."""

    runs: bool | None
    notes: list[str] = field(default_factory=list)  # why not, for the build log


def arm1176_needs(path: Path) -> list[str] | None:
    """What the ELF file at `path` needs that an ARM1176 lacks ([] when it runs there),
    or None when it is an ELF file for another machine. A file that cannot be read
    needs "readable build attributes": nobody can vouch for it."""
    try:
        with path.open("rb") as f:
            elf = ELFFile(f)
            if elf["e_machine"] != "EM_ARM":
                return None
            if elf.elfclass != 32:
                return ["32-bit code"]
            values = _arm_attributes(elf)
    except Exception:  # noqa: BLE001 - a stranger's file: any failure means "cannot tell"
        return ["readable build attributes"]
    if values is None:
        return ["build attributes"]  # every compiler for the ARM EABI writes them
    return _unmet(values)


def _arm_attributes(elf: ELFFile) -> dict[str, set[int]] | None:
    """Every value of each numeric aeabi attribute, whatever its scope (the file, a
    section, a symbol: code anywhere in the file counts), or None if it has none."""
    sections = [s for s in elf.iter_sections() if isinstance(s, ARMAttributesSection)]
    if not sections:
        return None
    values: dict[str, set[int]] = {}
    budget = iter(range(MAX_ATTRIBUTES))  # one step per item read, whatever its level

    def spend() -> None:
        if next(budget, None) is None:
            raise ELFError("more build attributes than a file can hold")

    for section in sections:
        for subsection in section.iter_subsections():
            spend()
            if not 0 < subsection["length"] <= section.data_size:
                raise ELFError("attributes subsection of impossible length")
            if subsection["vendor_name"] != "aeabi":
                continue  # another vendor's attributes say nothing of the ISA
            for scope in subsection.iter_subsubsections():
                spend()
                if not 0 < scope.header.value <= subsection["length"]:
                    raise ELFError("attributes subsubsection of impossible length")
                end = scope.offset + scope.header.value
                for attribute in scope.iter_attributes():
                    spend()
                    if scope.stream.tell() > end:
                        raise ELFError("attributes run past their subsubsection")
                    if isinstance(attribute.value, int):
                        values.setdefault(attribute.tag, set()).add(attribute.value)
    return values


def _unmet(values: dict[str, set[int]]) -> list[str]:
    """An absent tag has the ABI's default, 0: "nothing of this used"."""
    needs = []
    for arch in sorted(values.get("TAG_CPU_ARCH", set()) - ARM1176_CPU_ARCHS):
        needs.append(CPU_ARCH_NAMES.get(arch, f"CPU architecture {arch}"))
    if any(v == THUMB2 for v in values.get("TAG_THUMB_ISA_USE", ())):
        needs.append("Thumb-2")
    for fp in sorted(v for v in values.get("TAG_FP_ARCH", ()) if v > VFPV2):
        needs.append(FP_ARCH_NAMES.get(fp, f"FP architecture {fp}"))
    if any(values.get("TAG_ADVANCED_SIMD_ARCH", ())):
        needs.append("NEON")
    if any(values.get("TAG_FP_HP_EXTENSION", ())):
        needs.append("half-precision floating point")
    if any(values.get("TAG_WMMX_ARCH", ())):
        needs.append("iWMMXt")
    if DIV_USED in values.get("TAG_DIV_USE", ()):
        needs.append("hardware divide")
    if any(values.get("TAG_MPEXTENSION_USE", ())):
        needs.append("multiprocessing extensions")
    return needs


def armv6_verdict(files: Iterable[tuple[str, list[str] | None]]) -> Armv6:
    """The wheel's verdict from each of its ELF files' (name, arm1176_needs)."""
    arm, foreign, notes = 0, [], []
    for name, needs in files:
        if needs is None:
            foreign.append(name)
            continue
        arm += 1
        if needs:
            notes.append(f"{name} needs {', '.join(needs)}")
    if foreign and not arm:
        return Armv6(None, [])
    notes += [f"{name} is not 32-bit ARM code" for name in foreign]
    return Armv6(not notes, notes)


def armv6_of_tree(root: Path) -> Armv6:
    """The verdict for a wheel unpacked under root (the worker's own build)."""
    return armv6_verdict(
        (path.relative_to(root).as_posix(), arm1176_needs(path))
        for path in sorted(root.rglob("*"))
        if path.is_file() and not path.is_symlink() and _starts_as_elf(path))


def armv6_of_wheel(wheel: Path, scratch: Path) -> Armv6:
    """The verdict for a wheel still zipped (a push the intake has checked against its
    zip limits). Each member that starts as an ELF file is copied, one at a time, to a
    file of our own naming under `scratch` and read there; zipfile's errors propagate."""
    with zipfile.ZipFile(wheel) as archive, tempfile.TemporaryDirectory(dir=scratch) as tmp:
        return armv6_verdict(_zipped_elf_needs(archive, Path(tmp) / "member"))


def _zipped_elf_needs(archive: zipfile.ZipFile, copy: Path
                      ) -> Iterator[tuple[str, list[str] | None]]:
    for info in archive.infolist():
        if info.is_dir():
            continue
        if info.flag_bits & 0x1:  # zipfile would raise RuntimeError; pip cannot install it
            raise zipfile.BadZipFile(f"member {info.filename!r} is encrypted")
        with archive.open(info) as member:
            head = member.read(len(ELF_MAGIC))
            if head != ELF_MAGIC:
                continue
            with copy.open("wb") as out:
                out.write(head)
                shutil.copyfileobj(member, out)
        yield info.filename, arm1176_needs(copy)
        copy.unlink()


def _starts_as_elf(path: Path) -> bool:
    try:
        with path.open("rb") as f:
            return f.read(len(ELF_MAGIC)) == ELF_MAGIC
    except OSError:
        return False


def compiled_code(wheel: WheelInfo, archive: zipfile.ZipFile) -> bool | None:
    """True when the wheel holds an ELF file; False when it holds none yet is tagged
    for an ABI or platform (other than none and any): "built without compiled code",
    what a package whose optional extension failed to build leaves behind (it falls
    back to pure Python, and Pi users get the slow code); None for a pure wheel. The
    one rule for "holds compiled code": the intake records it, `python -m ingest admin
    scan-compiled` fills it in for wheels published before, and bench/builds.py
    counts by it."""
    for info in archive.infolist():
        if info.is_dir():
            continue
        with archive.open(info) as member:
            if member.read(len(ELF_MAGIC)) == ELF_MAGIC:
                return True
    if wheel.abi_tag == "none" and wheel.platform_tag == "any":
        return None
    return False
