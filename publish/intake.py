"""The intake: where workers push builds. It trusts nothing a worker sends."""

from __future__ import annotations

import dataclasses
import functools
import gzip
import hashlib
import hmac
import logging
import os
import sqlite3
import tempfile
import zipfile
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import bottle
from redis import Redis
from rq.exceptions import NoSuchJobError
from rq.job import JobStatus
from rq.registry import StartedJobRegistry

from ingest import catalogue
from ingest.scheduler import request_publish
from ingest.settings import Settings
from publish.contents import Contents, cache_path
from publish.failures import Failure, classify
from publish.files import inside, write_atomic
from publish.releases import RELEASE_INDEXES, built_name
from worker.build import sha256_of
from worker.elf import armv6_of_wheel, compiled_code
from worker.errors import LowDisk, free_space
from worker.queues import (
    BUILD_FUNCTION,
    SERIALIZER,
    AllowlistJob,
    build_queue_name,
    connect,
    runs_on,
)
from worker.targets import parse_target
from worker.wheel import UNREADABLE, BadWheel, WheelInfo, ZipLimits, inspect_wheel
from worker.wire import BadJob, BadReport, BuildJob, BuildReport

log = logging.getLogger("publish.intake")

MAX_REPORT = 1024 * 1024
MAX_LOG = 8 * 1024 * 1024
DRAIN = 64 * 1024 * 1024  # bytes of a refused body read anyway, so the client hears why


class Refused(Exception):
    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status, self.reason = status, reason


@dataclass
class Upload:
    filename: str
    tmp: Path
    size: int
    sha256: str


@dataclass
class Copy:
    """A pushed abi3 or pure wheel whose name another ABI built first: this ABI's
    release keeps its own (see Intake._as_copy)."""

    upload: Upload
    wheel: WheelInfo
    record: catalogue.WheelCopy
    first_sha256: str  # of the first build's file, in www/simple/
    codename: str  # of the release whose index lists this copy


def _authenticate(header: str, tokens: dict[str, str]) -> str:
    """The worker whose token the header carries. Every token is compared, each in
    constant time, so the time taken tells nothing of which one came close."""
    scheme, _, token = header.partition(" ")
    matched = [name for name, expected in tokens.items()
               if hmac.compare_digest(token.encode(), expected.encode())]
    if scheme.lower() == "bearer" and token and matched:
        return matched[0]
    raise Refused(401, "bad or missing token")


def _parse_report(raw: bytes, worker: str, abis: tuple[str, ...]) -> BuildReport:
    """The report, checked by its own rule (worker.wire) and against what this farm
    builds; its `worker` is the name the push's token authenticates, whatever it says."""
    try:
        report = BuildReport.from_json(raw)
    except BadReport as error:
        raise Refused(400, f"malformed report: {error}") from None
    if report.abi not in abis:
        raise Refused(400, f"we do not build for ABI {report.abi!r}")
    machine = report.machine
    if machine is not None and not is_machine_of(machine.name, worker):
        log.warning("%s reported its machine as %r: recorded as %s", worker, machine.name,
                    worker)
        machine = dataclasses.replace(machine, name=worker)
    return dataclasses.replace(report, worker=worker, machine=machine)


def is_machine_of(name: str, worker: str) -> bool:
    """Whether a worker authenticated as `worker` may record builds under machine
    `name`: its own name, or a builder of its own (a chroot: `<worker>-armhf-bookworm`)."""
    return name == worker or name.startswith(f"{worker}-")


def _receive(part: bottle.FileUpload, directory: Path, limit: int) -> Upload:
    """Stream one uploaded file to a temporary file, hashing it on the way."""
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-")
    digest, size = hashlib.sha256(), 0
    with os.fdopen(fd, "wb") as out:
        while chunk := part.file.read(1 << 20):
            size += len(chunk)
            if size > limit:
                out.close()
                os.unlink(tmp)
                raise Refused(413, "upload too large")
            digest.update(chunk)
            out.write(chunk)
    return Upload(part.raw_filename, Path(tmp), size, digest.hexdigest())


class Intake:
    def __init__(self, config: Settings, limits: ZipLimits | None = None):
        self.config = config
        self.www = config.www_dir
        self.incoming = config.data_dir / "incoming"  # same file system as www/
        self.tokens = config.worker_tokens
        self.limits = limits or ZipLimits()
        self.app = bottle.Bottle()
        self.app.post("/builds", callback=self.receive_build)
        self.app.get("/health", callback=lambda: {"ok": True})

    def receive_build(self):
        request, response = bottle.request, bottle.response
        uploads: list[Upload] = []
        worker = None
        try:
            worker = _authenticate(request.get_header("Authorization", ""), self.tokens)
            self._check_room()
            length = request.content_length
            if length < 0:
                raise Refused(411, "Content-Length required")
            if length > self.config.max_upload:
                _drain(request.environ["wsgi.input"], min(length, DRAIN))
                raise Refused(413, f"push larger than {self.config.max_upload} bytes")
            report_part = request.files.get("report")
            if report_part is None:
                raise Refused(400, "no report")
            report = _parse_report(report_part.file.read(MAX_REPORT + 1)[:MAX_REPORT],
                                   worker, self.config.abis)
            self._check_job(report)
            self._check_release(report)
            self._receive_wheels(report, uploads)
            result = self._accept(report, uploads)
            response.status = 200
            return result
        except Refused as refused:
            log.warning("refused a push from %s: %d %s", worker or "an unknown worker",
                        refused.status, refused.reason)
            response.status = refused.status
            return {"error": refused.reason}
        finally:
            for upload in uploads:
                upload.tmp.unlink(missing_ok=True)

    def _check_room(self) -> None:
        """Refuse pushes with 507 while the data directory's file system has less
        free space than WHEELWRIGHT_MIN_FREE_MB: a wheel, its log or the catalogue
        would fail half-written. Workers retry a 507 later, as any 5xx."""
        minimum = self.config.min_free_mb * 2**20
        if minimum and (free := free_space(self.config.data_dir)) < minimum:
            raise Refused(507, str(LowDisk(self.config.data_dir, free, minimum)))

    def _check_job(self, report: BuildReport) -> None:
        """A push answers a build job that this worker runs now: a token alone, if it
        leaked, cannot replace another project's files."""
        refused = Refused(403, f"job {report.job_id} is not a build of {report.project} "
                               f"{report.version} for {report.abi} that {report.worker} "
                               "is running")
        registry = StartedJobRegistry(build_queue_name(report.abi), connection=self.redis,
                                      job_class=AllowlistJob, serializer=SERIALIZER)
        if report.job_id not in registry:
            raise refused
        try:
            job = AllowlistJob.fetch(report.job_id, connection=self.redis,
                                     serializer=SERIALIZER)
        except NoSuchJobError:
            raise refused from None
        if job.refusal or job.func_name != BUILD_FUNCTION or not _asks_for(job, report) or \
                job.get_status() != JobStatus.STARTED or \
                not runs_on(job.worker_name, report.worker, report.abi):
            raise refused

    @functools.cached_property
    def redis(self) -> Redis:
        return connect(self.config.effective_redis_url, wait=5)

    def _check_release(self, report: BuildReport) -> None:
        """A live release, and not one an operator skipped (or withdrew, or whose
        maintainer opted out): a build under way when they did lands nothing."""
        with _catalogue(self.config) as conn:
            known = conn.execute(
                "SELECT COALESCE(p.skip_reason, v.skip_reason, (SELECT s.reason FROM skips s "
                "WHERE s.project = v.project AND s.version IN (v.version, '') "
                "AND s.abi = ? AND s.source = 'operator')) FROM live_versions v "
                "JOIN live_projects p ON p.name = v.project "
                "WHERE v.project = ? AND v.version = ?",
                (report.abi, report.project, report.version),
            ).fetchone()
        if not known:
            raise Refused(409, f"{report.project} {report.version} is not a release we build")
        if known[0] is not None:
            raise Refused(409, f"{report.project} {report.version} is skipped by an operator "
                               f"({known[0]})")

    def _receive_wheels(self, report: BuildReport, uploads: list[Upload]) -> None:
        """Stream the wheels into `uploads` (the caller removes them whatever happens)."""
        parts = bottle.request.files.getall("wheel")
        expected = {f.filename: f for f in report.files}
        if sorted(p.raw_filename for p in parts) != sorted(expected):
            raise Refused(400, "uploaded wheels differ from the report's files")
        self.incoming.mkdir(parents=True, exist_ok=True)
        for part in parts:
            upload = _receive(part, self.incoming, self.config.max_upload)
            uploads.append(upload)
            claimed = expected[upload.filename]
            if (upload.size, upload.sha256) != (claimed.size, claimed.sha256):
                raise Refused(400, f"{upload.filename}: size or sha256 differs from the report")

    def _accept(self, report: BuildReport, uploads: list[Upload],
                log_text: bytes | None = None) -> dict:
        rebuild = self._rebuild_requested(report)
        wheels: list[WheelInfo] = []
        placed: list[Upload] = []
        differing: list[catalogue.DifferingPush] = []
        copies: list[Copy] = []
        for upload in uploads:
            try:
                wheel = inspect_wheel(upload.tmp, report.project, report.version,
                                      upload.filename, self.limits)
            except BadWheel as error:
                raise Refused(422, f"{upload.filename}: {error}") from None
            copy = self._as_copy(report, wheel, upload, rebuild)
            if isinstance(copy, catalogue.DifferingPush):
                differing.append(copy)
                continue
            if copy is not None:
                copies.append(copy)
                continue
            target = inside(self.www, "simple", report.project, upload.filename)
            served = sha256_of(target) if target.exists() else None
            if served is not None and served != upload.sha256 and rebuild \
                    and not self._built_by_another_abi(report, wheel):
                served = None  # an operator asked for this build to be replaced
            if served is not None and served != upload.sha256:
                # The served file stays: installers and lockfiles already know its
                # hash. A rebuild of ours that did not reproduce it is recorded and
                # shown, and answered 200, since the build itself succeeded.
                if not self._built_by_another_abi(report, wheel):
                    differing.append(catalogue.DifferingPush(
                        filename=upload.filename, sha256=upload.sha256, size=upload.size,
                        project=report.project, version=report.version, abi=report.abi,
                        worker=report.worker, served_sha256=served))
                continue  # a pure or abi3 wheel another ABI built first: keep that one
            wheels.append(wheel)
            placed.append(upload)
        report = self._with_own_verdicts(report, [*placed, *(c.upload for c in copies)])
        compiled = {upload.filename: self._compiled(upload, wheel)
                    for upload, wheel in zip(placed, wheels, strict=True)}
        if log_text is None:
            part = bottle.request.files.get("log")
            log_text = part.file.read(MAX_LOG) if part is not None else b""
        failure = self._failure(report, log_text)
        log_path = self._store_log(report, log_text)
        for upload, wheel in zip(placed, wheels, strict=True):
            target = inside(self.www, "simple", report.project, upload.filename)
            target.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(target.with_name(target.name + ".metadata"), wheel.metadata)
            os.chmod(upload.tmp, 0o644)
            os.replace(upload.tmp, target)
        kept = self._place_copies(report, copies)
        with _catalogue(self.config) as conn:
            catalogue.record_build(conn, report, wheels, log_path, kept, failure=failure,
                                   compiled=compiled)
            if rebuild:
                catalogue.clear_rebuild(conn, report.project, report.version, report.abi)
            for push in differing:
                catalogue.record_differing_push(conn, push)
        for push in differing:
            log.warning("%s from %s differs from the file served under that name "
                        "(sha256 %s, served %s): kept the served one", push.filename,
                        report.worker, push.sha256, push.served_sha256)
        log.info("recorded a %s build of %s %s for %s from %s (%s)", report.status,
                 report.project, report.version, report.abi, report.worker, report.job_id)
        request_publish(self.redis, {report.project})
        return {"recorded": f"{report.project} {report.version} {report.abi}",
                "status": report.status, "files": [u.filename for u in uploads],
                "differs": [{"filename": d.filename, "sha256": d.sha256,
                             "served_sha256": d.served_sha256} for d in differing]}

    def _with_own_verdicts(self, report: BuildReport, uploads: list[Upload]) -> BuildReport:
        """The report with our own reading of where each wheel runs (a Pi Zero/1 or
        not: worker.elf) in place of the worker's, which we only compare with it: a
        disagreement is a worker running other code than ours, worth a warning, not a
        refusal (every Pi would otherwise have to be upgraded with the intake)."""
        verdicts = {}
        for upload in uploads:
            try:
                verdict = armv6_of_wheel(upload.tmp, self.incoming)
            except UNREADABLE as error:
                raise Refused(422, f"{upload.filename}: {error}") from None
            verdicts[upload.filename] = verdict.runs
        files = []
        for file in report.files:
            if file.filename in verdicts and verdicts[file.filename] != file.armv6:
                log.warning("%s from %s: the worker says armv6 %s, its ELF files say %s",
                            file.filename, report.worker, file.armv6, verdicts[file.filename])
            files.append(dataclasses.replace(file, armv6=verdicts.get(file.filename)))
        return dataclasses.replace(report, files=files)

    def _as_copy(self, report: BuildReport, wheel: WheelInfo, upload: Upload,
                 rebuild: bool) -> Copy | catalogue.DifferingPush | None:
        """An abi3 or pure wheel whose name another ABI built first, from an ABI
        whose release has an index of its own, is that release's copy: listed by
        its index alone, and kept apart when its bytes differ (built against
        another glibc and libraries, one index could not serve both truthfully).
        A copy this ABI pushed before with other bytes stays, as a served file
        does (unless an operator asked for a rebuild): the push is a differing
        one. None for every other wheel."""
        if not set(wheel.abi_tag.split(".")) <= {"none", "abi3"}:
            return None
        release = RELEASE_INDEXES.get(report.abi)
        if release is None:
            return None  # no index of its own: the first build's file serves it
        with _catalogue(self.config) as conn:
            built = built_name(conn, wheel.filename)
        if built is None or built.builder_abi == report.abi:
            return None
        if RELEASE_INDEXES.get(built.builder_abi) is release and built.sha256 != upload.sha256:
            # The release's other image built the name first: its index has room for
            # one file under the name, and that one is served.
            return catalogue.DifferingPush(
                filename=upload.filename, sha256=upload.sha256, size=upload.size,
                project=report.project, version=report.version, abi=report.abi,
                worker=report.worker, served_sha256=built.sha256)
        kept = built.copies.get(report.abi)
        if kept is not None and kept != upload.sha256 and not rebuild:
            return catalogue.DifferingPush(
                filename=upload.filename, sha256=upload.sha256, size=upload.size,
                project=report.project, version=report.version, abi=report.abi,
                worker=report.worker, served_sha256=kept)
        file = next(f for f in report.files if f.filename == upload.filename)
        record = catalogue.WheelCopy(
            filename=upload.filename, builder_abi=report.abi, project=report.project,
            version=report.version, size=upload.size, sha256=upload.sha256,
            requires_python=wheel.requires_python,
            metadata_sha256=hashlib.sha256(wheel.metadata).hexdigest(), armv6=None,
            apt=tuple(sorted(set(file.apt_dependencies) - set(file.apt_preinstalled))))
        return Copy(upload, wheel, record, built.sha256, release.codename)

    def _place_copies(self, report: BuildReport, copies: list[Copy]
                      ) -> list[catalogue.WheelCopy]:
        """Other bytes go to www/<codename>/simple/<project>/; the same bytes as the
        first build need no file of their own (the release's index links to
        /simple/'s), and one kept before for other bytes goes. The records, with
        our own armv6 verdicts (the report's, see _with_own_verdicts)."""
        verdicts = {f.filename: f.armv6 for f in report.files}
        records = []
        for copy in copies:
            target = inside(self.www, copy.codename, "simple", report.project,
                            copy.upload.filename)
            metadata = target.with_name(target.name + ".metadata")
            if copy.record.sha256 == copy.first_sha256:
                target.unlink(missing_ok=True)
                metadata.unlink(missing_ok=True)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                write_atomic(metadata, copy.wheel.metadata)
                os.chmod(copy.upload.tmp, 0o644)
                os.replace(copy.upload.tmp, target)
                log.info("%s from %s differs from its first build (sha256 %s): kept for "
                         "the %s index", copy.upload.filename, report.abi,
                         copy.first_sha256, copy.codename)
            records.append(dataclasses.replace(copy.record,
                                               armv6=verdicts.get(copy.upload.filename)))
        return records

    def _built_by_another_abi(self, report: BuildReport, wheel: WheelInfo) -> bool:
        if not set(wheel.abi_tag.split(".")) <= {"none", "abi3"}:
            return False
        with _catalogue(self.config) as conn:
            row = conn.execute("SELECT builder_abi FROM wheels WHERE filename = ?",
                               (wheel.filename,)).fetchone()
        return row is not None and row[0] != report.abi

    def _rebuild_requested(self, report: BuildReport) -> bool:
        """Whether an operator asked for this build to be replaced (ingest.admin
        rebuild): its push then replaces served files of other bytes."""
        with _catalogue(self.config) as conn:
            return conn.execute("SELECT 1 FROM rebuilds WHERE project = ? AND version = ? "
                                "AND abi = ?", (report.project, report.version,
                                                report.abi)).fetchone() is not None

    def import_wheels(self, report: BuildReport, paths: list[Path], log_text: bytes) -> dict:
        """An operator's import (python -m ingest admin import) of wheels built
        elsewhere: checked as a push is (the report's rule, a release we build for an
        ABI we build, size and sha256, the wheel as an untrusted zip, METADATA), but
        answering no job. Refused if not, leaving nothing behind."""
        if report.abi not in self.config.abis:
            raise Refused(400, f"we do not build for ABI {report.abi!r}")
        self._check_release(report)
        expected = {f.filename: f for f in report.files}
        if sorted(p.name for p in paths) != sorted(expected):
            raise Refused(400, "the wheels differ from the report's files")
        self.incoming.mkdir(parents=True, exist_ok=True)
        uploads: list[Upload] = []
        try:
            for path in paths:
                with path.open("rb") as stream:
                    upload = _receive(bottle.FileUpload(stream, "wheel", path.name),
                                      self.incoming, self.config.max_upload)
                uploads.append(upload)
                claimed = expected[upload.filename]
                if (upload.size, upload.sha256) != (claimed.size, claimed.sha256):
                    raise Refused(400, f"{upload.filename}: size or sha256 differs from "
                                       "the report")
            return self._accept(report, uploads, log_text)
        finally:
            for upload in uploads:
                upload.tmp.unlink(missing_ok=True)

    def _compiled(self, upload: Upload, wheel: WheelInfo) -> bool | None:
        """Whether the wheel holds compiled code, read from the file as the armv6
        verdict is (the worker is not asked): see compiled_code."""
        try:
            with zipfile.ZipFile(upload.tmp) as archive:
                return compiled_code(wheel, archive)
        except UNREADABLE as error:
            raise Refused(422, f"{upload.filename}: {error}") from None

    def _failure(self, report: BuildReport, log_text: bytes) -> Failure | None:
        """Why a failed build failed, from its log; for a missing file, the Debian
        package that has it, when the Contents index of the build's Debian release
        is cached (publish.contents: built by `python -m publish contents`, never
        fetched during a push, which must not wait on a mirror)."""
        if report.status != "failed":
            return None
        contents = cached_contents(self.config.data_dir, report.abi)
        try:
            return classify(log_text.decode("utf-8", "replace"), contents)
        except Exception:  # noqa: BLE001 - the reason is a note on the build, which
            # must be recorded whatever a stranger's log does to the classifier
            log.exception("could not classify the log of %s %s for %s", report.project,
                          report.version, report.abi)
            return None
        finally:
            if contents is not None:
                contents.close()

    def _store_log(self, report: BuildReport, text: bytes) -> str:
        relative = f"logs/{report.project}/{report.version}/{report.abi}.txt.gz"
        write_atomic(inside(self.www, relative), gzip.compress(text, mtime=0))
        return relative


def cached_contents(data_dir: Path, abi: str) -> Contents | None:
    """The cached Contents index of the Debian release and architecture that build
    target `abi` (armhf for a 32-bit target, arm64 for a 64-bit one: see
    publish.contents.cache_path), or None when none is cached or the target is no
    release's: looked at, never downloaded. Without the target's own architecture,
    another's index of the release will do: it names nearly all the same headers,
    tools and libraries (their packages are built for both)."""
    release = RELEASE_INDEXES.get(abi)
    if release is None:
        return None
    preferred = cache_path(data_dir, release.codename, parse_target(abi).debian_arch)
    others = sorted(preferred.parent.glob(f"{release.codename}-*.db"))
    for path in [preferred, *others]:
        try:
            return Contents(path)
        except (OSError, sqlite3.DatabaseError):
            continue
    return None


def _asks_for(job: AllowlistJob, report: BuildReport) -> bool:
    """Whether the job's arguments name the build the report is of (with or without
    the release time: see BuildJob)."""
    try:
        asked = BuildJob.from_args(*job.args)
    except (BadJob, TypeError):
        return False
    return (asked.project, asked.version, asked.abi) == \
        (report.project, report.version, report.abi)


def _drain(stream, count: int) -> None:
    while count > 0 and (chunk := stream.read(min(count, 1 << 20))):
        count -= len(chunk)


def _catalogue(config: Settings) -> closing[sqlite3.Connection]:
    """A connection per request: the server runs requests in threads."""
    return closing(catalogue.connect(config.catalogue_path))
