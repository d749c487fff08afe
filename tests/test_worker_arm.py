"""A real ARM build: a worker in an emulated armhf Debian chroot takes a job from
this host's Redis, builds a linux_armv7l wheel and pushes it to this host's intake.

Slow (the first run sets the chroot up: minutes, ~450 MB under var/armhf, or
WHEELWRIGHT_ARM_DIR); needs root. Run with WHEELWRIGHT_SLOW=1."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile
from redis import Redis

from ingest.__main__ import main as ingest_main
from tests.sdists import c_sdist
from tests.test_worker import ROOT, catalogue_rows, release_events, start_farm, stored_log
from worker.chroot import chroot_marker
from worker.profile import (
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
