"""The intake over real HTTP: a good push is recorded once however often it comes;
every hostile push gets a 4xx and leaves nothing behind."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import zipfile

import pytest
import requests
from rq import Queue

from ingest import catalogue
from publish.intake import Intake
from tests.publishing import apply_events, started_job, wheel_bytes
from tests.servers import serve
from worker.queues import SERIALIZER, build_job_id
from worker.wheel import ZipLimits

GOOD = "ww_demo-1.0-py3-none-any.whl"
UNKNOWN = "ww_demo-9.9-py3-none-any.whl"  # a release the catalogue lacks


@pytest.fixture
def intake(config, redis):
    conn = catalogue.connect(config.catalogue_path)
    # Pushes answer jobs the test worker runs (a job that is not running: see below).
    for project, version, abi in (("ww-demo", "1.0", "cp311"), ("ww-demo", "1.0", "cp39"),
                                  ("ww-demo", "9.9", "cp311"), ("other", "1.0", "cp311")):
        started_job(redis, project, version, abi)
    apply_events(conn, [("ww-demo", "1.0", "new release"),
                        ("ww-demo", "1.0", "add source file ww_demo-1.0.tar.gz"),
                        ("other", "1.0", "new release")])
    config = dataclasses.replace(config, max_upload=256 * 1024, abis=("cp311", "cp39"))
    server = serve(Intake(config, ZipLimits(members=50, member_size=64 * 1024,
                                            expanded=128 * 1024)).app)
    yield server, config, conn
    server.stop()
    conn.close()


def report(filename=GOOD, data=b"", **changes) -> dict:
    base = {"project": "ww-demo", "version": "1.0", "abi": "cp311", "status": "success",
            "duration": 3.5, "worker": "ignored", "job_id": "",
            "files": [{"filename": filename, "size": len(data),
                       "sha256": hashlib.sha256(data).hexdigest(), "requires_python": None,
                       "apt_dependencies": ["libz1", "libfoo2"],
                       "apt_preinstalled": ["libz1"],
                       "unresolved_sonames": ["libgone.so.1"], "armv6": True}]}
    base.update(changes)
    base["job_id"] = base["job_id"] or build_job_id(base["project"], base["version"],
                                                    base["abi"])
    return base


def push(server, config, the_report, wheels, token=None):
    token = token or config.worker_tokens["test-worker"]
    files = [("report", ("report.json", json.dumps(the_report), "application/json")),
             ("log", ("build.log", b"it built\n", "text/plain"))]
    files += [("wheel", (name, data, "application/octet-stream")) for name, data in wheels]
    return requests.post(server.url + "builds", files=files,
                         headers={"Authorization": f"Bearer {token}"}, timeout=30)


def leftovers(config) -> list[str]:
    found = [p.relative_to(config.data_dir).as_posix()
             for p in config.data_dir.rglob("*") if p.is_file()]
    return sorted(f for f in found if not f.startswith(("catalogue.db", "secrets/")))


def test_good_push_is_recorded_once(intake, redis):
    server, config, conn = intake
    data, metadata = wheel_bytes("ww-demo", "1.0", GOOD, requires=["requests"])
    for _ in range(2):  # the second is a retry after a lost answer: the same result
        response = push(server, config, report(data=data), [(GOOD, data)])
        assert response.status_code == 200, response.text
        assert response.json()["files"] == [GOOD]
    simple = config.www_dir / "simple" / "ww-demo"
    assert (simple / GOOD).read_bytes() == data
    assert (simple / f"{GOOD}.metadata").read_bytes() == metadata
    assert (config.www_dir / "logs/ww-demo/1.0/cp311.txt.gz").exists()
    deps = conn.execute("SELECT tool, name, preinstalled FROM dependencies ORDER BY tool, name")
    assert [tuple(r) for r in deps] == [("apt", "libfoo2", 0), ("apt", "libz1", 1),
                                        ("pip", "requests", 0)]
    assert conn.execute("SELECT soname FROM unresolved_sonames").fetchall()[0][0] == \
        "libgone.so.1"
    build = conn.execute("SELECT status, worker FROM builds").fetchall()
    assert [tuple(b) for b in build] == [("success", "test-worker")]
    # No ELF file in it: pure Python runs on any Pi, as the intake reads it itself.
    assert conn.execute("SELECT armv6 FROM wheels").fetchone()[0] == 1
    assert Queue("publish", connection=redis, serializer=SERIALIZER).count == 1
    other = b"PK" + data[2:] + b"x"
    response = push(server, config, report(data=other), [(GOOD, other)])
    # Other bytes under a served name: recorded (tests/test_reproducible.py), not served.
    assert response.status_code == 200 and (simple / GOOD).read_bytes() == data
    assert [d["filename"] for d in response.json()["differs"]] == [GOOD]


def test_pure_wheel_built_by_a_second_abi_keeps_the_first(intake):
    server, config, conn = intake
    first, _ = wheel_bytes("ww-demo", "1.0", GOOD)
    second, _ = wheel_bytes("ww-demo", "1.0", GOOD, requires_python=">=3.9")  # other bytes
    assert push(server, config, report(data=first), [(GOOD, first)]).status_code == 200
    response = push(server, config, report(data=second, abi="cp39"), [(GOOD, second)])
    assert response.status_code == 200, response.text
    assert (config.www_dir / "simple" / "ww-demo" / GOOD).read_bytes() == first
    builds = conn.execute("SELECT abi, status FROM builds ORDER BY abi").fetchall()
    assert [tuple(b) for b in builds] == [("cp311", "success"), ("cp39", "success")]
    assert conn.execute("SELECT builder_abi FROM wheels").fetchall()[0][0] == "cp311"


def big_member_wheel(name: str, size: int) -> bytes:
    data, _ = wheel_bytes("ww-demo", "1.0", GOOD)
    buffer = io.BytesIO(data)
    with zipfile.ZipFile(buffer, "a", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(name, b"\0" * size)
    return buffer.getvalue()


def many_members_wheel(count: int) -> bytes:
    data, _ = wheel_bytes("ww-demo", "1.0", GOOD)
    buffer = io.BytesIO(data)
    with zipfile.ZipFile(buffer, "a") as archive:
        for i in range(count):
            archive.writestr(f"ww_demo/m{i}.py", b"")
    return buffer.getvalue()


def encrypted_member_wheel() -> bytes:
    """A wheel with a member flagged encrypted: zipfile will not read it (RuntimeError),
    and the intake reads every member that may be an ELF file."""
    data, _ = wheel_bytes("ww-demo", "1.0", GOOD)
    buffer = io.BytesIO(data)
    with zipfile.ZipFile(buffer, "a") as archive:
        archive.writestr("ww_demo/_ext.so", b"\x7fELF")
        offset = archive.getinfo("ww_demo/_ext.so").header_offset
    raw = bytearray(buffer.getvalue())
    raw[offset + 6] |= 1  # the local header's flags
    raw[raw.rfind(b"PK\x01\x02") + 8] |= 1  # and the central directory's (the last entry)
    return bytes(raw)


def hostile_cases():
    good, _ = wheel_bytes("ww-demo", "1.0", GOOD)
    other, _ = wheel_bytes("other", "1.0", "other-1.0-py3-none-any.whl")
    liar, _ = wheel_bytes("other", "1.0", GOOD)  # right name outside, wrong METADATA
    traversal = "../../../evil-1.0-py3-none-any.whl"
    return {
        "bad token": (401, report(data=good), [(GOOD, good)], "wrong"),
        "wrong hash": (400, report(data=good + b"!"), [(GOOD, good)], None),
        "wrong project": (400, report("other-1.0-py3-none-any.whl", other),
                          [("other-1.0-py3-none-any.whl", other)], None),
        "unknown release": (409, report(UNKNOWN, good, version="9.9"), [(UNKNOWN, good)],
                            None),
        "metadata of another project": (422, report(data=liar), [(GOOD, liar)], None),
        "traversal filename": (400, report(traversal, good), [(traversal, good)], None),
        "wrong abi": (400, report("ww_demo-1.0-cp39-cp39-linux_armv7l.whl", good),
                      [("ww_demo-1.0-cp39-cp39-linux_armv7l.whl", good)], None),
        "too many members": (422, report(data=many_members_wheel(60)),
                             [(GOOD, many_members_wheel(60))], None),
        "too large member": (422, report(data=big_member_wheel("ww_demo/big", 100_000)),
                             [(GOOD, big_member_wheel("ww_demo/big", 100_000))], None),
        "traversal member": (422, report(data=big_member_wheel("../../etc/x", 1)),
                             [(GOOD, big_member_wheel("../../etc/x", 1))], None),
        "oversized body": (413, report(data=b"x" * 300_000), [(GOOD, b"x" * 300_000)], None),
        "not a zip": (422, report(data=b"not a zip"), [(GOOD, b"not a zip")], None),
        "encrypted member": (422, report(data=encrypted_member_wheel()),
                             [(GOOD, encrypted_member_wheel())], None),
        "html in an apt name": (400, {**report(data=good), "files": [
            {**report(data=good)["files"][0], "apt_dependencies": ["<script>"]}]},
            [(GOOD, good)], None),
        "wheel missing from the report": (400, report(data=good),
                                          [(GOOD, good), ("x-1.0-py3-none-any.whl", good)],
                                          None),
    }


@pytest.mark.parametrize("case", list(hostile_cases()))
def test_hostile_push_is_refused_and_leaves_nothing(intake, case):
    server, config, conn = intake
    status, the_report, wheels, token = hostile_cases()[case]
    response = push(server, config, the_report, wheels, token)
    assert response.status_code == status, response.text
    assert "error" in response.json()
    assert leftovers(config) == []
    assert conn.execute("SELECT COUNT(*) FROM builds").fetchone()[0] == 0
    assert conn.execute("SELECT COUNT(*) FROM wheels").fetchone()[0] == 0


@pytest.mark.parametrize("case", ["no such job", "queued, not started", "another worker's",
                                  "another release's", "finished"])
def test_a_push_for_a_job_this_worker_is_not_running_is_refused(intake, redis, case):
    """A valid token is not enough: a leaked one cannot replace other projects' files."""
    server, config, conn = intake
    good, _ = wheel_bytes("ww-demo", "1.0", GOOD)
    the_report = report(data=good)
    if case == "no such job":
        the_report["job_id"] = "build-cp311-" + "0" * 32
    elif case == "queued, not started":
        redis.delete("rq:wip:build-cp311")
    elif case == "another worker's":
        started_job(redis, "ww-demo", "1.0", "cp311", worker="pi-9")
    elif case == "another release's":
        the_report["job_id"] = build_job_id("other", "1.0", "cp311")
    elif case == "finished":
        redis.hset(f"rq:job:{the_report['job_id']}", "status", "finished")
    response = push(server, config, the_report, [(GOOD, good)])
    assert response.status_code == 403, response.text
    assert "is not a build of ww-demo 1.0 for cp311" in response.json()["error"]
    assert leftovers(config) == []


@pytest.mark.parametrize("claimed,recorded", [
    ("test-worker", "test-worker"),
    ("test-worker-armhf-bookworm", "test-worker-armhf-bookworm"),  # a builder of its own
    ("pi-2", "test-worker"),  # another worker's name: not believed
    ("test-workerx", "test-worker"),
])
def test_a_build_is_recorded_under_a_machine_its_token_may_name(intake, claimed, recorded):
    server, config, conn = intake
    data, _ = wheel_bytes("ww-demo", "1.0", GOOD)
    machine = {"name": claimed, "profile": 1, "os_release": "Debian GNU/Linux 12 (bookworm)",
               "toolchain": "gcc (Debian 12.2.0-14) 12.2.0"}
    response = push(server, config, report(data=data, machine=machine), [(GOOD, data)])
    assert response.status_code == 200, response.text
    assert [tuple(row) for row in conn.execute("SELECT worker, machine FROM builds")] == [
        ("test-worker", recorded)]
