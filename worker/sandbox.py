"""The walls around a build: `pip wheel` runs a stranger's code (setup.py, build
backends, compilers it drives), so it runs in a bubblewrap sandbox where the
worker's secrets do not exist.

Inside, the whole file system is read-only; the worker's home, the data directory
(token file, embedded Redis socket, catalogue), /etc/wheelwright, /tmp, /run and
/var/tmp are empty read-only directories; the build directory is the one writable
place, and the build sees it at BUILD_PATH whatever its path on the worker; /proc
shows only the build's own processes; the user is `nobody` with no capabilities;
the environment holds only what pip needs. The network is shared only when the
setting allows it (pip downloads the sdist and its build requirements from the
index; a file:// index is shown read-only instead).

Rebuilding a release gives the same bytes when nothing the build can see varies
between runs: the environment fixes the time (SOURCE_DATE_EPOCH, from the job),
the locale, the time zone and the hash seed; the build's directory is BUILD_PATH
every time; pip's temporary directories get the same names (worker.build). Without
bubblewrap the build runs where the worker made its directory, a new path each
time, and compiled code records it (debug information, __FILE__): byte-identical
rebuilds of C extensions need the sandbox's fixed path. (Mapping the path away
with CFLAGS=-ffile-prefix-map=... would do it, but a CFLAGS set in the environment
also replaces the default -O2 of autotools builds that packages run.)"""

from __future__ import annotations

import functools
import logging
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

log = logging.getLogger("worker")

MODES = ("auto", "bwrap", "off")
NOBODY = 65534
# Where credentials and sockets live on a worker: hidden from every build.
ALWAYS_HIDDEN = (Path("/tmp"), Path("/var/tmp"),  # noqa: S108 - hidden, not used
                 Path("/run"), Path("/etc/wheelwright"))
# What the build's environment keeps of the worker's: pip's own configuration (the
# operator's choice of index, certificates, proxies). Not the locale or the time
# zone: a build must not depend on which Pi it ran on (FIXED_VARIABLES).
KEPT_VARIABLES = ("PATH",)
KEPT_PREFIXES = ("PIP_",)
# What stays the same from one build to the next: file names sorted and dates
# written alike, set iteration in the build's Python in one order.
FIXED_VARIABLES = {"LC_ALL": "C.UTF-8", "TZ": "UTC", "PYTHONHASHSEED": "0"}
# Where a sandboxed build sees its directory: compilers write the build's path into
# debug information and __FILE__, so it must not be the worker's per-job path.
# Under /tmp, an empty tmpfs in the sandbox, where the mount point can be made.
BUILD_PATH = Path("/tmp/build")  # noqa: S108 - a mount point inside the sandbox


class SandboxUnavailable(RuntimeError):
    """The setting asks for a sandbox this machine cannot give."""


@dataclass(frozen=True)
class Sandbox:
    """What one build may see and touch."""

    workdir: Path  # the one writable directory, seen inside at BUILD_PATH
    hidden: tuple[Path, ...] = ()  # replaced by empty directories
    readable: tuple[Path, ...] = ()  # shown read-only even inside a hidden one
    network: bool = True

    def wrap(self, command: list[str], bwrap: str) -> list[str]:
        """`command` run under bubblewrap with these walls."""
        args = [bwrap, "--unshare-all", "--die-with-parent", "--new-session",
                "--unshare-user", "--uid", str(NOBODY), "--gid", str(NOBODY),
                "--cap-drop", "ALL", "--ro-bind", "/", "/", "--dev", "/dev",
                "--proc", "/proc"]
        if self.network:
            args.append("--share-net")
        # Later mounts lie on top of earlier ones: hide first, then show again
        # what the build needs, and the build directory last.
        hidden = [p for p in _outermost(ALWAYS_HIDDEN + self.hidden) if p.is_dir()]
        for path in hidden:
            args += ["--tmpfs", str(path)]
        readable = self.readable
        if self.network:  # the resolver's configuration may live under /run
            readable += (Path("/etc/resolv.conf"),)
        for path in _outermost(readable):
            if path.exists():
                args += ["--ro-bind", str(path), str(path)]
        args += ["--bind", str(self.workdir), str(BUILD_PATH)]
        # Empty and read-only: a write to /tmp fails rather than vanish unseen
        # (TMPDIR points into the build directory).
        for path in hidden:
            args += ["--remount-ro", str(path)]
        args += ["--chdir", str(BUILD_PATH), "--"]
        return args + command


def _outermost(paths: tuple[Path, ...]) -> list[Path]:
    """The paths resolved, without those inside another (one mount covers them)."""
    resolved = sorted({Path(os.path.realpath(p)) for p in paths})
    kept: list[Path] = []
    for path in resolved:
        if not any(path.is_relative_to(k) for k in kept):
            kept.append(path)
    return kept


def build_environment(workdir: Path, extra: dict[str, str] | None = None,
                      source: dict[str, str] | None = None,
                      seen_at: Path | None = None) -> dict[str, str]:
    """The build's environment: nothing of the worker's but pip's own settings, so
    that no token, Redis URL or password reaches the build; FIXED_VARIABLES; HOME
    and TMPDIR inside the build directory `workdir` (made here), named as the build
    sees it: `seen_at` (BUILD_PATH in the sandbox), `workdir` itself by default.
    `extra` (SOURCE_DATE_EPOCH, say) comes last."""
    source = os.environ if source is None else source
    seen_at = workdir if seen_at is None else seen_at
    env = {name: value for name, value in source.items()
           if name in KEPT_VARIABLES or name.startswith(KEPT_PREFIXES)}
    env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    for name in ("home", "tmp"):
        (workdir / name).mkdir(exist_ok=True)
    env.update(FIXED_VARIABLES, HOME=str(seen_at / "home"), TMPDIR=str(seen_at / "tmp"),
               GIT_ALLOW_PROTOCOL="file", PYTHONUNBUFFERED="1", PIP_NO_INPUT="1")
    env.update(extra or {})
    return env


def file_index_path(index_url: str | None) -> Path | None:
    """The directory behind a file:// index URL, which a build must be able to read."""
    if index_url and index_url.startswith("file:"):
        return Path(unquote(urlparse(index_url).path))
    return None


def find_bwrap(mode: str) -> str | None:
    """The bubblewrap binary to use under `mode`, or None to build without walls."""
    if mode not in MODES:
        raise SandboxUnavailable(f"WHEELWRIGHT_BUILD_SANDBOX is one of {', '.join(MODES)}, "
                                 f"not {mode!r}")
    if mode == "off":
        return None
    found = shutil.which("bwrap")
    if found is None and mode == "bwrap":
        raise SandboxUnavailable("bubblewrap is not installed: apt install bubblewrap "
                                 "(or set WHEELWRIGHT_BUILD_SANDBOX=auto)")
    if found is None:
        log.warning("bubblewrap is not installed: builds run WITHOUT a sandbox and can "
                    "read this worker's files (apt install bubblewrap)")
        return None
    refusal = bwrap_refusal(found)
    if refusal and mode == "bwrap":
        raise SandboxUnavailable(f"bubblewrap cannot make a sandbox here: {refusal}")
    if refusal:
        log.warning("bubblewrap cannot make a sandbox here (%s): builds run WITHOUT a "
                    "sandbox and can read this worker's files", refusal)
        return None
    return found


@functools.cache
def bwrap_refusal(bwrap: str) -> str:
    """Why `bwrap` cannot make a sandbox on this machine ("" if it can), asked once
    per process: a chroot (the kernel gives a chrooted process no new user
    namespace) or a kernel without user namespaces has bubblewrap installed yet
    unusable, and every build would fail in it."""
    try:
        done = subprocess.run([bwrap, "--ro-bind", "/", "/", "--unshare-all", "--",
                               "/bin/true"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as error:
        return str(error)
    return "" if done.returncode == 0 else (done.stderr.strip().splitlines() or ["?"])[-1]
