"""The one rule for what a build target is and how it is named.

A build target is an ABI and a platform: cp311 on the 32-bit Raspberry Pi OS image
(linux_armv7l, whose wheels also serve armv6l under a second name) is one target,
cp311 on the 64-bit image (linux_aarch64) another. Everything that keys on a target
(queues, job ids, the catalogue's builds and skips, settings, pages, the wire) keys
on its *target key*, a string: the bare ABI tag for the 32-bit image, the ABI tag
and a platform suffix for the others (`cp311-aarch64`).

The bare ABI stays the 32-bit image's key so that everything recorded before targets
had platforms (catalogue rows, queued jobs, settings) already names the right
target, unchanged. A platform without a suffix of its own (the 32-bit image's, and
a development machine's x86_64) takes the bare key too: such a host builds for the
default target, as it always has."""

from __future__ import annotations

from dataclasses import dataclass

from worker.names import ABI_TAG, BadName

# The platforms with a target key of their own, and the suffix that names them. The
# queue of such a target is build-<abi>-<suffix> (worker.queues.build_queue_name).
PLATFORM_SUFFIXES = {"linux_aarch64": "aarch64"}
# The platform a bare key stands for.
DEFAULT_PLATFORM = "linux_armv7l"
_PLATFORM_OF_SUFFIX = {suffix: platform for platform, suffix in PLATFORM_SUFFIXES.items()}
# Debian's name for the architecture of each platform a target builds on (dpkg's,
# debootstrap's, a mirror's Contents-<arch>.gz): a target's Debian data (its chroot,
# the Contents index naming its missing files) is that architecture's.
DEBIAN_ARCHES = {"linux_armv7l": "armhf", "linux_aarch64": "arm64"}


@dataclass(frozen=True)
class Target:
    """A build target: the ABI tag its wheels carry and the platform pip reports
    on its machines (packaging's spelling, e.g. linux_aarch64)."""

    abi: str
    platform: str

    @property
    def key(self) -> str:
        return target_key(self.abi, self.platform)

    @property
    def arch(self) -> str:
        """The machine part of the platform: armv7l, aarch64."""
        return self.platform.removeprefix("linux_")

    @property
    def debian_arch(self) -> str:
        """Debian's name for its architecture: armhf, arm64 (DEBIAN_ARCHES)."""
        return DEBIAN_ARCHES[self.platform]

    @property
    def bits(self) -> str:
        """Which Raspberry Pi OS image it builds for, as its users know it."""
        return "64-bit" if self.platform == "linux_aarch64" else "32-bit"

    @property
    def label(self) -> str:
        """How pages name it: the ABI, and `64-bit` for the 64-bit image (the 32-bit
        image's is the bare ABI, as pages named it before targets had platforms)."""
        return f"{self.abi} {self.bits}" if self.bits == "64-bit" else self.abi

    def fits(self, platform_tag: str) -> bool:
        """Whether a wheel tagged `platform_tag` may come from this target's builds:
        `any`, or a platform whose target key is this target's (so an aarch64 wheel
        never lands in a 32-bit target's report, nor the other way round)."""
        return platform_tag == "any" or tag_target_key(self.abi, platform_tag) == self.key


def arch_of(platform_tag: str) -> str:
    """The machine a wheel's platform tag names: linux_aarch64, manylinux2014_aarch64
    and manylinux_2_17_aarch64 all name aarch64."""
    if platform_tag.startswith("manylinux_"):
        # manylinux_<major>_<minor>_<arch>: the arch itself may hold underscores (x86_64)
        return platform_tag.split("_", 3)[-1]
    return platform_tag.split("_", 1)[-1]


def tag_target_key(abi: str, platform_tag: str) -> str:
    """The key of the target a wheel tagged `abi` and `platform_tag` (any manylinux or
    linux tag) was built for."""
    return target_key(abi, f"linux_{arch_of(platform_tag)}")


def target_key(abi: str, platform: str) -> str:
    """The key of `abi` built on `platform` (packaging's spelling)."""
    suffix = PLATFORM_SUFFIXES.get(platform)
    return f"{abi}-{suffix}" if suffix else abi


def abi_of(key: str) -> str:
    """The ABI tag of a target key (of a bare ABI, itself)."""
    return key.partition("-")[0]


def parse_target(key: str) -> Target:
    """The target a key names; BadName unless it follows the rule (check_target)."""
    abi, _, suffix = check_target(key).partition("-")
    return Target(abi, _PLATFORM_OF_SUFFIX[suffix] if suffix else DEFAULT_PLATFORM)


def target_label(key: str) -> str:
    """The label of a target key (Target.label); a key outside the rule as it is."""
    try:
        return parse_target(key).label
    except BadName:
        return key


def check_target(key: object) -> str:
    """`key` if it is a target key: an ABI tag, then `-` and a platform suffix we know
    (aarch64) or nothing. Safe as a queue name's, a job id's and a path's part."""
    if isinstance(key, str):
        abi, dash, suffix = key.partition("-")
        if ABI_TAG.fullmatch(abi) and (not dash or suffix in _PLATFORM_OF_SUFFIX):
            return key
    raise BadName(f"target {key!r} is not an ABI tag, optionally followed by "
                  f"{', '.join('-' + s for s in _PLATFORM_OF_SUFFIX)}")
