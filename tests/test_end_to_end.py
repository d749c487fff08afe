"""The whole path, with no network: event → queue → pip wheel → intake → index → pip install."""

from __future__ import annotations

import json
import subprocess
import sys
import venv

from rq import Queue, Worker

from ingest.__main__ import main as ingest_main
from ingest.catalogue import connect as catalogue_connect
from publish.intake import Intake
from publish.jobs import PublishJob
from publish.server import make_app
from tests.sdists import c_sdist, pure_sdist, write_index
from tests.servers import serve
from worker import settings as worker_settings
from worker.queues import (
    PUBLISH_QUEUE,
    SERIALIZER,
    AllowlistJob,
    build_job_id,
    build_queue_name,
)
from worker.runner import make_worker

EVENTS = [
    (1_000_001, "WW_Pure", "1.0", "new release"),
    (1_000_002, "WW_Pure", "1.0", "add source file ww_pure-1.0.tar.gz"),
    (1_000_003, "ww-cext", "1.0", "new release"),
    (1_000_004, "ww-cext", "1.0", "add source file ww_cext-1.0.tar.gz"),
    (1_000_005, "ww-cext", None, "add Owner somebody"),
]


def write_events(path, events=EVENTS):
    with path.open("w") as f:
        for serial, name, version, action in events:
            f.write(json.dumps({"serial": serial, "timestamp": 1_700_000_000 + serial,
                                "name": name, "version": version, "action": action}) + "\n")
    return path


def run_workers(redis, abi):
    """The build worker as `python -m worker` makes it (the intake takes pushes only
    from a worker of the token's name), then the publisher."""
    config = worker_settings.load()
    make_worker(redis, config, abi).work(burst=True, with_scheduler=False)
    publish = Queue(PUBLISH_QUEUE, connection=redis, serializer=SERIALIZER)
    Worker([publish], connection=redis, serializer=SERIALIZER,
           job_class=PublishJob).work(burst=True)


def test_event_to_pip_install(tmp_path, config, redis, offline_pip, backend_wheels,
                              monkeypatch):
    sources = tmp_path / "sources"
    sources.mkdir()
    index = write_index(tmp_path / "upstream", [
        pure_sdist(sources, "WW_Pure", "1.0", body="VALUE = 'pure from wheelwright'\n"),
        c_sdist(sources, "ww-cext", "1.0"),
        *backend_wheels,
    ])
    monkeypatch.setenv("WHEELWRIGHT_BUILD_INDEX_URL", index)
    intake = serve(Intake(config).app)
    web = serve(make_app(config.www_dir))
    monkeypatch.setenv("WHEELWRIGHT_INTAKE_URL", intake.url)
    try:
        events = write_events(tmp_path / "events.jsonl")
        ingest_main(["replay", str(events)])
        abi = config.abis[0]
        queue = Queue(build_queue_name(abi), connection=redis, serializer=SERIALIZER)
        assert sorted(queue.job_ids) == sorted(
            [build_job_id("ww-pure", "1.0", abi), build_job_id("ww-cext", "1.0", abi)])

        run_workers(redis, abi)

        conn = catalogue_connect(config.catalogue_path)
        builds = conn.execute("SELECT project, status FROM builds ORDER BY project").fetchall()
        assert [tuple(b) for b in builds] == [("ww-cext", "success"), ("ww-pure", "success")]
        # The intake's own reading of each wheel: compiled code, or pure (nothing to say).
        assert [tuple(w) for w in conn.execute(
            "SELECT project, compiled FROM wheels ORDER BY project")] == [
            ("ww-cext", 1), ("ww-pure", None)]
        assert {r[0] for r in conn.execute("SELECT machine FROM builds")} == {"test-worker"}
        page = (config.www_dir / "simple" / "ww-cext" / "index.html").read_text()
        assert "#sha256=" in page and f"-{abi}-" in page

        target = tmp_path / "venv"
        venv.create(target, with_pip=True)
        python = target / "bin" / "python"
        subprocess.run([python, "-m", "pip", "install", "--no-cache-dir", "--index-url",
                        web.url + "simple/", "ww-pure", "ww-cext"], check=True)
        out = subprocess.run(
            [python, "-c", "import ww_pure, ww_cext; print(ww_pure.VALUE, ww_cext.answer())"],
            capture_output=True, text=True, check=True)
        assert out.stdout.split() == ["pure", "from", "wheelwright", "42"]

        # A restart replays nothing twice and queues nothing that is built.
        ingest_main(["replay", str(events)])
        ingest_main(["schedule"])
        assert queue.count == 0
        assert conn.execute("SELECT COUNT(*) FROM builds").fetchone()[0] == 2
    finally:
        intake.stop()
        web.stop()


def test_foreign_job_is_refused(config, redis):
    """A job naming a function outside the allowlist fails without being imported."""
    queue = Queue(build_queue_name("cp311"), connection=redis, serializer=SERIALIZER)
    job = queue.enqueue("os.system", "touch /tmp/wheelwright-pwned")
    Worker([queue], connection=redis, serializer=SERIALIZER,
           job_class=AllowlistJob).work(burst=True)
    job = AllowlistJob.fetch(job.id, connection=redis, serializer=SERIALIZER)
    assert job.is_failed
    assert "not allowlisted" in job.latest_result().exc_string
    assert sys.modules.get("os")  # imported already, but system() never ran:
    assert not __import__("os").path.exists("/tmp/wheelwright-pwned")
