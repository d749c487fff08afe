"""The intake: where workers push builds. It trusts nothing a worker sends."""

from __future__ import annotations

import gzip
import hashlib
import hmac
import json
import os
import re
import sqlite3
import tempfile
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import bottle

from ingest import catalogue
from ingest.scheduler import request_publish
from publish.builds import BuildReport, ReportedFile, record_build
from publish.files import inside, write_atomic
from publish.wheel import BadWheel, WheelInfo, ZipLimits, check_filename, inspect_wheel
from worker.build import sha256_of
from worker.queues import connect
from worker.settings import Settings

PROJECT_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,198}[a-z0-9])?$")
VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+!-]{0,99}$")
ABI_RE = re.compile(r"^[a-z0-9_]{1,32}$")
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
APT_RE = re.compile(r"^[a-z0-9][a-z0-9+.-]{0,99}(?::[a-z0-9]{1,16})?$")  # Debian's rule
SONAME_RE = re.compile(r"^[A-Za-z0-9_+.@-]{1,255}$")
MAX_REPORT = 1024 * 1024
MAX_LOG = 8 * 1024 * 1024
MAX_NAMES = 1000  # dependencies or sonames listed for one file
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


def _authenticate(header: str, tokens: dict[str, str]) -> str:
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token:
        for name, expected in tokens.items():
            if hmac.compare_digest(token.encode(), expected.encode()):
                return name
    raise Refused(401, "bad or missing token")


def _names(value, pattern: re.Pattern, what: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or len(value) > MAX_NAMES:
        raise Refused(400, f"{what} is a list of at most {MAX_NAMES} names")
    for name in value:
        if not isinstance(name, str) or not pattern.match(name):
            raise Refused(400, f"bad name in {what}: {name!r}")
    return value


def _reported_file(f: dict) -> ReportedFile:
    requires_python = f.get("requires_python")
    if requires_python is not None and not isinstance(requires_python, str):
        raise Refused(400, "requires_python is a string or null")
    return ReportedFile(
        filename=str(f["filename"]), size=int(f["size"]), sha256=str(f["sha256"]),
        requires_python=requires_python,
        apt_dependencies=_names(f.get("apt_dependencies"), APT_RE, "apt_dependencies"),
        apt_preinstalled=_names(f.get("apt_preinstalled"), APT_RE, "apt_preinstalled"),
        unresolved_sonames=_names(f.get("unresolved_sonames"), SONAME_RE,
                                  "unresolved_sonames"),
    )


def _parse_report(raw: bytes, worker: str, abis: tuple[str, ...]) -> BuildReport:
    try:
        data = json.loads(raw)
        files = [_reported_file(f) for f in data.get("files", [])]
        report = BuildReport(
            project=str(data["project"]), version=str(data["version"]), abi=str(data["abi"]),
            status=str(data["status"]), duration=float(data.get("duration", 0.0)),
            worker=worker, files=files,
        )
    except (ValueError, KeyError, TypeError) as error:
        raise Refused(400, f"malformed report: {error}") from None
    if not PROJECT_RE.match(report.project):
        raise Refused(400, "project must be a canonical name")
    if not VERSION_RE.match(report.version):
        raise Refused(400, "bad version")
    if not ABI_RE.match(report.abi) or report.abi not in abis:
        raise Refused(400, f"we do not build for ABI {report.abi!r}")
    if report.status not in ("success", "failed"):
        raise Refused(400, "status is success or failed")
    if report.status == "success" and not report.files:
        raise Refused(400, "a successful build has wheels")
    if report.status == "failed" and report.files:
        raise Refused(400, "a failed build has no wheels")
    if len({f.filename for f in report.files}) != len(report.files):
        raise Refused(400, "a file is listed twice")
    for f in report.files:
        if not SHA256_RE.match(f.sha256) or f.size < 0:
            raise Refused(400, f"bad size or sha256 for {f.filename!r}")
    return report


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
        try:
            worker = _authenticate(request.get_header("Authorization", ""), self.tokens)
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
            self._check_release(report)
            self._receive_wheels(report, uploads)
            result = self._accept(report, uploads)
            response.status = 200
            return result
        except Refused as refused:
            response.status = refused.status
            return {"error": refused.reason}
        finally:
            for upload in uploads:
                upload.tmp.unlink(missing_ok=True)

    def _check_release(self, report: BuildReport) -> None:
        with _catalogue(self.config) as conn:
            known = conn.execute(
                "SELECT 1 FROM live_versions WHERE project = ? AND version = ?",
                (report.project, report.version),
            ).fetchone()
        if not known:
            raise Refused(409, f"{report.project} {report.version} is not a release we build")

    def _receive_wheels(self, report: BuildReport, uploads: list[Upload]) -> None:
        """Stream the wheels into `uploads` (the caller removes them whatever happens)."""
        parts = bottle.request.files.getall("wheel")
        expected = {f.filename: f for f in report.files}
        if sorted(p.raw_filename for p in parts) != sorted(expected):
            raise Refused(400, "uploaded wheels differ from the report's files")
        for part in parts:
            try:
                _, abi, _ = check_filename(part.raw_filename, report.project, report.version)
            except BadWheel as error:
                raise Refused(400, str(error)) from None
            if not set(abi.split(".")) <= {report.abi, "none", "abi3"}:
                raise Refused(400, f"{part.raw_filename} is not a wheel for {report.abi}")
        self.incoming.mkdir(parents=True, exist_ok=True)
        for part in parts:
            upload = _receive(part, self.incoming, self.config.max_upload)
            uploads.append(upload)
            claimed = expected[upload.filename]
            if (upload.size, upload.sha256) != (claimed.size, claimed.sha256):
                raise Refused(400, f"{upload.filename}: size or sha256 differs from the report")

    def _accept(self, report: BuildReport, uploads: list[Upload]) -> dict:
        wheels: list[WheelInfo] = []
        placed: list[Upload] = []
        for upload in uploads:
            try:
                wheel = inspect_wheel(upload.tmp, upload.filename, report.project,
                                      report.version, self.limits)
            except BadWheel as error:
                raise Refused(422, f"{upload.filename}: {error}") from None
            target = inside(self.www, "simple", report.project, upload.filename)
            if target.exists() and sha256_of(target) != upload.sha256:
                if not self._built_by_another_abi(report, wheel):
                    raise Refused(409, f"{upload.filename} exists with other contents")
                continue  # a pure or abi3 wheel another ABI built first: keep that one
            wheels.append(wheel)
            placed.append(upload)
        log_path = self._store_log(report)
        for upload, wheel in zip(placed, wheels, strict=True):
            target = inside(self.www, "simple", report.project, upload.filename)
            target.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(target.with_name(target.name + ".metadata"), wheel.metadata)
            os.chmod(upload.tmp, 0o644)
            os.replace(upload.tmp, target)
        with _catalogue(self.config) as conn:
            record_build(conn, report, wheels, log_path)
        request_publish(connect(self.config.effective_redis_url, wait=5), {report.project})
        return {"recorded": f"{report.project} {report.version} {report.abi}",
                "status": report.status, "files": [u.filename for u in uploads]}

    def _built_by_another_abi(self, report: BuildReport, wheel: WheelInfo) -> bool:
        if not set(wheel.abi_tag.split(".")) <= {"none", "abi3"}:
            return False
        with _catalogue(self.config) as conn:
            row = conn.execute("SELECT builder_abi FROM wheels WHERE filename = ?",
                               (wheel.filename,)).fetchone()
        return row is not None and row[0] != report.abi

    def _store_log(self, report: BuildReport) -> str:
        part = bottle.request.files.get("log")
        text = part.file.read(MAX_LOG) if part is not None else b""
        relative = f"logs/{report.project}/{report.version}/{report.abi}.txt.gz"
        write_atomic(inside(self.www, relative), gzip.compress(text, mtime=0))
        return relative


def _drain(stream, count: int) -> None:
    while count > 0 and (chunk := stream.read(min(count, 1 << 20))):
        count -= len(chunk)


def _catalogue(config: Settings) -> closing[sqlite3.Connection]:
    """A connection per request: the server runs requests in threads."""
    return closing(catalogue.connect(config.catalogue_path))
