"""Running `pip wheel` for one release: a fresh directory, a time limit that kills
the whole build, a memory limit, a log of bounded size, and as little as we can
that differs from one run to the next (see worker.sandbox)."""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
import resource
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from worker.sandbox import BUILD_PATH, Sandbox, build_environment

LOG_LIMIT = 1024 * 1024  # default bytes of build log kept
PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


@dataclass
class PipRun:
    """What one `pip wheel` run left behind."""

    returncode: int | None  # None when it was killed at the timeout
    log: str
    seconds: float
    timed_out: bool = False


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# pip, as `python -m pip` runs it, but with its temporary directories named by a
# generator seeded alike in every run rather than at random. pip unpacks the sdist
# and installs the build requirements under such names, and compilers record where
# they worked (debug information, __FILE__): random names would give each rebuild
# of a C extension other bytes. Predictable names are safe here: TMPDIR is the
# build's own directory, where nothing but this build makes files. tempfile's name
# generator and uuid4 (pip names the unpacked sdist with one) are what pip asks;
# the build interpreter can be old (3.4 on Jessie), hence no newer syntax. The
# first entry of sys.path, the working directory under -c, is dropped as -m would.
PIP_WITH_FIXED_NAMES = """\
import sys
if sys.path and sys.path[0] == "":
    del sys.path[0]
import random, runpy, tempfile, uuid
seeded = random.Random(0)
def names():
    while True:
        yield "".join(seeded.choice("abcdefghijklmnopqrstuvwxyz0123456789_")
                      for _ in range(8))
tempfile._name_sequence = names()
uuid.uuid4 = lambda: uuid.UUID(int=seeded.getrandbits(128), version=4)
runpy.run_module("pip", run_name="__main__", alter_sys=True)
"""


def pip_wheel_command(
    python: str, project: str, version: str, dest: Path, index_url: str | None
) -> list[str]:
    """`pip wheel` of one release into `dest` (a path as the build sees it). Its
    temporary directories have the same names in every run (PIP_WITH_FIXED_NAMES)."""
    # --use-pep517: without it a pip older than 23.1 (Buster's, Bookworm's) builds a
    # project that has no pyproject.toml with `setup.py bdist_wheel` in the build
    # interpreter's own site-packages, and fails where `wheel` is not installed there.
    command = [
        python, "-c", PIP_WITH_FIXED_NAMES, "wheel", f"{project}=={version}",
        "--no-deps", f"--no-binary={project}", "--prefer-binary", "--no-cache-dir",
        "--use-pep517", "--disable-pip-version-check", "--no-input", "--wheel-dir", str(dest),
    ]
    if index_url:
        command += ["--index-url", index_url]
    return command


class CappedLog:
    """Keeps the first and last `limit / 2` bytes of a stream, however long it runs:
    a build printing without end must not exhaust the worker's memory."""

    def __init__(self, limit: int):
        self.half = max(limit // 2, 1)
        self.head = bytearray()
        self.tail = bytearray()
        self.cut = 0

    def write(self, chunk: bytes) -> None:
        room = self.half - len(self.head)
        if room > 0:
            self.head += chunk[:room]
            chunk = chunk[room:]
        self.tail += chunk
        if len(self.tail) > self.half:
            excess = len(self.tail) - self.half
            del self.tail[:excess]
            self.cut += excess

    def text(self) -> str:
        middle = f"\n[... {self.cut} bytes of log cut ...]\n".encode() if self.cut else b""
        return bytes(self.head + middle + self.tail).decode("utf-8", "replace")


def _limits(memory_mb: int):
    """The child's setup before exec: die with the worker, cap address space, and
    make files with the same permissions whatever the worker's umask (a wheel
    records each file's mode)."""

    def apply() -> None:
        os.umask(0o022)
        # If the work horse is killed outright, pip goes too rather than build on unseen.
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if memory_mb > 0:
            limit = memory_mb * 1024 * 1024
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    return apply


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def run_pip_wheel(command: list[str], cwd: Path, *, timeout: float, memory_mb: int = 0,
                  log_limit: int = LOG_LIMIT, sandbox: Sandbox | None = None,
                  bwrap: str | None = None, extra_env: dict[str, str] | None = None
                  ) -> PipRun:
    """Run pip in a session of its own, so that the timeout (or anything that ends
    the job early) kills all of it: pip, the build backend, compilers. With `bwrap`,
    inside `sandbox`'s walls, where `cwd` is seen at BUILD_PATH; always with a
    scrubbed environment, plus `extra_env` (SOURCE_DATE_EPOCH)."""
    started = time.monotonic()
    log = CappedLog(log_limit)
    seen_at = cwd
    if sandbox is not None and bwrap is not None:
        command = sandbox.wrap(command, bwrap)
        seen_at = BUILD_PATH
    env = build_environment(cwd, extra=extra_env, seen_at=seen_at)
    proc = subprocess.Popen(
        command, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
        preexec_fn=_limits(memory_mb),  # safe: rq's work horse runs a single thread
    )
    reader = threading.Thread(target=_drain, args=(proc.stdout, log), daemon=True)
    reader.start()
    timed_out = False
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
    finally:
        # Also reaps whatever the build left running in the background.
        _kill_group(proc.pid)
        proc.wait()
        reader.join(10)
    # The caller notes the timeout after the build's output (worker.notes).
    return PipRun(returncode=None if timed_out else proc.returncode, log=log.text(),
                  seconds=time.monotonic() - started, timed_out=timed_out)


def _drain(stream, log: CappedLog) -> None:
    with stream:
        while chunk := stream.read1(65536):
            log.write(chunk)
