"""The build worker against a real redis-server, a real intake over HTTP and real
`pip wheel` builds of sdists made here: what it builds, what it refuses to run,
and what it reports."""

from __future__ import annotations

import dataclasses
import gzip
import io
import json
import os
import pickle
import signal
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from redis import Redis
from rq import Queue
from rq.job import Job

from ingest import settings
from ingest.__main__ import main as ingest_main
from ingest.catalogue import connect as catalogue_connect
from publish.intake import Intake as IntakeApp
from tests.publishing import started_job
from tests.sdists import c_sdist, pure_sdist, write_index
from tests.servers import serve
from worker.apt import base_system
from worker.elf import Armv6
from worker.interpreter import probe
from worker.jobs import build_root
from worker.push import Intake, PushRefused, push
from worker.queues import SERIALIZER, AllowlistJob, build_job_id, build_queue_name
from worker.report import BuildOutcome, BuiltWheel
from worker.runner import make_worker
from worker.wheel import inspect_wheel

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

SETUP_CUSTOM = """\
from setuptools import setup
{before}
setup(name={name!r}, version={version!r}, py_modules=[])
"""


def custom_sdist(dest: Path, name: str, version: str, before: str,
                 setup_name: str | None = None) -> Path:
    """An sdist whose setup.py runs `before` first (to fail, hang, or eat memory)."""
    root = f"{name.replace('-', '_')}-{version}"
    setup_py = SETUP_CUSTOM.format(before=before, name=setup_name or name, version=version)
    files = {"PKG-INFO": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
             "setup.py": setup_py}
    path = dest / f"{root}.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for member, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(f"{root}/{member}")
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    return path


def release_events(path: Path, releases: list[tuple[str, str]], serial: int = 2_000_000):
    """PyPI-style events announcing each release and its source file."""
    with path.open("w") as f:
        for name, version in releases:
            sdist = f"{name.replace('-', '_')}-{version}.tar.gz"
            for action in ("new release", f"add source file {sdist}"):
                serial += 1
                f.write(json.dumps({"serial": serial, "timestamp": 1_700_000_000 + serial,
                                    "name": name, "version": version,
                                    "action": action}) + "\n")
    return path


@dataclass
class Farm:
    """A data directory, an intake, a build index: what a worker talks to."""

    config: settings.Settings
    intake_url: str
    index: str
    sources: Path


def start_farm(tmp: Path, env, redis_url: str, sdists, backend_wheels,
               abis: str | None = None) -> tuple[Farm, object]:
    sources = tmp / "sources"
    sources.mkdir(exist_ok=True)
    paths = [make(sources) for make in sdists]
    index = write_index(tmp / "upstream", [*paths, *backend_wheels])
    env.setenv("WHEELWRIGHT_DATA", str(tmp / "var"))
    env.setenv("REDIS_URL", redis_url)
    env.setenv("WHEELWRIGHT_WORKER_NAME", "test-worker")
    env.setenv("WHEELWRIGHT_BUILD_INDEX_URL", index)
    env.setenv("WHEELWRIGHT_BUILD_DIR", str(tmp / "builds"))
    env.setenv("WHEELWRIGHT_PUSH_BACKOFF", "0.05")
    env.setenv("PIP_CONFIG_FILE", os.devnull)
    if abis:
        env.setenv("WHEELWRIGHT_ABIS", abis)
    else:
        env.delenv("WHEELWRIGHT_ABIS", raising=False)
    for name in ("PIP_FIND_LINKS", "PIP_EXTRA_INDEX_URL", "PIP_INDEX_URL",
                 "WHEELWRIGHT_WORKER_TOKENS", "WHEELWRIGHT_WORKER_TOKEN",
                 "WHEELWRIGHT_PYPI_URL"):
        env.delenv(name, raising=False)
    server = serve(IntakeApp(settings.load()).app)
    env.setenv("WHEELWRIGHT_INTAKE_URL", server.url)
    return Farm(settings.load(), server.url, index, sources), server


def catalogue_rows(config: settings.Settings, sql: str, *args) -> list[tuple]:
    conn = catalogue_connect(config.catalogue_path)
    try:
        return [tuple(r) for r in conn.execute(sql, args).fetchall()]
    finally:
        conn.close()


def stored_log(config: settings.Settings, project: str, version: str, abi: str) -> str:
    path = config.www_dir / "logs" / project / version / f"{abi}.txt.gz"
    return gzip.decompress(path.read_bytes()).decode()


def run_workers(config: settings.Settings, count: int, extra_env: dict | None = None):
    """`python -m worker --burst`, `count` of them side by side, until the queue is empty."""
    env = dict(os.environ, **(extra_env or {}))
    procs = [subprocess.Popen([sys.executable, "-m", "worker", "--burst"], cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
             for _ in range(count)]
    outputs = [p.communicate(timeout=300)[0].decode() for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    return outputs


def process_gone(pid: int, within: float = 10.0) -> bool:
    """Whether `pid` has ended (a zombie not yet reaped by init counts as ended)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return True
        if state in ("Z", "X"):
            return True
        time.sleep(0.05)
    return False


def hanging_setup(marker: str) -> str:
    """setup.py code that hangs as a process whose command line carries `marker`: a
    sandboxed build has a /tmp and process ids of its own, so tests find it by that."""
    return ("import os, sys\n"
            "os.execv(sys.executable, [sys.executable, '-c', "
            f"'import time; time.sleep(3600)', {marker!r}])")


def marker_pids(marker: str) -> list[int]:
    """The processes (host pids) whose command line has `marker` as an argument."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if marker.encode() in cmdline.read_bytes().split(b"\0"):
                found.append(int(cmdline.parent.name))
        except OSError:
            continue
    return found


# -- one farm for the module: every build below runs once, side by side ---------------

# A hostile build: find pip's --wheel-dir up the process tree and drop a wheel of
# another project there, beside the honest one.
SLIP_IN_A_WHEEL = """\
import os
pid = os.getppid()
while pid > 1:
    args = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\\0")
    if b"--wheel-dir" in args:
        dest = args[args.index(b"--wheel-dir") + 1].decode()
        open(os.path.join(dest, "somebody_else-1.0-py3-none-any.whl"), "wb").write(b"PK")
        break
    pid = int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[1])
"""
RELEASES = [("ww-pure", "1.0"), ("ww-zlib", "1.0"), ("ww-sqlite", "1.0"), ("ww-broken", "1.0"),
            ("ww-hang", "1.0"), ("ww-liar", "1.0"), ("ww-hog", "1.0")]


@dataclass
class FarmRun:
    farm: Farm
    abi: str
    jobs: dict[str, Job]
    outputs: list[str]
    hang_marker: str


@pytest.fixture(scope="module")
def farm_run(tmp_path_factory, redis_instance, backend_wheels) -> FarmRun:
    tmp = tmp_path_factory.mktemp("farm")
    hang_marker = f"ww-hang-{os.getpid()}-{tmp.name}"
    sdists = [
        lambda d: pure_sdist(d, "ww-pure", "1.0",
                             requires=["six>=1", "rich[jupyter]; extra == 'x'"]),
        lambda d: c_sdist(d, "ww-zlib", "1.0", link_zlib=True),
        lambda d: c_sdist(d, "ww-sqlite", "1.0", link_sqlite=True),
        lambda d: custom_sdist(d, "ww-broken", "1.0",
                               "raise SystemExit('ww-broken: this build fails on purpose')"),
        lambda d: custom_sdist(d, "ww-hang", "1.0", hanging_setup(hang_marker)),
        lambda d: custom_sdist(d, "ww-liar", "1.0", SLIP_IN_A_WHEEL),
        lambda d: custom_sdist(d, "ww-hog", "1.0", "hog = bytearray(3 * 1024 ** 3)"),
    ]
    redis = Redis.from_url(redis_instance.url)
    redis.flushall()
    with pytest.MonkeyPatch.context() as env:
        farm, server = start_farm(tmp, env, redis_instance.url, sdists, backend_wheels)
        abi = probe(farm.config.build_python).abi
        try:
            ingest_main(["replay", str(release_events(tmp / "events.jsonl", RELEASES))])
            outputs = run_workers(farm.config, 2, {
                "WHEELWRIGHT_BUILD_TIMEOUT": "20",
                "WHEELWRIGHT_BUILD_MEMORY": "1024",
                "WHEELWRIGHT_PREINSTALLED": "",  # no operator list: the base system only
            })
            jobs = {project: AllowlistJob.fetch(build_job_id(project, version, abi),
                                                connection=redis, serializer=SERIALIZER)
                    for project, version in RELEASES}
            yield FarmRun(farm, abi, jobs, outputs, hang_marker)
        finally:
            server.stop()
            redis.close()


def test_pure_wheel_is_built_and_recorded(farm_run):
    config, job = farm_run.farm.config, farm_run.jobs["ww-pure"]
    assert job.is_finished, job.latest_result().exc_string
    assert job.return_value()["files"] == ["ww_pure-1.0-py3-none-any.whl"]
    assert (config.www_dir / "simple" / "ww-pure" / "ww_pure-1.0-py3-none-any.whl").is_file()
    deps = catalogue_rows(config, "SELECT tool, name FROM dependencies "
                          "WHERE filename = 'ww_pure-1.0-py3-none-any.whl' ORDER BY tool")
    assert deps == [("pip", "six")]  # the extra's requirement is left out; no apt


def test_c_extension_names_zlib1g(farm_run):
    config, job, abi = farm_run.farm.config, farm_run.jobs["ww-zlib"], farm_run.abi
    assert job.is_finished, job.latest_result().exc_string
    [filename] = job.return_value()["files"]
    assert f"-{abi}-linux_" in filename
    deps = catalogue_rows(config, "SELECT name, preinstalled FROM dependencies "
                          "WHERE tool = 'apt' AND filename = ?", filename)
    # dpkg Pre-Depends on zlib1g: Debian's base system has it, priority optional or not.
    assert deps == [("zlib1g", int("zlib1g" in base_system()))]
    assert "libz.so.1 =>" in stored_log(config, "ww-zlib", "1.0", abi)


def test_c_extension_asks_users_for_its_library_and_not_libc6(farm_run):
    """libsqlite3-0 is outside Debian's base system, libc6 inside it (though of
    priority optional): the page's apt line and the JSON name the first only."""
    from publish import index

    config, job = farm_run.farm.config, farm_run.jobs["ww-sqlite"]
    assert job.is_finished, job.latest_result().exc_string
    [filename] = job.return_value()["files"]
    deps = catalogue_rows(config, "SELECT name, preinstalled FROM dependencies "
                          "WHERE tool = 'apt' AND filename = ?", filename)
    assert deps == [("libc6", 1), ("libsqlite3-0", 0)]
    conn = catalogue_connect(config.catalogue_path)
    try:
        index.publish_project(conn, config.www_dir, index.site_of(config), "ww-sqlite")
    finally:
        conn.close()
    page = (config.www_dir / "project" / "ww-sqlite" / "index.html").read_text()
    assert "<pre>sudo apt install libsqlite3-0</pre>" in page
    data = json.loads((config.www_dir / "project" / "ww-sqlite" / "json" /
                       "index.json").read_text())
    assert data["releases"]["1.0"]["files"][filename]["apt_dependencies"] == ["libsqlite3-0"]


def test_failed_build_is_recorded_with_its_log(farm_run):
    config = farm_run.farm.config
    assert farm_run.jobs["ww-broken"].is_finished
    assert catalogue_rows(config, "SELECT status FROM builds WHERE project = 'ww-broken'") \
        == [("failed",)]
    assert "this build fails on purpose" in stored_log(config, "ww-broken", "1.0", farm_run.abi)


def test_hanging_build_is_killed_at_the_timeout(farm_run):
    config = farm_run.farm.config
    assert catalogue_rows(config, "SELECT status FROM builds WHERE project = 'ww-hang'") \
        == [("failed",)]
    assert "[build killed after 20 s]" in stored_log(config, "ww-hang", "1.0", farm_run.abi)
    # the whole build is gone, not just pip
    assert not marker_pids(farm_run.hang_marker)


def test_wheel_of_another_name_is_a_failed_build(farm_run):
    config = farm_run.farm.config
    assert catalogue_rows(config, "SELECT status FROM builds WHERE project = 'ww-liar'") \
        == [("failed",)]
    assert "build refused" in stored_log(config, "ww-liar", "1.0", farm_run.abi)
    assert not list((config.www_dir / "simple").glob("*/somebody*"))


def test_build_beyond_the_memory_limit_fails(farm_run):
    config = farm_run.farm.config
    assert catalogue_rows(config, "SELECT status FROM builds WHERE project = 'ww-hog'") \
        == [("failed",)]
    assert "MemoryError" in stored_log(config, "ww-hog", "1.0", farm_run.abi)


def test_build_directories_are_removed(farm_run):
    root = build_root(farm_run.farm.config)
    assert root.is_dir() and list(root.iterdir()) == []


# -- jobs the worker must refuse ---------------------------------------------------


@pytest.fixture
def trap(tmp_path, monkeypatch):
    """A module that leaves a mark if anyone ever imports it."""
    mark = tmp_path / "imported"
    (tmp_path / "ww_trap.py").write_text(
        f"open({str(mark)!r}, 'w').write('imported')\n"
        "def run(*args, **kwargs):\n    open(%r, 'a').write('ran')\n" % str(mark))
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("ww_trap", None)
    return mark


def work_once(config, redis, abi):
    """One in-process burst; rq's signal handlers are taken out again afterwards,
    or processes the test run forks later would inherit them."""
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        make_worker(redis, config, abi).work(burst=True, with_scheduler=False)
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


def test_job_outside_the_allowlist_is_never_imported(config, redis, trap):
    abi = "cp311"
    queue = Queue(build_queue_name(abi), connection=redis, serializer=SERIALIZER)
    job = queue.enqueue("ww_trap.run", "x")
    work_once(config, redis, abi)
    job = AllowlistJob.fetch(job.id, connection=redis, serializer=SERIALIZER)
    assert job.is_failed and "not allowlisted" in job.latest_result().exc_string
    assert not trap.exists()


def test_callbacks_of_an_allowed_job_are_never_imported(config, redis, trap):
    from rq import Callback

    abi = probe(config.build_python).abi
    queue = Queue(build_queue_name(abi), connection=redis, serializer=SERIALIZER)
    job = queue.enqueue("worker.jobs.build", "ww-nothing", "1.0", abi,
                        on_failure=Callback("ww_trap.run"), on_success=Callback("ww_trap.run"))
    work_once(config, redis, abi)
    job = AllowlistJob.fetch(job.id, connection=redis, serializer=SERIALIZER)
    assert job.is_failed and "failure_callback_name" in job.latest_result().exc_string
    assert not trap.exists()


def test_pickled_job_is_never_unpickled(config, redis, tmp_path):
    """Someone with Redis access writes a pickle; our JSON-only worker must not load it."""
    mark = tmp_path / "unpickled"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {mark}",))

    abi = probe(config.build_python).abi
    queue = Queue(build_queue_name(abi), connection=redis, serializer=pickle)
    job = queue.enqueue("worker.jobs.build", Payload(), "1.0", abi)
    work_once(config, redis, abi)
    assert not mark.exists()
    assert redis.zcard(f"rq:failed:{build_queue_name(abi)}") == 1
    assert job.id.encode() in redis.zrange(f"rq:failed:{build_queue_name(abi)}", 0, -1)


@pytest.mark.parametrize("project,version,abi_of", [
    ("--index-url=http://attacker.invalid/", "1.0", "host"),
    ("ww-pure", "1.0 --pre", "host"),
    ("WW_Pure", "1.0", "host"),  # not canonical
    ("ww-pure", "1.0", "other"),  # a job for an ABI this interpreter does not build
])
def test_job_with_bad_arguments_fails_before_pip(config, redis, project, version, abi_of):
    abi = probe(config.build_python).abi
    queue = Queue(build_queue_name(abi), connection=redis, serializer=SERIALIZER)
    job = queue.enqueue("worker.jobs.build", project, version,
                        abi if abi_of == "host" else "cp27mu")
    work_once(config, redis, abi)
    job = AllowlistJob.fetch(job.id, connection=redis, serializer=SERIALIZER)
    assert job.is_failed and "BadJob" in job.latest_result().exc_string
    assert not build_root(config).exists() or not list(build_root(config).iterdir())


# -- the report itself, and the push ---------------------------------------------


def test_report_of_the_sqlite_wheel(farm_run, tmp_path):
    """What the worker sends for a C extension (the intake stores only part of it),
    with an operator's list that says the OS image ships libsqlite3-0."""
    config = farm_run.farm.config
    [filename] = farm_run.jobs["ww-sqlite"].return_value()["files"]
    wheel = tmp_path / filename
    wheel.write_bytes((config.www_dir / "simple" / "ww-sqlite" / filename).read_bytes())
    from worker.jobs import inspect_built

    interpreter = probe(config.build_python)
    preinstalled = tmp_path / "pre-{abi}.txt"
    Path(str(preinstalled).replace("{abi}", interpreter.abi)).write_text(
        "# the image\nlibsqlite3-0\n")
    with_list = dataclasses.replace(config, preinstalled_file=str(preinstalled))
    built = inspect_built(wheel, tmp_path, with_list, interpreter, "ww-sqlite", "1.0")
    report = dataclasses.asdict(built.reported())
    assert report["apt_dependencies"] == ["libc6", "libsqlite3-0"]
    assert report["apt_preinstalled"] == ["libc6", "libsqlite3-0"]
    assert report["unresolved_sonames"] == []
    assert report["requires_python"] == ">=3.7"
    assert len(report["sha256"]) == 64 and report["size"] == wheel.stat().st_size
    if not interpreter.platform.startswith("linux_arm"):
        assert report["armv6"] is None  # x86 code: not an ARM wheel


class Flaky:
    """Answers 503 to the first `failures` requests, then passes them to `app`."""

    def __init__(self, app, failures: int):
        self.app, self.failures, self.seen = app, failures, 0

    def __call__(self, environ, start_response):
        self.seen += 1
        if self.seen <= self.failures:
            environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
            start_response("503 Service Unavailable", [("Content-Type", "application/json")])
            return [b'{"error": "busy"}']
        return self.app(environ, start_response)


def pushed_outcome(farm_run, tmp_path) -> BuildOutcome:
    config = farm_run.farm.config
    source = config.www_dir / "simple" / "ww-pure" / "ww_pure-1.0-py3-none-any.whl"
    wheel = tmp_path / source.name
    wheel.write_bytes(source.read_bytes())
    from worker.apt import AptReport

    info = inspect_wheel(wheel, "ww-pure", "1.0")
    redis = Redis.from_url(config.effective_redis_url)
    return BuildOutcome(project="ww-pure", version="1.0", abi=farm_run.abi, status="success",
                        duration=1.0, log="rebuilt\n",
                        wheels=[BuiltWheel(info, AptReport(), Armv6(True))],
                        job_id=started_job(redis, "ww-pure", "1.0", farm_run.abi))


def test_push_retries_server_errors_and_is_idempotent(farm_run, tmp_path):
    config = farm_run.farm.config
    flaky = Flaky(IntakeApp(config).app, failures=2)
    server = serve(flaky)
    try:
        intake = Intake(url=server.url, worker="test-worker", token=config.worker_token,
                        retries=4, backoff=0.05)
        outcome = pushed_outcome(farm_run, tmp_path)
        first = push(intake, outcome)
        again = push(intake, outcome)  # the same push told twice changes nothing
    finally:
        server.stop()
    assert flaky.seen == 4
    assert first["files"] == again["files"] == ["ww_pure-1.0-py3-none-any.whl"]
    assert catalogue_rows(config, "SELECT COUNT(*) FROM builds WHERE project = 'ww-pure'") \
        == [(1,)]


def test_push_gives_up_after_its_retries(farm_run, tmp_path):
    server = serve(Flaky(lambda e, s: [], failures=100))
    try:
        intake = Intake(url=server.url, worker="w", token="t", retries=3, backoff=0.01)
        with pytest.raises(RuntimeError, match="after 3 attempts"):
            push(intake, pushed_outcome(farm_run, tmp_path))
    finally:
        server.stop()


def test_push_retries_when_the_intake_is_down(farm_run, tmp_path):
    intake = Intake(url="http://127.0.0.1:9/", worker="w", token="t", retries=2, backoff=0.01)
    with pytest.raises(RuntimeError, match="ConnectionError"):
        push(intake, pushed_outcome(farm_run, tmp_path))


def test_refused_push_is_not_retried(farm_run, tmp_path):
    intake = Intake(url=farm_run.farm.intake_url, worker="w", token="not-the-token",
                    retries=5, backoff=10)
    started = time.monotonic()
    with pytest.raises(PushRefused) as refused:
        push(intake, pushed_outcome(farm_run, tmp_path))
    assert refused.value.status == 401
    assert time.monotonic() - started < 10  # no backoff sleep happened


def test_log_is_capped(tmp_path):
    from worker.build import run_pip_wheel

    script = "import sys\nfor i in range(200000): sys.stdout.write('line %d\\n' % i)\n"
    run = run_pip_wheel([sys.executable, "-c", script], tmp_path, timeout=60, log_limit=10000)
    assert run.returncode == 0
    assert len(run.log) < 10200 and run.log.startswith("line 0\n")
    assert run.log.rstrip().endswith("line 199999") and "bytes of log cut" in run.log


def test_git_is_limited_to_local_repositories(tmp_path):
    from worker.build import run_pip_wheel

    script = "import os; print('GIT_ALLOW_PROTOCOL=' + os.environ['GIT_ALLOW_PROTOCOL'])"
    run = run_pip_wheel([sys.executable, "-c", script], tmp_path, timeout=60)
    assert "GIT_ALLOW_PROTOCOL=file" in run.log

