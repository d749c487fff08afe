"""Reproducible wheels: a release built twice by the real worker (`python -m worker`,
bubblewrap required, real `pip wheel` of sdists made here) gives the same bytes, pure
Python and a C extension alike; a push of other bytes under a served name is recorded
and shown, and the served file stays."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import time
import zipfile
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from redis import Redis
from rq import Queue

from ingest import catalogue, settings
from ingest.__main__ import main as ingest_main
from ingest.scheduler import top_up
from publish import index
from publish.intake import Intake
from tests.publishing import apply_events, started_job, wheel_bytes
from tests.sdists import c_sdist, pure_sdist
from tests.servers import serve
from tests.test_worker import catalogue_rows, release_events, run_workers, start_farm
from worker.build import sha256_of
from worker.interpreter import probe
from worker.jobs import build_root
from worker.queues import BUILD_FUNCTION, SERIALIZER, AllowlistJob, build_job_id
from worker.sandbox import BUILD_PATH, build_environment, find_bwrap
from worker.wire import FALLBACK_EPOCH

RELEASES = [("ww-same-pure", "1.0"), ("ww-same-c", "1.0")]


@dataclass
class Built:
    """One release's build, done twice by the real worker."""

    first: AllowlistJob
    second: AllowlistJob
    served: Path  # the wheel in www/ after both


@dataclass
class Rebuilds:
    config: settings.Settings
    builds: dict[str, Built]  # by project


@pytest.fixture(scope="module")
def built_twice(tmp_path_factory, redis_instance, backend_wheels) -> Rebuilds:
    if find_bwrap("auto") is None:
        pytest.skip("byte-identical rebuilds of compiled code need bubblewrap's fixed path")
    tmp = tmp_path_factory.mktemp("repro")
    redis = Redis.from_url(redis_instance.url)
    redis.flushall()
    sdists = [lambda d: pure_sdist(d, "ww-same-pure", "1.0"),
              lambda d: c_sdist(d, "ww-same-c", "1.0")]
    sandboxed = {"WHEELWRIGHT_BUILD_SANDBOX": "bwrap"}
    with pytest.MonkeyPatch.context() as env:
        farm, server = start_farm(tmp, env, redis_instance.url, sdists, backend_wheels)
        try:
            abi = probe(farm.config.build_python).abi
            ingest_main(["replay", str(release_events(tmp / "events.jsonl", RELEASES))])
            run_workers(farm.config, 2, sandboxed)
            first = {p: AllowlistJob.fetch(build_job_id(p, v, abi), connection=redis,
                                           serializer=SERIALIZER) for p, v in RELEASES}
            # The rebuild: the very job the scheduler queued (its arguments, release
            # time and all) queued again under another id, as an operator re-running
            # an interrupted build would, and built by a fresh worker process.
            queue = Queue(f"build-{abi}", connection=redis, serializer=SERIALIZER)
            again = {p: queue.enqueue_call(BUILD_FUNCTION, args=job.args,
                                           job_id=f"{job.id}-again", result_ttl=3600)
                     for p, job in first.items()}
            run_workers(farm.config, 2, sandboxed)
            second = {p: AllowlistJob.fetch(job.id, connection=redis, serializer=SERIALIZER)
                      for p, job in again.items()}
        finally:
            server.stop()
            redis.close()
    www = farm.config.www_dir / "simple"
    return Rebuilds(farm.config, {
        p: Built(first[p], second[p], www / p / first[p].return_value()["files"][0])
        for p, _ in RELEASES})


@pytest.mark.parametrize("project", [p for p, _ in RELEASES])
def test_a_rebuild_gives_the_same_bytes(built_twice, project):
    built = built_twice.builds[project]
    for job in (built.first, built.second):
        assert job.is_finished, job.latest_result().exc_string
        assert job.return_value()["status"] == "success"
    first, second = built.first.return_value(), built.second.return_value()
    assert first["files"] == second["files"]
    assert first["sha256"] == second["sha256"]  # what each build made, byte for byte
    assert second["intake"]["differs"] == []
    [(filename, sha256)] = first["sha256"].items()
    assert sha256_of(built.served) == sha256
    assert (project == "ww-same-c") == ("-linux_" in filename)


def test_the_files_are_dated_by_the_release(built_twice):
    """SOURCE_DATE_EPOCH is the release's upload time, carried in the job."""
    built = built_twice.builds["ww-same-pure"]
    released = built.first.args[3]
    rows = catalogue_rows(
        built_twice.config, "SELECT CAST(strftime('%s', released) AS INTEGER) "
        "FROM versions WHERE project = 'ww-same-pure'")
    assert rows == [(released,)] and released != FALLBACK_EPOCH
    stamp = time.gmtime(released)[:6]
    stamp = (*stamp[:5], stamp[5] // 2 * 2)  # zip keeps even seconds
    with zipfile.ZipFile(built.served) as wheel:
        assert {info.date_time for info in wheel.infolist()} == {stamp}


def test_the_extension_does_not_record_the_workers_path(built_twice):
    data = built_twice.builds["ww-same-c"].served.read_bytes()
    with zipfile.ZipFile(io.BytesIO(data)) as wheel:
        [so] = [n for n in wheel.namelist() if n.endswith(".so")]
        binary = wheel.read(so)
    assert str(build_root(built_twice.config)).encode() not in binary


# -- the scheduler puts the release time in the job ------------------------------------


def test_the_scheduler_carries_the_release_time(config, redis):
    with closing(catalogue.connect(config.catalogue_path)) as conn:
        apply_events(conn, [("ww-demo", "1.0", "new release"),
                            ("ww-demo", "1.0", "add source file ww_demo-1.0.tar.gz")])
        top_up(conn, redis, "cp311", depth=10, job_timeout=60)
        [(released,)] = conn.execute("SELECT CAST(strftime('%s', released) AS INTEGER) "
                                     "FROM versions").fetchall()
    [job] = Queue("build-cp311", connection=redis, serializer=SERIALIZER).get_jobs()
    assert tuple(job.args) == ("ww-demo", "1.0", "cp311", released)


# -- a push of other bytes under a served name -----------------------------------------

SERVED = "ww_demo-1.0-py3-none-any.whl"


def push(url: str, token: str, data: bytes, job_id: str) -> requests.Response:
    report = {"project": "ww-demo", "version": "1.0", "abi": "cp311", "status": "success",
              "duration": 1.0, "worker": "test-worker", "job_id": job_id,
              "files": [{"filename": SERVED, "size": len(data),
                         "sha256": hashlib.sha256(data).hexdigest(), "requires_python": None,
                         "apt_dependencies": [], "apt_preinstalled": [],
                         "unresolved_sonames": [], "armv6": None}]}
    files = [("report", ("report.json", json.dumps(report), "application/json")),
             ("log", ("build.log", b"built\n", "text/plain")),
             ("wheel", (SERVED, data, "application/octet-stream"))]
    return requests.post(url + "builds", files=files, timeout=30,
                         headers={"Authorization": f"Bearer {token}"})


def test_a_differing_push_is_recorded_and_shown(config, redis):
    conn = catalogue.connect(config.catalogue_path)
    apply_events(conn, [("ww-demo", "1.0", "new release"),
                        ("ww-demo", "1.0", "add source file ww_demo-1.0.tar.gz")])
    job_id = started_job(redis, "ww-demo", "1.0", "cp311")
    config = dataclasses.replace(config, abis=("cp311",))
    server = serve(Intake(config).app)
    token = config.worker_tokens["test-worker"]
    served, _ = wheel_bytes("ww-demo", "1.0", SERVED)
    other, _ = wheel_bytes("ww-demo", "1.0", SERVED, requires_python=">=3.7")
    try:
        assert push(server.url, token, served, job_id).status_code == 200
        again = push(server.url, token, served, job_id)  # the same bytes: nothing differs
        assert again.status_code == 200 and again.json()["differs"] == []
        answer = push(server.url, token, other, job_id)
    finally:
        server.stop()
    assert answer.status_code == 200, answer.text
    other_sha = hashlib.sha256(other).hexdigest()
    served_sha = hashlib.sha256(served).hexdigest()
    assert answer.json()["differs"] == [{"filename": SERVED, "sha256": other_sha,
                                         "served_sha256": served_sha}]
    www = config.www_dir
    assert (www / "simple" / "ww-demo" / SERVED).read_bytes() == served
    rows = conn.execute("SELECT filename, sha256, abi, worker, served_sha256 "
                        "FROM differing_pushes").fetchall()
    assert [tuple(r) for r in rows] == [(SERVED, other_sha, "cp311", "test-worker",
                                         served_sha)]
    assert conn.execute("SELECT sha256 FROM wheels").fetchall()[0][0] == served_sha

    index.publish_project(conn, www, index.site_of(config), "ww-demo")
    conn.close()
    page = (www / "project" / "ww-demo" / "index.html").read_text()
    assert "rebuild differs" in page and other_sha in page
    data = json.loads((www / "project" / "ww-demo" / "json" / "index.json").read_text())
    entry = data["releases"]["1.0"]["files"][SERVED]
    assert entry["filehash"] == served_sha
    assert [d["filehash"] for d in entry["differing_builds"]] == [other_sha]
    assert [d["builder_abi"] for d in entry["differing_builds"]] == ["cp311"]


# -- what the build sees does not depend on the worker ---------------------------------


def test_the_environment_is_the_same_on_every_worker(tmp_path):
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
    first = build_environment(tmp_path / "a", {"SOURCE_DATE_EPOCH": "1700000000"},
                              source={"TZ": "Europe/London", "LANG": "de_DE.UTF-8",
                                      "LC_ALL": "de_DE.UTF-8", "PYTHONHASHSEED": "random"},
                              seen_at=BUILD_PATH)
    second = build_environment(tmp_path / "b", {"SOURCE_DATE_EPOCH": "1700000000"},
                               source={}, seen_at=BUILD_PATH)
    assert first == second
    assert first["TMPDIR"] == str(BUILD_PATH / "tmp") and first["LC_ALL"] == "C.UTF-8"
    assert (tmp_path / "a" / "tmp").is_dir() and (tmp_path / "b" / "home").is_dir()
