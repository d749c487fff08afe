"""The wire format and the names rule, once: a build report survives the trip as JSON,
a malformed one is refused naming its field, and a table of tricky names gets the
same answer from the worker, the intake and the pages."""

from __future__ import annotations

import dataclasses
import hashlib
import json

import pytest
import requests

from ingest import catalogue
from publish.intake import Intake
from publish.releases import is_valid_name
from tests.publishing import apply_events, started_job, wheel_bytes
from tests.servers import serve
from worker.apt import AptReport
from worker.elf import Armv6
from worker.interpreter import BuildInterpreter
from worker.jobs import check_job
from worker.report import BuildOutcome, BuiltWheel
from worker.wheel import BadWheel, inspect_wheel
from worker.wire import (
    FALLBACK_EPOCH,
    BadJob,
    BadReport,
    BuildJob,
    BuildReport,
    Machine,
    ReportedFile,
)

FILENAME = "ww_demo-1.0-cp311-cp311-linux_armv7l.whl"
SHA = "ab" * 32
PI = BuildInterpreter(python="/usr/bin/python3", interpreter="cp311", abi="cp311",
                      platform="linux_armv7l", version="3.11.2")


def a_report() -> BuildReport:
    return BuildReport(
        project="ww-demo", version="1.0", abi="cp311", status="success", duration=12.5,
        worker="pi-1", job_id="build-cp311-0123456789abcdef0123456789abcdef", files=[
            ReportedFile(filename=FILENAME, size=1234, sha256=SHA, requires_python=">=3.9",
                         apt_dependencies=["libc6", "zlib1g"], apt_preinstalled=["libc6"],
                         unresolved_sonames=["libgone.so.1"], armv6=False),
            ReportedFile(filename="ww_demo-1.0-py3-none-any.whl", size=0, sha256=SHA,
                         armv6=True)],
        machine=Machine(name="pi-1-armhf", profile=2,
                        os_release="Debian GNU/Linux 12 (bookworm)",
                        toolchain="gcc (Debian 12.2.0-14) 12.2.0"))


# -- a report round-trips -----------------------------------------------------------


def test_report_round_trips():
    report = a_report()
    text = report.to_json()
    assert BuildReport.from_json(text) == report
    assert BuildReport.from_json(text.encode()) == report
    # The keys and their order are the wire format workers already send.
    data = json.loads(text)
    assert list(data) == ["project", "version", "abi", "status", "duration", "worker",
                          "job_id", "files", "machine"]
    assert list(data["machine"]) == ["name", "profile", "os_release", "toolchain"]
    assert list(data["files"][0]) == ["filename", "size", "sha256", "requires_python",
                                      "apt_dependencies", "apt_preinstalled",
                                      "unresolved_sonames", "armv6"]
    assert [f["armv6"] for f in data["files"]] == [False, True]
    null = json.loads(text)
    null["files"][0]["armv6"] = None  # an ELF file for another machine: not an ARM wheel
    assert BuildReport.from_json(json.dumps(null)).files[0].armv6 is None


def test_a_report_from_a_worker_older_than_machine_is_read():
    older = _without(json.loads(a_report().to_json()), "machine")
    assert BuildReport.from_json(json.dumps(older)).machine is None


def test_the_worker_report_is_one_the_intake_reads(tmp_path):
    """The worker builds its report from a wheel it read with the shared reader."""
    data, metadata = wheel_bytes("ww-demo", "1.0", FILENAME, ">=3.9",
                                 ["requests>=2", "pytest; extra == 'test'"])
    path = tmp_path / FILENAME
    path.write_bytes(data)
    wheel = inspect_wheel(path, "ww-demo", "1.0")
    assert (wheel.size, wheel.sha256) == (len(data), hashlib.sha256(data).hexdigest())
    assert wheel.metadata == metadata and wheel.requires_dist == ["requests"]
    assert (wheel.python_tag, wheel.abi_tag, wheel.platform_tag) == \
        ("cp311", "cp311", "linux_armv7l")
    outcome = BuildOutcome(project="ww-demo", version="1.0", abi="cp311", status="success",
                           duration=1.23456, log="", wheels=[
                               BuiltWheel(wheel, AptReport(dependencies=["zlib1g"]),
                                          Armv6(False, ["x.so needs ARMv7"]))],
                           job_id="build-cp311-x")
    report = BuildReport.from_json(outcome.report("pi-1").to_json())
    assert report.duration == 1.235 and report.worker == "pi-1"
    assert report.files == [ReportedFile(FILENAME, len(data), wheel.sha256, ">=3.9",
                                         ["zlib1g"], [], [], armv6=False)]


def test_the_reader_refuses_metadata_of_another_release(tmp_path):
    data, _ = wheel_bytes("ww-demo", "2.0", "ww_demo-1.0-py3-none-any.whl")
    path = tmp_path / "ww_demo-1.0-py3-none-any.whl"
    path.write_bytes(data)
    with pytest.raises(BadWheel, match="METADATA says version '2.0'"):
        inspect_wheel(path, "ww-demo", "1.0")


# -- a malformed report is refused, naming the field --------------------------------


def _without(data: dict, key: str) -> dict:
    return {k: v for k, v in data.items() if k != key}


def _file_changed(**changes) -> dict:
    data = json.loads(a_report().to_json())
    data["files"][0] = {**data["files"][0], **changes}
    return data


def _file_without(key: str) -> dict:
    data = json.loads(a_report().to_json())
    data["files"][0] = _without(data["files"][0], key)
    return data


GOOD = json.loads(a_report().to_json())
MALFORMED = {
    # an extra field
    "extra at the top": ({**GOOD, "signed_by": "me"}, "signed_by"),
    "extra in a file": (_file_changed(url="http://x/"), "files[0].url"),
    # a missing field
    "missing project": (_without(GOOD, "project"), "project"),
    "missing duration": (_without(GOOD, "duration"), "duration"),
    "missing worker": (_without(GOOD, "worker"), "worker"),
    "missing files": (_without(GOOD, "files"), "files"),
    "missing sha256": (_file_without("sha256"), "files[0].sha256"),
    "missing requires_python": (_file_without("requires_python"),
                                "files[0].requires_python"),
    "missing apt_preinstalled": (_file_without("apt_preinstalled"),
                                 "files[0].apt_preinstalled"),
    "missing armv6": (_file_without("armv6"), "files[0].armv6"),
    # a wrongly typed field
    "project a number": ({**GOOD, "project": 7}, "project"),
    "version a number": ({**GOOD, "version": 1.0}, "version"),
    "status a list": ({**GOOD, "status": ["success"]}, "status"),
    "duration a string": ({**GOOD, "duration": "12.5"}, "duration"),
    "duration a boolean": ({**GOOD, "duration": True}, "duration"),
    "worker null": ({**GOOD, "worker": None}, "worker"),
    "job id not rq's": ({**GOOD, "job_id": "../x"}, "job_id"),
    "files an object": ({**GOOD, "files": {}}, "files"),
    "a file a string": ({**GOOD, "files": [FILENAME]}, "files[0]"),
    "size a string": (_file_changed(size="1234"), "files[0].size"),
    "size a float": (_file_changed(size=1234.0), "files[0].size"),
    "requires_python a list": (_file_changed(requires_python=[">=3"]),
                               "files[0].requires_python"),
    "apt_dependencies a string": (_file_changed(apt_dependencies="libc6"),
                                  "files[0].apt_dependencies"),
    "an apt name a number": (_file_changed(apt_dependencies=["libc6", 7]),
                             "files[0].apt_dependencies[1]"),
    "unresolved_sonames null": (_file_changed(unresolved_sonames=None),
                                "files[0].unresolved_sonames"),
    "armv6 a string": (_file_changed(armv6="yes"), "files[0].armv6"),
    "armv6 a number": (_file_changed(armv6=1), "files[0].armv6"),
    "machine a string": ({**GOOD, "machine": "pi-1"}, "machine"),
    "extra in machine": ({**GOOD, "machine": {**GOOD["machine"], "ip": "10.0.0.1"}},
                         "machine.ip"),
    "missing machine profile": ({**GOOD, "machine": _without(GOOD["machine"], "profile")},
                                "machine.profile"),
    "machine profile a string": ({**GOOD, "machine": {**GOOD["machine"], "profile": "2"}},
                                 "machine.profile"),
    "machine profile negative": ({**GOOD, "machine": {**GOOD["machine"], "profile": -1}},
                                 "machine.profile"),
    "machine name too long": ({**GOOD, "machine": {**GOOD["machine"], "name": "x" * 1001}},
                              "machine.name"),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_report_is_refused_naming_the_field(case):
    data, field = MALFORMED[case]
    with pytest.raises(BadReport) as refused:
        BuildReport.from_json(json.dumps(data))
    assert str(refused.value).startswith(f"{field}: "), str(refused.value)


@pytest.mark.parametrize("data,says", [
    ({**GOOD, "status": "done"}, "status"),
    ({**GOOD, "files": []}, "a successful build has wheels"),
    ({**GOOD, "status": "failed"}, "a failed build has no wheels"),
    ({**GOOD, "files": [GOOD["files"][0]] * 2}, "listed twice"),
    (_file_changed(sha256="AB" * 32), "files[0].sha256"),
    (_file_changed(size=-1), "files[0].size"),
    (_file_changed(apt_dependencies=["libc6\n"]), "files[0].apt_dependencies[0]"),
    (_file_changed(unresolved_sonames=["x"] * 1001), "files[0].unresolved_sonames"),
    (_file_changed(filename="ww_demo-1.0-cp39-cp39-linux_armv7l.whl"), "not a wheel for"),
    (_file_changed(filename="../ww_demo-1.0-py3-none-any.whl"), "files[0].filename"),
    ({**GOOD, "duration": float("nan")}, "duration"),
    ([GOOD], "report: not an object"),
])
def test_report_breaking_a_rule_is_refused(data, says):
    with pytest.raises(BadReport, match=says.replace("[", r"\[").replace("]", r"\]")):
        BuildReport.from_json(json.dumps(data))


def test_deeply_nested_json_is_refused_not_crashed():
    with pytest.raises(BadReport, match="not JSON"):
        BuildReport.from_json("[" * 100_000 + "]" * 100_000)


def test_build_job_travels_as_rq_args():
    job = BuildJob("ww-demo", "1.0", "cp311", 1_700_000_000)
    assert job.to_args() == ("ww-demo", "1.0", "cp311", 1_700_000_000)
    assert BuildJob.from_args(*job.to_args()) == job
    with pytest.raises(BadJob, match="not 2 arguments"):
        BuildJob.from_args("ww-demo", "1.0")


def test_a_job_queued_before_the_release_time_travelled_still_runs():
    assert BuildJob.from_args("ww-demo", "1.0", "cp311") == \
        BuildJob("ww-demo", "1.0", "cp311", FALLBACK_EPOCH)


@pytest.mark.parametrize("released", [True, 1.7e9, "1700000000", None, -1, 315532799,
                                      4354819200, [1700000000]])
def test_a_release_time_zip_cannot_store_is_refused(released):
    with pytest.raises(BadJob, match="release time"):
        BuildJob.from_args("ww-demo", "1.0", "cp311", released)


# -- one table of tricky names, one answer from every side ---------------------------

NAMES = {  # name: whether it is a valid project name
    "a-b": True,
    "six": True,
    "a" * 200: True,
    "--": False,
    "a--b": False,  # canonicalize_name makes it a-b: another spelling, not a name
    "..": False,
    "café": False,
    "ｐｉｐ": False,  # fullwidth letters
    "a" * 300: False,
    "a" * 201: False,
    "a_b.C": False,  # valid on PyPI, but not canonical: a-b-c is its name
    "A": False,
    "": False,
    "-a": False,
    "a-": False,
    "a\n": False,
    "a/b": False,
    "--index-url=http://attacker.invalid/": False,
}


def worker_takes(name: str) -> bool:
    try:
        check_job(name, "1.0", "cp311", PI)
    except BadJob:
        return False
    return True


@pytest.fixture
def intake(config, redis):
    """The real intake over HTTP, with every valid name a release it builds."""
    conn = catalogue.connect(config.catalogue_path)
    apply_events(conn, [(name, "1.0", "new release") for name, ok in NAMES.items() if ok])
    config = dataclasses.replace(config, abis=("cp311",))
    server = serve(Intake(config).app)
    yield server, config, redis
    server.stop()
    conn.close()


def intake_takes(intake, name: str) -> bool:
    """Whether the intake records a failed build of `name` 1.0 (400: it refuses)."""
    server, config, redis = intake
    job_id = started_job(redis, name, "1.0", "cp311")
    report = BuildReport(project=name, version="1.0", abi="cp311", status="failed",
                         duration=1.0, worker="test-worker", job_id=job_id)
    response = requests.post(
        server.url + "builds", files=[("report", ("report.json", report.to_json())),
                                      ("log", ("build.log", b"no\n"))],
        headers={"Authorization": f"Bearer {config.worker_tokens['test-worker']}"},
        timeout=30)
    assert response.status_code in (200, 400), response.text
    return response.status_code == 200


def test_every_side_gives_one_answer_per_name(intake):
    answers = {name: (worker_takes(name), intake_takes(intake, name), is_valid_name(name))
               for name in NAMES}
    assert answers == {name: (ok, ok, ok) for name, ok in NAMES.items()}


VERSIONS = {  # version: whether it is a version we build
    "1.0": True,
    "1!2.0rc1.post3.dev4+local.7": True,
    "v1.0": True,  # PEP 440 allows the v; it is kept as PyPI spells it
    "1.0 --pre": False,
    "1.0\n": False,
    "../1.0": False,
    "-1.0": False,
    "1.0/": False,
    "not-a-version": False,
    "": False,
    "1." + "0" * 200: False,
}


@pytest.mark.parametrize("version", list(VERSIONS))
def test_worker_and_report_agree_on_versions(version):
    try:
        check_job("ww-demo", version, "cp311", PI)
        worker = True
    except BadJob:
        worker = False
    try:
        BuildReport.from_json(json.dumps({**GOOD, "version": version, "status": "failed",
                                          "files": []}))
        report = True
    except BadReport:
        report = False
    assert (worker, report) == (VERSIONS[version], VERSIONS[version])
