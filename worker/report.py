"""The outcome of one build job on the worker's side: the wheels with what was found
in them, the log, the timings. What of it the intake hears is a worker.wire.BuildReport."""

from __future__ import annotations

from dataclasses import dataclass, field

from worker.apt import AptReport
from worker.elf import Armv6
from worker.wheel import WheelInfo
from worker.wire import BuildReport, Machine, ReportedFile


@dataclass
class BuiltWheel:
    wheel: WheelInfo
    apt: AptReport
    armv6: Armv6

    def reported(self) -> ReportedFile:
        return ReportedFile(
            filename=self.wheel.filename, size=self.wheel.size, sha256=self.wheel.sha256,
            requires_python=self.wheel.requires_python,
            apt_dependencies=self.apt.dependencies, apt_preinstalled=self.apt.preinstalled,
            unresolved_sonames=self.apt.unresolved, armv6=self.armv6.runs,
        )

    @property
    def notes(self) -> list[str]:
        """What was found in the wheel, for the build log."""
        notes = list(self.apt.notes)
        if self.armv6.runs is not None:  # None: no ARM code, nothing to say of ARMv6
            verdict = "runs on" if self.armv6.runs else "does not run on"
            notes.append(f"{self.wheel.filename} {verdict} a Pi Zero/1 (ARMv6)")
            notes += [f"{self.wheel.filename}: {note}" for note in self.armv6.notes]
        return notes


@dataclass
class Timings:
    """Seconds spent in each step, for the job's result and the benchmark."""

    pip: float = 0.0
    inspect: float = 0.0
    push: float = 0.0


@dataclass
class BuildOutcome:
    project: str
    version: str
    abi: str
    status: str  # "success" or "failed"
    duration: float
    log: str
    wheels: list[BuiltWheel] = field(default_factory=list)
    timings: Timings = field(default_factory=Timings)
    job_id: str = ""  # the rq job this build answers
    killed: bool = False  # SIGKILLed from outside the worker (see worker.jobs.BuildKilled)
    # Debian packages build-deps.txt names that this worker lacks: pip never ran
    # (see worker.jobs.MissingBuildDeps)
    missing_deps: list[str] = field(default_factory=list)
    machine: Machine | None = None  # the builder (worker.machine), filled before the push

    def report(self, worker: str) -> BuildReport:
        return BuildReport(project=self.project, version=self.version, abi=self.abi,
                           status=self.status, duration=round(self.duration, 3),
                           worker=worker, job_id=self.job_id,
                           files=[w.reported() for w in self.wheels],
                           machine=self.machine)
