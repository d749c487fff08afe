"""What travels between the master and the build workers: the build job on the queue
and the build report a worker pushes to the intake. Both sides import this one
definition; `from_args` and `from_json` are where anything that arrives is checked.

The report's `worker` field carries the name the worker gives itself. The intake
does not believe it: it replaces the field with the name the push's token
authenticates, so that a worker cannot record a build under another's name. Its
`job_id` names the rq job the build answers; the intake accepts the push only while
that job runs on that worker (see worker.queues.runs_on)."""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from worker.names import BadName, check_project, check_version, check_wheel_filename
from worker.targets import check_target, parse_target

STATUSES = ("success", "failed")
# A wheel built for one ABI may also be tagged for none (pure) or the stable ABI.
ANY_BUILD_ABIS = frozenset({"none", "abi3"})
SHA256 = re.compile(r"[0-9a-f]{64}")
APT_NAME = re.compile(r"[a-z0-9][a-z0-9+.-]{0,99}(?::[a-z0-9]{1,16})?")  # Debian's, :arch
JOB_ID = re.compile(r"[A-Za-z0-9_-]{1,200}")  # what rq accepts as a job id
SONAME = re.compile(r"[A-Za-z0-9_+.@-]{1,255}")
MAX_NAMES = 1000  # dependencies or sonames listed for one file
MAX_FILES = 1000  # wheels in one report
MAX_TEXT = 1000  # characters of requires_python or of the worker's name


class BadJob(ValueError):
    """The job's arguments are not a release a worker can build."""


class BadReport(ValueError):
    """A build report that is not well formed; the message names the field."""


# A build's SOURCE_DATE_EPOCH is its release's upload time, whole seconds (UTC), so
# that every rebuild of a release stamps its files alike. Zip stores dates from 1980
# to 2107 only; a job queued before the time travelled in jobs gets the earliest.
FALLBACK_EPOCH = 315532800  # 1980-01-01T00:00:00Z
LAST_EPOCH = 4354819199  # 2107-12-31T23:59:59Z


@dataclass(frozen=True)
class BuildJob:
    """One build: `project==version` for the build target `abi` (its target key,
    worker.targets: `cp311`, `cp311-aarch64`), its files dated `released` (seconds
    since the epoch: the release's upload time, the build's SOURCE_DATE_EPOCH). On
    the queue it travels as rq's positional arguments (project, version, abi,
    released); jobs queued before `released` was added carry the first three only,
    and still run, dated FALLBACK_EPOCH."""

    project: str
    version: str
    abi: str
    released: int = FALLBACK_EPOCH

    def to_args(self) -> tuple[str, str, str, int]:
        return (self.project, self.version, self.abi, self.released)

    @classmethod
    def from_args(cls, *args: object) -> BuildJob:
        """The job named by rq's arguments; BadJob unless each follows the names rule
        (anything else could smuggle options into pip's command line) and the time,
        when there is one, is a whole number of seconds that zip can store."""
        if len(args) not in (3, 4):
            raise BadJob(f"a build job takes project, version, abi and release time, not "
                         f"{len(args)} arguments")
        project, version, abi, *rest = args
        released = rest[0] if rest else FALLBACK_EPOCH
        if isinstance(released, bool) or not isinstance(released, int) or \
                not FALLBACK_EPOCH <= released <= LAST_EPOCH:
            raise BadJob(f"release time {released!r} is not whole seconds between "
                         f"{FALLBACK_EPOCH} and {LAST_EPOCH}")
        try:
            return cls(check_project(project), check_version(version), check_target(abi),
                       released)
        except BadName as error:
            raise BadJob(str(error)) from None


@dataclass
class ReportedFile:
    """One wheel as the worker reports it; the intake checks it against the upload."""

    filename: str
    size: int
    sha256: str
    requires_python: str | None = None
    apt_dependencies: list[str] = field(default_factory=list)
    apt_preinstalled: list[str] = field(default_factory=list)  # a subset of the above
    unresolved_sonames: list[str] = field(default_factory=list)
    # Runs on a Pi Zero/1 (worker.elf.Armv6.runs): true, false, or null when its ELF
    # files are for another machine. The intake reads the wheel itself and records its
    # own verdict; this one only cross-checks it.
    armv6: bool | None = None

    @classmethod
    def from_dict(cls, data: object, where: str, project: str, version: str,
                  abi: str) -> ReportedFile:
        data = _object(data, cls, where)
        filename = _text(data["filename"], f"{where}.filename")
        try:
            tags = check_wheel_filename(filename, project, version)
        except BadName as error:
            raise BadReport(f"{where}.filename: {error}") from None
        target = parse_target(abi)
        if not tags.abis <= ANY_BUILD_ABIS | {target.abi}:
            raise BadReport(f"{where}.filename: {filename} is not a wheel for {target.abi}")
        if not all(target.fits(platform) for platform in tags.platforms):
            raise BadReport(f"{where}.filename: {filename} is not a wheel for {target.arch} "
                            f"({abi})")
        size = _integer(data["size"], f"{where}.size")
        if size < 0:
            raise BadReport(f"{where}.size: {size} is negative")
        sha256 = _text(data["sha256"], f"{where}.sha256")
        if not SHA256.fullmatch(sha256):
            raise BadReport(f"{where}.sha256: not 64 lower-case hex digits")
        requires_python = data["requires_python"]
        if requires_python is not None:
            requires_python = _text(requires_python, f"{where}.requires_python")
        return cls(
            filename=filename, size=size, sha256=sha256, requires_python=requires_python,
            apt_dependencies=_names(data["apt_dependencies"], APT_NAME,
                                    f"{where}.apt_dependencies"),
            apt_preinstalled=_names(data["apt_preinstalled"], APT_NAME,
                                    f"{where}.apt_preinstalled"),
            unresolved_sonames=_names(data["unresolved_sonames"], SONAME,
                                      f"{where}.unresolved_sonames"),
            armv6=_verdict(data["armv6"], f"{where}.armv6"),
        )


@dataclass
class Machine:
    """The builder that made a build, as the worker describes itself: which worker
    (a chroot worker's name differs from its host's), which builder profile
    (worker.profile) it had installed, its OS release and its C compiler."""

    name: str
    profile: int  # the builder profile's version; 0: none installed
    os_release: str  # /etc/os-release's PRETTY_NAME
    toolchain: str  # the first line of `gcc --version`; "" without gcc

    @classmethod
    def from_dict(cls, data: object, where: str) -> Machine:
        data = _object(data, cls, where)
        profile = _integer(data["profile"], f"{where}.profile")
        if profile < 0:
            raise BadReport(f"{where}.profile: {profile} is negative")
        return cls(name=_text(data["name"], f"{where}.name"), profile=profile,
                   os_release=_text(data["os_release"], f"{where}.os_release"),
                   toolchain=_text(data["toolchain"], f"{where}.toolchain"))


@dataclass
class BuildReport:
    """What a worker tells the intake about one build job. `machine` is absent from
    reports of workers older than it, and then None."""

    project: str
    version: str
    abi: str  # the build target's key (worker.targets), as in the job
    status: str  # "success" (with its wheels) or "failed" (with none)
    duration: float  # seconds
    worker: str  # as the worker tells it; see the module's docstring
    job_id: str  # the rq job it answers: the intake takes a push only for a running job
    files: list[ReportedFile] = field(default_factory=list)
    machine: Machine | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, raw: str | bytes) -> BuildReport:
        """The report in `raw`; BadReport if a field is extra, missing, of the wrong
        type or outside its rule, or if the report contradicts itself."""
        try:
            data = json.loads(raw)
        except (ValueError, RecursionError) as error:
            raise BadReport(f"not JSON: {error}") from None
        return cls.from_dict(data)

    @classmethod
    def from_dict(cls, data: object) -> BuildReport:
        data = _object(data, cls, "", optional=("machine",))
        try:
            project = check_project(_text(data["project"], "project"))
            version = check_version(_text(data["version"], "version"))
            abi = check_target(_text(data["abi"], "abi"))
        except BadName as error:
            raise BadReport(str(error)) from None
        status = _text(data["status"], "status")
        if status not in STATUSES:
            raise BadReport(f"status: {status!r} is not one of {', '.join(STATUSES)}")
        duration = _number(data["duration"], "duration")
        if not math.isfinite(duration) or duration < 0:
            raise BadReport(f"duration: {duration} is not a number of seconds")
        worker = _text(data["worker"], "worker")
        job_id = _text(data["job_id"], "job_id")
        if not JOB_ID.fullmatch(job_id):
            raise BadReport(f"job_id: {job_id!r} is not an rq job id")
        listed = data["files"]
        if not isinstance(listed, list) or len(listed) > MAX_FILES:
            raise BadReport(f"files: not a list of at most {MAX_FILES} files")
        files = [ReportedFile.from_dict(f, f"files[{i}]", project, version, abi)
                 for i, f in enumerate(listed)]
        if status == "success" and not files:
            raise BadReport("files: a successful build has wheels")
        if status == "failed" and files:
            raise BadReport("files: a failed build has no wheels")
        if len({f.filename for f in files}) != len(files):
            raise BadReport("files: a file is listed twice")
        machine = data.get("machine")
        return cls(project=project, version=version, abi=abi, status=status,
                   duration=float(duration), worker=worker, job_id=job_id, files=files,
                   machine=None if machine is None else Machine.from_dict(machine, "machine"))


def _object(data: object, cls: type, where: str,
            optional: tuple[str, ...] = ()) -> dict[str, Any]:
    """`data` if it is a JSON object with exactly the fields of `cls`, of which those
    named `optional` may be missing."""
    what = where or "report"
    if not isinstance(data, dict):
        raise BadReport(f"{what}: not an object but {_kind(data)}")
    names = [f.name for f in fields(cls)]
    prefix = f"{where}." if where else ""
    for key in data:
        if key not in names:
            raise BadReport(f"{prefix}{key}: not a field of a {cls.__name__}")
    for name in names:
        if name not in data and name not in optional:
            raise BadReport(f"{prefix}{name}: missing")
    return data


def _text(value: object, where: str) -> str:
    if not isinstance(value, str):
        raise BadReport(f"{where}: not a string but {_kind(value)}")
    if len(value) > MAX_TEXT:
        raise BadReport(f"{where}: longer than {MAX_TEXT} characters")
    return value


def _integer(value: object, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadReport(f"{where}: not an integer but {_kind(value)}")
    return value


def _number(value: object, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BadReport(f"{where}: not a number but {_kind(value)}")
    return value


def _verdict(value: object, where: str) -> bool | None:
    if value is not None and not isinstance(value, bool):
        raise BadReport(f"{where}: not a boolean or null but {_kind(value)}")
    return value


def _names(value: object, pattern: re.Pattern, where: str) -> list[str]:
    if not isinstance(value, list) or len(value) > MAX_NAMES:
        raise BadReport(f"{where}: not a list of at most {MAX_NAMES} names")
    for i, name in enumerate(value):
        if not isinstance(name, str) or not pattern.fullmatch(name):
            raise BadReport(f"{where}[{i}]: {name!r} is not a name")
    return value


def _kind(value: object) -> str:
    """A JSON value's type in JSON's words, for messages."""
    if value is None:
        return "null"
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
            list: "a list", dict: "an object"}.get(type(value), type(value).__name__)
