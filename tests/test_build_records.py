"""What a build record holds beyond its status (issue 15): the machine that made it,
why it failed, and whether its wheels hold compiled code; a wheel built without its
code is rebuilt once the builder profile is newer than the one it was built with."""

from __future__ import annotations

import _sqlite3
import gzip
import html
import io
import json
import os
import sqlite3
import subprocess
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from rq import Queue

from ingest import catalogue
from ingest.__main__ import main as ingest_main
from ingest.catalogue import schema
from ingest.migrations import migrate
from ingest.profile_rebuilds import ATTEMPTS, queue_profile_rebuilds
from publish.contents import Contents, cache_path
from publish.intake import Intake, cached_contents
from publish.releases import RELEASE_INDEXES
from tests.publishing import apply_events, wheel_bytes
from tests.sdists import optional_c_sdist, write_index
from tests.servers import serve
from tests.test_end_to_end import run_workers, write_events
from worker import health
from worker.chroot import ARCHES
from worker.elf import compiled_code
from worker.profile import load_build_deps, load_profile, record_installed
from worker.queues import SERIALIZER, AllowlistJob, build_job_id, build_queue_name
from worker.targets import DEBIAN_ARCHES, parse_target
from worker.wheel import inspect_wheel
from worker.wire import Machine

ROOT = Path(__file__).resolve().parent.parent


# --- the catalogue ---------------------------------------------------------------------

@dataclass
class File:
    filename: str
    size: int = 3
    sha256: str = "ab" * 32
    apt_dependencies: list[str] = field(default_factory=list)
    apt_preinstalled: list[str] = field(default_factory=list)
    unresolved_sonames: list[str] = field(default_factory=list)
    armv6: bool | None = None


@dataclass
class Report:
    project: str
    version: str
    abi: str = "cp311"
    status: str = "success"
    duration: float = 1.5
    worker: str = "pi-1"
    files: list[File] = field(default_factory=list)
    machine: Machine | None = None


@dataclass
class Wheel:
    filename: str
    python_tag: str = "cp311"
    abi_tag: str = "cp311"
    platform_tag: str = "linux_armv7l"
    requires_python: str | None = None
    metadata: bytes = b"Metadata-Version: 2.1\n"
    requires_dist: list[str] = field(default_factory=list)


@dataclass
class Failure:
    reason: str
    detail: str
    package: str | None


CHROOT = Machine(name="pi-1-armhf", profile=3, os_release="Debian GNU/Linux 12 (bookworm)",
                 toolchain="gcc (Debian 12.2.0-14) 12.2.0")
EVENTS = [("Alpha", "1.0", "new release"),
          ("Alpha", "1.0", "add source file alpha-1.0.tar.gz"),
          ("Alpha", "2.0", "new release"),
          ("Alpha", "2.0", "add source file alpha-2.0.tar.gz")]


def test_a_catalogue_of_the_previous_schema_migrates_in_place(tmp_path):
    path = tmp_path / "catalogue.db"
    old = sqlite3.connect(path, isolation_level=None)
    migrate(old, schema.MIGRATIONS[:-1], "catalogue")  # as it was: one migration fewer
    apply_events(old, EVENTS)
    old.execute("INSERT INTO builds (project, version, abi, status, worker, duration, "
                "built_at, log_path) VALUES ('alpha', '1.0', 'cp311', 'failed', 'pi-1', 2.0, "
                "'2025-01-01T00:00:00Z', 'logs/alpha/1.0/cp311.txt.gz')")
    old.execute("INSERT INTO wheels (filename, project, version, builder_abi, python_tag, "
                "abi_tag, platform_tag, size, sha256, uploaded_at, armv6) VALUES "
                "('alpha-2.0-cp311-cp311-linux_armv7l.whl', 'alpha', '2.0', 'cp311', "
                "'cp311', 'cp311', 'linux_armv7l', 3, 'x', '2025-01-01T00:00:00Z', 1)")
    old.execute("INSERT INTO profile_rebuilds (project, version, abi, profile, requested_at) "
                "VALUES ('alpha', '2.0', 'cp311', 2, '2025-01-01T00:00:00Z')")
    before = old.execute("SELECT * FROM builds").fetchall()
    assert old.execute("PRAGMA user_version").fetchone()[0] == len(schema.MIGRATIONS) - 1
    old.close()

    conn = catalogue.connect(path)  # what every process does when it opens it
    assert conn.execute("PRAGMA user_version").fetchone()[0] == schema.SCHEMA_VERSION
    rows = conn.execute("SELECT * FROM builds").fetchall()
    assert [tuple(r)[:len(before[0])] for r in rows] == before
    assert tuple(conn.execute(
        "SELECT machine, profile, os_release, toolchain, failure_reason, failure_detail, "
        "failure_package FROM live_builds").fetchone()) == (None,) * 7
    assert tuple(conn.execute("SELECT armv6, compiled FROM wheels").fetchone()) == (1, None)
    # A request made before attempts were counted was the first.
    assert [r[0] for r in conn.execute("SELECT attempts FROM profile_rebuilds")] == [1]
    with pytest.raises(sqlite3.IntegrityError):  # 0, 1 or NULL only
        conn.execute("UPDATE wheels SET compiled = 2")
    conn.close()


def test_record_build_stores_the_machine_the_failure_and_compiled(tmp_path):
    conn = catalogue.connect(tmp_path / "catalogue.db")
    apply_events(conn, EVENTS)
    catalogue.record_build(conn, Report("alpha", "1.0", status="failed", machine=CHROOT),
                           [], "logs/alpha/1.0/cp311.txt.gz",
                           failure=Failure("missing-header", "yaml.h", "libyaml-dev"))
    name = "alpha-2.0-cp311-cp311-linux_armv7l.whl"
    catalogue.record_build(conn, Report("alpha", "2.0", files=[File(name)]), [Wheel(name)],
                           None, compiled={name: False})
    assert tuple(conn.execute(
        "SELECT worker, machine, profile, os_release, toolchain, failure_reason, "
        "failure_detail, failure_package FROM builds WHERE version = '1.0'").fetchone()) == (
        "pi-1", "pi-1-armhf", 3, "Debian GNU/Linux 12 (bookworm)",
        "gcc (Debian 12.2.0-14) 12.2.0", "missing-header", "yaml.h", "libyaml-dev")
    # From a worker older than the machine record: none, and no failure either.
    assert tuple(conn.execute("SELECT machine, profile, failure_reason FROM builds "
                              "WHERE version = '2.0'").fetchone()) == (None, None, None)
    assert conn.execute("SELECT compiled FROM wheels").fetchone()[0] == 0
    conn.close()


# --- compiled code, read from the file -------------------------------------------------

def _wheel(tmp_path: Path, filename: str, elf: bytes | None = None) -> Path:
    data, _ = wheel_bytes("alpha", "1.0", filename)
    if elf is not None:  # add an extension module to the wheel, RECORD aside
        buffer = io.BytesIO(data)
        with zipfile.ZipFile(buffer, "a") as archive:
            archive.writestr("alpha/_speedups.so", elf)
        data = buffer.getvalue()
    path = tmp_path / filename
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(("filename", "with_elf", "expected"), [
    ("alpha-1.0-cp311-cp311-linux_armv7l.whl", True, True),
    ("alpha-1.0-cp311-cp311-linux_armv7l.whl", False, False),  # built without its code
    ("alpha-1.0-cp311-abi3-linux_armv7l.whl", False, False),
    ("alpha-1.0-py3-none-linux_armv7l.whl", False, False),  # a platform, and no code
    ("alpha-1.0-py3-none-any.whl", False, None),  # pure: nothing to say
])
def test_compiled_code_is_read_from_the_wheel(tmp_path, filename, with_elf, expected):
    elf = Path(_sqlite3.__file__).read_bytes() if with_elf else None  # a real ELF file
    path = _wheel(tmp_path, filename, elf)
    wheel = inspect_wheel(path, "alpha", "1.0", filename)
    with zipfile.ZipFile(path) as archive:
        assert compiled_code(wheel, archive) is expected


# --- a wheel without its compiled code, published, then rebuilt for a newer profile ----

DEPS = "# version: {version}\n"


@dataclass
class Farm:
    """The builder profile the master and the worker read: the shipped profile and a
    build-dependencies file of the test's own, whose version a test bumps."""

    deps: Path
    marker: Path  # what `python -m worker profile --install` records on the worker

    def bump(self) -> int:
        """A new version of the build dependencies (a library added): the new builder
        profile version."""
        version = load_build_deps(self.deps).version + 1
        self.deps.write_text(DEPS.format(version=version))
        return load_profile(deps=self.deps).version

    def install(self) -> None:
        """The worker installs the current profile."""
        record_installed(load_profile(deps=self.deps).version, self.marker)


@pytest.fixture
def farm(tmp_path, config, redis, offline_pip, backend_wheels, monkeypatch):
    """A real worker building from a file index, the intake over HTTP, a builder
    profile that the worker has installed."""
    sources = tmp_path / "sources"
    sources.mkdir()
    index = write_index(tmp_path / "upstream", [
        optional_c_sdist(sources, "ww-yamlish", "1.0"),
        optional_c_sdist(sources, "ww-needs-header", "1.0", optional=False),
        *backend_wheels])
    monkeypatch.setenv("WHEELWRIGHT_BUILD_INDEX_URL", index)
    deps = tmp_path / "build-deps.txt"
    deps.write_text(DEPS.format(version=1))
    farm = Farm(deps, tmp_path / "installed-profile")
    farm.install()
    monkeypatch.setenv("WHEELWRIGHT_BUILD_DEPS", str(deps))
    monkeypatch.setenv("WHEELWRIGHT_PROFILE_MARKER", str(farm.marker))
    intake = serve(Intake(config).app)
    monkeypatch.setenv("WHEELWRIGHT_INTAKE_URL", intake.url)
    try:
        yield farm
    finally:
        intake.stop()


def _events(tmp_path: Path, *names: str) -> Path:
    events = []
    for i, name in enumerate(names):
        module = name.replace("-", "_")
        events += [(1_000_001 + 2 * i, name, "1.0", "new release"),
                   (1_000_002 + 2 * i, name, "1.0", f"add source file {module}-1.0.tar.gz")]
    return write_events(tmp_path / "events.jsonl", events)


def _reports(redis, abi: str, profile: int, disk: Path, worker: str = "pi-new") -> None:
    """A live worker of `abi` says, in its health record, it has `profile` installed."""
    health.publish(redis, health.collect(worker, abi, 0, disk, profile=profile))


def test_a_wheel_built_without_its_code_is_marked_then_rebuilt_for_a_newer_profile(
        tmp_path, config, redis, farm):
    ingest_main(["replay", str(_events(tmp_path, "ww-yamlish"))])
    abi = config.abis[0]
    run_workers(redis, abi)
    built_with = load_profile(deps=farm.deps).version

    conn = catalogue.connect(config.catalogue_path)
    [wheel] = conn.execute("SELECT filename, compiled FROM wheels").fetchall()
    assert wheel["filename"].startswith(f"ww_yamlish-1.0-{abi}-{abi}-linux_")
    assert wheel["compiled"] == 0
    build = conn.execute("SELECT * FROM builds").fetchone()
    assert (build["status"], build["worker"], build["machine"], build["profile"]) == (
        "success", "test-worker", "test-worker", built_with)
    assert build["os_release"] and build["failure_reason"] is None

    page = (config.www_dir / "project" / "ww-yamlish" / "index.html").read_text()
    [row] = [line for line in page.splitlines() if wheel["filename"] + "</a>" in line]
    assert "built without compiled code</span>" in row
    assert "built on test-worker: " in page and f"builder profile {built_with}" in page
    document = json.loads((config.www_dir / "project" / "ww-yamlish" / "json" /
                           "index.json").read_text())
    release = document["releases"]["1.0"]
    assert release["files"][wheel["filename"]]["compiled"] is False
    assert release["builds"][abi]["failure"] is None
    assert release["builds"][abi]["machine"]["name"] == "test-worker"
    assert release["builds"][abi]["machine"]["profile"] == built_with

    queue = Queue(build_queue_name(abi), connection=redis, serializer=SERIALIZER)
    job_id = build_job_id("ww-yamlish", "1.0", abi)

    def requests() -> list[tuple[int, int]]:
        return [tuple(r) for r in conn.execute(
            "SELECT profile, attempts FROM profile_rebuilds ORDER BY profile")]

    ingest_main(["schedule"])  # the profile it was built with: nothing to do
    assert queue.job_ids == [] and requests() == []

    # The library added to the build dependencies: a newer profile, which no worker
    # has installed yet. Asking now would only build the same wheel again.
    newer = farm.bump()
    assert newer == built_with + 1
    ingest_main(["schedule"])
    assert queue.job_ids == [] and requests() == []
    _reports(redis, abi, built_with, tmp_path)  # a worker on the old one changes nothing
    ingest_main(["schedule"])
    assert queue.job_ids == [] and requests() == []

    _reports(redis, abi, newer, tmp_path)  # one worker has installed it
    ingest_main(["schedule"])
    ingest_main(["schedule"])  # a restart looks again: still one rebuild
    assert queue.job_ids == [job_id]
    assert requests() == [(newer, 1)]
    assert [tuple(r) for r in conn.execute("SELECT project, version, abi FROM rebuilds")] \
        == [("ww-yamlish", "1.0", abi)]

    # Another worker, still on the old profile, took the job: the rebuild lands from
    # the older profile, still without the code, so it is asked for again.
    run_workers(redis, abi)
    assert conn.execute("SELECT profile FROM builds").fetchone()[0] == built_with
    assert conn.execute("SELECT COUNT(*) FROM rebuilds").fetchone()[0] == 0  # replaced
    ingest_main(["schedule"])
    assert queue.job_ids == [job_id]
    assert requests() == [(newer, 2)]

    # This time a worker with the new profile builds it: done, whatever the wheel holds.
    farm.install()
    run_workers(redis, abi)
    assert conn.execute("SELECT profile FROM builds").fetchone()[0] == newer
    ingest_main(["schedule"])
    ingest_main(["schedule"])
    assert queue.job_ids == []
    assert requests() == [(newer, 2)]
    conn.close()


def _record(conn, project: str, tags: str = "cp311-cp311-linux_armv7l",
            compiled: bool | None = False, profile: int | None = 1, abi: str = "cp311",
            failure: Failure | None = None) -> None:
    """A build as the intake records it, and its push clearing its rebuild mark."""
    name = f"{project}-1.0-{tags}.whl"
    machine = None if profile is None else Machine("pi", profile, "Debian", "gcc")
    python, abi_tag, platform = tags.split("-")
    if failure is not None:
        catalogue.record_build(conn, Report(project, "1.0", abi=abi, status="failed",
                                            machine=machine), [], None, failure=failure)
    else:
        catalogue.record_build(
            conn, Report(project, "1.0", abi=abi, files=[File(name)], machine=machine),
            [Wheel(name, python, abi_tag, platform)], None, compiled={name: compiled})
    catalogue.clear_rebuild(conn, project, "1.0", abi)


def _asked(rebuilds) -> list[tuple[str, int, bool]]:
    return sorted((r.request.project, r.request.attempt, r.queued) for r in rebuilds)


def test_profile_rebuilds_leave_alone_what_they_must(tmp_path, config, redis):
    """Compiled wheels, pure ones, builds made with the current profile, skipped
    releases and ABIs we do not build are not rebuilt; an older worker's build (no
    profile known) is, and so is a build refused for missing build dependencies;
    nothing is until a worker of the ABI has the profile."""
    conn = catalogue.connect(config.catalogue_path)
    names = ("a", "b", "c", "d", "e", "f", "g", "h")
    apply_events(conn, [(name, "1.0", action) for name in names
                        for action in ("new release", f"add source file {name}-1.0.tar.gz")])
    _record(conn, "a")  # rebuilt
    _record(conn, "b", compiled=True)  # has its code
    _record(conn, "c", "py3-none-any", compiled=None)  # pure
    _record(conn, "d", profile=2)  # the current profile
    _record(conn, "e", profile=None)  # an older worker: rebuilt
    _record(conn, "f", "cp39-cp39-linux_armv7l", abi="cp39")  # not an ABI we build
    _record(conn, "g", failure=Failure("missing-build-deps", "libfoo-dev", None))  # rebuilt
    _record(conn, "h", failure=Failure("missing-header", "foo.h", "libfoo-dev"))  # not
    catalogue.set_operator_skip(conn, catalogue.OperatorSkip("a", "1.0", "cp311", "no"))

    assert queue_profile_rebuilds(conn, redis, 2, ["cp311"], 600, 0) == []  # no worker yet
    _reports(redis, "cp39", 2, tmp_path, "pi-39")  # nor of this ABI
    assert queue_profile_rebuilds(conn, redis, 2, ["cp311"], 600, 0) == []
    _reports(redis, "cp311", 2, tmp_path)
    asked = queue_profile_rebuilds(conn, redis, 2, ["cp311"], 600, 0)
    assert _asked(asked) == [("e", 1, True), ("g", 1, True)]
    catalogue.set_operator_skip(conn, catalogue.OperatorSkip("a", "1.0", "cp311", None))
    asked = queue_profile_rebuilds(conn, redis, 2, ["cp311"], 600, 0)
    assert _asked(asked) == [("a", 1, True)]
    assert queue_profile_rebuilds(conn, redis, 2, ["cp311"], 600, 0) == []
    # Their jobs already wait: a newer profile marks the builds, and queues nothing more.
    _reports(redis, "cp311", 3, tmp_path)
    asked = queue_profile_rebuilds(conn, redis, 3, ["cp311"], 600, 0)
    assert _asked(asked) == [("a", 1, False), ("d", 1, True), ("e", 1, False),
                             ("g", 1, False)]
    queue = Queue(build_queue_name("cp311"), connection=redis, serializer=SERIALIZER)
    assert sorted(queue.job_ids) == sorted(build_job_id(p, "1.0", "cp311")
                                           for p in ("a", "d", "e", "g"))
    assert conn.execute("SELECT COUNT(*) FROM rebuilds").fetchone()[0] == 4
    conn.close()


def test_a_profile_rebuild_is_asked_for_again_up_to_a_cap(tmp_path, config, redis):
    """Each pass asks again for a request whose rebuild landed from an older profile
    or whose job is lost, ATTEMPTS times at most; one made with the profile ends it."""
    conn = catalogue.connect(config.catalogue_path)
    apply_events(conn, [("a", "1.0", "new release"), ("a", "1.0", "add source file a-1.0.tar.gz")])
    _record(conn, "a", profile=1)
    _reports(redis, "cp311", 2, tmp_path)
    queue = Queue(build_queue_name("cp311"), connection=redis, serializer=SERIALIZER)
    job_id = build_job_id("a", "1.0", "cp311")

    def ask() -> list[tuple[str, int, bool]]:
        return _asked(queue_profile_rebuilds(conn, redis, 2, ["cp311"], 600, 0))

    def gone() -> None:
        """The job leaves Redis: taken by a worker (its result expires), or lost."""
        queue.remove(job_id)
        AllowlistJob.fetch(job_id, connection=redis, serializer=SERIALIZER).delete()

    assert ask() == [("a", 1, True)]
    assert ask() == []  # its job waits
    gone()
    assert ask() == [("a", 2, True)]  # the job was lost (Redis lost it, a crash)
    assert queue.job_ids == [job_id]
    gone()
    _record(conn, "a", profile=1)  # landed, from a worker on the old profile
    assert ask() == [("a", 3, True)]
    gone()
    _record(conn, "a", profile=1)
    assert ask() == [] and ask() == []  # used up: never a loop
    assert [tuple(r) for r in conn.execute(
        "SELECT profile, attempts FROM profile_rebuilds")] == [(2, ATTEMPTS)]
    assert ATTEMPTS == 3

    # A newer profile starts again, and a rebuild made with it ends the requests.
    _reports(redis, "cp311", 3, tmp_path)
    assert _asked(queue_profile_rebuilds(conn, redis, 3, ["cp311"], 600, 0)) == [
        ("a", 1, True)]
    gone()
    _record(conn, "a", profile=3)
    assert queue_profile_rebuilds(conn, redis, 3, ["cp311"], 600, 0) == []
    conn.close()


def test_a_failed_build_says_why_and_which_package_to_install(tmp_path, config, redis, farm):
    from publish.failures import classify, label

    abi = config.abis[0]
    release = RELEASE_INDEXES.get(abi)
    if release is None:
        pytest.skip(f"{abi} is no Raspberry Pi OS release's: no Contents index to look in")
    # A cached Contents index of the build's release (publish.contents), naming the
    # package of the header the extension wants; the intake only reads it.
    index = tmp_path / "Contents-armhf.gz"
    index.write_bytes(gzip.compress(
        b"usr/include/wheelwright_absent_library.h    libdevel/libwwabsent-dev\n"
        b"usr/include/zlib.h                          libdevel/zlib1g-dev\n"))
    Contents.build(cache_path(config.data_dir, release.codename, "armhf"), [index]).close()

    ingest_main(["replay", str(_events(tmp_path, "ww-needs-header"))])
    run_workers(redis, abi)

    conn = catalogue.connect(config.catalogue_path)
    build = conn.execute("SELECT * FROM builds").fetchone()
    assert build["status"] == "failed" and build["machine"] == "test-worker"
    assert build["failure_reason"] is not None
    assert "wheelwright_absent_library.h" in build["failure_detail"]
    assert build["failure_package"] == "libwwabsent-dev"
    log = gzip.decompress((config.www_dir / build["log_path"]).read_bytes()).decode()
    failure = classify(log, None)  # the same log without the index: no package
    assert failure is not None and failure.package is None
    conn.close()

    page = (config.www_dir / "project" / "ww-needs-header" / "index.html").read_text()
    said = label(Failure(build["failure_reason"], build["failure_detail"], "libwwabsent-dev"))
    [cell] = [line for line in page.splitlines() if "✗ failed</a>" in line]
    assert f'<span class="reason">{html.escape(said, quote=True)}</span>' in cell
    assert "libwwabsent-dev" in said
    document = json.loads((config.www_dir / "project" / "ww-needs-header" / "json" /
                           "index.json").read_text())
    assert document["releases"]["1.0"]["builds"][abi]["failure"] == {
        "reason": build["failure_reason"], "detail": build["failure_detail"],
        "package": "libwwabsent-dev"}


def test_the_contents_command_keeps_a_fresh_cache_without_a_mirror(tmp_path):
    """`python -m publish contents` fills the cache the intake reads; one that is
    fresh enough is used as it is, with no mirror asked."""
    data = tmp_path / "var"
    index = tmp_path / "Contents-armhf.gz"
    index.write_bytes(gzip.compress(b"usr/include/yaml.h    libdevel/libyaml-dev\n"))
    path = cache_path(data, "bookworm", "armhf")
    Contents.build(path, [index]).close()
    env = {**os.environ, "WHEELWRIGHT_DATA": str(data), "WHEELWRIGHT_ARM_MIRROR":
           "http://127.0.0.1:9/unreachable/debian"}
    done = subprocess.run([sys.executable, "-m", "publish", "contents", "--codename",
                           "bookworm"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert f"{path}: 1 entries" in done.stdout
    # Forced, with the mirror out of reach: the old cache stays, and says so.
    done = subprocess.run([sys.executable, "-m", "publish", "contents", "--codename",
                           "bookworm", "--refresh"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)
    assert "could not refresh" in done.stdout and done.returncode == 0
    with Contents(path) as contents:
        assert contents.package_for_header("yaml.h") == "libyaml-dev"


# --- Contents per architecture ---------------------------------------------------------

def contents_gz(path: Path, *lines: str) -> Path:
    """A Contents index (`path  section/package` lines), gzipped as a mirror serves it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress("".join(f"{line}\n" for line in lines).encode()))
    return path


def test_a_target_s_debian_architecture_has_one_home():
    assert parse_target("cp311").debian_arch == "armhf"
    assert parse_target("cp311-aarch64").debian_arch == "arm64"
    assert parse_target("cp313-aarch64").debian_arch == "arm64"
    # The chroots take their Debian names from the same table.
    assert {arch.platform: name for name, arch in ARCHES.items()} == DEBIAN_ARCHES


def test_the_intake_reads_the_contents_index_of_the_build_s_architecture(tmp_path):
    """A failed build's missing file is looked up in its target's own architecture's
    index (arm64 for a 64-bit target), else in any cached index of its release."""
    # One header, a different package in each index, to tell which index answered.
    header = "usr/include/ww_arch.h    libdevel/ww-{arch}-dev"
    armhf = contents_gz(tmp_path / "armhf.gz", header.format(arch="armhf"))
    arm64 = contents_gz(tmp_path / "arm64.gz", header.format(arch="arm64"))

    def answer(data: Path, key: str) -> str | None:
        contents = cached_contents(data, key)
        if contents is None:
            return None
        with contents:
            return contents.package_for_header("ww_arch.h")

    data = tmp_path / "var"
    Contents.build(cache_path(data, "bookworm", "armhf"), [armhf]).close()
    assert answer(data, "cp311") == "ww-armhf-dev"
    assert answer(data, "cp311-aarch64") == "ww-armhf-dev"  # no arm64 index: the release's
    Contents.build(cache_path(data, "bookworm", "arm64"), [arm64]).close()
    assert answer(data, "cp311-aarch64") == "ww-arm64-dev"
    assert answer(data, "cp311") == "ww-armhf-dev"
    assert answer(data, "cp313-aarch64") is None  # trixie: nothing of another release
    assert answer(data, "cp39") is None
    only_arm64 = tmp_path / "only-arm64"
    Contents.build(cache_path(only_arm64, "bookworm", "arm64"), [arm64]).close()
    assert answer(only_arm64, "cp311") == "ww-arm64-dev"


def test_the_contents_command_caches_the_architectures_of_the_targets_built(tmp_path):
    mirror = tmp_path / "mirror"
    for codename, arch in (("bookworm", "armhf"), ("bookworm", "arm64"),
                           ("trixie", "armhf"), ("trixie", "arm64")):
        contents_gz(mirror / "dists" / codename / "main" / f"Contents-{arch}.gz",
                    f"usr/include/ww_{arch}.h    libdevel/ww-{arch}-dev")
        contents_gz(mirror / "dists" / codename / "main" / "Contents-all.gz",
                    "usr/bin/swig    interpreters/swig")
    data = tmp_path / "var"
    env = {**os.environ, "WHEELWRIGHT_DATA": str(data),
           "WHEELWRIGHT_ARM_MIRROR": mirror.as_uri(),
           "WHEELWRIGHT_ABIS": "cp311,cp311-aarch64,cp313"}

    def contents(*args: str) -> set[str]:
        done = subprocess.run([sys.executable, "-m", "publish", "contents", *args],
                              cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        return {p.name for p in (data / "contents").glob("*.db")}

    # Bookworm's two images and Trixie's 32-bit one: what we build, nothing more.
    assert contents() == {"bookworm-armhf.db", "bookworm-arm64.db", "trixie-armhf.db"}
    with Contents(cache_path(data, "bookworm", "arm64")) as arm64:
        assert arm64.package_for_header("ww_arm64.h") == "ww-arm64-dev"
        assert arm64.package_for_header("ww_armhf.h") is None
        assert arm64.package_for_tool("swig") == "swig"
    assert "trixie-arm64.db" in contents("--codename", "trixie", "--arch", "arm64")
