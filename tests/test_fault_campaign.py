"""The fault campaign (issue 11): the real system under `python -m ingest up`, with
builds under way, while SIGKILL takes a random process of it at random moments:
ingest, the worker, its build, the intake, the publisher, the web server or Redis.
The supervisor starts each again; in the end every release is built exactly once,
every file the catalogue lists is served whole with its hash, and nothing else is.

Also the supervisor's restart policy on its own, with a Procfile of stand-ins."""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from rq.registry import FailedJobRegistry, StartedJobRegistry

from ingest.supervisor import CRASH_LOOP
from tests.system import ROOT, System, catalogue_rows, job_lines, make_system, wait_for
from worker.queues import PUBLISH_QUEUE, build_queue_name

# Settings that let the farm mend itself within the test's time: a job whose worker
# died unseen is found abandoned within seconds, a push outlasts an intake restart,
# and a job has a try for each fault that may land in it (see Campaign.budget).
CAMPAIGN_ENV = {
    "WHEELWRIGHT_BUILD_RETRIES": "3",
    "WHEELWRIGHT_PUSH_BACKOFF": "0.5",  # 6 tries over 15 s
    "WHEELWRIGHT_HEARTBEAT_INTERVAL": "2",
    "WHEELWRIGHT_ABANDON_GRACE": "5",
    "WHEELWRIGHT_MAINTENANCE_INTERVAL": "5",
}
KINDS = ("ingest", "worker", "build", "intake", "publisher", "web", "redis")
# Each Procfile process of a kind, by the module and arguments it runs.
COMMANDS = {
    "ingest": ("ingest", "follow"),
    "worker": ("worker",),
    "intake": ("publish", "intake"),
    "publisher": ("publish", "worker"),
    "web": ("publish", "serve"),
}


@dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    argv: tuple[str, ...]

    def runs(self, module: tuple[str, ...]) -> bool:
        """Whether this is `python -m <module...>`, exactly."""
        argv = self.argv
        return "-m" in argv and argv[argv.index("-m") + 1:] == module


def process_table() -> dict[int, Proc]:
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue  # gone meanwhile
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] in ("Z", "X"):
            continue
        table[int(entry.name)] = Proc(int(entry.name), int(fields[1]),
                                      tuple(a.decode(errors="replace") for a in argv if a))
    return table


def descendants(table: dict[int, Proc], root: int) -> list[Proc]:
    children: dict[int, list[Proc]] = {}
    for proc in table.values():
        children.setdefault(proc.ppid, []).append(proc)
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child.pid)
    return found


def targets(supervisor: int, kind: str) -> list[Proc]:
    """The processes of `kind` in the supervisor's tree now. A kind's process is the
    one its parent does not share its command with (an rq work horse does); a build
    is what the worker's work horse started: bubblewrap, or pip without it."""
    table = process_table()
    tree = descendants(table, supervisor)
    if kind == "redis":
        # redis-server rewrites its title: "/path/redis-server unixsocket:/path".
        return [p for p in tree if p.ppid == supervisor and p.argv
                and "redis-server" in p.argv[0]]
    if kind == "build":
        horses = [p for p in tree if p.runs(COMMANDS["worker"])
                  and table.get(p.ppid, p).runs(COMMANDS["worker"])]
        return [p for p in tree if any(p.ppid == h.pid for h in horses)]
    return [p for p in tree if p.runs(COMMANDS[kind])
            and not table.get(p.ppid, p).runs(COMMANDS[kind])]


@dataclass
class Campaign:
    system: System
    kills: int
    seed: int
    kinds: tuple[str, ...] = KINDS
    gap: tuple[float, float] = (0.5, 3.0)  # seconds before a kill, once its turn comes
    done: Counter = field(default_factory=Counter)  # kills by kind
    log: list[str] = field(default_factory=list)

    def budget(self) -> bool:
        """Whether the running build job has a try left for one more fault in it. A
        job gets WHEELWRIGHT_BUILD_RETRIES more tries when it fails, whatever failed:
        a farm survives that many faults in one build, and the campaign asks no more."""
        try:
            redis = self.system.redis()
            for job_id in StartedJobRegistry(build_queue_name(self.system.abi),
                                             connection=redis).get_job_ids():
                left = redis.hget(f"rq:job:{job_id}", "retries_left")
                if left is None or int(left) < 1:
                    return False
        except Exception:  # noqa: BLE001 - Redis restarting: no job to spare
            return False
        return True

    def run(self, process: subprocess.Popen) -> None:
        rng = random.Random(self.seed)
        schedule: list[str] = []
        started = time.monotonic()
        count = len(self.system.releases)
        while (kills := sum(self.done.values())) < self.kills:
            if not schedule:  # every kind in turn, in a random order each round
                schedule = rng.sample(self.kinds, len(self.kinds))
            kind = schedule.pop()
            # Kills spread over the whole workload: the k-th once k/kills of it is built.
            wait_for(lambda k=kills: self.system.built() >= k * count // self.kills,
                     180, f"{kills * count // self.kills} builds", alive=process)
            time.sleep(rng.uniform(*self.gap))  # then a random moment
            assert process.poll() is None, self.system.output()[-4000:]
            if kind in ("worker", "build") and not self.budget():
                continue
            found = targets(process.pid, kind)
            if not found:
                continue  # no build under way, or the process is starting again
            victim = rng.choice(found)
            try:
                os.kill(victim.pid, signal.SIGKILL)
            except ProcessLookupError:
                continue
            self.done[kind] += 1
            self.log.append(f"{time.monotonic() - started:6.1f} s  {kind:<9} pid {victim.pid}"
                            f"  {self.system.built()} built")


def served_hashes(www: Path, project: str) -> dict[str, str]:
    """filename: sha256 as the project's simple page (PEP 691 JSON) states them."""
    page = www / "simple" / project / "index.json"
    if not page.exists():
        return {}
    return {f["filename"]: f["hashes"]["sha256"] for f in json.loads(page.read_text())["files"]}


def pages_current(system: System) -> bool:
    """Every catalogued wheel is on its project's simple page with its hash."""
    rows = catalogue_rows(system.config, "SELECT project, filename, sha256 FROM wheels")
    return bool(rows) and all(served_hashes(system.config.www_dir, project).get(filename)
                              == sha256 for project, filename, sha256 in rows)


def settled(system: System) -> bool:
    """Nothing queued or running, and every page shows what the catalogue holds."""
    try:
        redis = system.redis()
        for name in (build_queue_name(system.abi), PUBLISH_QUEUE):
            if redis.llen(f"rq:queue:{name}") or StartedJobRegistry(name,
                                                                    connection=redis).count:
                return False
    except Exception:  # noqa: BLE001 - Redis restarting
        return False
    return pages_current(system)


@dataclass
class WwwReport:
    wheels: int = 0
    problems: list[str] = field(default_factory=list)
    orphans: list[str] = field(default_factory=list)


def check_www(system: System) -> WwwReport:
    """Every file the catalogue lists is in www/ whole, with its hash, on its page;
    no temporary or unlisted file is there. (`admin verify` will say the same.)"""
    www = system.config.www_dir
    report = WwwReport()
    listed = set()
    rows = catalogue_rows(system.config, "SELECT project, filename, sha256, metadata_sha256 "
                          "FROM wheels")
    for project, filename, sha256, metadata_sha256 in rows:
        path = www / "simple" / project / filename
        listed |= {path, path.with_name(filename + ".metadata")}
        report.wheels += 1
        if not path.exists():
            report.problems.append(f"{filename}: listed, not in www/")
            continue
        if hashlib.sha256(path.read_bytes()).hexdigest() != sha256:
            report.problems.append(f"{filename}: sha256 differs from the catalogue's")
        with zipfile.ZipFile(path) as wheel:
            if wheel.testzip() is not None:
                report.problems.append(f"{filename}: a damaged member")
        if served_hashes(www, project).get(filename) != sha256:
            report.problems.append(f"{filename}: not on its simple page with its hash")
        metadata = path.with_name(filename + ".metadata")
        if not metadata.exists() or \
                hashlib.sha256(metadata.read_bytes()).hexdigest() != metadata_sha256:
            report.problems.append(f"{filename}.metadata: missing or other contents")
    for path in www.rglob("*"):
        unlisted = path.suffix in (".whl", ".metadata") and path not in listed
        if path.name.startswith(".tmp-") or path.is_file() and unlisted:
            report.orphans.append(str(path.relative_to(www)))
    return report


def verify(system: System) -> subprocess.CompletedProcess:
    """`python -m ingest admin verify`: www/ against the catalogue."""
    return subprocess.run([sys.executable, "-m", "ingest", "admin", "verify"], cwd=ROOT,
                          env=system.env, capture_output=True, text=True, timeout=300)


def verified(system: System, within: float) -> subprocess.CompletedProcess:
    """verify's answer once it finds nothing, or its last answer after `within` s:
    the home page follows the last publish by a second or so."""
    deadline = time.monotonic() + within
    while (answer := verify(system)).returncode != 0 and time.monotonic() < deadline:
        time.sleep(1.0)
    return answer


def fault_campaign(tmp_path: Path, backend_wheels, pure: int, compiled: int, kills: int,
                   sleep: float, kinds: tuple[str, ...] = KINDS) -> None:
    seed = int(os.environ.get("PYTEST_SEED", "11"))
    system = make_system(tmp_path, backend_wheels, count=pure, sleep=sleep,
                         c_extensions=compiled, env=CAMPAIGN_ENV)
    campaign = Campaign(system, kills, seed, kinds)
    count = len(system.releases)
    started = time.monotonic()
    process = system.start()
    try:
        wait_for(system.building, 120, "the first build", alive=process)
        campaign.run(process)
        wait_for(lambda: system.built() == count, 120 + 20 * count, "every build",
                 alive=process)
        wait_for(lambda: settled(system), 120, "the queues and pages to settle",
                 alive=process)
        checked = verified(system, 30)
        redis = system.redis()
        failed = {name: FailedJobRegistry(name, connection=redis).get_job_ids()
                  for name in (build_queue_name(system.abi), PUBLISH_QUEUE)}
        system.stop(process)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    wall = time.monotonic() - started
    output = system.output()
    assert process.returncode == 0, output[-4000:]
    # The supervisor never gave up on a process: each kill was followed by a restart.
    assert "times in a row: stopping" not in output
    restarts = Counter(re.findall(r"\| (\w+) starts again in", output))
    restarts["redis"] = output.count("starting it again")
    rows = catalogue_rows(system.config, "SELECT project, version, abi, status FROM builds "
                          "ORDER BY project")
    successes = job_lines(output, "Job OK")
    recorded = job_lines(output, "recorded a success build of")  # the intake's line
    duplicates = {job_id: (successes[job_id], recorded[job_id])
                  for job_id in successes | recorded
                  if successes[job_id] > 1 or recorded[job_id] > 1}
    www = check_www(system)
    summary = {
        "seed": seed, "kills": dict(sorted(campaign.done.items())),
        "restarts": dict(sorted(restarts.items())),
        "builds": count, "executions": sum(job_lines(output, f"{build_queue_name(system.abi)}:"
                                                     " build ").values()),
        "duplicates": len(duplicates), "orphans": len(www.orphans),
        "wall_seconds": round(wall),
        "verify": checked.stdout.strip().splitlines()[-1:],
    }
    print("\n".join(campaign.log))
    print(f"fault campaign: {json.dumps(summary)}")
    assert sum(campaign.done.values()) == kills
    assert rows == [(name, version, system.abi, "success")
                    for name, version in sorted(system.releases)], rows
    assert failed == {build_queue_name(system.abi): [], PUBLISH_QUEUE: []}, failed
    # Built exactly once: one execution of each job ran to its end, and the intake
    # took one push of each.
    once = Counter({job_id: 1 for job_id in system.job_ids()})
    assert successes == once and recorded == once, duplicates
    assert www.problems == [] and www.orphans == [], (www.problems, www.orphans)
    assert www.wheels == count
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_fault_campaign_short(tmp_path, backend_wheels):
    """6 builds (one a C extension), 4 kills of the kinds most likely to lose work:
    the default suite's taste of it."""
    fault_campaign(tmp_path, backend_wheels, pure=5, compiled=1, kills=4, sleep=1.5,
                   kinds=("worker", "build", "intake", "redis"))


@pytest.mark.slow
def test_fault_campaign(tmp_path, backend_wheels):
    """30 builds (4 of them C extensions), 21 kills: three of each kind on average."""
    fault_campaign(tmp_path, backend_wheels, pure=26, compiled=4, kills=21, sleep=2.5)


def up(tmp_path: Path, procfile: str) -> tuple[subprocess.Popen, Path, Path]:
    """`python -m ingest up` with a Procfile of stand-ins on a data directory of its own:
    (the process, its output file, the embedded Redis's socket)."""
    (tmp_path / "Procfile").write_text(procfile)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("WHEELWRIGHT_") and k != "REDIS_URL"}
    env["WHEELWRIGHT_DATA"] = str(tmp_path / "var")
    output = tmp_path / "up.log"
    with output.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "ingest", "up", "--procfile", str(tmp_path / "Procfile")],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    return process, output, tmp_path / "var" / "redis" / "redis.sock"


def started_pids(output: Path, name: str) -> list[int]:
    return [int(pid) for pid in re.findall(rf"{name} started \(pid=(\d+)\)", output.read_text())]


SLEEPER = "sleeper: python -c 'import time; time.sleep(600)'\n"


def test_a_killed_process_and_redis_start_again(tmp_path):
    """The restart policy: SIGKILL a process, then the embedded Redis; each starts
    again, Redis with everything it acknowledged, and the system runs on."""
    from redis import Redis

    process, output, sock = up(tmp_path, SLEEPER)
    try:
        first = wait_for(lambda: started_pids(output, "sleeper"), 60, "the sleeper",
                         alive=process)[0]
        os.kill(first, signal.SIGKILL)
        wait_for(lambda: len(started_pids(output, "sleeper")) == 2, 30, "a second sleeper",
                 alive=process)
        redis = Redis(unix_socket_path=str(sock))
        redis.set("acknowledged", "1")
        old = targets(process.pid, "redis")
        assert len(old) == 1
        os.kill(old[0].pid, signal.SIGKILL)
        wait_for(lambda: [p for p in targets(process.pid, "redis") if p.pid != old[0].pid],
                 30, "a second redis-server", alive=process)
        assert wait_for(lambda: _get(redis, "acknowledged"), 30, "Redis to answer") == b"1"
        assert process.poll() is None
        process.send_signal(signal.SIGINT)
        process.wait(30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, output.read_text()
    text = output.read_text()
    assert "sleeper starts again in" in text and "starting it again" in text, text


def _get(redis, key: str):
    try:
        return redis.get(key)
    except Exception:  # noqa: BLE001 - not answering yet
        return None


def test_a_process_that_keeps_failing_stops_the_system(tmp_path):
    """A failure soon after each start is one a restart cannot mend (a port in use, a
    bad setting): after CRASH_LOOP of them everything stops, with that code."""
    process, output, _ = up(tmp_path, SLEEPER + "failing: python -c 'import sys; sys.exit(3)'\n")
    try:
        process.wait(60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    text = output.read_text()
    assert process.returncode == 3, text
    assert len(started_pids(output, "failing")) == CRASH_LOOP, text
    assert f"failing failed {CRASH_LOOP} times in a row: stopping" in text
    assert len(started_pids(output, "sleeper")) == 1  # the healthy one was left alone


def test_redis_keeps_a_snapshot_only_data_directory(tmp_path):
    """A data directory from before the append-only file: Redis loads its snapshot,
    then appends from there on."""
    from redis import Redis

    from ingest import redis_server

    sock = tmp_path / "redis" / "redis.sock"
    server = redis_server.start(sock)
    try:
        conn = Redis(unix_socket_path=str(sock))
        conn.config_set("appendonly", "no")
        conn.set("queued", "1")
        conn.save()
    finally:
        server.stop()
    (sock.parent / "appendonly.aof").unlink()
    assert not redis_server.appends(sock.parent)
    server = redis_server.start(sock)
    try:
        conn = Redis(unix_socket_path=str(sock))
        assert conn.get("queued") == b"1"
        assert conn.config_get("appendonly") == {"appendonly": "yes"}
    finally:
        server.stop()
    assert server.process.returncode == 0  # stopped by its SIGTERM, not killed at 20 s
    assert redis_server.appends(sock.parent)
