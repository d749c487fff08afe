"""The job functions a build worker runs. Only names listed in
worker.queues.AllowlistJob.ALLOWED can ever be executed."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import stat
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlparse

from rq import get_current_job

from worker import notes, settings, stopping
from worker.apt import apt_report, operator_preinstalled
from worker.build import pip_wheel_command, run_pip_wheel
from worker.elf import Resolver, armv6_of_tree, elf_files, unpack
from worker.interpreter import BuildInterpreter, probe
from worker.machine import this_machine
from worker.profile import build_deps_for, can_check, missing_packages
from worker.push import Intake, push
from worker.report import BuildOutcome, BuiltWheel, Timings
from worker.sandbox import BUILD_PATH, Sandbox, file_index_path, find_bwrap
from worker.wheel import BadWheel, WheelInfo, inspect_wheel
from worker.wire import FALLBACK_EPOCH, BadJob, BuildJob

log = logging.getLogger(__name__)


class BuildKilled(RuntimeError):
    """The build was SIGKILLed from outside the worker (an operator, the OOM killer):
    that says nothing of the release. The job fails, and rq's retry runs it again while
    it has tries left; after that the build is recorded as failed, with its log."""


class MissingBuildDeps(RuntimeError):
    """This worker lacks Debian packages build-deps.txt names for the project: that
    says nothing of the release either, and another worker may have them. The job
    fails, and rq's retry runs it again while it has tries left; after that the build
    is recorded as failed for missing build dependencies, which the master asks for
    again once a newer builder profile is installed (ingest.profile_rebuilds)."""


def check_job(project: object, version: object, abi: object,
              interpreter: BuildInterpreter, *released: object) -> BuildJob:
    """The job named by rq's arguments if this worker can build it; BadJob otherwise.
    `released` is the release time, absent from jobs queued before it travelled."""
    job = BuildJob.from_args(project, version, abi, *released)
    if job.abi != interpreter.key:
        raise BadJob(f"job is for {abi!r} but {interpreter.python} builds {interpreter.key!r}")
    return job


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


def build(project: str, version: str, abi: str, *released: int) -> dict:
    """Build `project==version` for `abi` and push the outcome to the intake; the
    wheels are dated `released` (the release's upload time, seconds since the
    epoch), so that a rebuild gives the same bytes (see worker.sandbox)."""
    config = settings.load()
    interpreter = probe(config.build_python)
    job = check_job(project, version, abi, interpreter, *released)
    # The machine as the build began: a profile installed during it did not build it.
    machine = this_machine(config.machine_name, config.profile_marker)
    with fresh_directory(config) as workdir:
        outcome = build_in(workdir, config, interpreter, project, version,
                           released=job.released)
        current = get_current_job()
        tries_left = current is not None and (current.retries_left or 0) > 0
        if outcome.killed and tries_left:
            raise BuildKilled(f"the build of {project} {version} was killed (SIGKILL)")
        if outcome.missing_deps and tries_left:
            raise MissingBuildDeps(f"{config.machine_name} lacks "
                                   f"{', '.join(outcome.missing_deps)} to build {project}")
        outcome.job_id = current.id if current is not None else ""
        outcome.machine = machine
        started = time.monotonic()
        stopping.let_finish()  # a stop from here on would build the release twice
        answer = push(Intake(url=config.intake_url, worker=config.worker_name,
                             token=config.worker_token, retries=config.push_retries,
                             backoff=config.push_backoff), outcome)
        outcome.timings.push = time.monotonic() - started
    return {
        "status": outcome.status,
        "files": [w.wheel.filename for w in outcome.wheels],
        "sha256": {w.wheel.filename: w.wheel.sha256 for w in outcome.wheels},
        "timings": vars(outcome.timings),
        "intake": answer,
    }


def build_in(workdir: Path, config: settings.Settings, interpreter: BuildInterpreter,
             project: str, version: str, released: int = FALLBACK_EPOCH) -> BuildOutcome:
    """Run pip wheel in `workdir`/build, the one place the build may write (seen at
    BUILD_PATH in the sandbox), with SOURCE_DATE_EPOCH `released`, and inspect what
    it made once it is out of the build's reach. The log is the build's output, then
    the worker's notes after their trailer line (worker.notes)."""
    missing = check_build_deps(project, config)
    if missing:
        return BuildOutcome(project=project, version=version, abi=interpreter.key,
                            status="failed", duration=0.0,
                            log=notes.with_notes("", [notes.missing_build_deps(missing)]),
                            missing_deps=missing)
    inside = workdir / "build"
    dest = inside / "wheels"
    dest.mkdir(parents=True)
    bwrap = find_bwrap(config.build_sandbox)
    seen = BUILD_PATH if bwrap else inside  # where the build sees `inside`
    command = pip_wheel_command(interpreter.python, project, version,
                                seen / dest.relative_to(inside), config.build_index_url)
    run = run_pip_wheel(command, inside, timeout=config.build_timeout,
                        memory_mb=config.build_memory_mb, log_limit=config.build_log_limit,
                        sandbox=build_sandbox(inside, config, interpreter), bwrap=bwrap,
                        extra_env={"SOURCE_DATE_EPOCH": str(released)})
    # pip itself killed, or bubblewrap, or pip inside it (bubblewrap exits 128 + signal).
    killed = not run.timed_out and run.returncode in (-signal.SIGKILL, 128 + signal.SIGKILL)
    outcome = BuildOutcome(project=project, version=version, abi=interpreter.key,
                           status="failed", duration=run.seconds, log="",
                           timings=Timings(pip=run.seconds), killed=killed)
    said: list[str] = []
    if run.timed_out:
        said.append(notes.timeout(config.build_timeout))
    if killed:
        said.append(notes.killed())
    started = time.monotonic()
    try:
        built = take_wheels(dest, workdir / "wheels")
    except OSError as error:
        said.append(notes.REFUSED.format(
            why=f"its wheel directory was tampered with ({error})"))
        built = []
    if run.returncode == 0 and built:
        try:
            outcome.wheels = [inspect_built(path, workdir, config, interpreter, project,
                                            version) for path in built]
            outcome.status = "success"
        except BadWheel as error:
            said.append(notes.REFUSED.format(why=error))
        said += [notes.PREFIX + note for w in outcome.wheels for note in w.notes]
    elif run.returncode == 0 and not said:
        said.append(notes.NO_WHEEL)
    outcome.timings.inspect = time.monotonic() - started
    outcome.log = notes.with_notes(run.log, said)
    return outcome


def check_build_deps(project: str, config: settings.Settings) -> list[str]:
    """The Debian packages build-deps.txt names for `project` that are not installed
    (none: the build may run). The worker only checks: it runs builds as a user
    without apt rights, and installing what a job names would let whoever queues jobs
    change every builder; `python -m worker profile --install` installs them all ahead
    of time."""
    needed = build_deps_for(project, config.build_deps_file)
    if not needed:
        return []
    if not can_check():
        log.warning("cannot check build dependencies %s of %s: no dpkg-query",
                    ", ".join(needed), project)
        return []
    return missing_packages(needed)


def build_sandbox(inside: Path, config: settings.Settings,
                  interpreter: BuildInterpreter) -> Sandbox:
    """The walls of one build: it sees the build interpreter and a file:// index, and
    none of the worker's home, data directory, token or Redis socket."""
    hidden = [Path.home(), config.data_dir]
    if config.effective_redis_url.startswith("unix:"):
        hidden.append(Path(urlparse(config.effective_redis_url).path).parent)
    readable = [Path(p) for p in interpreter.paths]
    index = file_index_path(config.build_index_url)
    if index is not None:
        readable.append(index)
    return Sandbox(workdir=inside, hidden=tuple(hidden), readable=tuple(readable),
                   network=config.build_network)


def take_wheels(dest: Path, out: Path) -> list[Path]:
    """Copy the regular *.whl files of `dest` into `out`, where the build cannot
    reach. The build owned `dest`: a symbolic link there (to the token, say) is not
    followed, and `dest` itself must still be a directory, not a link."""
    out.mkdir()
    directory = os.open(dest, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    taken = []
    try:
        for name in sorted(os.listdir(directory)):
            if not name.endswith(".whl") or "/" in name:
                continue
            try:
                fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=directory)
            except OSError:
                continue  # a link, or gone: not a wheel the build made
            with os.fdopen(fd, "rb") as source:
                if not stat.S_ISREG(os.fstat(source.fileno()).st_mode):
                    continue
                with open(out / name, "xb") as copy:
                    shutil.copyfileobj(source, copy)
            taken.append(out / name)
    finally:
        os.close(directory)
    return taken


def inspect_built(path: Path, workdir: Path, config: settings.Settings,
                  interpreter: BuildInterpreter, project: str, version: str) -> BuiltWheel:
    wheel = for_interpreter(inspect_wheel(path, project, version), interpreter)
    # Even a wheel tagged "any" is scanned: nothing stops one from carrying ELF files.
    unpacked = unpack(path, workdir / "unpacked" / path.name)
    resolver = Resolver(unpacked)
    resolutions = resolver.resolve_all(elf_files(unpacked))
    preinstalled = operator_preinstalled(config.preinstalled_file, interpreter.key)
    return BuiltWheel(wheel, apt_report(resolutions, preinstalled), armv6_of_tree(unpacked))


def for_interpreter(wheel: WheelInfo, interpreter: BuildInterpreter) -> WheelInfo:
    """`wheel` if `interpreter` can have built it; BadWheel otherwise (pip may hand back
    a wheel it found rather than built, for another platform)."""
    if not any(interpreter.accepts(abi, platform) for abi in wheel.abi_tag.split(".")
               for platform in wheel.platform_tag.split(".")):
        raise BadWheel(f"{wheel.filename} is not for {interpreter.abi} on "
                       f"{interpreter.platform}")
    return wheel
