"""`python -m ingest admin <command>`: what an operator does by hand, without SQL.

Each command reads and writes the catalogue through ingest.catalogue, queues builds
the way the scheduler does (ingest.scheduler.build_job_data: the same job ids, so a
release never has two jobs), and asks the publisher to rewrite the pages it changes.
An unknown project, release or ABI is said in one line, with exit status 2; a
command that cannot do what it is asked says why, with exit status 1."""

from __future__ import annotations

import argparse
import re
import sqlite3
import sys
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import requests
from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename
from packaging.version import InvalidVersion, Version
from redis import Redis
from rq.exceptions import NoSuchJobError
from rq.job import JobStatus
from rq.registry import FailedJobRegistry

from ingest import catalogue, reconcile
from ingest.coverage import coverage
from ingest.scheduler import (
    admits,
    build_job_data,
    build_queue,
    job_status,
    make_way,
    release_times,
    request_publish,
)
from ingest.settings import Settings
from worker.build import sha256_of
from worker.elf import compiled_code
from worker.names import is_project_name
from worker.queues import SERIALIZER, AllowlistJob, build_job_id, connect
from worker.targets import tag_target_key
from worker.wheel import UNREADABLE, BadWheel, inspect_wheel
from worker.wire import BadJob, BadReport, BuildJob, BuildReport

REMOVED = "withdrawn by an operator"
OPTED_OUT = "its maintainer asked us not to build it"
IMPORTER = "operator-import"  # the worker an imported wheel's build is recorded under


class AdminError(Exception):
    """A command that cannot go on: one line for the operator, and an exit status
    (2: an unknown project, release or ABI; 1: anything else)."""

    def __init__(self, message: str, status: int = 1):
        super().__init__(message)
        self.status = status


@dataclass
class Release:
    project: str  # canonical
    version: str
    incarnation: int  # see worker.queues.build_job_id
    requires_python: str | None


@dataclass
class Admin:
    """One command's connections, opened when first used."""

    config: Settings
    _conn: sqlite3.Connection | None = None
    _redis: Redis | None = None

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            self._conn = catalogue.connect(self.config.catalogue_path)
        return self._conn

    @property
    def redis(self) -> Redis:
        if self._redis is None:
            self._redis = connect(self.config.effective_redis_url, wait=5)
        return self._redis

    @property
    def abis(self) -> list[str]:
        """The ABIs we build now (WHEELWRIGHT_ABIS less the disabled ones)."""
        return [a for a in self.config.abis if a not in self.config.disabled_abis]

    def abi(self, abi: str) -> str:
        if abi not in self.abis:
            raise AdminError(f"unknown ABI {abi!r}: we build {', '.join(self.abis)}", 2)
        return abi

    # --- the catalogue, read ---------------------------------------------------------

    def project(self, name: str) -> sqlite3.Row:
        """The live project `name` (any spelling), or AdminError."""
        canonical = canonicalize_name(name)
        row = None
        if is_project_name(canonical):
            row = self.conn.execute("SELECT name, skip_reason, opted_out_at FROM live_projects "
                                    "WHERE name = ?", (canonical,)).fetchone()
        if row is None:
            raise AdminError(f"unknown project {name!r}: the catalogue has no such project", 2)
        return row

    def releases(self, project: str, version: str | None = None) -> list[Release]:
        """The live releases of a project (or the one named), newest first."""
        sql = ("SELECT v.version, MAX(v.removed_key, p.deleted_key), v.requires_python "
               "FROM live_versions v JOIN projects p ON p.name = v.project "
               "WHERE v.project = ?")
        args: tuple = (project,)
        if version is not None:
            sql, args = sql + " AND v.version = ?", (project, version)
        rows = self.conn.execute(sql + " ORDER BY v.released DESC, v.version DESC", args)
        return [Release(project, r[0], r[1], r[2]) for r in rows]

    def release(self, project: str, version: str | None) -> Release:
        """The live release named, or the newest when `version` is None."""
        found = self.releases(project, version)
        if not found:
            what = f"no release {version!r}" if version else "no live release"
            raise AdminError(f"unknown version: {project} has {what}", 2)
        return found[0]

    def skipped(self, release: Release, abi: str | None) -> str | None:
        """Why the release is skipped (for the ABI, or as a whole), or None."""
        row = self.conn.execute(
            "SELECT COALESCE(p.skip_reason, v.skip_reason, (SELECT s.reason FROM skips s "
            "WHERE s.project = v.project AND s.version IN (v.version, '') AND s.abi = ?)) "
            "FROM versions v JOIN projects p ON p.name = v.project "
            "WHERE v.project = ? AND v.version = ?",
            (abi or "", release.project, release.version)).fetchone()
        return row[0] if row else None

    def build(self, release: Release, abi: str) -> str | None:
        """The status of the release's live build for the ABI, or None."""
        row = self.conn.execute("SELECT status FROM live_builds WHERE project = ? "
                                "AND version = ? AND abi = ?",
                                (release.project, release.version, abi)).fetchone()
        return row[0] if row else None

    # --- the queues --------------------------------------------------------------------

    def job_id(self, release: Release, abi: str) -> str:
        return build_job_id(release.project, release.version, abi, release.incarnation)

    def job_status(self, job_id: str) -> str | None:
        return job_status(self.redis, job_id)

    def make_way(self, release: Release, abi: str) -> str | None:
        """None when nothing stands in the way of a new job for the build (see
        ingest.scheduler.make_way); otherwise the status of the job that does."""
        return make_way(self.redis, self.job_id(release, abi))

    def enqueue(self, release: Release, abi: str, at_front: bool) -> None:
        released = release_times(self.conn, [(release.project, release.version)])
        job = BuildJob(release.project, release.version, abi,
                       released[release.project, release.version])
        # The timeout `ingest follow` gives its jobs: the build's, and time to push.
        build_queue(self.redis, abi).enqueue_many([build_job_data(
            job, release.incarnation, self.config.build_timeout + 600,
            self.config.build_retries, at_front)])

    def drop_queued(self, releases: list[Release], abis: list[str]) -> int:
        """Delete the waiting jobs of these builds (a running one finishes, and the
        intake refuses its push: see publish.intake); how many were dropped."""
        dropped = 0
        for release in releases:
            for abi in abis:
                if self.job_status(self.job_id(release, abi)) == JobStatus.QUEUED.value:
                    AllowlistJob.fetch(self.job_id(release, abi), connection=self.redis,
                                       serializer=SERIALIZER).delete()
                    dropped += 1
        return dropped

    def clear_over(self, releases: list[Release], abis: list[str]) -> None:
        """Delete the finished and failed jobs of these builds when they have no live
        build: the scheduler queues no build whose job still exists."""
        for release in releases:
            for abi in abis:
                if self.build(release, abi) is None:
                    self.make_way(release, abi)

    def publish(self, project: str) -> None:
        request_publish(self.redis, {project})


# --- the commands ------------------------------------------------------------------------

def cmd_add(args: argparse.Namespace, admin: Admin) -> None:
    project = admin.project(args.project)["name"]
    release = admin.release(project, args.version)
    for abi in [admin.abi(args.abi)] if args.abi else admin.abis:
        where = f"{project} {release.version} for {abi}"
        if why := _not_buildable(admin, release, abi):
            print(f"{where}: not queued: {why}")
            continue
        status = admin.make_way(release, abi)
        if status == JobStatus.QUEUED.value:
            queue, job_id = build_queue(admin.redis, abi), admin.job_id(release, abi)
            with admin.redis.pipeline() as pipe:
                queue.remove(job_id, pipeline=pipe)
                queue.push_job_id(job_id, pipeline=pipe, at_front=True)
                pipe.execute()
            print(f"{where}: moved to the front of {queue.name}")
        elif status is not None:
            print(f"{where}: not queued: its job is {status} already")
        else:
            admin.enqueue(release, abi, at_front=True)
            print(f"{where}: queued at the front of build-{abi}")


def _not_buildable(admin: Admin, release: Release, abi: str) -> str | None:
    """Why the scheduler would not build the release for the ABI, or None."""
    if reason := admin.skipped(release, abi):
        return f"skipped: {reason}"
    if status := admin.build(release, abi):
        other = "rebuild" if status == "success" else "retry-failed or rebuild"
        return f"built already ({status}); `{other}` builds it again"
    files = admin.conn.execute("SELECT filename, kind FROM live_files WHERE project = ? "
                               "AND version = ?", (release.project, release.version)).fetchall()
    if not any(kind == "source" for _, kind in files):
        return "no source distribution on PyPI"
    if not admits(release.requires_python, abi):
        return f"Requires-Python {release.requires_python} rules out {abi}"
    found = coverage(abi, [name for name, kind in files if kind == "binary"])
    return found.reason if found.complete else None


def cmd_skip(args: argparse.Namespace, admin: Admin) -> None:
    row = admin.project(args.project)
    project = row["name"]
    if args.version is not None:
        admin.release(project, args.version)
    elif row["opted_out_at"] and args.abi is None:
        raise AdminError(f"{project} is opted out by its maintainer; `opt-in` first")
    abi = admin.abi(args.abi) if args.abi else None
    catalogue.set_operator_skip(admin.conn, catalogue.OperatorSkip(
        project, args.version, abi, args.reason))
    dropped = admin.drop_queued(admin.releases(project, args.version),
                                [abi] if abi else admin.abis)
    admin.publish(project)
    print(f"{_target(project, args.version, abi)}: skipped ({args.reason}); "
          f"{dropped} waiting jobs dropped")


def cmd_unskip(args: argparse.Namespace, admin: Admin) -> None:
    row = admin.project(args.project)
    project = row["name"]
    if args.version is not None:
        release = admin.release(project, args.version)
    abi = admin.abi(args.abi) if args.abi else None
    where = _target(project, args.version, abi)
    if abi is not None:
        current = admin.conn.execute(
            "SELECT reason FROM skips WHERE project = ? AND version = ? AND abi = ? "
            "AND source = 'operator'", (project, args.version or "", abi)).fetchone()
    elif args.version is not None:
        current = admin.conn.execute("SELECT skip_reason FROM versions WHERE project = ? "
                                     "AND version = ?", (project, release.version)).fetchone()
    else:
        if row["opted_out_at"]:
            raise AdminError(f"{project} is opted out by its maintainer; `opt-in` undoes it")
        current = (row["skip_reason"],)
    if current is None or current[0] is None:
        print(f"{where}: no skip of an operator's to take away")
        return
    catalogue.set_operator_skip(admin.conn, catalogue.OperatorSkip(project, args.version, abi))
    admin.clear_over(admin.releases(project, args.version), [abi] if abi else admin.abis)
    admin.publish(project)
    print(f"{where}: unskipped (was: {current[0]}); the scheduler queues what it lacks "
          "on its next pass, `add` now")


def _target(project: str, version: str | None, abi: str | None) -> str:
    return " ".join(filter(None, [project, version, abi and f"for {abi}"]))


def cmd_remove(args: argparse.Namespace, admin: Admin) -> None:
    row = admin.project(args.project)
    project = row["name"]
    if args.version is not None:
        admin.release(project, args.version)
    elif row["opted_out_at"]:
        raise AdminError(f"{project} is opted out by its maintainer: its files are "
                         "withdrawn already")
    sql, params = "SELECT COUNT(*) FROM wheels WHERE project = ?", [project]
    if args.version is not None:
        sql, params = sql + " AND version = ?", [project, args.version]
    files = admin.conn.execute(sql, params).fetchone()[0]
    withdrawn = catalogue.withdraw_builds(admin.conn, project, args.version,
                                          args.reason or REMOVED)
    dropped = admin.drop_queued(admin.releases(project, args.version), admin.abis)
    admin.publish(project)
    where = _target(project, args.version, None)
    print(f"{where}: {withdrawn} builds withdrawn ({files} wheels: the publisher removes "
          f"them and rewrites the pages), {dropped} waiting jobs dropped; skipped until "
          "`unskip`")


def cmd_rebuild(args: argparse.Namespace, admin: Admin) -> None:
    project = admin.project(args.project)["name"]
    release = admin.release(project, args.version)
    if args.abi:
        abis = [admin.abi(args.abi)]
    else:
        abis = [abi for abi in admin.abis if admin.build(release, abi) is not None]
        if not abis:
            raise AdminError(f"{project} {release.version} has no build to replace; "
                             "`add` queues its first")
    for abi in abis:
        where = f"{project} {release.version} for {abi}"
        if reason := admin.skipped(release, abi):
            raise AdminError(f"{where} is skipped ({reason}); `unskip` it first")
        # Marked first: whichever push comes next for this build replaces the files.
        catalogue.request_rebuild(admin.conn, project, release.version, abi)
        status = admin.make_way(release, abi)
        if status is not None:
            print(f"{where}: its job is {status} already; its push replaces the files")
            continue
        admin.enqueue(release, abi, at_front=True)
        print(f"{where}: rebuild queued at the front of build-{abi}; the files served "
              "stay until its push replaces them")


def cmd_retry_failed(args: argparse.Namespace, admin: Admin) -> None:
    since = time.time() - parse_duration(args.since) if args.since else 0.0
    stamp = datetime.fromtimestamp(since, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    retried = 0
    failed = admin.conn.execute(
        "SELECT b.project, b.version, b.abi, MAX(v.removed_key, p.deleted_key), "
        "v.requires_python FROM live_builds b "
        "JOIN live_versions v ON v.project = b.project AND v.version = b.version "
        "JOIN projects p ON p.name = b.project "
        "WHERE b.status = 'failed' AND b.built_at >= ? ORDER BY b.built_at", (stamp,))
    for project, version, abi, incarnation, requires_python in failed.fetchall():
        release = Release(project, version, incarnation, requires_python)
        where = f"{project} {version} for {abi}"
        if abi not in admin.abis or admin.skipped(release, abi):
            continue
        if status := admin.make_way(release, abi):
            print(f"{where}: its job is {status} already")
            continue
        admin.enqueue(release, abi, at_front=False)
        print(f"{where}: failed build queued again")
        retried += 1
    # Jobs that failed as jobs (a push refused, a worker lost past its retries): rq
    # keeps them in its failed registry, and puts them back itself.
    for abi in admin.abis:
        registry = FailedJobRegistry(queue=build_queue(admin.redis, abi))
        for job_id in registry.get_job_ids():
            if _retry_job(admin, registry, job_id, since):
                retried += 1
    print(f"{retried} failed builds queued again")


def _retry_job(admin: Admin, registry: FailedJobRegistry, job_id: str, since: float) -> bool:
    try:
        job = AllowlistJob.fetch(job_id, connection=admin.redis, serializer=SERIALIZER)
        build = BuildJob.from_args(*job.args)
    except (NoSuchJobError, BadJob, PermissionError, TypeError):
        return False  # gone meanwhile, or not one of our build jobs: never run again
    if job.refusal or (job.ended_at and job.ended_at.timestamp() < since):
        return False
    releases = admin.releases(build.project, build.version)
    if not releases or admin.job_id(releases[0], build.abi) != job_id \
            or admin.skipped(releases[0], build.abi) or admin.build(releases[0], build.abi):
        return False  # a release that is gone, skipped, or built since
    registry.requeue(job_id)
    print(f"{build.project} {build.version} for {build.abi}: failed job queued again")
    return True


DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])")
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str) -> float:
    """Seconds in '90s', '30m', '12h', '2d', '1w' or '1d12h'; AdminError otherwise."""
    parts = DURATION.findall(text)
    if not parts or DURATION.sub("", text).strip():
        raise AdminError(f"{text!r} is not a duration (like 30m, 12h, 2d or 1w)", 2)
    return sum(float(number) * UNITS[unit] for number, unit in parts)


def cmd_import(args: argparse.Namespace, admin: Admin) -> None:
    from publish.intake import Intake, Refused

    groups: dict[tuple[str, str, str], list[Path]] = {}
    for name in args.wheels:
        path = Path(name)
        if not path.is_file():
            raise AdminError(f"no such file: {path}", 2)
        key = _import_key(admin, path, args.abi)
        groups.setdefault(key, []).append(path)
    intake = Intake(admin.config)
    for (project, version, abi), paths in groups.items():
        try:
            report = BuildReport.from_dict({
                "project": project, "version": version, "abi": abi, "status": "success",
                "duration": 0.0, "worker": IMPORTER, "job_id": "import",
                "files": [{"filename": p.name, "size": p.stat().st_size,
                           "sha256": sha256_of(p), "requires_python": None,
                           "apt_dependencies": [], "apt_preinstalled": [],
                           "unresolved_sonames": [], "armv6": None} for p in paths]})
            log = "imported by an operator: " + ", ".join(p.name for p in paths) + "\n"
            result = intake.import_wheels(report, paths, log.encode())
        except BadReport as error:
            raise AdminError(f"refused: {error}") from None
        except Refused as refused:
            raise AdminError(f"refused: {refused.reason}") from None
        for path in paths:
            differs = [d for d in result["differs"] if d["filename"] == path.name]
            note = (" (other bytes than the file served under that name, which stays)"
                    if differs else "")
            print(f"{path.name}: imported as {project} {version} for {abi}{note}")


def _import_key(admin: Admin, path: Path, abi: str | None) -> tuple[str, str, str]:
    """(project, version as the catalogue spells it, builder target key) of a wheel."""
    try:
        name, version, _build, tags = parse_wheel_filename(path.name)
    except (InvalidWheelFilename, InvalidVersion) as error:
        raise AdminError(f"{path.name} is not a wheel's file name: {error}") from None
    project = admin.project(name)["name"]
    match = [r for r in admin.releases(project) if _same_version(r.version, version)]
    if not match:
        raise AdminError(f"unknown version: {project} has no release {str(version)!r}", 2)
    if abi is None:
        ours = sorted({tag_target_key(t.abi, t.platform) for t in tags} & set(admin.abis))
        if len(ours) != 1:
            raise AdminError(f"{path.name}: say which ABI built it (--abi); its tags name "
                             f"none of ours ({', '.join(admin.abis)})")
        abi = ours[0]
    return project, match[0].version, admin.abi(abi)


def _same_version(spelled: str, version: Version) -> bool:
    try:
        return Version(spelled) == version
    except InvalidVersion:
        return False


def cmd_opt_out(args: argparse.Namespace, admin: Admin) -> None:
    row = admin.project(args.project)
    project = row["name"]
    reason = "opted out: " + (args.reason or OPTED_OUT)
    withdrawn = catalogue.set_opt_out(admin.conn, project, reason)
    dropped = admin.drop_queued(admin.releases(project), admin.abis)
    admin.publish(project)
    print(f"{project}: {reason}; {withdrawn} builds withdrawn (the publisher removes their "
          f"files), {dropped} waiting jobs dropped; never queued until `opt-in`")


def cmd_opt_in(args: argparse.Namespace, admin: Admin) -> None:
    row = admin.project(args.project)
    project = row["name"]
    if not row["opted_out_at"]:
        print(f"{project}: not opted out")
        return
    catalogue.set_opt_out(admin.conn, project, None)
    admin.clear_over(admin.releases(project), admin.abis)
    admin.publish(project)
    print(f"{project}: opted in; the scheduler queues its builds on its next pass")


def cmd_verify(args: argparse.Namespace, admin: Admin) -> None:
    from publish import index, verify

    www, site = admin.config.www_dir, index.site_of(admin.config)
    findings = verify.verify(admin.conn, www, site)
    for finding in findings:
        print(finding.line())
    if not findings:
        print(f"{www} matches the catalogue")
        return
    if not args.repair:
        raise AdminError(f"{len(findings)} findings; `verify --repair` fixes what it can")
    verify.repair(admin.conn, www, site, findings)
    left = verify.verify(admin.conn, www, site)
    print(f"repaired {len(findings) - len(left)} of {len(findings)} findings")
    for finding in left:
        print(f"left: {finding.line()}")
    if left:
        raise AdminError(f"{len(left)} findings left: a listed wheel missing or damaged "
                         "needs `rebuild` or `import`")


# Wheels tagged for a platform or an ABI whose compiled code nobody has read: those
# published before the intake read it (worker.elf.compiled_code).
UNSCANNED = """
SELECT filename, project, version FROM wheels
WHERE compiled IS NULL AND NOT (abi_tag = 'none' AND platform_tag = 'any')
ORDER BY project, filename
"""


def cmd_scan_compiled(args: argparse.Namespace, admin: Admin) -> None:
    from publish.files import inside

    found: dict[str, bool | None] = {}
    projects: set[str] = set()
    missing = 0
    for filename, project, version in admin.conn.execute(UNSCANNED).fetchall():
        path = inside(admin.config.www_dir, "simple", project, filename)
        try:
            wheel = inspect_wheel(path, project, version, filename)
            with zipfile.ZipFile(path) as archive:
                found[filename] = compiled_code(wheel, archive)
        except (BadWheel, *UNREADABLE) as error:
            print(f"{filename}: not read ({error}); `verify` checks the served files")
            missing += 1
            continue
        if found[filename] is False:
            print(f"{filename}: built without compiled code")
            projects.add(project)
    changed = catalogue.record_compiled(admin.conn, found)
    for project in sorted(projects):
        admin.publish(project)
    flagged = sum(1 for value in found.values() if value is False)
    print(f"{len(found)} wheels read, {changed} recorded, {flagged} built without compiled "
          f"code{f', {missing} unreadable' if missing else ''}")


def cmd_reconcile(args: argparse.Namespace, admin: Admin) -> None:
    url = args.pypi_url or admin.config.pypi_url
    if not url:
        raise AdminError("no upstream to compare with: set WHEELWRIGHT_PYPI_URL or give "
                         "--pypi-url", 2)
    for name in args.projects:
        canonical = canonicalize_name(name)
        try:
            pypi = reconcile.fetch(url, canonical)
        except (requests.RequestException, ValueError) as error:
            raise AdminError(f"{canonical}: the JSON API at {url} failed: {error}") from None
        known = admin.conn.execute("SELECT 1 FROM projects WHERE name = ?",
                                   (canonical,)).fetchone()
        if not pypi.found and not known:
            raise AdminError(f"unknown project {name!r}: neither the catalogue nor PyPI "
                             "has it", 2)
        drift = reconcile.reconcile(admin.conn, pypi)
        for line in drift.lines() or [f"{canonical}: the catalogue matches PyPI"]:
            print(line)
        for line in reconcile.still_differs(admin.conn, pypi):
            print(f"not repaired: {line}")
        if drift:
            admin.publish(canonical)


# --- the parser --------------------------------------------------------------------------

def _run(command: Callable[[argparse.Namespace, Admin], None], name: str
         ) -> Callable[[argparse.Namespace, Settings], None]:
    def run(args: argparse.Namespace, config: Settings) -> None:
        admin = Admin(config)
        try:
            command(args, admin)
        except AdminError as error:
            print(f"ingest admin {name}: {error}", file=sys.stderr)
            raise SystemExit(error.status) from None
        finally:
            if admin._conn is not None:
                admin._conn.close()
    return run


def add_admin_parser(sub: argparse._SubParsersAction) -> None:
    """`admin` and its commands, under `python -m ingest`'s subcommands."""
    admin = sub.add_parser(
        "admin", help="the operator's commands: add, skip, remove, rebuild, import, ...",
        description="What an operator does by hand: queue, skip, withdraw, rebuild, "
        "import and check builds. An unknown project, release or ABI exits with 2.")
    commands = admin.add_subparsers(dest="admin_command", required=True, metavar="COMMAND")

    def command(name: str, func: Callable, help: str, description: str
                ) -> argparse.ArgumentParser:
        p = commands.add_parser(name, help=help, description=description)
        p.set_defaults(func=_run(func, name))
        return p

    p = command("add", cmd_add, "queue a release now, ahead of the backlog",
                "Queue PROJECT's VERSION (default: its newest release) for every ABI "
                "(or --abi) at the front of the build queue, unless it is built, skipped "
                "or queued already (then it moves to the front).")
    p.add_argument("project")
    p.add_argument("version", nargs="?")
    p.add_argument("--abi", help="only this ABI")
    for name, func, verb in (("skip", cmd_skip, "Skip"), ("unskip", cmd_unskip, "Unskip")):
        p = command(name, func, f"{name} a project or a release (optionally for one ABI)",
                    f"{verb} PROJECT, or its VERSION, for every ABI or only --abi. A skip "
                    "has a reason, which the project's page and JSON show; skipped builds "
                    "are never queued, and waiting ones are dropped.")
        p.add_argument("project")
        p.add_argument("version", nargs="?")
        p.add_argument("--abi", help="only this ABI")
        if name == "skip":
            p.add_argument("--reason", required=True, help="why, as the pages say it")
    p = command("remove", cmd_remove, "withdraw our files of a project or a release",
                "Withdraw every build of PROJECT (or of its VERSION): the publisher removes "
                "the wheels and logs and rewrites the pages. The project or release is "
                "skipped with the reason, so nothing builds it again until `unskip`.")
    p.add_argument("project")
    p.add_argument("version", nargs="?")
    p.add_argument("--reason", help=f"shown on the pages (default: {REMOVED!r})")
    p = command("rebuild", cmd_rebuild, "build a release again and replace its files",
                "Queue PROJECT VERSION again for each ABI it was built for (or --abi), at "
                "the front. The files served stay until the new build's push replaces them.")
    p.add_argument("project")
    p.add_argument("version")
    p.add_argument("--abi", help="only this ABI")
    p = command("retry-failed", cmd_retry_failed, "queue failed builds again",
                "Queue again every failed build (recorded as failed, or a job rq holds as "
                "failed) of a release that is neither skipped nor built since.")
    p.add_argument("--since", help="only those that failed in this long (30m, 12h, 2d, 1w)")
    p = command("import", cmd_import, "add wheels built elsewhere",
                "Add wheels built elsewhere, checked as a worker's push is: a release we "
                "build, its name and tags, the wheel as a zip within limits, METADATA "
                "naming the same project and version.")
    p.add_argument("wheels", nargs="+", metavar="WHEEL")
    p.add_argument("--abi", help="the ABI whose build the wheels stand for (default: the "
                   "one their tags name)")
    p = command("opt-out", cmd_opt_out, "a maintainer asked us not to build a project",
                "Never queue PROJECT again, withdraw its files, and say so on its pages.")
    p.add_argument("project")
    p.add_argument("--reason", help=f"shown on the pages (default: {OPTED_OUT!r})")
    p = command("opt-in", cmd_opt_in, "undo an opt-out",
                "Let the scheduler build PROJECT again.")
    p.add_argument("project")
    p = command("verify", cmd_verify, "check www/ against the catalogue",
                "Check that every file the index lists is in www/ with its size and hash, "
                "that no file is there that nothing lists, and that every page is "
                "current. Exits 1 when anything is found.")
    p.add_argument("--repair", action="store_true", help="re-publish pages, remove orphan "
                   "files, and report the listed files that are missing")
    command("scan-compiled", cmd_scan_compiled, "flag older wheels without compiled code",
            "Read every wheel tagged for a platform or an ABI that was published before "
            "the intake recorded whether it holds compiled code, record it, and have the "
            "pages of those built without it rewritten (the follower then asks for them "
            "again once a worker has a newer builder profile).")
    p = command("reconcile", cmd_reconcile, "repair drift from PyPI's JSON API",
                "Compare the catalogue with PyPI's JSON API for each PROJECT (releases, "
                "files, yanks, deletions) and apply what differs, as events newer than "
                "any seen, so that later events still win.")
    p.add_argument("projects", nargs="+", metavar="PROJECT")
    p.add_argument("--pypi-url", help="upstream base URL (default WHEELWRIGHT_PYPI_URL)")
