"""Real ARM builds: a worker in an emulated Debian chroot takes a job from this host's
Redis, builds a wheel and pushes it to this host's intake: armhf Bookworm (cp311,
linux_armv7l), arm64 Bookworm (cp311, linux_aarch64) and armhf Trixie (cp313).

Slow (the first run sets each chroot up: minutes, ~450 MB plus the builder profile,
under var/armhf or WHEELWRIGHT_ARM_DIR, var/chroot-arm64-bookworm or
WHEELWRIGHT_ARM64_DIR, var/chroot-armhf-trixie or WHEELWRIGHT_ARMHF_TRIXIE_DIR);
needs root. Run with WHEELWRIGHT_SLOW=1."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile
from redis import Redis

from ingest.__main__ import main as ingest_main
from ingest.catalogue import connect as catalogue_connect
from publish import index
from publish.server import start_in_thread
from tests.sdists import c_sdist
from tests.test_worker import ROOT, catalogue_rows, release_events, start_farm, stored_log
from worker.chroot import READY, chroot_marker, host_mirror, in_chroot, mounted
from worker.profile import (
    installable,
    installed_profile,
    load_build_deps,
    load_profile,
    missing_packages,
    wanted_packages,
)

ARM_ABI = "cp311"  # Debian bookworm's python3


@pytest.mark.slow
def test_armhf_chroot_builds_an_armv7l_wheel(tmp_path, redis_instance, backend_wheels):
    if os.geteuid() != 0:
        pytest.skip("the armhf chroot needs root")
    if not shutil.which("apt-get") and not shutil.which("debootstrap"):
        pytest.skip("no apt-get to install debootstrap and qemu-user-static")
    arm_dir = Path(os.environ.get("WHEELWRIGHT_ARM_DIR") or ROOT / "var" / "armhf")
    redis = Redis.from_url(redis_instance.url)
    redis.flushall()
    with pytest.MonkeyPatch.context() as env:
        farm, server = start_farm(tmp_path, env, redis_instance.url,
                                  [lambda d: c_sdist(d, "ww-armz", "1.0", link_zlib=True)],
                                  backend_wheels, abis=ARM_ABI)
        try:
            ingest_main(["replay", str(release_events(tmp_path / "events.jsonl",
                                                      [("ww-armz", "1.0")]))])
            started = time.monotonic()
            done = subprocess.run(
                [sys.executable, "-m", "worker", "armhf-chroot", "--root", str(arm_dir),
                 "--burst"], cwd=ROOT, env=dict(os.environ), timeout=3600)
            print(f"armhf-chroot run took {time.monotonic() - started:.0f} s")
            assert done.returncode == 0
        finally:
            server.stop()
    config = farm.config
    rows = catalogue_rows(config, "SELECT filename, platform_tag FROM wheels "
                          "WHERE project = 'ww-armz'")
    assert rows == [("ww_armz-1.0-cp311-cp311-linux_armv7l.whl", "linux_armv7l")]
    wheel = config.www_dir / "simple" / "ww-armz" / rows[0][0]
    with zipfile.ZipFile(wheel) as archive:
        [so] = [n for n in archive.namelist() if n.endswith(".so")]
        archive.extract(so, tmp_path)
    with (tmp_path / so).open("rb") as f:
        assert ELFFile(f)["e_machine"] == "EM_ARM"
    assert catalogue_rows(config, "SELECT name FROM dependencies WHERE tool = 'apt' "
                          "AND filename = ?", rows[0][0]) == [("zlib1g",)]
    log = stored_log(config, "ww-armz", "1.0", ARM_ABI)
    assert "/arm-linux-gnueabihf/libz.so.1 (zlib1g)" in log
    arch = subprocess.run(["chroot", str(arm_dir), "dpkg-query", "-W",
                           "-f=${Architecture}", "zlib1g"], capture_output=True, text=True)
    assert arch.stdout == "armhf"
    # The builder profile is in the chroot, and the build says which machine made it.
    profile = load_profile()
    assert installed_profile(chroot_marker(arm_dir)) == profile.version
    assert missing_packages(wanted_packages(profile, load_build_deps()), root=arm_dir) == []
    assert catalogue_rows(config, "SELECT machine, profile FROM builds WHERE project = "
                          "'ww-armz'") == [("test-worker-armhf-bookworm", profile.version)]


@pytest.mark.slow
def test_the_profiled_chroot_builds_the_benchmark_list(tmp_path):
    """bench/builds.py's list of Pi-relevant sdists from the upstream index, built in
    the chroot set up from the builder profile: at least 90% build, and every failure
    has a reason (about half an hour under emulation)."""
    if os.geteuid() != 0:
        pytest.skip("the armhf chroot needs root")
    arm_dir = Path(os.environ.get("WHEELWRIGHT_ARM_DIR") or ROOT / "var" / "armhf")
    report = tmp_path / "builds.json"
    subprocess.run([sys.executable, str(ROOT / "bench" / "builds.py"), "--root", str(arm_dir),
                    "--json", str(report)], cwd=ROOT, check=True, timeout=3 * 3600)
    results = json.loads(report.read_text())
    built = [r for r in results if r["status"] == "success"]
    assert len(results) >= 20
    assert len(built) >= 0.9 * len(results), [(r["project"], r["reason"]) for r in results
                                              if r["status"] != "success"]
    assert all(r["reason"] for r in results if r["status"] != "success")


@dataclass(frozen=True)
class ChrootTarget:
    """A chroot `python -m worker chroot` sets up, and what its builds must be."""

    arch: str  # Debian's: armhf, arm64
    release: str
    key: str  # the build target (worker.targets) its python3 builds for
    platform: str
    e_machine: str  # pyelftools' name of the wheel's ELF machine
    multiarch: str  # Debian's library directory for the architecture
    root_env: str  # the variable naming an existing chroot to reuse

    @property
    def root(self) -> Path:
        return Path(os.environ.get(self.root_env)
                    or ROOT / "var" / f"chroot-{self.arch}-{self.release}")

    @property
    def abi(self) -> str:
        return self.key.partition("-")[0]


ARM64_BOOKWORM = ChrootTarget("arm64", "bookworm", "cp311-aarch64", "linux_aarch64",
                              "EM_AARCH64", "aarch64-linux-gnu", "WHEELWRIGHT_ARM64_DIR")
ARMHF_TRIXIE = ChrootTarget("armhf", "trixie", "cp313", "linux_armv7l", "EM_ARM",
                            "arm-linux-gnueabihf", "WHEELWRIGHT_ARMHF_TRIXIE_DIR")


def need_chroot(target: ChrootTarget) -> None:
    """Skip where the chroot cannot be made: not root, no apt-get, or (for a chroot
    not set up yet) a Debian mirror that does not serve the release."""
    if os.geteuid() != 0:
        pytest.skip("a chroot needs root")
    if not shutil.which("apt-get") and not shutil.which("debootstrap"):
        pytest.skip("no apt-get to install debootstrap and qemu-user-static")
    if (target.root / READY).exists():
        return
    mirror = os.environ.get("WHEELWRIGHT_ARM_MIRROR") or host_mirror()
    if not mirror:
        pytest.skip("no Debian mirror configured on this host")
    url = f"{mirror.rstrip('/')}/dists/{target.release}/InRelease"
    try:
        urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=30)
    except urllib.error.HTTPError as e:
        if e.code == 404:
            pytest.skip(f"the Debian mirror does not serve {target.release}: {url}")
        raise


def chroot_command(target: ChrootTarget, *flags: str) -> list[str]:
    return [sys.executable, "-m", "worker", "chroot", "--arch", target.arch,
            "--release", target.release, "--root", str(target.root), *flags]


def timed(command: list[str], what: str) -> float:
    started = time.monotonic()
    done = subprocess.run(command, cwd=ROOT, env=dict(os.environ), timeout=3600)
    took = time.monotonic() - started
    print(f"{what} took {took:.0f} s")
    assert done.returncode == 0, f"{what} failed"
    return took


def install_and_import(target: ChrootTarget, url: str, project: str, filename: str) -> None:
    """pip inside the chroot installs the release's build from our index alone, into a
    fresh venv there, and its extension loads (calling into libz) under emulation."""
    venv = f"/tmp/ww-check-{project}"
    module = project.replace("-", "_")
    env = {"NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1"}  # the farm is on loopback
    shutil.rmtree(target.root / venv.lstrip("/"), ignore_errors=True)
    try:
        with mounted(target.root, []):
            in_chroot(target.root, ["python3", "-m", "venv", venv])
            pip = subprocess.run(
                ["chroot", str(target.root), f"{venv}/bin/pip", "install", "--no-deps",
                 "--no-cache-dir", "--index-url", f"{url}{target.release}/simple/",
                 f"{project}==1.0"], capture_output=True, text=True, timeout=600,
                env={**os.environ, **env, "PIP_CONFIG_FILE": "/dev/null",
                     "PIP_DISABLE_PIP_VERSION_CHECK": "1"})
            assert pip.returncode == 0, pip.stdout + pip.stderr
            assert filename in pip.stdout, pip.stdout  # this build, not some other file
            imported = subprocess.run(
                ["chroot", str(target.root), f"{venv}/bin/python", "-c",
                 f"import {module}; print({module}.answer(), {module}.__file__)"],
                capture_output=True, text=True, timeout=300)
            assert imported.returncode == 0, imported.stderr
            assert imported.stdout.split()[0] == "42"
            assert imported.stdout.split()[1].startswith(f"{venv}/lib/")
    finally:
        shutil.rmtree(target.root / venv.lstrip("/"), ignore_errors=True)


def check_chroot_build(target: ChrootTarget, project: str, tmp_path: Path, redis_url: str,
                       backend_wheels: list[Path]) -> None:
    """The whole acceptance for one chroot: set up (timed), one build of a C extension
    linking libz by a burst worker inside (timed), the wheel's tags, ELF machine and apt
    dependency, then pip in the chroot installing it from the release's index."""
    need_chroot(target)
    redis = Redis.from_url(redis_url)
    redis.flushall()
    with pytest.MonkeyPatch.context() as env:
        farm, server = start_farm(tmp_path, env, redis_url,
                                  [lambda d: c_sdist(d, project, "1.0", link_zlib=True)],
                                  backend_wheels, abis=target.key)
        try:
            ingest_main(["replay", str(release_events(tmp_path / "events.jsonl",
                                                      [(project, "1.0")]))])
            setup = timed(chroot_command(target, "--setup-only"),
                          f"{target.arch} {target.release} set-up")
            run = timed(chroot_command(target, "--burst"),
                        f"{target.arch} {target.release} burst worker run")
        finally:
            server.stop()
    config = farm.config
    module = project.replace("-", "_")
    filename = f"{module}-1.0-{target.abi}-{target.abi}-{target.platform}.whl"
    rows = catalogue_rows(config, "SELECT filename, platform_tag FROM wheels "
                          "WHERE project = ?", project)
    assert rows == [(filename, target.platform)]
    [(duration,)] = catalogue_rows(config, "SELECT duration FROM builds WHERE project = ?",
                                   project)
    print(f"{target.arch} {target.release}: set-up {setup:.0f} s, worker run {run:.0f} s, "
          f"build job {duration:.0f} s")
    wheel = config.www_dir / "simple" / project / filename
    with zipfile.ZipFile(wheel) as archive:
        [so] = [n for n in archive.namelist() if n.endswith(".so")]
        archive.extract(so, tmp_path)
    with (tmp_path / so).open("rb") as f:
        assert ELFFile(f)["e_machine"] == target.e_machine
    # The dependency is recorded by name (users install it on their own architecture);
    # the library the build linked is the chroot architecture's package.
    assert catalogue_rows(config, "SELECT name FROM dependencies WHERE tool = 'apt' "
                          "AND filename = ?", filename) == [("zlib1g",)]
    log = stored_log(config, project, "1.0", target.key)
    assert f"/{target.multiarch}/libz.so.1 (zlib1g)" in log
    arch = subprocess.run(["chroot", str(target.root), "dpkg-query", "-W",
                           "-f=${Architecture}", "zlib1g"], capture_output=True, text=True)
    assert arch.stdout == target.arch
    profile = load_profile()
    assert installed_profile(chroot_marker(target.root)) == profile.version
    # What the release has of the profile is installed (it may lack a few packages).
    assert installable(missing_packages(wanted_packages(profile, load_build_deps()),
                                        root=target.root), root=target.root) == []
    assert catalogue_rows(config, "SELECT machine, profile FROM builds WHERE project = ?",
                          project) == [(f"test-worker-{target.arch}-{target.release}",
                                        profile.version)]
    # Published, the release's own index lists it, and pip on that release takes it.
    conn = catalogue_connect(config.catalogue_path)
    try:
        index.publish_all(conn, config.www_dir, index.site_of(config), processes=1)
    finally:
        conn.close()
    # The release's page (served as /<release>/simple/<project>/) lists the wheel.
    page = json.loads((config.www_dir / "simple" / project / f"{target.release}.json")
                      .read_text())
    assert [f["filename"] for f in page["files"]] == [filename]
    web = start_in_thread(config.www_dir, tmp_path / "access.log")
    started = time.monotonic()
    try:
        install_and_import(target, web.url, project, filename)
    finally:
        web.stop()
    print(f"{target.arch} {target.release}: venv, pip install and import in the chroot "
          f"took {time.monotonic() - started:.0f} s")
    subprocess.run(["du", "-sh", str(target.root)], check=False)


@pytest.mark.slow
def test_arm64_bookworm_chroot_builds_an_aarch64_wheel(tmp_path, redis_instance,
                                                       backend_wheels):
    check_chroot_build(ARM64_BOOKWORM, "ww-a64z", tmp_path, redis_instance.url,
                       backend_wheels)


@pytest.mark.slow
def test_trixie_armhf_chroot_builds_a_cp313_wheel(tmp_path, redis_instance, backend_wheels):
    check_chroot_build(ARMHF_TRIXIE, "ww-trixz", tmp_path, redis_instance.url,
                       backend_wheels)
