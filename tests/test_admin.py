"""`python -m ingest admin`: each command through the CLI, against a real catalogue,
the test Redis, the real publisher (an rq worker in burst mode) and the real intake;
`reconcile` against the fake PyPI's JSON API."""

from __future__ import annotations

import _sqlite3
import dataclasses
import hashlib
import json
import zipfile
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from rq import Queue, Worker
from rq.job import JobStatus
from rq.registry import FailedJobRegistry

from ingest import catalogue, settings
from ingest.__main__ import main as ingest_main
from ingest.scheduler import build_job_data, build_queue, top_up
from publish import index
from publish.intake import Intake
from publish.jobs import PublishJob
from tests import fake_pypi
from tests.publishing import add_builds, apply_events, wheel_bytes
from tests.servers import serve
from worker.queues import PUBLISH_QUEUE, SERIALIZER, AllowlistJob, build_job_id, rq_worker_name
from worker.wire import BuildJob, BuildReport

ABIS = ("cp311", "cp39")
EVENTS = [
    ("foo", "1.0", "new release"), ("foo", "1.0", "add source file foo-1.0.tar.gz"),
    ("foo", "2.0", "new release"), ("foo", "2.0", "add source file foo-2.0.tar.gz"),
    ("bar", "0.1", "new release"), ("bar", "0.1", "add source file bar-0.1.tar.gz"),
    ("baz", "3.0", "new release"), ("baz", "3.0", "add source file baz-3.0.tar.gz"),
]
PURE = "{}-{}-py3-none-any.whl"


@dataclass
class Ran:
    status: int
    out: str
    err: str


@pytest.fixture
def farm(config, redis, monkeypatch):
    """The catalogue of EVENTS for two ABIs; yields (config, conn)."""
    monkeypatch.setenv("WHEELWRIGHT_ABIS", ",".join(ABIS))
    config = settings.load()
    conn = catalogue.connect(config.catalogue_path)
    apply_events(conn, EVENTS)
    yield config, conn
    conn.close()


@pytest.fixture
def admin(capsys):
    def run(*argv: str) -> Ran:
        capsys.readouterr()
        try:
            ingest_main(["admin", *argv])
            status = 0
        except SystemExit as stop:
            status = stop.code if isinstance(stop.code, int) else 1
        out, err = capsys.readouterr()
        return Ran(status, out, err)
    return run


def built(conn, www, *releases: tuple[str, str, str]) -> None:
    """Pure wheels of these (project, version, abi), recorded as the intake would."""
    add_builds(conn, www, [(p, v, abi, "success", [(PURE.format(p, v), None, [], [], [], [])])
                           for p, v, abi in releases])


def publish(redis, config=None) -> None:
    """Run the publisher over what it was asked to publish; with `config`, then write
    the home page as the publisher's refresher does once publishing goes quiet."""
    Worker([PUBLISH_QUEUE], connection=redis, serializer=SERIALIZER,
           job_class=PublishJob).work(burst=True)
    if config is not None:
        with closing(catalogue.connect(config.catalogue_path)) as conn:
            index.write_home(conn, config.www_dir, index.site_of(config))


def queued(redis, abi: str) -> list[tuple[str, str]]:
    """(project, version) of each job waiting in build-<abi>, first first."""
    jobs = [BuildJob.from_args(*job.args) for job in build_queue(redis, abi).jobs]
    return [(job.project, job.version) for job in jobs]


def project_json(config, name: str) -> dict:
    return json.loads((config.www_dir / "project" / name / "json" / "index.json").read_text())


def start(redis, job_id: str, abi: str, worker: str = "test-worker") -> None:
    """Take a queued job as a worker of that name does: the intake then takes its push."""
    from rq.executions import Execution

    job = AllowlistJob.fetch(job_id, connection=redis, serializer=SERIALIZER)
    build_queue(redis, abi).remove(job_id)
    name = rq_worker_name(worker, abi)
    with redis.pipeline() as pipe:
        job.prepare_for_execution(name, pipe)
        Execution.create(job, ttl=600, pipeline=pipe, worker_name=name)
        pipe.execute()


def push(url: str, config, project: str, version: str, abi: str, data: bytes,
         job_id: str) -> requests.Response:
    filename = PURE.format(project, version)
    report = {"project": project, "version": version, "abi": abi, "status": "success",
              "duration": 1.0, "worker": "test-worker", "job_id": job_id,
              "files": [{"filename": filename, "size": len(data),
                         "sha256": hashlib.sha256(data).hexdigest(), "requires_python": None,
                         "apt_dependencies": [], "apt_preinstalled": [],
                         "unresolved_sonames": [], "armv6": None}]}
    files = [("report", ("report.json", json.dumps(report), "application/json")),
             ("log", ("build.log", b"built\n", "text/plain")),
             ("wheel", (filename, data, "application/octet-stream"))]
    token = config.worker_tokens["test-worker"]
    return requests.post(url + "builds", files=files, timeout=30,
                         headers={"Authorization": f"Bearer {token}"})


# --- add -----------------------------------------------------------------------------

def test_add_queues_at_the_front_and_never_twice(farm, redis, admin):
    config, conn = farm
    top_up(conn, redis, "cp311", depth=10, job_timeout=60)
    backlog = queued(redis, "cp311")
    assert ("foo", "1.0") in backlog and backlog[0] != ("foo", "1.0")

    ran = admin("add", "foo", "1.0", "--abi", "cp311")
    assert ran.status == 0, ran.err
    assert "moved to the front" in ran.out
    assert queued(redis, "cp311")[0] == ("foo", "1.0")
    assert sorted(queued(redis, "cp311")) == sorted(backlog)  # the same jobs, none added

    ran = admin("add", "Foo")  # any spelling; the newest release; every ABI
    assert ran.status == 0, ran.err
    assert queued(redis, "cp39") == [("foo", "2.0")]
    job = build_queue(redis, "cp39").jobs[0]
    assert job.id == build_job_id("foo", "2.0", "cp39")
    assert BuildJob.from_args(*job.args).released > 0
    assert admin("add", "foo").status == 0
    assert queued(redis, "cp39") == [("foo", "2.0")]  # no second job

    built(conn, config.www_dir, ("bar", "0.1", "cp39"))
    ran = admin("add", "bar", "0.1", "--abi", "cp39")
    assert "built already" in ran.out and queued(redis, "cp39") == [("foo", "2.0")]


@pytest.mark.parametrize(("argv", "message"), [
    (["add", "nosuch"], "unknown project 'nosuch'"),
    (["add", "foo", "9.9"], "unknown version: foo has no release '9.9'"),
    (["add", "foo", "--abi", "cp27mu"], "unknown ABI 'cp27mu'"),
    (["skip", "nosuch", "--reason", "x"], "unknown project"),
    (["remove", "foo", "9.9"], "unknown version"),
    (["rebuild", "nosuch", "1.0"], "unknown project"),
    (["opt-out", "nosuch"], "unknown project"),
    (["retry-failed", "--since", "soon"], "is not a duration"),
    (["import", "/nonexistent/foo-1.0-py3-none-any.whl"], "no such file"),
])
def test_unknown_names_say_so_in_one_line(farm, admin, argv, message):
    ran = admin(*argv)
    assert ran.status == 2
    assert message in ran.err and len(ran.err.strip().splitlines()) == 1
    assert ran.err.startswith(f"ingest admin {argv[0]}: ")


# --- skip and unskip ------------------------------------------------------------------

def test_skip_and_unskip_a_project(farm, redis, admin):
    config, conn = farm
    top_up(conn, redis, "cp311", depth=10, job_timeout=60)
    ran = admin("skip", "foo", "--reason", "too big for a Pi")
    assert ran.status == 0, ran.err
    assert "2 waiting jobs dropped" in ran.out
    assert ("foo", "1.0") not in queued(redis, "cp311")
    assert top_up(conn, redis, "cp39", depth=10, job_timeout=60).queued == 2  # bar, baz
    assert all(p != "foo" for p, _ in queued(redis, "cp39"))
    assert "skipped" in admin("add", "foo").out

    publish(redis)
    releases = project_json(config, "foo")["releases"]
    assert releases["2.0"]["skip_reason"] == "too big for a Pi"
    assert 'title="too big for a Pi">skipped' in \
        (config.www_dir / "project" / "foo" / "index.html").read_text()

    ran = admin("unskip", "foo")
    assert ran.status == 0 and "was: too big for a Pi" in ran.out
    assert top_up(conn, redis, "cp39", depth=10, job_timeout=60).queued == 2
    assert admin("unskip", "foo").out.endswith("no skip of an operator's to take away\n")


def test_an_operators_abi_skip_outlives_the_schedulers_bookkeeping(farm, redis, admin):
    config, conn = farm
    assert admin("skip", "bar", "0.1", "--abi", "cp39", "--reason", "needs NEON").status == 0
    assert admin("skip", "baz", "--abi", "cp39", "--reason", "no armhf BLAS").status == 0
    # What the scheduler does with its own skips: forgets them when metadata arrives,
    # and records its own verdicts.
    catalogue.store_metadata(conn, "bar", "a summary", {})
    catalogue.record_skips(conn, [catalogue.Skip("bar", "0.1", "cp39", "Requires-Python")])
    rows = conn.execute("SELECT project, version, abi, reason, source FROM skips "
                        "ORDER BY project").fetchall()
    assert [tuple(r) for r in rows] == [("bar", "0.1", "cp39", "needs NEON", "operator"),
                                        ("baz", "", "cp39", "no armhf BLAS", "operator")]
    top_up(conn, redis, "cp39", depth=10, job_timeout=60)
    top_up(conn, redis, "cp311", depth=10, job_timeout=60)
    assert sorted(queued(redis, "cp39")) == [("foo", "1.0"), ("foo", "2.0")]
    assert ("bar", "0.1") in queued(redis, "cp311") and ("baz", "3.0") in queued(redis, "cp311")

    publish(redis)
    assert project_json(config, "bar")["releases"]["0.1"]["skip_reason"] == \
        "cp39: needs NEON"
    assert project_json(config, "baz")["releases"]["3.0"]["skip_reason"] == \
        "cp39: no armhf BLAS"

    assert admin("unskip", "baz", "--abi", "cp39").status == 0
    assert top_up(conn, redis, "cp39", depth=10, job_timeout=60).queued == 1
    assert ("baz", "3.0") in queued(redis, "cp39")


# --- remove ---------------------------------------------------------------------------

def test_remove_withdraws_the_files_and_the_pages_follow(farm, redis, admin):
    config, conn = farm
    www = config.www_dir
    built(conn, www, ("foo", "1.0", "cp311"), ("foo", "2.0", "cp311"))
    index.publish_all(conn, www, index.site_of(config))
    simple = www / "simple" / "foo"
    assert (simple / PURE.format("foo", "1.0")).exists()

    ran = admin("remove", "foo", "1.0", "--reason", "a licence problem")
    assert ran.status == 0, ran.err
    assert "1 builds withdrawn (1 wheels" in ran.out
    assert (simple / PURE.format("foo", "1.0")).exists()  # until the publisher runs
    publish(redis, config)

    assert not (simple / PURE.format("foo", "1.0")).exists()
    assert not (simple / f"{PURE.format('foo', '1.0')}.metadata").exists()
    assert not (www / "logs" / "foo" / "1.0").exists()
    assert (simple / PURE.format("foo", "2.0")).exists()
    page = (simple / "index.html").read_text()
    assert PURE.format("foo", "1.0") not in page and PURE.format("foo", "2.0") in page
    assert [r[0] for r in conn.execute("SELECT version FROM wheels")] == ["2.0"]
    assert project_json(config, "foo")["releases"]["1.0"]["skip_reason"] == \
        "a licence problem"
    top_up(conn, redis, "cp311", depth=10, job_timeout=60)
    assert ("foo", "1.0") not in queued(redis, "cp311")  # withdrawn stays withdrawn
    assert admin("verify").status == 0


# --- rebuild --------------------------------------------------------------------------

def test_rebuild_replaces_the_files_when_its_push_lands(farm, redis, admin):
    config, conn = farm
    www = config.www_dir
    built(conn, www, ("foo", "1.0", "cp311"))
    index.publish_all(conn, www, index.site_of(config))
    served = www / "simple" / "foo" / PURE.format("foo", "1.0")
    old = served.read_bytes()

    ran = admin("rebuild", "foo", "1.0")
    assert ran.status == 0, ran.err
    job_id = build_job_id("foo", "1.0", "cp311")
    assert build_queue(redis, "cp311").job_ids == [job_id]
    assert served.read_bytes() == old  # the old file stays until the new one lands

    new, _ = wheel_bytes("foo", "1.0", PURE.format("foo", "1.0"), requires_python=">=3.9")
    server = serve(Intake(dataclasses.replace(config, abis=ABIS)).app)
    try:
        start(redis, job_id, "cp311")
        answer = push(server.url, config, "foo", "1.0", "cp311", new, job_id)
        assert answer.status_code == 200, answer.text
        assert answer.json()["differs"] == []
        assert served.read_bytes() == new
        assert conn.execute("SELECT sha256 FROM wheels").fetchone()[0] == \
            hashlib.sha256(new).hexdigest()
        assert conn.execute("SELECT COUNT(*) FROM rebuilds").fetchone()[0] == 0
        # The rebuild is done: other bytes again are a differing push, as always.
        other, _ = wheel_bytes("foo", "1.0", PURE.format("foo", "1.0"),
                               requires_python=">=3.8")
        answer = push(server.url, config, "foo", "1.0", "cp311", other, job_id)
        assert answer.status_code == 200 and len(answer.json()["differs"]) == 1
        assert served.read_bytes() == new
    finally:
        server.stop()

    ran = admin("rebuild", "bar", "0.1")
    assert ran.status == 1 and "no build to replace" in ran.err


# --- retry-failed ---------------------------------------------------------------------

def test_retry_failed_queues_failed_builds_again(farm, redis, admin):
    config, conn = farm
    # A build that failed just now, one that failed long ago (2024), and a job that
    # failed as a job (its push refused), held in rq's failed registry.
    catalogue.record_build(conn, BuildReport("foo", "1.0", "cp311", "failed", 3.0, "pi-1",
                                             "job", []), [], None)
    add_builds(conn, config.www_dir, [("bar", "0.1", "cp311", "failed", [])])
    queue = build_queue(redis, "cp311")
    job = queue.enqueue_many([build_job_data(BuildJob("baz", "3.0", "cp311"), 0, 60, 0,
                                             False)])[0]
    queue.remove(job.id)
    job.set_status(JobStatus.FAILED)
    FailedJobRegistry(queue=queue).add(job, ttl=3600, exc_string="PushRefused")

    ran = admin("retry-failed", "--since", "1d")
    assert ran.status == 0, ran.err
    assert sorted(queued(redis, "cp311")) == [("baz", "3.0"), ("foo", "1.0")]
    assert "2 failed builds queued again" in ran.out
    assert FailedJobRegistry(queue=queue).get_job_ids() == []

    ran = admin("retry-failed")
    assert sorted(queued(redis, "cp311")) == [("bar", "0.1"), ("baz", "3.0"), ("foo", "1.0")]
    assert "foo 1.0 for cp311: its job is queued already" in ran.out


# --- import ---------------------------------------------------------------------------

def test_import_adds_a_wheel_checked_like_a_push(farm, redis, admin, tmp_path):
    config, conn = farm
    wheel = tmp_path / PURE.format("foo", "2.0")
    data, metadata = wheel_bytes("foo", "2.0", wheel.name)
    wheel.write_bytes(data)

    ran = admin("import", str(wheel))
    assert ran.status == 1 and "say which ABI built it (--abi)" in ran.err

    ran = admin("import", str(wheel), "--abi", "cp311")
    assert ran.status == 0, ran.err
    served = config.www_dir / "simple" / "foo" / wheel.name
    assert served.read_bytes() == data
    assert (served.parent / f"{wheel.name}.metadata").read_bytes() == metadata
    row = conn.execute("SELECT b.worker, w.builder_abi, w.sha256 FROM builds b JOIN wheels w "
                       "ON w.project = b.project AND w.version = b.version").fetchone()
    assert tuple(row) == ("operator-import", "cp311", hashlib.sha256(data).hexdigest())
    assert Queue(PUBLISH_QUEUE, connection=redis, serializer=SERIALIZER).count == 1

    tagged = tmp_path / "foo-1.0-cp39-cp39-linux_armv7l.whl"
    tagged.write_bytes(wheel_bytes("foo", "1.0", tagged.name)[0])
    ran = admin("import", str(tagged))  # its tags name the ABI
    assert ran.status == 0 and "as foo 1.0 for cp39" in ran.out

    hostile = tmp_path / PURE.format("bar", "0.1")
    hostile.write_bytes(wheel_bytes("evil", "0.1", hostile.name)[0])
    ran = admin("import", str(hostile), "--abi", "cp311")
    assert ran.status == 1 and "refused: " in ran.err and "METADATA names 'evil'" in ran.err
    assert not (config.www_dir / "simple" / "bar").exists()
    assert list((config.data_dir / "incoming").iterdir()) == []

    ran = admin("import", str(tmp_path / PURE.format("foo", "9.9")))
    assert ran.status == 2
    (tmp_path / PURE.format("foo", "9.9")).write_bytes(data)
    ran = admin("import", str(tmp_path / PURE.format("foo", "9.9")), "--abi", "cp311")
    assert ran.status == 2 and "unknown version: foo has no release '9.9'" in ran.err


# --- opt-out --------------------------------------------------------------------------

def test_opt_out_withdraws_everything_and_queues_nothing(farm, redis, admin):
    config, conn = farm
    www = config.www_dir
    built(conn, www, ("foo", "1.0", "cp311"))
    index.publish_all(conn, www, index.site_of(config))
    top_up(conn, redis, "cp39", depth=10, job_timeout=60)
    assert ("foo", "2.0") in queued(redis, "cp39")

    ran = admin("opt-out", "foo")
    assert ran.status == 0, ran.err
    assert all(p != "foo" for p, _ in queued(redis, "cp39"))
    publish(redis)
    assert not (www / "simple" / "foo" / PURE.format("foo", "1.0")).exists()
    reason = "opted out: its maintainer asked us not to build it"
    assert project_json(config, "foo")["releases"]["1.0"]["skip_reason"] == reason
    assert reason in (www / "project" / "foo" / "index.html").read_text()
    for abi in ABIS:
        top_up(conn, redis, abi, depth=10, job_timeout=60)
        assert all(p != "foo" for p, _ in queued(redis, abi))
    assert "skipped: opted out" in admin("add", "foo").out
    assert admin("unskip", "foo").status == 1

    # A build under way when the maintainer opted out lands nothing.
    job_id = build_job_id("foo", "2.0", "cp311")
    build_queue(redis, "cp311").enqueue_many([build_job_data(
        BuildJob("foo", "2.0", "cp311"), 0, 60, 0, False)])
    start(redis, job_id, "cp311")
    data, _ = wheel_bytes("foo", "2.0", PURE.format("foo", "2.0"))
    server = serve(Intake(dataclasses.replace(config, abis=ABIS)).app)
    try:
        answer = push(server.url, config, "foo", "2.0", "cp311", data, job_id)
    finally:
        server.stop()
    assert answer.status_code == 409 and "skipped by an operator" in answer.json()["error"]

    assert admin("opt-in", "foo").status == 0
    assert top_up(conn, redis, "cp39", depth=10, job_timeout=60).queued == 2


# --- verify ---------------------------------------------------------------------------

def test_verify_finds_and_repairs_what_it_can(farm, redis, admin):
    config, conn = farm
    www = config.www_dir
    built(conn, www, ("foo", "1.0", "cp311"), ("foo", "2.0", "cp311"), ("bar", "0.1", "cp39"))
    index.publish_all(conn, www, index.site_of(config))
    ran = admin("verify")
    assert ran.status == 0, ran.out + ran.err

    (www / "simple" / "foo" / PURE.format("foo", "2.0")).unlink()
    (www / "simple" / "bar" / PURE.format("bar", "0.1")).write_bytes(b"not the wheel")
    (www / "simple" / "foo" / "stray-1.0-py3-none-any.whl").write_bytes(b"x")
    (www / "project" / "foo" / "index.html").write_text("old page")
    (www / "simple" / "ghost").mkdir()
    (www / "simple" / "ghost" / "index.html").write_text("a project that is gone")

    ran = admin("verify")
    assert ran.status == 1
    lines = ran.out.splitlines()
    assert f"missing  simple/foo/{PURE.format('foo', '2.0')}: listed but not there" in lines
    assert any(line.startswith(f"damaged  simple/bar/{PURE.format('bar', '0.1')}")
               for line in lines)
    assert "orphan   simple/foo/stray-1.0-py3-none-any.whl: no catalogue row lists it" \
        in lines
    assert "stale    project/foo/index.html: not the current page" in lines
    assert "orphan   simple/ghost: a project that is gone" in lines

    ran = admin("verify", "--repair")
    assert ran.status == 1 and "2 findings left" in ran.err
    assert not (www / "simple" / "foo" / "stray-1.0-py3-none-any.whl").exists()
    assert not (www / "simple" / "ghost").exists()
    assert "old page" not in (www / "project" / "foo" / "index.html").read_text()
    left = [line for line in ran.out.splitlines() if line.startswith("left: ")]
    assert [line.split()[1:3] for line in left] == [  # projects in name order
        ["damaged", f"simple/bar/{PURE.format('bar', '0.1')}:"],
        ["missing", f"simple/foo/{PURE.format('foo', '2.0')}:"]]


def test_scan_compiled_flags_wheels_published_before_the_intake_read_them(
        farm, redis, admin):
    """Wheels recorded before `compiled` existed (NULL) are read with the intake's own
    rule (worker.elf.compiled_code) and recorded; their pages follow."""
    config, conn = farm
    www = config.www_dir
    platform = "{}-{}-cp311-cp311-linux_armv7l.whl"
    add_builds(conn, www, [(p, v, "cp311", "success", [(name, None, [], [], [], [])])
                           for p, v, name in (("foo", "1.0", platform.format("foo", "1.0")),
                                              ("foo", "2.0", platform.format("foo", "2.0")),
                                              ("bar", "0.1", platform.format("bar", "0.1")),
                                              ("baz", "3.0", PURE.format("baz", "3.0")))])
    with zipfile.ZipFile(www / "simple" / "bar" / platform.format("bar", "0.1"), "a") as wheel:
        wheel.writestr("bar/_speedups.so", Path(_sqlite3.__file__).read_bytes())  # real ELF
    (www / "simple" / "foo" / platform.format("foo", "2.0")).unlink()
    assert {r[0] for r in conn.execute("SELECT compiled FROM wheels")} == {None}

    ran = admin("scan-compiled")
    assert ran.status == 0, ran.err
    compiled = dict(conn.execute("SELECT filename, compiled FROM wheels").fetchall())
    assert compiled == {platform.format("foo", "1.0"): 0, platform.format("foo", "2.0"): None,
                        platform.format("bar", "0.1"): 1, PURE.format("baz", "3.0"): None}
    assert f"{platform.format('foo', '1.0')}: built without compiled code" in ran.out
    assert f"{platform.format('foo', '2.0')}: not read" in ran.out
    assert ran.out.splitlines()[-1] == ("2 wheels read, 2 recorded, 1 built without "
                                        "compiled code, 1 unreadable")
    publish(redis)
    page = (www / "project" / "foo" / "index.html").read_text()
    [row] = [line for line in page.splitlines()
             if platform.format("foo", "1.0") + "</a>" in line]
    assert "built without compiled code</span>" in row

    ran = admin("scan-compiled")  # what was read is not read again
    assert ran.out.splitlines()[-1] == "0 wheels read, 0 recorded, 0 built without " \
        "compiled code, 1 unreadable"


# --- reconcile ------------------------------------------------------------------------

@pytest.fixture
def pypi():
    server = fake_pypi.start()
    yield server
    server.stop()


def pypi_project(name: str, releases: dict[str, bool]) -> dict:
    """A JSON API body: version -> yanked, each release with an sdist and a wheel."""
    return {"info": {"name": name, "summary": f"{name} on PyPI"}, "releases": {
        version: [{"filename": f"{name}-{version}{suffix}", "packagetype": kind,
                   "requires_python": ">=3.8", "yanked": yanked,
                   "yanked_reason": "broken" if yanked else None,
                   "upload_time_iso_8601": "2025-03-01T12:00:00.000000Z"}
                  for suffix, kind in ((".tar.gz", "sdist"),
                                       ("-py3-none-any.whl", "bdist_wheel"))]
        for version, yanked in releases.items()}}


def test_reconcile_repairs_drift_from_the_json_api(farm, redis, admin, pypi):
    config, conn = farm
    # PyPI deleted foo 1.0 and yanked 2.0, and has a 3.0 we never heard of; bar is gone.
    pypi.state.projects["foo"] = pypi_project("foo", {"2.0": True, "3.0": False})
    ran = admin("reconcile", "foo", "bar", "--pypi-url", pypi.url)
    assert ran.status == 0, ran.err
    assert "foo 1.0: deleted on PyPI: removed" in ran.out
    assert "foo 3.0: missing: added" in ran.out
    assert "foo 2.0: yanked on PyPI: yanked" in ran.out
    assert "bar: not on PyPI any more: removed" in ran.out
    assert "not repaired" not in ran.out

    versions = {r[0]: (r[1], r[2], r[3]) for r in conn.execute(
        "SELECT version, yanked, yank_reason, released FROM live_versions "
        "WHERE project = 'foo'")}
    assert versions == {"2.0": (1, "broken", versions["2.0"][2]),
                        "3.0": (0, None, "2025-03-01T12:00:00Z")}
    files = {tuple(r) for r in conn.execute(
        "SELECT version, filename, kind FROM live_files WHERE project = 'foo'")}
    assert ("3.0", "foo-3.0.tar.gz", "source") in files
    assert ("3.0", "foo-3.0-py3-none-any.whl", "binary") in files
    assert ("2.0", "foo-2.0-py3-none-any.whl", "binary") in files
    assert conn.execute("SELECT 1 FROM live_projects WHERE name = 'bar'").fetchone() is None
    assert Queue(PUBLISH_QUEUE, connection=redis, serializer=SERIALIZER).count == 2

    ran = admin("reconcile", "foo", "--pypi-url", pypi.url)
    assert ran.out == "foo: the catalogue matches PyPI\n"

    # Later real events still win over the repairs.
    apply_events(conn, [("foo", "2.0", "unyank release"), ("foo", "1.0", "new release")],
                 serial0=3_000_000)
    live = dict(conn.execute("SELECT version, yanked FROM live_versions WHERE project = 'foo'"))
    assert live == {"1.0": 0, "2.0": 0, "3.0": 0}

    ran = admin("reconcile", "nosuch", "--pypi-url", pypi.url)
    assert ran.status == 2 and "unknown project 'nosuch'" in ran.err
