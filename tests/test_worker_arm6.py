"""armv6l only when it is true: shared objects cross-compiled here with Debian's
arm-linux-gnueabihf-gcc for ARMv7+NEON and for the ARMv6KZ+VFPv2 of a Pi Zero/1, read
for their ARM build attributes, and pushed in armv7l wheels through the real intake
over HTTP: only the one that runs on an ARM1176 is listed under its armv6l name."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import subprocess
import threading
import zipfile
from pathlib import Path

import pytest
import requests

from ingest import catalogue
from publish import index
from publish.intake import Intake
from publish.pages import Site
from tests.publishing import apply_events, started_job, wheel_bytes
from tests.servers import serve
from worker.elf import arm1176_needs, armv6_of_tree, armv6_of_wheel, armv6_verdict
from worker.queues import build_job_id

CC = "arm-linux-gnueabihf-gcc"
SOURCE = """\
double scale(double x, double y) { return x * y + 1.0; }
int add(int a, int b) { return a + b; }
"""
V7_FLAGS = ["-march=armv7-a", "-mfpu=neon", "-mfloat-abi=hard"]
# -nostartfiles: Debian armhf's own crti.o and crtbeginS.o are ARMv7 Thumb-2 code, and
# the linker merges every object's attributes, so a library linked with them is ARMv7
# whatever it was compiled for (see test_debian_startup_files_make_any_library_armv7).
V6_FLAGS = ["-march=armv6kz", "-mfpu=vfp", "-marm", "-mfloat-abi=hard"]
NEON_WHEEL = "ww_neon-1.0-cp311-cp311-linux_armv7l.whl"
VFP_WHEEL = "ww_vfp-1.0-cp311-cp311-linux_armv7l.whl"
SITE = Site(abis=("cp311",), public_url="http://pi.example/", pypi_url=None)

pytestmark = pytest.mark.skipif(not shutil.which(CC), reason=f"no {CC} (Debian package "
                                "gcc-arm-linux-gnueabihf; .ci/run installs it)")


def cross_compile(output: Path, *flags: str) -> Path:
    source = output.with_suffix(".c")
    source.write_text(SOURCE)
    subprocess.run([CC, "-shared", "-fPIC", "-O2", *flags, "-o", str(output), str(source)],
                   check=True)
    source.unlink()
    return output


@pytest.fixture(scope="module")
def objects(tmp_path_factory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("arm")
    return {
        "v7": cross_compile(tmp / "neon.so", *V7_FLAGS),
        "v6": cross_compile(tmp / "vfp.so", *V6_FLAGS, "-nostartfiles"),
        "v6 with Debian's startup files": cross_compile(tmp / "debian.so", *V6_FLAGS),
    }


# -- one file's build attributes ------------------------------------------------------


def test_armv7_neon_code_does_not_run_on_a_pi_zero(objects):
    assert arm1176_needs(objects["v7"]) == ["ARMv7", "Thumb-2", "VFPv3", "NEON"]


def test_armv6kz_vfp_code_runs_on_a_pi_zero(objects):
    assert arm1176_needs(objects["v6"]) == []


def test_debian_startup_files_make_any_library_armv7(objects):
    """Why a wheel built in a Debian armhf chroot is never listed for a Pi Zero/1."""
    needs = arm1176_needs(objects["v6 with Debian's startup files"])
    assert "ARMv7" in needs and "Thumb-2" in needs


def test_a_library_for_another_machine_is_not_arm_code():
    host = next(Path("/usr/lib").rglob("libz.so.1"), None) or Path("/bin/sh")
    assert arm1176_needs(host.resolve()) is None


def test_arm_code_without_build_attributes_is_not_vouched_for(objects, tmp_path):
    bare = tmp_path / "bare.so"
    subprocess.run(["arm-linux-gnueabihf-objcopy", "--remove-section=.ARM.attributes",
                    str(objects["v6"]), str(bare)], check=True)
    assert arm1176_needs(bare) == ["build attributes"]


@pytest.mark.parametrize("length", [0, 0xFFFFFFFF])
def test_hostile_attribute_lengths_are_refused_not_looped_on(objects, tmp_path, length):
    """pyelftools goes round in place on a subsection of length 0; the reader stops and
    cannot vouch for the file. The intake reads strangers' files with it."""
    data = bytearray(objects["v6"].read_bytes())
    at = _attributes_offset(objects["v6"])
    assert data[at:at + 1] == b"A"
    data[at + 1:at + 5] = length.to_bytes(4, "little")
    hostile = tmp_path / "hostile.so"
    hostile.write_bytes(bytes(data))
    answer = []
    reader = threading.Thread(target=lambda: answer.append(arm1176_needs(hostile)),
                              daemon=True)
    reader.start()
    reader.join(timeout=20)
    assert answer == [["readable build attributes"]]


def _attributes_offset(path: Path) -> int:
    from elftools.elf.elffile import ELFFile

    with path.open("rb") as f:
        return ELFFile(f).get_section_by_name(".ARM.attributes")["sh_offset"]


# -- a wheel's verdict ------------------------------------------------------------------


def test_a_wheel_runs_on_a_pi_zero_only_if_every_elf_file_does(objects, tmp_path):
    assert armv6_verdict([]).runs is True  # pure Python runs anywhere
    assert armv6_verdict([("a.so", []), ("b.so", [])]).runs is True
    mixed = armv6_verdict([("a.so", []), ("b.so", ["NEON"])])
    assert mixed.runs is False and mixed.notes == ["b.so needs NEON"]
    assert armv6_verdict([("x86.so", None)]).runs is None  # not an ARM wheel
    assert armv6_verdict([("a.so", []), ("x86.so", None)]).runs is False
    tree = tmp_path / "tree"
    (tree / "pkg").mkdir(parents=True)
    (tree / "pkg" / "__init__.py").write_text("")
    (tree / "pkg" / "data.so").write_bytes(b"not an ELF file")
    assert armv6_of_tree(tree).runs is True
    shutil.copy(objects["v6"], tree / "pkg" / "vfp.so")
    assert armv6_of_tree(tree).runs is True
    shutil.copy(objects["v7"], tree / "pkg" / "neon.so")
    verdict = armv6_of_tree(tree)
    assert verdict.runs is False
    assert verdict.notes == ["pkg/neon.so needs ARMv7, Thumb-2, VFPv3, NEON"]


def test_the_zipped_wheel_gets_the_unpacked_verdict(objects, tmp_path):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    for so, runs in (("v6", True), ("v7", False)):
        wheel = tmp_path / f"{so}.whl"
        wheel.write_bytes(arm_wheel("ww-vfp", VFP_WHEEL, objects[so]))
        assert armv6_of_wheel(wheel, scratch).runs is runs
    assert list(scratch.iterdir()) == []  # its copies are gone


# -- the acceptance: through the real intake, then the publisher --------------------


def arm_wheel(project: str, filename: str, so: Path) -> bytes:
    """A small wheel of `project` 1.0 carrying `so` as its extension module."""
    data, _ = wheel_bytes(project, "1.0", filename)
    buffer = io.BytesIO(data)
    with zipfile.ZipFile(buffer, "a", zipfile.ZIP_DEFLATED) as archive:
        module = project.replace("-", "_")
        archive.writestr(f"{module}/_ext.cpython-311-arm-linux-gnueabihf.so", so.read_bytes())
    return buffer.getvalue()


def push(url: str, token: str, project: str, filename: str, data: bytes,
         claimed: bool | None) -> requests.Response:
    report = {"project": project, "version": "1.0", "abi": "cp311", "status": "success",
              "duration": 1.0, "worker": "test-worker",
              "job_id": build_job_id(project, "1.0", "cp311"),
              "files": [{"filename": filename, "size": len(data),
                         "sha256": hashlib.sha256(data).hexdigest(), "requires_python": None,
                         "apt_dependencies": [], "apt_preinstalled": [],
                         "unresolved_sonames": [], "armv6": claimed}]}
    return requests.post(url + "builds", headers={"Authorization": f"Bearer {token}"},
                         files=[("report", ("report.json", json.dumps(report))),
                                ("log", ("build.log", b"built\n")),
                                ("wheel", (filename, data))], timeout=30)


@pytest.mark.parametrize("worker_says", ["the truth", "armv6 for both"])
def test_only_the_armv6_wheel_gets_the_armv6l_name(objects, config, redis, caplog,
                                                   worker_says):
    """Whatever the worker claims, the intake reads the wheel itself: a worker saying
    the NEON wheel runs on a Pi Zero is not believed (only warned about)."""
    conn = catalogue.connect(config.catalogue_path)
    apply_events(conn, [(name, "1.0", action) for name in ("ww-neon", "ww-vfp")
                        for action in ("new release",
                                       f"add source file {name.replace('-', '_')}-1.0.tar.gz")])
    server = serve(Intake(config).app)
    token = config.worker_tokens["test-worker"]
    try:
        for project, filename, so, runs in (("ww-neon", NEON_WHEEL, "v7", False),
                                            ("ww-vfp", VFP_WHEEL, "v6", True)):
            started_job(redis, project, "1.0", "cp311")
            claimed = runs if worker_says == "the truth" else True
            response = push(server.url, token, project, filename,
                            arm_wheel(project, filename, objects[so]), claimed)
            assert response.status_code == 200, response.text
    finally:
        server.stop()
    warned = [r.getMessage() for r in caplog.records if "the worker says armv6" in r.message]
    assert len(warned) == (0 if worker_says == "the truth" else 1)
    assert dict(conn.execute("SELECT filename, armv6 FROM wheels").fetchall()) == \
        {NEON_WHEEL: 0, VFP_WHEEL: 1}

    www = config.www_dir
    for project in ("ww-neon", "ww-vfp"):
        index.publish_project(conn, www, SITE, project)
    conn.close()
    vfp_alias = www / "simple" / "ww-vfp" / VFP_WHEEL.replace("armv7l", "armv6l")
    assert vfp_alias.is_symlink() and vfp_alias.readlink() == Path(VFP_WHEEL)
    assert VFP_WHEEL.replace("armv7l", "armv6l") in (
        www / "simple" / "ww-vfp" / "index.html").read_text()
    neon = www / "simple" / "ww-neon"
    # No armv6l name among the files (per-release pages such as bookworm.html sit
    # beside the union's index.html).
    assert sorted(p.name for p in neon.iterdir() if not p.name.endswith((".html", ".json"))) \
        == [NEON_WHEEL, f"{NEON_WHEEL}.metadata"]
    assert all("armv6l" not in p.read_text() for p in neon.glob("*.html"))
    assert "armv6l" not in (neon / "index.html").read_text()
    assert "armv6l" not in (neon / "index.json").read_text()
    assert "armv6l" not in (www / "project" / "ww-neon" / "json" / "index.json").read_text()

    neon_page = (www / "project" / "ww-neon" / "index.html").read_text()
    [row] = [line for line in neon_page.splitlines() if f">{NEON_WHEEL}</a>" in line]
    assert "Pi 2 and later</span>" in row
    assert "Pi 2 and later" not in (www / "project" / "ww-vfp" / "index.html").read_text()
