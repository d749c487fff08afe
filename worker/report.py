"""The outcome of one build job, as the intake receives it."""

from __future__ import annotations

from dataclasses import dataclass, field

from worker.apt import AptReport
from worker.wheel import WheelFile


@dataclass
class BuiltWheel:
    wheel: WheelFile
    apt: AptReport

    def as_json(self) -> dict:
        return {
            "filename": self.wheel.filename,
            "size": self.wheel.size,
            "sha256": self.wheel.sha256,
            "requires_python": self.wheel.requires_python,
            "apt_dependencies": self.apt.dependencies,
            "apt_preinstalled": self.apt.preinstalled,
            "unresolved_sonames": self.apt.unresolved,
        }


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

    def report(self, worker: str) -> dict:
        return {
            "project": self.project,
            "version": self.version,
            "abi": self.abi,
            "status": self.status,
            "duration": round(self.duration, 3),
            "worker": worker,
            "files": [w.as_json() for w in self.wheels],
        }
