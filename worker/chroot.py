"""`python -m worker chroot --arch armhf|arm64 --release bookworm|trixie|...`: real ARM
builds on a non-ARM host (`armhf-chroot` is `chroot --arch armhf`).

A Debian chroot made by debootstrap for the architecture runs under qemu-user-static
through binfmt_misc: an armhf chroot's python3 builds real linux_armv7l wheels (the
32-bit Raspberry Pi OS), an arm64 one linux_aarch64 wheels (the 64-bit one), and its
dpkg names that architecture's packages. A worker runs inside it against this host's
Redis and intake (the chroot shares the host's network; a unix-socket Redis and a
file:// build index are bind-mounted at the same paths). Setting up takes minutes and
about 450 MB, plus the builder profile; it is done once, then each run starts at once.
Whatever releases the Debian mirror serves can be set up; releases Debian has moved to
its archive (buster and older) are on archive mirrors only: give one with --mirror."""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

from worker import settings
from worker.profile import (
    BUILD_DEPS,
    MARKER,
    BuildDeps,
    Profile,
    install_command,
    installable,
    installed_profile,
    load_build_deps,
    load_profile,
    missing_packages,
    record_installed,
    wanted_packages,
)
from worker.targets import DEBIAN_ARCHES

PACKAGE = Path(__file__).resolve().parent
INCLUDE = "python3,python3-venv,python3-dev,gcc,libc6-dev,ca-certificates"


@dataclass(frozen=True)
class Arch:
    """A Debian architecture a Pi runs, as qemu-user-static emulates it."""

    debian: str  # debootstrap's --arch
    qemu: str  # the binfmt_misc entry, and qemu-<this>-static
    platform: str  # the wheel platform its python3 builds for

    @property
    def host_tools(self) -> dict[str, str]:
        return {"debootstrap": "debootstrap", f"{self.qemu}-static": "qemu-user-static",
                "update-binfmts": "binfmt-support"}


# Each platform a chroot can build for and its qemu; its Debian name is worker.targets'.
ARCHES = {arch.debian: arch for arch in (
    Arch(DEBIAN_ARCHES[platform], qemu, platform)
    for platform, qemu in (("linux_armv7l", "qemu-arm"), ("linux_aarch64", "qemu-aarch64")))}
BINFMT = Path("/proc/sys/fs/binfmt_misc")
READY = "etc/wheelwright-ready"
VENV = "/opt/wheelwright/venv"
CODE = "/opt/wheelwright/code"
PATH = "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"


def add_arguments(parser: argparse.ArgumentParser, arch: bool = True) -> None:
    if arch:
        parser.add_argument("--arch", choices=sorted(ARCHES), default="armhf",
                            help="Debian architecture: armhf (32-bit Raspberry Pi OS, "
                            "linux_armv7l wheels) or arm64 (64-bit, linux_aarch64); "
                            "default armhf")
    parser.add_argument("--root", type=Path, help="where the chroot lives (default "
                        "WHEELWRIGHT_ARM_DIR or DATA/armhf for bookworm armhf, else "
                        "DATA/chroot-<arch>-<release>)")
    parser.add_argument("--release", "--suite", dest="release", default="bookworm",
                        help="Debian release to install (default bookworm: cp311; "
                        "trixie: cp313)")
    parser.add_argument("--mirror", help="Debian mirror (default WHEELWRIGHT_ARM_MIRROR "
                        "or the first Debian source of this host's apt)")
    parser.add_argument("--setup-only", action="store_true",
                        help="set the chroot up and stop, running no worker")
    parser.add_argument("--burst", action="store_true",
                        help="the worker exits when its queue is empty")


def say(message: str) -> None:
    print(f"chroot: {message}", flush=True)


def host_mirror(sources: Path = Path("/etc/apt")) -> str | None:
    """The first Debian archive this host's apt uses (deb822 or one-line format)."""
    files = sorted(sources.glob("sources.list.d/*.sources")) + [sources / "sources.list"]
    for path in files:
        if not path.is_file():
            continue
        text = path.read_text(errors="replace")
        for match in re.finditer(r"^(?:URIs:\s*|deb\s+(?:\[[^]]*\]\s+)?)(\S+)", text, re.M):
            url = match.group(1)
            if url.rstrip("/").endswith("/debian"):
                return url
    return None


def run(command: list[str], **kwargs) -> None:
    subprocess.run(command, check=True, **kwargs)


def ensure_host_tools(arch: Arch) -> None:
    """qemu-user-static, binfmt-support and debootstrap, and the arch's binfmt on."""
    missing = sorted({pkg for tool, pkg in arch.host_tools.items() if not shutil.which(tool)})
    if missing:
        say(f"installing {' '.join(missing)} with apt-get")
        run(["apt-get", "update", "-qq"])
        run(["apt-get", "install", "-y", "-qq", *missing],
            env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
    if not (BINFMT / "status").exists():
        run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(BINFMT)])
    if not (BINFMT / arch.qemu).exists():
        run(["update-binfmts", "--enable", arch.qemu])
    if not (BINFMT / arch.qemu).exists():
        raise SystemExit(f"error: binfmt_misc has no {arch.qemu} entry; is qemu-user-static "
                         "installed and binfmt_misc available in this kernel?")


def chroot_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """A clean environment for commands in the chroot: none of the host's pip
    configuration (its find-links and file:// indexes do not exist in there)."""
    env = {"PATH": PATH, "HOME": "/root", "LANG": "C.UTF-8", "PIP_CONFIG_FILE": "/dev/null",
           "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_DEFAULT_TIMEOUT": "180"}
    for name in ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "http_proxy", "https_proxy",
                 "HTTP_PROXY", "HTTPS_PROXY", "no_proxy", "NO_PROXY"):
        value = os.environ.get(name)
        if value and not value.startswith("file:"):
            env[name] = value
    env.update(extra or {})
    return env


def in_chroot(root: Path, command: list[str], env: dict[str, str] | None = None,
              check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["chroot", str(root), *command], env=chroot_env(env), check=check)


def install_ca_certificates(root: Path) -> None:
    """The host's locally added CAs, so that TLS from inside works as it does outside."""
    local = Path("/usr/local/share/ca-certificates")
    target = root / "usr/local/share/ca-certificates"
    target.mkdir(parents=True, exist_ok=True)
    if local.is_dir():
        for cert in local.rglob("*.crt"):
            shutil.copy2(cert, target / cert.name)
    bundle = Path("/etc/ssl/certs/ca-certificates.crt")
    if bundle.is_file():
        shutil.copy2(bundle, target / "host-bundle.crt")
    in_chroot(root, ["update-ca-certificates"])


def copy_code(root: Path) -> Path:
    """This checkout's worker package, fresh at every run."""
    target = root / CODE.lstrip("/") / "worker"
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(PACKAGE, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return target


def setup(root: Path, arch: Arch, release: str, mirror: str) -> None:
    if (root / READY).exists():
        say(f"chroot ready at {root}")
        return
    started = time.monotonic()
    root.mkdir(parents=True, exist_ok=True)
    if not (root / "usr/bin/python3").exists():
        say(f"debootstrap {release} {arch.debian} from {mirror} into {root} (several minutes)")
        run(["debootstrap", f"--arch={arch.debian}", "--variant=minbase",
             f"--include={INCLUDE}", release, str(root), mirror])
    shutil.copy2("/etc/resolv.conf", root / "etc/resolv.conf")
    say("installing the host's CA certificates")
    install_ca_certificates(root)
    copy_code(root)
    with mounted(root, []):
        say("creating the worker's virtualenv and installing worker/requirements.txt")
        in_chroot(root, ["python3", "-m", "venv", VENV])
        in_chroot(root, [f"{VENV}/bin/pip", "install", "--no-cache-dir", "-r",
                         f"{CODE}/worker/requirements.txt"],
                  env={"PIP_CERT": "/etc/ssl/certs/ca-certificates.crt"})
    (root / READY).write_text(f"{release}\n")
    say(f"chroot set up in {time.monotonic() - started:.0f} s")


def chroot_marker(root: Path) -> Path:
    """Where the chroot records its installed profile: the path a worker inside reads."""
    return root / str(MARKER).lstrip("/")


def profile_commands(profile: Profile, deps: BuildDeps) -> list[list[str]]:
    """What runs inside the chroot to install the builder profile and every project's
    build dependencies: the same apt-get line as `python -m worker profile --install`."""
    return [["apt-get", "update", "-q"], install_command(wanted_packages(profile, deps))]


def profile_outdated(installed: int, missing: list[str], profile: Profile) -> list[str]:
    """Why a chroot that has profile version `installed` and lacks the packages `missing`
    must install the profile again (nothing: it need not): a profile bumped since it
    was installed, or packages missing (build-deps.txt edited since)."""
    reasons = []
    if installed < profile.version:
        reasons.append(f"it has builder profile {installed or 'none'}, "
                       f"this checkout {profile.version}")
    if missing:
        reasons.append(f"{len(missing)} packages missing ({', '.join(missing[:5])}"
                       f"{', ...' if len(missing) > 5 else ''})")
    return reasons


def ensure_profile(root: Path, deps_file: Path = BUILD_DEPS) -> None:
    """Install the builder profile in the chroot when it lacks it, at each start (the
    first included): a profile bump reaches an existing chroot without setting it up
    again. An older release lacks some of the profile's packages: it gets the others."""
    profile, deps = load_profile(deps=deps_file), load_build_deps(deps_file)
    wanted = wanted_packages(profile, deps)
    installed = installed_profile(chroot_marker(root))
    missing = missing_packages(wanted, root=root)
    if installed >= profile.version and missing:
        missing = installable(missing, root=root)  # what the release lacks is no reason
    reasons = profile_outdated(installed, missing, profile)
    if not reasons:
        return
    say(f"installing builder profile {profile.version}: {'; '.join(reasons)}")
    env = {"DEBIAN_FRONTEND": "noninteractive"}
    with mounted(root, []):
        update, _ = profile_commands(profile, deps)
        in_chroot(root, update, env=env)
        available = installable(wanted, root=root)
        if absent := [p for p in wanted if p not in available]:
            say(f"not in this release, left out: {' '.join(absent)}")
        in_chroot(root, install_command(available), env=env)
        # The downloaded .debs (a few hundred MB) are of no use once installed.
        in_chroot(root, ["apt-get", "clean"], env=env)
    record_installed(profile.version, chroot_marker(root))


def _mount_point(root: Path, path: Path) -> Path:
    target = root / str(path).lstrip("/")
    if path.is_dir():
        target.mkdir(parents=True, exist_ok=True)
    return target


@contextlib.contextmanager
def mounted(root: Path, binds: list[Path]) -> Iterator[None]:
    """/proc, and each of `binds` at the same path inside, for the duration."""
    done: list[Path] = []
    try:
        proc = root / "proc"
        if not os.path.ismount(proc):
            run(["mount", "-t", "proc", "proc", str(proc)])
            done.append(proc)
        for path in binds:
            target = _mount_point(root, path)
            run(["mount", "--bind", str(path), str(target)])
            done.append(target)
        yield
    finally:
        for target in reversed(done):
            subprocess.run(["umount", "-l", str(target)], check=False)


def shared_paths(config: settings.Settings) -> list[Path]:
    """Host directories the worker inside needs: a unix-socket Redis, a file:// index."""
    paths = []
    redis = urlparse(config.effective_redis_url)
    if redis.scheme == "unix":
        paths.append(Path(redis.path).parent)
    if config.build_index_url and config.build_index_url.startswith("file:"):
        paths.append(Path(unquote(urlparse(config.build_index_url).path)))
    return paths


def worker_env(config: settings.Settings, release: str, arch: Arch = ARCHES["armhf"]
               ) -> dict[str, str]:
    """The host's wheelwright settings, as the worker inside must see them; its name
    says which chroot it is, so that its builds are told from the host's."""
    env = {k: v for k, v in os.environ.items()
           if k.startswith("WHEELWRIGHT_") and k not in
           ("WHEELWRIGHT_DATA", "WHEELWRIGHT_BUILD_PYTHON", "WHEELWRIGHT_BUILD_DIR",
            "WHEELWRIGHT_PREINSTALLED", "WHEELWRIGHT_ARM_DIR",
            # host paths: the worker inside reads the chroot's own marker and mapping
            "WHEELWRIGHT_PROFILE_MARKER", "WHEELWRIGHT_BUILD_DEPS")}
    env.update({
        "REDIS_URL": config.effective_redis_url,
        "WHEELWRIGHT_DATA": "/opt/wheelwright/var",
        # The token's name, which the intake binds pushes to; the machine its builds
        # are recorded under is the chroot's own.
        "WHEELWRIGHT_WORKER_NAME": config.worker_name,
        "WHEELWRIGHT_MACHINE_NAME": f"{config.worker_name}-{arch.debian}-{release}",
        "WHEELWRIGHT_WORKER_TOKEN": config.worker_token,
        "WHEELWRIGHT_INTAKE_URL": config.intake_url,
        "PIP_CERT": "/etc/ssl/certs/ca-certificates.crt",
        "PYTHONPATH": CODE,
    })
    return env


def default_root(config: settings.Settings, arch: Arch = ARCHES["armhf"],
                 release: str = "bookworm") -> Path:
    if (arch.debian, release) == ("armhf", "bookworm"):  # where the first chroot lived
        return config.arm_dir or config.data_dir / "armhf"
    return config.data_dir / f"chroot-{arch.debian}-{release}"


def main(args: argparse.Namespace) -> int:
    if os.geteuid() != 0:
        print("error: chroot needs root (debootstrap, chroot, mount)", file=sys.stderr)
        return 2
    arch = ARCHES[getattr(args, "arch", "armhf")]
    config = settings.load()
    root = (args.root or default_root(config, arch, args.release)).resolve()
    mirror = args.mirror or config.arm_mirror or host_mirror()
    if not mirror:
        print("error: no Debian mirror: give --mirror or WHEELWRIGHT_ARM_MIRROR",
              file=sys.stderr)
        return 2
    ensure_host_tools(arch)
    setup(root, arch, args.release, mirror)
    copy_code(root)
    ensure_profile(root, config.build_deps_file)
    if args.setup_only:
        return 0
    # The release the chroot was made with, whatever --release says now.
    release = (root / READY).read_text().strip() or args.release
    command = [f"{VENV}/bin/python", "-m", "worker"] + (["--burst"] if args.burst else [])
    say(f"running the worker inside: {' '.join(command)}")
    with mounted(root, shared_paths(config)):
        done = in_chroot(root, ["sh", "-c", f'cd {CODE} && exec "$@"', "sh", *command],
                         env=worker_env(config, release, arch), check=False)
    return done.returncode
