"""The job functions a build worker runs. Only names listed in
worker.queues.AllowlistJob.ALLOWED can ever be executed."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from worker import settings
from worker.apt import apt_report, operator_preinstalled
from worker.build import pip_wheel_command, run_pip_wheel
from worker.elf import Resolver, elf_files, unpack
from worker.interpreter import BuildInterpreter, probe
from worker.push import Intake, push
from worker.report import BuildOutcome, BuiltWheel, Timings
from worker.wheel import WrongWheel, inspect_wheel

# What a job may name; anything else could smuggle options into pip's command line.
PROJECT_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,198}[a-z0-9])?$")
VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+!-]{0,99}$")


class BadJob(ValueError):
    """The job's arguments are not a release this worker can build."""


def check_job(project: str, version: str, abi: str, interpreter: BuildInterpreter) -> None:
    if not isinstance(project, str) or not PROJECT_RE.match(project) \
            or canonicalize_name(project) != project:
        raise BadJob(f"project {project!r} is not a canonical name")
    if not isinstance(version, str) or not VERSION_RE.match(version):
        raise BadJob(f"version {version!r} is not a version")
    try:
        Version(version)
    except InvalidVersion:
        raise BadJob(f"version {version!r} is not a version") from None
    if abi != interpreter.abi:
        raise BadJob(f"job is for {abi!r} but {interpreter.python} builds {interpreter.abi!r}")


def build_root(config: settings.Settings) -> Path:
    """This worker's directory for build directories (see remove_stale_builds)."""
    parent = config.build_dir or Path(tempfile.gettempdir())
    return parent / f"wheelwright-{config.worker_name}"


def remove_stale_builds(root: Path) -> list[Path]:
    """Remove build directories whose process is gone: a crash skips clean-up.
    Each is named after the process that made it, so that workers sharing the
    root leave each other's running builds alone."""
    removed = []
    for path in root.glob("build-*-*"):
        pid = path.name.split("-")[1]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def _alive(pid: int) -> bool:
    """Whether `pid` runs; a zombie (dead, not yet reaped) does not."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


@contextmanager
def fresh_directory(config: settings.Settings):
    root = build_root(config)
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = Path(tempfile.mkdtemp(prefix=f"build-{os.getpid()}-", dir=root))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def build(project: str, version: str, abi: str) -> dict:
    """Build `project==version` for `abi` and push the outcome to the intake."""
    config = settings.load()
    interpreter = probe(config.build_python)
    check_job(project, version, abi, interpreter)
    with fresh_directory(config) as workdir:
        outcome = build_in(workdir, config, interpreter, project, version)
        started = time.monotonic()
        answer = push(Intake(url=config.intake_url, worker=config.worker_name,
                             token=config.worker_token, retries=config.push_retries,
                             backoff=config.push_backoff), outcome)
        outcome.timings.push = time.monotonic() - started
    return {
        "status": outcome.status,
        "files": [w.wheel.filename for w in outcome.wheels],
        "timings": vars(outcome.timings),
        "intake": answer,
    }


def build_in(workdir: Path, config: settings.Settings, interpreter: BuildInterpreter,
             project: str, version: str) -> BuildOutcome:
    """Run pip wheel in `workdir` and inspect what it made."""
    dest = workdir / "wheels"
    dest.mkdir()
    command = pip_wheel_command(interpreter.python, project, version, dest,
                                config.build_index_url)
    run = run_pip_wheel(command, workdir, timeout=config.build_timeout,
                        memory_mb=config.build_memory_mb, log_limit=config.build_log_limit)
    outcome = BuildOutcome(project=project, version=version, abi=interpreter.abi,
                           status="failed", duration=run.seconds, log=run.log,
                           timings=Timings(pip=run.seconds))
    built = sorted(dest.glob("*.whl"))
    if run.returncode != 0 or not built:
        if run.returncode == 0:
            outcome.log += "\n[wheelwright] pip succeeded but made no wheel\n"
        return outcome
    started = time.monotonic()
    try:
        outcome.wheels = [inspect_built(path, workdir, config, interpreter, project, version)
                          for path in built]
        outcome.status = "success"
    except WrongWheel as error:
        outcome.log += f"\n[wheelwright] build refused: {error}\n"
    outcome.log += "".join(f"\n[wheelwright] {note}" for w in outcome.wheels
                           for note in w.apt.notes)
    outcome.timings.inspect = time.monotonic() - started
    return outcome


def inspect_built(path: Path, workdir: Path, config: settings.Settings,
                  interpreter: BuildInterpreter, project: str, version: str) -> BuiltWheel:
    wheel = inspect_wheel(path, project, version, interpreter)
    # Even a wheel tagged "any" is scanned: nothing stops one from carrying ELF files.
    unpacked = unpack(path, workdir / "unpacked" / path.name)
    resolver = Resolver(unpacked)
    resolutions = resolver.resolve_all(elf_files(unpacked))
    preinstalled = operator_preinstalled(config.preinstalled_file, interpreter.abi)
    return BuiltWheel(wheel, apt_report(resolutions, preinstalled))
