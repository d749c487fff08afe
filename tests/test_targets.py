"""A build target is an ABI and a platform (issue 13): the key rule, coverage per
platform, queues and job ids per target, the wire's platform check, a catalogue
written before targets had platforms, and a release index serving both images."""

from __future__ import annotations

import json

import pytest
import requests
from redis import Redis

from ingest import catalogue, settings
from ingest.coverage import coverage
from ingest.scheduler import top_up
from publish import index
from publish.intake import Intake
from publish.pages import Site
from tests.publishing import apply_events, started_job, wheel_bytes
from tests.servers import serve
from tests.test_ingest_scheduler import catalogue as scheduler_catalogue
from tests.test_ingest_scheduler import queued_releases, release, skips
from tests.test_release_indexes import push, sha
from worker.names import BadName
from worker.queues import build_job_id, build_queue_name
from worker.targets import Target, check_target, parse_target, target_key
from worker.wire import BadReport, BuildReport

BOTH = ("cp311", "cp311-aarch64")


def test_a_target_key_names_an_abi_and_a_platform():
    assert target_key("cp311", "linux_armv7l") == "cp311"
    assert target_key("cp311", "linux_aarch64") == "cp311-aarch64"
    assert parse_target("cp311") == Target("cp311", "linux_armv7l")
    assert parse_target("cp313-aarch64") == Target("cp313", "linux_aarch64")
    assert parse_target("cp313-aarch64").label == "cp313 64-bit"
    # The queue names the chroot workers listen on (worker.queues, either spelling).
    assert build_queue_name("cp311-aarch64") == build_queue_name("cp311", "linux_aarch64") \
        == "build-cp311-aarch64"
    assert build_queue_name("cp311", "linux_armv7l") == "build-cp311"
    for bad in ("cp311-x86_64", "cp311-", "-aarch64", "cp311-aarch64-aarch64", "CP311", 311):
        with pytest.raises(BadName):
            check_target(bad)
    with pytest.raises(ValueError):
        settings.load({"WHEELWRIGHT_ABIS": "cp311,cp311-arm64"})


def test_coverage_is_per_platform_up_to_the_release_glibc():
    aarch64 = "x-1.0-cp311-cp311-manylinux_2_17_aarch64.manylinux2014_aarch64.whl"
    assert coverage("cp311-aarch64", [aarch64]).reason == f"PyPI has {aarch64}"
    assert not coverage("cp311", [aarch64]).complete
    # Bookworm's glibc is 2.36, Trixie's 2.41.
    assert coverage("cp311-aarch64", ["x-1.0-cp311-cp311-manylinux_2_36_aarch64.whl"]).complete
    assert not coverage("cp311-aarch64",
                        ["x-1.0-cp311-cp311-manylinux_2_38_aarch64.whl"]).complete
    assert coverage("cp313-aarch64", ["x-1.0-cp313-cp313-manylinux_2_38_aarch64.whl"]).complete
    assert coverage("cp313-aarch64", ["x-1.0-cp313-cp313-linux_aarch64.whl"]).complete
    assert not coverage("cp313-aarch64", ["x-1.0-cp313-cp313-musllinux_1_2_aarch64.whl"]).complete
    # A pure wheel covers both images; an armv7l one only the 32-bit image's Pi 2.
    assert all(coverage(key, ["x-1.0-py3-none-any.whl"]).complete for key in BOTH)
    assert not coverage("cp311-aarch64", ["x-1.0-cp311-cp311-linux_armv7l.whl"]).complete
    # No 64-bit target for a release without a 64-bit image of its own.
    assert coverage("cp39-aarch64", ["x-1.0-py3-none-any.whl"]).wheels == {}


def test_each_target_gets_what_pypi_does_not_serve_it(tmp_path, redis):
    aarch64 = "arm-1.0-cp311-cp311-manylinux_2_17_aarch64.manylinux2014_aarch64.whl"
    conn = scheduler_catalogue(tmp_path, [
        *release("arm", "1.0"), ("arm", "1.0", f"add cp311 file {aarch64}"),
        *release("cext", "1.0"),
    ])
    for key in BOTH:
        top_up(conn, redis, key, depth=100, job_timeout=600)
    assert queued_releases(redis, "cp311") == [["arm", "1.0"], ["cext", "1.0"]]  # sorted
    assert queued_releases(redis, "cp311-aarch64") == [["cext", "1.0"]]
    assert skips(conn) == {("arm", "1.0", "cp311-aarch64"): f"PyPI has {aarch64}"}
    # Distinct jobs on distinct queues, one per target.
    ids = {key: build_job_id("cext", "1.0", key) for key in BOTH}
    assert ids["cp311"] != ids["cp311-aarch64"]
    assert ids["cp311-aarch64"].startswith("build-cp311-aarch64-")
    for key in BOTH:
        assert ids[key].encode() in redis.lrange(f"rq:queue:{build_queue_name(key)}", 0, -1)


def report(abi: str, filename: str) -> dict:
    return {"project": "x", "version": "1.0", "abi": abi, "status": "success",
            "duration": 1.0, "worker": "pi", "job_id": build_job_id("x", "1.0", abi),
            "files": [{"filename": filename, "size": 1, "sha256": "0" * 64,
                       "requires_python": None, "apt_dependencies": [],
                       "apt_preinstalled": [], "unresolved_sonames": [], "armv6": None}]}


@pytest.mark.parametrize("abi,filename,accepted", [
    ("cp311-aarch64", "x-1.0-cp311-cp311-linux_aarch64.whl", True),
    ("cp311-aarch64", "x-1.0-cp311-abi3-linux_aarch64.whl", True),
    ("cp311-aarch64", "x-1.0-py3-none-any.whl", True),
    ("cp311-aarch64", "x-1.0-cp311-cp311-linux_armv7l.whl", False),
    ("cp311-aarch64", "x-1.0-cp313-cp313-linux_aarch64.whl", False),
    ("cp311", "x-1.0-cp311-cp311-linux_armv7l.whl", True),
    ("cp311", "x-1.0-cp311-cp311-linux_aarch64.whl", False),
    ("cp311", "x-1.0-cp311-cp311-manylinux_2_17_aarch64.whl", False),
])
def test_a_report_s_wheels_fit_its_target(abi, filename, accepted):
    raw = json.dumps(report(abi, filename))
    if accepted:
        assert BuildReport.from_json(raw).abi == abi
    else:
        with pytest.raises(BadReport, match="is not a wheel for"):
            BuildReport.from_json(raw)


def test_a_catalogue_from_before_targets_is_the_32_bit_image_s(tmp_path, redis):
    """Rows written with bare ABIs (all there was) are the 32-bit image's: built
    releases are not built again, the 64-bit target starts empty, and opening the
    catalogue changes no row."""
    conn = scheduler_catalogue(tmp_path, [*release("old", "1.0"), *release("new", "1.0")])
    conn.execute("INSERT INTO builds (project, version, abi, status, built_at) "
                 "VALUES ('old', '1.0', 'cp311', 'success', '2025-01-01T00:00:00Z')")
    before = conn.execute("SELECT * FROM builds").fetchall()
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    conn.close()
    conn = catalogue.connect(tmp_path / "c.db")
    assert conn.execute("PRAGMA user_version").fetchone()[0] == version
    assert conn.execute("SELECT * FROM builds").fetchall() == before
    for key in BOTH:
        top_up(conn, redis, key, depth=100, job_timeout=600)
    assert queued_releases(redis, "cp311") == [["new", "1.0"]]
    assert queued_releases(redis, "cp311-aarch64") == [["new", "1.0"], ["old", "1.0"]]
    www = tmp_path / "www"
    index.publish_all(conn, www, Site(abis=BOTH, public_url="http://pi/", pypi_url=None))
    page = (www / "project" / "old" / "index.html").read_text()
    assert "<th>cp311</th><th>cp311 64-bit</th>" in page
    builds = json.loads((www / "project" / "old" / "json" / "index.json").read_text())
    assert list(builds["releases"]["1.0"]["builds"]) == ["cp311"]


ARMV7L = "ww_both-1.0-cp311-cp311-linux_armv7l.whl"
AARCH64 = "ww_both-1.0-cp311-cp311-linux_aarch64.whl"
PURE = "ww_both-1.0-py3-none-any.whl"


def test_a_release_index_serves_both_images(tmp_path, redis_instance):
    """Bookworm's index lists its 32-bit and its 64-bit builds (pip on each picks by
    tag); a pure name the other image built first with other bytes is a differing
    push, since the one index has room for one file under a name."""
    config = settings.load({"WHEELWRIGHT_DATA": str(tmp_path), "REDIS_URL": redis_instance.url,
                            "WHEELWRIGHT_WORKER_NAME": "pi-1",
                            "WHEELWRIGHT_ABIS": "cp39,cp311,cp311-aarch64"})
    conn = catalogue.connect(config.catalogue_path)
    apply_events(conn, [("ww-both", "1.0", a)
                        for a in ("new release", "add source file ww-both-1.0.tar.gz")])
    built = {name: wheel_bytes("ww-both", "1.0", name, requires)[0]
             for name, requires in ((ARMV7L, None), (AARCH64, None), (PURE, ">=3.7"))}
    other_pure = wheel_bytes("ww-both", "1.0", PURE, ">=3.8")[0]
    redis = Redis.from_url(redis_instance.url)
    intake = serve(Intake(config).app)
    token = config.worker_tokens["pi-1"]
    try:
        push(intake.url, token, redis, "cp311", {ARMV7L: built[ARMV7L], PURE: built[PURE]})
        answer = push(intake.url, token, redis, "cp311-aarch64",
                      {AARCH64: built[AARCH64], PURE: other_pure})
        assert [d["filename"] for d in answer["differs"]] == [PURE]
        # An armv7l wheel in the 64-bit target's report is refused whole.
        job_id = started_job(redis, "ww-both", "1.0", "cp311-aarch64", worker="pi-1")
        wrong = {**report("cp311-aarch64", ARMV7L), "project": "ww-both", "job_id": job_id,
                 "worker": "pi-1"}
        wrong["files"][0].update(size=len(built[ARMV7L]), sha256=sha(built[ARMV7L]))
        response = requests.post(
            intake.url + "builds", headers={"Authorization": f"Bearer {token}"},
            files=[("report", ("r.json", json.dumps(wrong))), ("log", ("log", b"ok")),
                   ("wheel", (ARMV7L, built[ARMV7L]))], timeout=30)
        assert response.status_code == 400 and "not a wheel for aarch64" in response.text
    finally:
        intake.stop()
        redis.close()
    index.publish_all(conn, config.www_dir, index.site_of(config))
    www = config.www_dir
    files = {f["filename"]: f["hashes"]["sha256"] for f in json.loads(
        (www / "simple" / "ww-both" / "bookworm.json").read_text())["files"]}
    # Each image's wheels, the pure one, and the armv7l wheel's armv6l name (it has no
    # code a Pi Zero cannot run).
    assert files == {**{name: sha(data) for name, data in built.items()},
                     ARMV7L.replace("armv7l", "armv6l"): sha(built[ARMV7L])}
    assert not (www / "bookworm" / "simple" / "ww-both" / PURE).exists()
    page = (www / "project" / "ww-both" / "index.html").read_text()
    assert "Bookworm (Python 3.11), 32- and 64-bit (one index serves both" in page
    home = (www / "index.html").read_text()
    assert "Bookworm (Python 3.11), 32- and 64-bit (one index serves both" in home
    assert "Bullseye (Python 3.9):" in home  # one image only: said as before
