"""The whole system as `python -m ingest up` runs it, for tests: a data directory
with its environment (free ports, a file:// index of tiny sdists whose setup.py
takes its time, PyPI-style events announcing them), started as a subprocess."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from redis import Redis
from rq.registry import StartedJobRegistry

from ingest import settings
from tests.sdists import c_sdist, write_index
from tests.test_worker import ROOT, catalogue_rows, custom_sdist, release_events
from worker.interpreter import probe
from worker.queues import build_job_id, build_queue_name

STOP_WITHIN = 15.0  # seconds from SIGINT to the supervisor's exit


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(condition, within: float, what: str, alive: subprocess.Popen | None = None):
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if alive is not None and alive.poll() is not None:
            raise AssertionError(f"the system stopped (rc {alive.returncode}) before {what}")
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"waited {within} s for {what}")


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as reply:  # noqa: S310 - loopback
            return reply.status == 200
    except OSError:
        return False


@dataclass
class System:
    """A data directory with its environment: releases to build from a file://
    index, free ports for every server."""

    env: dict[str, str]
    config: settings.Settings
    releases: list[tuple[str, str]]
    abi: str
    logs: Path
    runs: list[Path] = field(default_factory=list)

    def start(self) -> subprocess.Popen:
        log = self.logs / f"run-{len(self.runs)}.log"
        self.runs.append(log)
        with log.open("wb") as out:
            return subprocess.Popen([sys.executable, "-m", "ingest", "up"], cwd=ROOT,
                                    env=self.env, stdout=out, stderr=subprocess.STDOUT)

    def redis(self) -> Redis:
        return Redis(unix_socket_path=str(self.config.redis_socket))

    def url(self, bind: tuple[str, int], path: str = "/") -> str:
        return f"http://{bind[0]}:{bind[1]}{path}"

    def serving(self) -> bool:
        """Redis, the index, the dashboard and the intake all answer."""
        try:
            self.redis().ping()
        except Exception:  # noqa: BLE001 - not up yet, whatever the reason
            return False
        return all(answers(url) for url in (
            self.url(self.config.web_bind, "/simple/"),
            self.url(("127.0.0.1", self.config.dashboard_port)),
        ))

    def building(self) -> bool:
        try:
            registry = StartedJobRegistry(build_queue_name(self.abi), connection=self.redis())
            return registry.count > 0
        except Exception:  # noqa: BLE001 - Redis not up yet
            return False

    def built(self) -> int:
        return catalogue_rows(self.config, "SELECT COUNT(*) FROM builds")[0][0] \
            if self.config.catalogue_path.exists() else 0

    def job_ids(self) -> set[str]:
        return {build_job_id(name, version, self.abi) for name, version in self.releases}

    def output(self) -> str:
        return "".join(log.read_text(errors="replace") for log in self.runs)

    def stop(self, process: subprocess.Popen) -> float:
        started = time.monotonic()
        process.send_signal(signal.SIGINT)
        try:
            process.wait(STOP_WITHIN)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise AssertionError(f"not stopped {STOP_WITHIN} s after SIGINT") from None
        return time.monotonic() - started


def make_system(tmp: Path, backend_wheels, count: int, sleep: float, c_extensions: int = 0,
                env: dict[str, str] | None = None) -> System:
    """`count` pure releases and `c_extensions` C extensions to build, each setup.py
    sleeping `sleep` seconds first so that a stop or a kill can land in the build;
    `env` adds or overrides settings."""
    sources = tmp / "sources"
    sources.mkdir()
    pure = [(f"ww-slow{i}", "1.0") for i in range(count)]
    compiled = [(f"ww-cslow{i}", "1.0") for i in range(c_extensions)]
    before = f"import time; time.sleep({sleep})"
    sdists = [custom_sdist(sources, name, version, before) for name, version in pure]
    sdists += [c_sdist(sources, name, version, before=before) for name, version in compiled]
    releases = pure + compiled
    index = write_index(tmp / "upstream", [*sdists, *backend_wheels])
    environ = {k: v for k, v in os.environ.items()
               if not k.startswith(("WHEELWRIGHT_", "PIP_", "RQ_DASHBOARD_"))
               and k != "REDIS_URL"}
    intake = free_port()
    environ.update({
        "WHEELWRIGHT_DATA": str(tmp / "var"),
        "WHEELWRIGHT_EVENTS": str(release_events(tmp / "events.jsonl", releases)),
        "WHEELWRIGHT_BUILD_INDEX_URL": index,
        "WHEELWRIGHT_BUILD_DIR": str(tmp / "builds"),
        "WHEELWRIGHT_WORKER_NAME": "ww-up",
        "WHEELWRIGHT_PUSH_BACKOFF": "0.05",
        "WHEELWRIGHT_DEMAND_CLIENTS": "0",
        "WHEELWRIGHT_WEB": f"127.0.0.1:{free_port()}",
        "WHEELWRIGHT_INTAKE": f"127.0.0.1:{intake}",
        "WHEELWRIGHT_INTAKE_URL": f"http://127.0.0.1:{intake}/",
        "WHEELWRIGHT_STATS_WEB": f"127.0.0.1:{free_port()}",
        "WHEELWRIGHT_DASHBOARD_PORT": str(free_port()),
        "PIP_CONFIG_FILE": os.devnull,
        **(env or {}),
    })
    config = settings.load(environ)
    logs = tmp / "logs"
    logs.mkdir()
    return System(environ, config, releases, probe(config.build_python).abi, logs)


def job_lines(output: str, marker: str) -> Counter:
    """How many lines of the output carry `marker`, by the build job id on them."""
    return Counter(m for line in output.splitlines() if marker in line
                   for m in re.findall(r"\bbuild-[a-z0-9]+-[0-9a-f]{32}\b", line))
