"""`python -m worker chroot --arch armhf|arm64 --release ...` without emulation: which
chroot, which machine name and which queue each architecture's worker gets. (The
chroots themselves are set up by the slow tests of tests/test_worker_arm.py.)"""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.test_worker import ROOT
from worker import settings
from worker.chroot import ARCHES, default_root, worker_env
from worker.queues import build_queue_name
from worker.runner import make_worker


@pytest.fixture
def chroot_config(tmp_path) -> settings.Settings:
    return settings.load({"WHEELWRIGHT_DATA": str(tmp_path), "WHEELWRIGHT_WORKER_NAME": "pi9",
                          "WHEELWRIGHT_WORKER_TOKEN": "t"})


def test_each_arch_builds_its_pi_image_platform():
    assert {name: arch.platform for name, arch in ARCHES.items()} == {
        "armhf": "linux_armv7l", "arm64": "linux_aarch64"}
    assert ARCHES["arm64"].host_tools["qemu-aarch64-static"] == "qemu-user-static"


def test_each_arch_and_release_has_a_chroot_and_machine_of_its_own(chroot_config, tmp_path):
    # The first chroot (bookworm armhf) stays where it was.
    assert default_root(chroot_config) == tmp_path / "armhf"
    assert default_root(chroot_config, ARCHES["arm64"], "bookworm") == \
        tmp_path / "chroot-arm64-bookworm"
    assert default_root(chroot_config, ARCHES["armhf"], "trixie") == \
        tmp_path / "chroot-armhf-trixie"
    env = worker_env(chroot_config, "trixie", ARCHES["arm64"])
    assert (env["WHEELWRIGHT_WORKER_NAME"], env["WHEELWRIGHT_MACHINE_NAME"]) == (
        "pi9", "pi9-arm64-trixie")


def test_a_64_bit_worker_serves_a_queue_of_its_own(config, redis):
    """A 64-bit worker must never take the 32-bit image's jobs and build aarch64 wheels
    for them."""
    assert build_queue_name("cp311") == build_queue_name("cp311", "linux_armv7l") == \
        "build-cp311"
    assert build_queue_name("cp311", "linux_aarch64") == "build-cp311-aarch64"
    assert make_worker(redis, config, "cp311-aarch64").queue_names() == [
        "build-cp311-aarch64"]
    assert make_worker(redis, config, "cp311").queue_names() == ["build-cp311"]


def test_chroot_refuses_an_arch_it_does_not_know():
    done = subprocess.run([sys.executable, "-m", "worker", "chroot", "--arch", "mips"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "invalid choice: 'mips'" in done.stderr
