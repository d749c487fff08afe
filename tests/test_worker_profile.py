"""The builder profile, the build dependencies per project, and the machine each build
report names: the shipped files parse, a build whose mapped packages are missing fails
before pip, and a real worker's reports say which machine built them."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from email.parser import BytesParser
from pathlib import Path

import pytest
from redis import Redis

from ingest.__main__ import main as ingest_main
from publish.intake import Intake as IntakeApp
from tests.sdists import c_sdist, pure_sdist
from tests.servers import serve
from tests.test_worker import (
    ROOT,
    release_events,
    run_workers,
    start_farm,
)
from worker import notes, settings
from worker.chroot import READY, chroot_marker, profile_commands, profile_outdated, worker_env
from worker.interpreter import probe
from worker.machine import os_release, toolchain
from worker.profile import (
    BUILD_DEPS,
    DEBIAN_NAME,
    DEFAULT,
    MARKER,
    ProfileError,
    available_packages,
    build_deps_for,
    describe,
    install_command,
    installable,
    installed_profile,
    load_build_deps,
    load_profile,
    missing_packages,
    record_installed,
    wanted_packages,
)

ABSENT = "ww-not-installed-dev"  # a package no host has


# -- the shipped files ------------------------------------------------------------


def test_shipped_profile_parses():
    profile = load_profile()
    assert isinstance(profile.version, int) and profile.version >= 1
    assert len(profile.packages) >= 20
    assert all(DEBIAN_NAME.fullmatch(p) for p in profile.packages)
    for needed in ("build-essential", "pkg-config", "swig", "libffi-dev", "libyaml-dev",
                   "python3-dev"):
        assert needed in profile.packages
    # Reviewed like code: each package says, on its line, who needs it.
    lines = [line for line in DEFAULT.read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    assert len(lines) == len(profile.packages)
    assert all("#" in line and line.split("#", 1)[1].strip() for line in lines)


def test_shipped_build_deps_parse_and_are_all_installed_by_the_profile_command():
    deps = load_build_deps()
    assert deps.version >= 1
    assert deps.by_project["h5py"] == ["libhdf5-dev"]
    assert build_deps_for("PyBluez") == build_deps_for("pybluez") == ["libbluetooth-dev"]
    assert build_deps_for("NetfilterQueue") == ["libnetfilter-queue-dev"]
    assert build_deps_for("ww-unlisted") == []
    wanted = wanted_packages(load_profile(), deps)
    assert set(deps.packages()) <= set(wanted)
    assert len(wanted) == len(set(wanted))


def test_build_deps_name_only_what_the_profile_lacks():
    """A package the profile has would be checked for nothing: the mapping is for
    the packages too rare for the profile, and `profile` lists them apart."""
    profile, deps = load_profile(), load_build_deps()
    assert set(deps.packages()).isdisjoint(profile.packages)
    lines = describe(profile, deps, 0)
    [besides] = [line for line in lines if "besides the profile" in line]
    assert besides.endswith(f": {len(deps.packages())}") and deps.packages()
    assert lines[-len(deps.packages()):] == deps.packages()


def test_the_profile_version_adds_both_files(tmp_path):
    """Editing either file (and bumping its version) raises the builder profile
    version that machines record and the master compares."""
    profile = tmp_path / "profile.txt"
    profile.write_text("# version: 4\ngcc  # why\n")
    deps = tmp_path / "deps.txt"
    deps.write_text("# version: 2\nww-x: libfoo-dev\n")
    loaded = load_profile(profile, deps)
    assert (loaded.version, loaded.file_version, loaded.deps_version) == (6, 4, 2)
    deps.write_text("# version: 3\nww-x: libfoo-dev libbar-dev\n")
    assert load_profile(profile, deps).version == 7
    deps.write_text("ww-x: libfoo-dev\n")  # no version line: it adds nothing
    assert load_profile(profile, deps).version == 4
    shipped = load_profile()
    assert shipped.version == shipped.file_version + load_build_deps().version
    assert describe(shipped, load_build_deps(), 0)[1] == (
        f"# = builder-profile.txt version {shipped.file_version} "
        f"+ build dependencies version {shipped.deps_version}")


POLICY = """\
libffi-dev:
  Installed: 3.4.4-1
  Candidate: 3.4.4-1
  Version table:
 *** 3.4.4-1 500
        500 http://mirror.example/debian bookworm/main amd64 Packages
libfreetype-dev:
  Installed: (none)
  Candidate: (none)
  Version table:
make:
  Installed: (none)
  Candidate: 4.2.1-1.2
  Version table:
     4.2.1-1.2 500
"""


def test_packages_a_release_lacks_are_left_out():
    """`apt-cache policy` on an older release: a name it lacks is not in its output at
    all, one with no candidate (a virtual or vanished package) is listed as such;
    both are left out of the install, the rest keep the profile's order."""
    wanted = ["make", "libfreetype-dev", "libffi-dev", "ww-not-in-this-release", "make"]
    assert available_packages(POLICY, wanted) == ["make", "libffi-dev"]
    assert available_packages("", wanted) == []


@pytest.mark.skipif(not shutil.which("apt-cache"), reason="needs apt-cache")
def test_installable_asks_this_hosts_apt():
    assert installable(["libc6-dev", ABSENT, "libc6-dev"]) == ["libc6-dev"]
    assert installable([]) == []


def _bookworm() -> bool:
    return "VERSION_CODENAME=bookworm" in Path("/etc/os-release").read_text()


@pytest.mark.skipif(not shutil.which("apt-cache") or not _bookworm(),
                    reason="needs apt-cache on Debian Bookworm, the profile's release")
def test_every_package_exists_in_bookworm():
    """The names apt-get will be given exist in this host's Debian 12 archive (armhf
    uses the same names). apt-cache show fails on any unknown name."""
    wanted = wanted_packages(load_profile(), load_build_deps())
    shown = subprocess.run(["apt-cache", "show", "--no-all-versions", *wanted],
                           capture_output=True, text=True)
    assert shown.returncode == 0, shown.stderr
    found = {line.split()[1] for line in shown.stdout.splitlines()
             if line.startswith("Package: ")}
    assert found == set(wanted)


# -- parsing rules ----------------------------------------------------------------


@pytest.mark.parametrize("text,error", [
    ("gcc  # no version\n", "no '# version: N' line"),
    ("# version: 0\ngcc\n", "positive integer"),
    ("# version: one\ngcc\n", "positive integer"),
    ("# version: 1\n# version: 2\n", "a second version line"),
    ("# version: 1\nGcc\n", "not a Debian package name"),
    ("# version: 1\n-oAPT::x=y\n", "not a Debian package name"),
    ("# version: 1\ngcc make\n", "one package a line"),
    ("# version: 1\ngcc\ngcc\n", "listed twice"),
])
def test_bad_profiles_are_refused(tmp_path, text, error):
    path = tmp_path / "profile.txt"
    path.write_text(text)
    with pytest.raises(ProfileError, match=error):
        load_profile(path)


def test_build_deps_names_are_normalised(tmp_path):
    path = tmp_path / "deps.txt"
    path.write_text("# comment\n\nPyYAML: libyaml-dev  # why\nFoo_Bar.baz : a1 b2\n")
    deps = load_build_deps(path)
    assert deps.by_project == {"pyyaml": ["libyaml-dev"], "foo-bar-baz": ["a1", "b2"]}
    assert build_deps_for("foo.bar_baz", path) == ["a1", "b2"]
    assert deps.packages() == ["a1", "b2", "libyaml-dev"]


@pytest.mark.parametrize("text,error", [
    ("pyyaml libyaml-dev\n", "expected 'project: package"),
    ("pyyaml:\n", "expected 'project: package"),
    ("pyyaml: LibYAML\n", "not a Debian package name"),
    ("pyyaml: a1\nPyYAML: b2\n", "listed twice"),
    ("-bad-: a1\n", "canonical project name"),
])
def test_bad_build_deps_are_refused(tmp_path, text, error):
    path = tmp_path / "deps.txt"
    path.write_text(text)
    with pytest.raises(ProfileError, match=error):
        load_build_deps(path)


def test_installed_profile_is_recorded(tmp_path):
    marker = tmp_path / "etc" / "builder-profile"
    assert installed_profile(marker) == 0
    record_installed(7, marker)
    assert installed_profile(marker) == 7
    assert marker.stat().st_mode & 0o777 == 0o644
    marker.write_text("garbage\n")
    assert installed_profile(marker) == 0


@pytest.mark.skipif(not shutil.which("dpkg-query"), reason="needs dpkg")
def test_missing_packages_asks_dpkg():
    assert missing_packages(["libc6-dev", ABSENT, "libc6-dev"]) == [ABSENT]
    assert missing_packages([]) == []


def test_profile_command_prints_the_list(tmp_path):
    marker = tmp_path / "marker"
    record_installed(3, marker)
    shown = subprocess.run([sys.executable, "-m", "worker", "profile"], cwd=ROOT,
                           env=dict(os.environ, WHEELWRIGHT_PROFILE_MARKER=str(marker)),
                           capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    profile = load_profile()
    assert lines[0] == (f"# builder profile version {profile.version} "
                        "(installed on this machine: 3)")
    assert [line for line in lines if not line.startswith("#")] == \
        wanted_packages(profile, load_build_deps())


# -- the armhf chroot installs the profile --------------------------------------


def test_chroot_installs_the_profile_and_every_build_dependency():
    profile, deps = load_profile(), load_build_deps()
    update, install = profile_commands(profile, deps)
    assert update == ["apt-get", "update", "-q"]
    assert install == install_command(wanted_packages(profile, deps))
    assert install[:5] == ["apt-get", "install", "-y", "-q", "--no-install-recommends"]
    assert set(install[5:]) == set(profile.packages) | set(deps.packages())
    assert chroot_marker(Path("/srv/armhf")) == Path("/srv/armhf") / str(MARKER).lstrip("/")


def test_chroot_installs_again_after_a_profile_bump():
    profile = load_profile()
    assert profile_outdated(profile.version, [], profile) == []
    bumped = profile_outdated(profile.version - 1, [], profile)
    assert bumped == [f"it has builder profile {profile.version - 1 or 'none'}, "
                      f"this checkout {profile.version}"]
    assert profile_outdated(0, [], profile)[0].startswith("it has builder profile none")
    # build-deps.txt edited: a package missing, though the version is the same
    assert profile_outdated(profile.version, ["libfoo-dev"], profile) == \
        ["1 packages missing (libfoo-dev)"]


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("dpkg-query"),
                    reason="chroot needs root")
def test_missing_packages_in_a_chroot():
    """The chroot's dpkg is asked through chroot(8): here the host's own root."""
    assert missing_packages(["libc6-dev", ABSENT], root=Path("/")) == [ABSENT]
    with pytest.raises(subprocess.CalledProcessError):
        missing_packages(["libc6-dev"], root=Path("/nonexistent-chroot"))


def test_chroot_worker_has_a_name_of_its_own(tmp_path):
    config = settings.load({"WHEELWRIGHT_DATA": str(tmp_path), "WHEELWRIGHT_WORKER_NAME": "pi9",
                            "WHEELWRIGHT_WORKER_TOKEN": "t"})
    env = worker_env(config, "bookworm")
    # The token's worker name (the intake binds pushes to it), a machine of its own.
    assert env["WHEELWRIGHT_WORKER_NAME"] == "pi9"
    assert env["WHEELWRIGHT_MACHINE_NAME"] == "pi9-armhf-bookworm"
    assert worker_env(config, "bullseye")["WHEELWRIGHT_MACHINE_NAME"] == "pi9-armhf-bullseye"
    assert settings.load({**env, "WHEELWRIGHT_DATA": str(tmp_path)}).machine_name == \
        "pi9-armhf-bookworm"
    assert config.machine_name == "pi9"
    assert "WHEELWRIGHT_PROFILE_MARKER" not in env and "WHEELWRIGHT_BUILD_DEPS" not in env
    assert READY.startswith("etc/")


# -- real builds through a real worker and intake --------------------------------


class Recorder:
    """Keeps the report and the log of every push, then hands the push to the intake."""

    def __init__(self, app):
        self.app = app
        self.reports: list[dict] = []
        self.logs: dict[str, str] = {}  # project -> the log the worker pushed

    def __call__(self, environ, start_response):
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        header = f"Content-Type: {environ.get('CONTENT_TYPE', '')}\r\n\r\n".encode()
        parts = {part.get_filename(): part.get_payload(decode=True)
                 for part in BytesParser().parsebytes(header + body).walk()}
        if "report.json" in parts:
            report = json.loads(parts["report.json"])
            self.reports.append(report)
            self.logs[report["project"]] = parts["build.log"].decode()
        environ["wsgi.input"] = io.BytesIO(body)
        return self.app(environ, start_response)


@dataclass
class DepsRun:
    config: object
    abi: str
    reports: dict[str, dict]  # project -> the report the worker pushed
    logs: dict[str, str]  # project -> the log the worker pushed
    all_reports: list[dict]  # every push, in order
    output: str  # what the worker printed


@pytest.fixture(scope="module")
def deps_run(tmp_path_factory, redis_instance, backend_wheels) -> DepsRun:
    tmp = tmp_path_factory.mktemp("deps")
    mapping = tmp / "build-deps.txt"
    mapping.write_text(f"ww-needy: libc6-dev {ABSENT}\nWW_Fine: libc6-dev\n")
    marker = tmp / "builder-profile"
    record_installed(5, marker)
    redis = Redis.from_url(redis_instance.url)
    redis.flushall()
    releases = [("ww-needy", "1.0"), ("ww-fine", "1.0")]
    with pytest.MonkeyPatch.context() as env:
        farm, plain = start_farm(tmp, env, redis_instance.url, [
            lambda d: pure_sdist(d, "ww-needy", "1.0"),
            lambda d: c_sdist(d, "ww-fine", "1.0"),
        ], backend_wheels)
        recorder = Recorder(IntakeApp(farm.config).app)
        server = serve(recorder)
        try:
            env.setenv("WHEELWRIGHT_INTAKE_URL", server.url)
            ingest_main(["replay", str(release_events(tmp / "events.jsonl", releases))])
            [output] = run_workers(farm.config, 1, {"WHEELWRIGHT_BUILD_DEPS": str(mapping),
                                                    "WHEELWRIGHT_PROFILE_MARKER": str(marker)})
        finally:
            server.stop()
            plain.stop()
            redis.close()
    reports = {r["project"]: r for r in recorder.reports}
    return DepsRun(farm.config, probe(farm.config.build_python).abi, reports, recorder.logs,
                   recorder.reports, output)


@pytest.mark.skipif(not shutil.which("dpkg-query"), reason="needs dpkg")
def test_missing_build_dependency_fails_before_pip(deps_run):
    report = deps_run.reports["ww-needy"]
    assert report["status"] == "failed" and report["files"] == []
    # libc6-dev is installed, so only the absent package is named; and nothing else
    # is in the log: pip never ran (its log would say what it was looking at)
    assert deps_run.logs["ww-needy"] == notes.with_notes("", [notes.missing_build_deps(
        [ABSENT])])
    assert deps_run.logs["ww-needy"] == (f"{notes.TRAILER}\n[wheelwright] missing build "
                                         f"dependencies: {ABSENT} (apt-get install {ABSENT})\n")
    assert report["duration"] == 0.0
    # The first try failed the job, for rq to run it again, maybe on another worker
    # that has the package; only the last try, with no tries left, was recorded.
    assert deps_run.output.count(f"MissingBuildDeps: test-worker lacks {ABSENT}") == 1
    assert [r["project"] for r in deps_run.all_reports].count("ww-needy") == 1


@pytest.mark.skipif(not shutil.which("dpkg-query"), reason="needs dpkg")
def test_installed_build_dependency_lets_the_build_run(deps_run):
    report = deps_run.reports["ww-fine"]
    assert report["status"] == "success"
    [wheel] = report["files"]
    assert f"-{deps_run.abi}-linux_" in wheel["filename"]
    assert "Successfully built ww-fine" in deps_run.logs["ww-fine"]


def test_build_reports_name_their_machine(deps_run):
    gcc = subprocess.run(["gcc", "--version"], capture_output=True, text=True)
    expected = {"name": "test-worker", "profile": 5, "os_release": os_release(),
                "toolchain": gcc.stdout.splitlines()[0] if gcc.returncode == 0 else ""}
    assert expected["os_release"] and expected["os_release"] in Path(
        "/etc/os-release").read_text()
    assert expected["toolchain"] == toolchain()
    for report in deps_run.reports.values():
        assert report["machine"] == expected


def test_os_release_reads_pretty_name(tmp_path):
    path = tmp_path / "os-release"
    path.write_text('NAME="Debian GNU/Linux"\nPRETTY_NAME="Raspbian GNU/Linux 12 '
                    '(bookworm)"\nID=raspbian\n')
    assert os_release(path) == "Raspbian GNU/Linux 12 (bookworm)"
    path.write_text("PRETTY_NAME=Plain\n")
    assert os_release(path) == "Plain"
    assert os_release(tmp_path / "missing") == ""


def test_default_paths_are_the_shipped_files():
    assert DEFAULT.name == "builder-profile.txt" and DEFAULT.is_file()
    assert BUILD_DEPS.name == "build-deps.txt" and BUILD_DEPS.is_file()
