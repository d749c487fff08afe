"""Which PyPI wheels pip on a Raspberry Pi would install: ingest.coverage's decisions."""

from __future__ import annotations

import pytest
from packaging.tags import Tag

from ingest.coverage import TARGETS, best_wheel, coverage, supported_tags, targets_of


def covered(abi: str, *files: str) -> bool:
    return coverage(abi, files).complete


def test_each_release_has_its_python_glibc_and_both_32_bit_machines():
    assert {(abi, t.codename, t.python, t.glibc) for (abi, _), t in TARGETS.items()} == {
        ("cp37m", "buster", (3, 7), (2, 28)), ("cp39", "bullseye", (3, 9), (2, 31)),
        ("cp311", "bookworm", (3, 11), (2, 36)), ("cp313", "trixie", (3, 13), (2, 41))}
    assert [t.platform for t in targets_of("cp311")] == ["armv7l", "armv6l"]
    assert all(key == (t.abi, t.platform) for key, t in TARGETS.items())


def test_platforms_as_pip_orders_them():
    armv7l, armv6l = targets_of("cp39")
    assert armv7l.platform_tags() == [
        *(f"manylinux_2_{minor}_armv7l" for minor in range(31, 17, -1)),
        "manylinux_2_17_armv7l", "manylinux2014_armv7l", "linux_armv7l"]
    assert armv6l.platform_tags() == ["linux_armv6l"]  # no manylinux policy for armv6l


def test_pure_wheels_cover_every_release():
    for abi in ("cp37m", "cp39", "cp311", "cp313"):
        assert covered(abi, "foo-1.0-py3-none-any.whl")
        assert covered(abi, "foo-1.0-py2.py3-none-any.whl")
    assert not covered("cp311", "foo-1.0-py2-none-any.whl")
    assert not covered("cp311", "foo-1.0-py312-none-any.whl")  # a newer Python's


def test_manylinux_up_to_the_release_glibc():
    pair = ("foo-1.0-cp37-abi3-manylinux_2_31_armv7l.whl", "foo-1.0-cp37-abi3-linux_armv6l.whl")
    assert not covered("cp37m", *pair)  # Buster's glibc is 2.28
    assert covered("cp39", *pair) and covered("cp311", *pair) and covered("cp313", *pair)
    assert covered("cp37m", "foo-1.0-cp37-abi3-manylinux2014_armv7l.whl",
                   "foo-1.0-cp37-abi3-linux_armv6l.whl")


def test_armv7l_and_armv6l_are_judged_apart():
    # pip on armv7l takes no armv6l wheel, and pip on armv6l no manylinux one.
    only_armv6l = coverage("cp311", ["foo-1.0-cp311-cp311-linux_armv6l.whl"])
    assert only_armv6l.wheels == {"armv7l": None,
                                  "armv6l": "foo-1.0-cp311-cp311-linux_armv6l.whl"}
    assert not only_armv6l.complete
    only_armv7l = coverage("cp311", ["foo-1.0-cp311-cp311-manylinux_2_17_armv7l.whl",
                                     "foo-1.0-cp311-cp311-linux_armv7l.whl"])
    assert only_armv7l.wheels["armv6l"] is None and not only_armv7l.complete


@pytest.mark.parametrize("filename", [
    "foo-1.0-cp311-cp311-manylinux_2_17_x86_64.whl",
    "foo-1.0-cp311-cp311-manylinux_2_17_aarch64.whl",
    "foo-1.0-cp311-cp311-musllinux_1_1_armv7l.whl",  # musl: never on Raspberry Pi OS
    "foo-1.0-cp39-cp39-linux_armv7l.whl",  # another Python's ABI
    "foo-1.0-cp312-abi3-linux_armv7l.whl",  # abi3 from a Python newer than 3.11
    "foo-1.0-cp311-cp311-win_amd64.whl",
    "foo-1.0.tar.gz", "foo-1.0.zip", "foo-1.0-x.whl", "not a wheel.whl",
])
def test_files_no_pi_installs(filename):
    assert coverage("cp311", [filename]).wheels == {"armv7l": None, "armv6l": None}


def test_abi3_from_older_pythons_counts():
    assert covered("cp311", "foo-1.0-cp38-abi3-manylinux_2_17_armv7l.whl",
                   "foo-1.0-cp38-abi3-linux_armv6l.whl")
    assert Tag("cp32", "abi3", "linux_armv7l") in supported_tags(targets_of("cp37m")[0])


def test_an_abi_the_table_does_not_know_is_never_covered():
    assert coverage("cp312", ["foo-1.0-py3-none-any.whl"]).wheels == {}
    assert not covered("cp312", "foo-1.0-py3-none-any.whl")


def test_the_reason_names_the_wheel_pip_would_pick():
    armv7l = targets_of("cp311")[0]
    files = ["foo-1.0-py3-none-any.whl", "foo-1.0-cp311-cp311-linux_armv7l.whl",
             "foo-1.0-cp311-cp311-manylinux_2_17_armv7l.manylinux2014_armv7l.whl"]
    # pip prefers a manylinux wheel to a linux_* one, and either to a pure one.
    assert best_wheel(armv7l, files) == files[2]
    found = coverage("cp311", files)
    assert found.wheels == {"armv7l": files[2], "armv6l": "foo-1.0-py3-none-any.whl"}
    assert found.reason == f"PyPI has {files[2]} and foo-1.0-py3-none-any.whl"
    assert coverage("cp311", ["foo-1.0-py3-none-any.whl"]).reason == (
        "PyPI has foo-1.0-py3-none-any.whl")
