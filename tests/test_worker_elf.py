"""Finding the apt packages a wheel's ELF files need, on real libraries built here
with the host's compiler and resolved against the host's real dpkg database."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from worker.apt import (
    apt_report,
    base_closure,
    base_system,
    parse_installed,
    path_variants,
    relation_names,
)
from worker.elf import Resolution, Resolver, elf_files, read_elf

pytestmark = pytest.mark.skipif(not shutil.which("gcc"), reason="no C compiler")


def cc(output: Path, *args: str, source: str = "int f(void) { return 1; }\n") -> Path:
    output.parent.mkdir(parents=True, exist_ok=True)
    src = output.with_suffix(".c")
    src.write_text(source)
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(output), str(src),
                    "-Wl,--no-as-needed", *args], check=True)
    src.unlink()
    return output


@pytest.fixture
def wheel_tree(tmp_path) -> Path:
    """An unpacked wheel as auditwheel would lay it out, plus two unusual needs."""
    root = tmp_path / "wheel"
    libs = root / "pkg.libs"
    cc(libs / "libbundled-1a2b.so.1", "-Wl,-soname,libbundled-1a2b.so.1")
    ghost_dir = tmp_path / "elsewhere"
    cc(ghost_dir / "libghost.so.7", "-Wl,-soname,libghost.so.7")
    cc(root / "pkg" / "ext.so", f"-L{libs}", "-l:libbundled-1a2b.so.1", "-l:libz.so.1",
       "-Wl,--disable-new-dtags,-rpath,$ORIGIN/../pkg.libs")
    cc(root / "pkg" / "runpath.so", f"-L{libs}", "-l:libbundled-1a2b.so.1",
       "-Wl,--enable-new-dtags,-rpath,$ORIGIN/../pkg.libs")
    cc(root / "pkg" / "haunted.so", f"-L{ghost_dir}", "-l:libghost.so.7")
    (root / "pkg" / "data.so").write_bytes(b"not an ELF file at all")
    shutil.rmtree(ghost_dir)  # built against, but absent where the wheel will run
    return root


def test_elf_facts_are_read(wheel_tree):
    ext = read_elf(wheel_tree / "pkg" / "ext.so")
    assert "libz.so.1" in ext.needed and ext.rpath == ["$ORIGIN/../pkg.libs"]
    assert ext.runpath == []
    assert read_elf(wheel_tree / "pkg" / "runpath.so").runpath == ["$ORIGIN/../pkg.libs"]
    assert read_elf(wheel_tree / "pkg" / "data.so") is None
    bundled = read_elf(wheel_tree / "pkg.libs" / "libbundled-1a2b.so.1")
    assert bundled.soname == "libbundled-1a2b.so.1"


def test_wheel_needs_are_resolved_like_the_loader(wheel_tree):
    files = elf_files(wheel_tree)
    assert len(files) == 4  # data.so is no ELF file
    resolutions = {(r.needed_by, r.soname): r for r in Resolver(wheel_tree).resolve_all(files)}
    bundled = resolutions[("pkg/ext.so", "libbundled-1a2b.so.1")]
    assert bundled.bundled and bundled.path is None
    assert resolutions[("pkg/runpath.so", "libbundled-1a2b.so.1")].bundled
    zlib = resolutions[("pkg/ext.so", "libz.so.1")]
    assert not zlib.bundled and zlib.path is not None and zlib.path.name == "libz.so.1"
    ghost = resolutions[("pkg/haunted.so", "libghost.so.7")]
    assert ghost.path is None and not ghost.bundled

    # The operator's list alone (no base system): what it names is preinstalled.
    report = apt_report(list(resolutions.values()), preinstalled={"libc6"}, base=frozenset())
    assert report.dependencies == ["libc6", "zlib1g"]
    assert report.preinstalled == ["libc6"]
    assert report.unresolved == ["libghost.so.7"]
    # The builder's base system: libc6 is in it on Debian, whatever its priority.
    report = apt_report(list(resolutions.values()), preinstalled=set())
    assert "libc6" in report.preinstalled


def test_merged_usr_paths_are_tried_both_ways():
    real = Path("/lib/x86_64-linux-gnu/libz.so.1")
    if not real.exists():
        pytest.skip("not an x86_64 Debian host")
    usr = Path("/usr/lib/x86_64-linux-gnu/libz.so.1")
    assert str(real) in path_variants(usr) and str(usr) in path_variants(real)
    # dpkg knows the file under one spelling only; either way finds its package
    for path in (real, usr):
        report = apt_report([Resolution("libz.so.1", "x.so", path, False)], set())
        assert report.dependencies == ["zlib1g"], path



# -- what Debian's base system holds ------------------------------------------------


def dpkg_line(name: str, priority: str = "optional", essential: str = "no",
              provides: str = "", depends: str = "", pre_depends: str = "",
              status: str = "installed") -> str:
    return "\t".join([name, status, essential, priority, provides, depends, pre_depends])


def test_relations_are_read_without_versions_or_qualifiers():
    assert relation_names("libc6 (>= 2.34), awk | mawk:any, python3:any (>= 3.11~) "
                          "[amd64] <!nocheck>") == [["libc6"], ["awk", "mawk"], ["python3"]]
    assert relation_names("") == []


def test_base_closure_follows_depends_and_pre_depends_to_the_end():
    installed = parse_installed([
        dpkg_line("dpkg", "required", "yes", pre_depends="libc6 (>= 2.34), zlib1g"),
        dpkg_line("libc6", depends="libgcc-s1"),
        dpkg_line("libgcc-s1", depends="gcc-12-base (= 12.2.0-14), libc6 (>= 2.35)"),
        dpkg_line("gcc-12-base"),
        dpkg_line("zlib1g", depends="libc6"),
        dpkg_line("apt", "important", depends="libstdc++6, gpgv | gpgv2, debconf | debconf-2.0"),
        dpkg_line("libstdc++6", depends="libc6"),
        dpkg_line("gpgv2"),  # the second alternative, installed
        dpkg_line("cdebconf", provides="debconf-2.0"),  # a virtual package's provider
        dpkg_line("libsqlite3-0", depends="libc6"),  # installed, needed by nothing base
        dpkg_line("libold1", "required", status="config-files"),  # removed: not a seed
        dpkg_line("libc6", depends="libgcc-s1"),  # also installed for a second arch
    ])
    assert base_closure(installed) == {"dpkg", "libc6", "libgcc-s1", "gcc-12-base",
                                       "zlib1g", "apt", "libstdc++6", "gpgv2", "cdebconf"}


def test_a_met_alternative_adds_nothing_more():
    installed = parse_installed([
        dpkg_line("base-a", "required", depends="mawk"),
        dpkg_line("base-b", "required", depends="gawk | mawk, awk"),
        dpkg_line("mawk", provides="awk"), dpkg_line("gawk", provides="awk"),
    ])
    assert base_closure(installed) == {"base-a", "base-b", "mawk"}


def test_libc6_and_the_compiler_runtimes_are_in_this_builders_base_system():
    base = base_system()
    if not base:
        pytest.skip("no dpkg here")
    assert {"libc6", "libgcc-s1", "libstdc++6", "dpkg"} <= base
    assert "libsqlite3-0" not in base  # installed here (Python needs it), but not base
