"""The home page and packages.json follow the publishes within seconds, whatever the
burst: a real Redis, a real `python -m publish worker`, the catalogue changed and
publishes requested as ingest and the intake do."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import pytest
from rq import Queue

from ingest import catalogue
from ingest.scheduler import request_publish
from publish import index
from publish.jobs import HOME_KEY, LONGEST, QUIET
from tests.publishing import apply_events
from worker.queues import PUBLISH_QUEUE, SERIALIZER, publish_job_id

ROOT = Path(__file__).resolve().parent.parent
FRESH_WITHIN = 5.0  # seconds from the end of a burst to a home page that shows all of it


def add_built_project(config, number: int) -> str:
    """A new project with a release and a build of it, as ingest and the intake record
    them; its name."""
    name = f"fresh-{number:02d}"
    with closing(catalogue.connect(config.catalogue_path)) as conn:
        apply_events(conn, [(name, "1.0", "new release"),
                            (name, "1.0", f"add source file {name}-1.0.tar.gz")],
                     serial0=3_000_000 + 10 * number)
        conn.execute("INSERT INTO builds (project, version, abi, status, worker, duration, "
                     "built_at, log_path) VALUES (?, '1.0', 'cp311', 'failed', 'pi-1', 1.0, "
                     "?, NULL)", (name, f"2024-02-01T12:{number // 60:02d}:{number % 60:02d}Z"))
        conn.commit()
    return name


def home(config) -> tuple[str, list[str]]:
    """The home page's HTML and the names packages.json lists."""
    www = config.www_dir
    return ((www / "index.html").read_text(),
            [row[0] for row in json.loads((www / "packages.json").read_text())])


def shows(config, names: list[str]) -> bool:
    """Whether the home page's recent builds (the newest 20) and packages.json (every
    project) show the builds of `names`, made in that order."""
    html, listed = home(config)
    return all(f'href="project/{name}/"' in html for name in names[-20:]) and \
        set(names) <= set(listed)


@pytest.fixture
def publisher(config, redis):
    """An empty site, written, and its publish worker running."""
    with closing(catalogue.connect(config.catalogue_path)) as conn:
        index.publish_all(conn, config.www_dir, index.site_of(config))
    process = subprocess.Popen([sys.executable, "-m", "publish", "worker"], cwd=ROOT,
                               env=dict(os.environ), stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    yield process
    process.terminate()
    _, errors = process.communicate(timeout=20)
    assert "Traceback" not in errors, errors


def finished(redis, names: list[str]) -> bool:
    """Publish jobs keep no result: a job's hash is gone once it has run."""
    return not any(redis.exists(f"rq:job:{publish_job_id(name)}") for name in names)


def wait(condition, within: float, what: str) -> float:
    """Seconds it took `condition` to hold; fails after `within`."""
    started = time.monotonic()
    while time.monotonic() - started < within:
        if condition():
            return time.monotonic() - started
        time.sleep(0.05)
    raise AssertionError(f"not within {within} s: {what}")


def test_burst_of_20_publishes_shows_on_the_home_page_within_5_s(config, redis, publisher):
    names = []
    for number in range(20):
        names.append(add_built_project(config, number))
        request_publish(redis, {names[-1]})
    wait(lambda: finished(redis, names), 60, "the publish jobs ran")
    assert Queue(PUBLISH_QUEUE, connection=redis, serializer=SERIALIZER).count == 0
    took = wait(lambda: shows(config, names), FRESH_WITHIN,
                "the home page and packages.json list all 20")
    assert took < FRESH_WITHIN
    wait(lambda: not redis.exists(HOME_KEY), 2, "nothing left to show")


def test_long_burst_refreshes_the_home_page_as_it_goes(config, redis, publisher):
    """Publishes every 0.3 s for 3 * LONGEST s never leave QUIET s of quiet, yet the
    home page shows each within LONGEST s and a little (one rewrite, one job)."""
    interval, started, names, late = 0.3, time.monotonic(), [], []
    number = 0
    while time.monotonic() - started < 3 * LONGEST:
        names.append(add_built_project(config, number))
        request_publish(redis, {names[-1]})
        number += 1
        time.sleep(interval)
        # The publish of a project LONGEST + 1.5 s ago (a job, then a rewrite) shows.
        shown_by_now = [name for i, name in enumerate(names)
                        if (len(names) - 1 - i) * interval > LONGEST + 1.5]
        if shown_by_now and not shows(config, shown_by_now[-1:]):
            late.append(shown_by_now[-1])
    assert interval < QUIET  # the burst never went quiet
    assert not late, f"not on the home page in time: {late}"
    wait(lambda: shows(config, names), FRESH_WITHIN, "the whole burst shows")
