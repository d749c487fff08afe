"""Running `pip wheel` for one release, in a fresh directory, under a time limit."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

LOG_LIMIT = 1024 * 1024  # bytes of build log kept; the rest is cut from the middle


@dataclass
class WheelFile:
    path: Path
    filename: str
    size: int
    sha256: str


@dataclass
class BuildResult:
    project: str
    version: str
    abi: str
    status: str  # "success" or "failed"
    duration: float
    log: str
    files: list[WheelFile] = field(default_factory=list)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def pip_wheel_command(
    python: str, project: str, version: str, dest: Path, index_url: str | None
) -> list[str]:
    command = [
        python, "-m", "pip", "wheel", f"{project}=={version}",
        "--no-deps", f"--no-binary={project}", "--prefer-binary", "--no-cache-dir",
        "--disable-pip-version-check", "--wheel-dir", str(dest),
    ]
    if index_url:
        command += ["--index-url", index_url]
    return command


def _cap(log: bytes) -> str:
    if len(log) > LOG_LIMIT:
        half = LOG_LIMIT // 2
        log = log[:half] + b"\n[... log cut ...]\n" + log[-half:]
    return log.decode("utf-8", "replace")


def run_pip_wheel(command: list[str], cwd: Path, timeout: float) -> tuple[int | None, bytes]:
    """Run pip in a process group of its own so that a timeout kills all of it
    (pip, the build backend, compilers). Returns (exit code or None, output)."""
    env = dict(os.environ, GIT_ALLOW_PROTOCOL="file", PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        command, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        output, _ = proc.communicate(timeout=timeout)
        return proc.returncode, output
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        output, _ = proc.communicate()
        return None, output + f"\n[build killed after {timeout:.0f} s]\n".encode()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def build_release(
    project: str, version: str, abi: str, *, python: str, index_url: str | None,
    timeout: float, workdir: Path,
) -> BuildResult:
    """Build one release into `workdir`, which the caller owns and removes."""
    dest = workdir / "wheels"
    dest.mkdir()
    started = time.monotonic()
    command = pip_wheel_command(python, project, version, dest, index_url)
    code, output = run_pip_wheel(command, workdir, timeout)
    files = [
        WheelFile(path=p, filename=p.name, size=p.stat().st_size, sha256=sha256_of(p))
        for p in sorted(dest.glob("*.whl"))
    ]
    status = "success" if code == 0 and files else "failed"
    return BuildResult(
        project=project, version=version, abi=abi, status=status,
        duration=time.monotonic() - started, log=_cap(output), files=files,
    )


def temporary_workdir() -> tempfile.TemporaryDirectory:
    return tempfile.TemporaryDirectory(prefix="wheelwright-build-")
