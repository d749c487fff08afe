"""A fixture catalogue for the publisher: deleted, yanked, pre-release, failed,
multi-ABI, armv7l and hostile projects, made by applying real events and adding
builds the way the intake records them."""

from __future__ import annotations

import gzip
import hashlib
import io
import sqlite3
import zipfile
from pathlib import Path

from ingest.events import Event, apply_batch, batch_of
from publish.releases import is_valid_name

T0 = 1_700_000_000
HOSTILE_SUMMARY = '<script>alert("summary")</script> & \'quotes\' — ünïcode'
HOSTILE_VERSION = '1.0"><img src=x onerror=alert(1)>'
HOSTILE_NAMES = ["../../escape", "a/b", "<script>x</script>", "café", "..", "x\\y"]

EVENTS = [
    ("Alpha", "1.0", "new release"), ("Alpha", "1.0", "add source file alpha-1.0.tar.gz"),
    ("Alpha", "1.1", "new release"), ("Alpha", "1.1", "add source file alpha-1.1.tar.gz"),
    ("Alpha", "2.0rc1", "new release"),
    ("Alpha", "2.0rc1", "add source file alpha-2.0rc1.tar.gz"),
    ("Alpha", "1.1", "yank release"),
    ("beta_lib", "0.1", "new release"),
    ("beta_lib", "0.1", "add source file beta_lib-0.1.tar.gz"),
    ("gone", "1.0", "new release"), ("gone", "1.0", "add source file gone-1.0.tar.gz"),
    ("Gamma", "1.0", "new release"), ("Gamma", "1.0", "add source file gamma-1.0.tar.gz"),
    ("Gamma", "1.1", "new release"), ("Gamma", "1.1", "add source file gamma-1.1.tar.gz"),
    ("Gamma", "0.9", "new release"), ("Gamma", "0.9", "add cp311 file gamma-0.9-x.whl"),
    ("empty-one", None, "create"),
    ("hostile", HOSTILE_VERSION, "new release"),
    ("hostile", HOSTILE_VERSION, f"add source file hostile-{HOSTILE_VERSION}.tar.gz"),
    *[(name, "1.0", "new release") for name in HOSTILE_NAMES],
    # Deletions come last: they remove what was built before them.
    ("gone", None, "remove project"),
    ("Gamma", "1.0", "remove release"),
]


def apply_events(conn: sqlite3.Connection, events=EVENTS, serial0: int = 2_000_000) -> None:
    batch = batch_of(Event(serial0 + i, T0 + 3600 * i, name, version, action)
                     for i, (name, version, action) in enumerate(events))
    conn.execute("BEGIN IMMEDIATE")
    apply_batch(conn, batch)
    conn.execute("COMMIT")


def wheel_bytes(name: str, version: str, filename: str, requires_python: str | None = None,
                requires: list[str] = ()) -> tuple[bytes, bytes]:
    """A small valid wheel and its METADATA."""
    module = name.replace("-", "_")
    metadata = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    if requires_python:
        metadata += f"Requires-Python: {requires_python}\n"
    metadata += "".join(f"Requires-Dist: {r}\n" for r in requires)
    dist_info = f"{module}-{version}.dist-info"
    tag = filename[:-4].split("-", 2)[2]
    files = {
        f"{module}.py": f"VALUE = {version!r}\n",
        f"{dist_info}/METADATA": metadata,
        f"{dist_info}/WHEEL": f"Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: "
                              f"true\nTag: {tag}\n",
    }
    record = "".join(
        f"{path},sha256={_urlsafe_digest(text.encode())},{len(text.encode())}\n"
        for path, text in files.items()) + f"{dist_info}/RECORD,,\n"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path, text in [*files.items(), (f"{dist_info}/RECORD", record)]:
            info = zipfile.ZipInfo(path, date_time=(2024, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            archive.writestr(info, text)
    return buffer.getvalue(), metadata.encode()


def _urlsafe_digest(data: bytes) -> str:
    import base64

    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


# project, version, abi, status, [(filename, requires_python, apt, preinstalled, pip,
# unresolved)]
BUILDS = [
    ("alpha", "1.0", "cp311", "success", [
        ("alpha-1.0-cp311-cp311-linux_armv7l.whl", ">=3.9",
         ["libopenblas0-pthread", "libc6"], ["libc6"], ["numpy"], [])]),
    ("alpha", "1.0", "cp39", "success", [
        ("alpha-1.0-cp39-cp39-linux_armv7l.whl", ">=3.9",
         ["libopenblas0-pthread", "libc6"], ["libc6"], ["numpy"], ["libweird.so.3"])]),
    ("alpha", "1.1", "cp311", "success", [
        ("alpha-1.1-cp311-cp311-linux_armv7l.whl", ">=3.9", ["libc6"], ["libc6"], [], [])]),
    ("alpha", "2.0rc1", "cp311", "failed", []),
    ("beta-lib", "0.1", "cp311", "success", [
        ("beta_lib-0.1-py3-none-any.whl", ">=3.8", [], [], [], [])]),
    ("gone", "1.0", "cp311", "success", [("gone-1.0-py3-none-any.whl", None, [], [], [], [])]),
    ("gamma", "1.0", "cp311", "success", [
        ("gamma-1.0-cp311-cp311-linux_armv7l.whl", None, [], [], [], [])]),
    ("hostile", HOSTILE_VERSION, "cp311", "failed", []),
]


# Whether each wheel runs on a Pi Zero/1 (wheels.armv6); a wheel not named here is
# unknown (NULL), as one recorded before the intake read build attributes.
ARMV6 = {
    "alpha-1.0-cp39-cp39-linux_armv7l.whl": True,
    "alpha-1.0-cp311-cp311-linux_armv7l.whl": False,  # ARMv7 code: Pi 2 and later
    "alpha-1.1-cp311-cp311-linux_armv7l.whl": True,
    "beta_lib-0.1-py3-none-any.whl": True,
}


# Whether each wheel holds compiled code (wheels.compiled); a wheel not named here is
# pure or unknown (NULL). These test wheels hold none, so a platform tag makes one
# "built without compiled code".
COMPILED = {
    "alpha-1.0-cp39-cp39-linux_armv7l.whl": True,
    "alpha-1.0-cp311-cp311-linux_armv7l.whl": True,
    "alpha-1.1-cp311-cp311-linux_armv7l.whl": False,
}

# The machine that made each build (project, version, abi): name, profile, OS release,
# toolchain; a build not named here comes from a worker older than the record.
MACHINES = {
    ("alpha", "1.0", "cp311"): ("pi-1-bookworm", 3, "Debian GNU/Linux 12 (bookworm)",
                                "gcc (Debian 12.2.0-14) 12.2.0"),
    ("alpha", "1.1", "cp311"): ("pi-1-bookworm", 2, "Debian GNU/Linux 12 (bookworm)",
                                "gcc (Debian 12.2.0-14) 12.2.0"),
    ("alpha", "2.0rc1", "cp311"): ("pi-1-bookworm", 3, "Debian GNU/Linux 12 (bookworm)",
                                   "gcc (Debian 12.2.0-14) 12.2.0"),
}

# Why failed builds failed (reason, detail, package), as the intake records it
# from the log (publish.failures); a failed build not named here said nothing known.
FAILURES = {
    ("alpha", "2.0rc1", "cp311"): ("missing-header", "yaml.h", "libyaml-dev"),
}


def add_builds(conn: sqlite3.Connection, www: Path, builds=BUILDS) -> None:
    """Record builds as the intake would, with their wheels, metadata and logs in www/."""
    for index, (project, version, abi, status, files) in enumerate(builds):
        built_at = f"2024-01-0{1 + index % 9}T12:00:0{index % 10}Z"
        log_path = f"logs/{project}/{version}/{abi}.txt.gz"
        if is_valid_name(project) and "/" not in version:
            target = www / log_path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(gzip.compress(f"building {project} {version}\n".encode(),
                                             mtime=0))
        else:
            log_path = None
        machine = MACHINES.get((project, version, abi), (None,) * 4)
        failure = FAILURES.get((project, version, abi), (None,) * 3)
        conn.execute("INSERT INTO builds (project, version, abi, status, worker, duration, "
                     "built_at, log_path, machine, profile, os_release, toolchain, "
                     "failure_reason, failure_detail, failure_package) "
                     "VALUES (?, ?, ?, ?, 'pi-1', 12.5, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                     (project, version, abi, status, built_at, log_path, *machine, *failure))
        for filename, requires_python, apt, preinstalled, pip, unresolved in files:
            data, metadata = wheel_bytes(project, version, filename, requires_python, pip)
            directory = www / "simple" / project
            directory.mkdir(parents=True, exist_ok=True)
            (directory / filename).write_bytes(data)
            (directory / f"{filename}.metadata").write_bytes(metadata)
            tags = filename[:-4].split("-")[-3:]
            conn.execute(
                "INSERT INTO wheels VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (filename, project, version, abi, *tags, len(data),
                 hashlib.sha256(data).hexdigest(), requires_python,
                 hashlib.sha256(metadata).hexdigest(), built_at, ARMV6.get(filename),
                 COMPILED.get(filename)))
            conn.executemany("INSERT INTO dependencies VALUES (?, ?, ?, ?)",
                             [(filename, "apt", a, int(a in preinstalled)) for a in apt]
                             + [(filename, "pip", p, 0) for p in pip])
            conn.executemany("INSERT INTO unresolved_sonames VALUES (?, ?)",
                             [(filename, s) for s in unresolved])


def make_catalogue(conn: sqlite3.Connection, www: Path) -> None:
    apply_events(conn)
    conn.execute("UPDATE projects SET summary = 'Fast arrays for Pis' WHERE name = 'alpha'")
    conn.execute("UPDATE projects SET summary = ? WHERE name = 'hostile'", (HOSTILE_SUMMARY,))
    conn.execute("UPDATE projects SET display_name = ? WHERE name = 'hostile'",
                 ('<b>"hostile"</b>',))
    conn.execute("UPDATE versions SET yank_reason = 'broken <build>' "
                 "WHERE project = 'alpha' AND version = '1.1'")
    conn.execute("UPDATE versions SET skip_reason = 'too large for a Pi' "
                 "WHERE project = 'beta-lib'")
    add_builds(conn, www)


def tree(root: Path) -> dict[str, tuple[str, bytes | str]]:
    """Every file and link under root: relative path -> ("file", bytes) or ("link",
    target)."""
    found = {}
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root).as_posix()
        if path.is_symlink():
            found[relative] = ("link", str(path.readlink()))
        elif path.is_file():
            found[relative] = ("file", path.read_bytes())
    return found


def started_job(redis, project: str, version: str, abi: str,
                worker: str = "test-worker") -> str:
    """The build job of project==version for abi, as it is while `worker` runs it:
    the only kind of job the intake takes a push for. Returns its id."""
    from rq import Queue
    from rq.executions import Execution

    from worker.queues import (
        BUILD_FUNCTION,
        SERIALIZER,
        build_job_id,
        build_queue_name,
        rq_worker_name,
    )

    queue = Queue(build_queue_name(abi), connection=redis, serializer=SERIALIZER)
    job = queue.enqueue_call(BUILD_FUNCTION, args=(project, version, abi),
                             job_id=build_job_id(project, version, abi), result_ttl=3600)
    name = rq_worker_name(worker, abi)
    with redis.pipeline() as pipe:
        job.prepare_for_execution(name, pipe)
        Execution.create(job, ttl=600, pipeline=pipe, worker_name=name)
        pipe.execute()
    return job.id
