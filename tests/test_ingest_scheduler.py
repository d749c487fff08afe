"""The scheduler: what it queues, in what order, and what it restores after Redis loses
its data."""

from __future__ import annotations

import json

from rq import Queue

from ingest.catalogue import connect
from ingest.events import Event, apply_batch, batch_of
from ingest.follower import Follower
from ingest.scheduler import PUBLISH_QUEUE, build_queue, top_up
from ingest.sources import FileSource
from worker.queues import SERIALIZER, build_job_id

ABI = "cp311"


def catalogue(tmp_path, rows):
    conn = connect(tmp_path / "c.db")
    events = [Event(700_000 + i, 1_700_000_000 + i * 60, name, version, action)
              for i, (name, version, action) in enumerate(rows)]
    conn.execute("BEGIN")
    apply_batch(conn, batch_of(events))
    conn.execute("COMMIT")
    return conn


def release(name, version, source=True):
    rows = [(name, version, "new release")]
    if source:
        rows.append((name, version, f"add source file {name}-{version}.tar.gz"))
    return rows


HISTORY = [
    *release("alpha", "1.0"),
    *release("alpha", "1.1"),
    *release("binary-only", "1.0", source=False),
    ("binary-only", "1.0", "add py3 file binary_only-1.0-py3-none-any.whl"),
    *release("doomed", "1.0"),
    ("doomed", None, "remove project"),
    *release("gone", "2.0"),
    ("gone", "2.0", "remove release"),
    *release("sdist-removed", "1.0"),
    ("sdist-removed", "1.0", "remove file sdist-removed-1.0.tar.gz"),
    *release("built", "1.0"),
    *release("beta", "0.1"),
    *release("beta", "0.2"),
    ("beta", "0.2", "yank release"),
]
PENDING = [("beta", "0.2"), ("beta", "0.1"), ("alpha", "1.1"), ("alpha", "1.0")]  # newest first


def record_build(conn, project, version):
    conn.execute("INSERT INTO builds (project, version, abi, status, built_at) "
                 "VALUES (?, ?, ?, 'success', '2026-01-01T00:00:00Z')", (project, version, ABI))


def test_queues_only_what_needs_building_newest_first(tmp_path, redis):
    conn = catalogue(tmp_path, HISTORY)
    record_build(conn, "built", "1.0")
    result = top_up(conn, redis, ABI, depth=3, job_timeout=600)
    assert result.queued == 3
    assert build_queue(redis, ABI).job_ids == [build_job_id(p, v, ABI) for p, v in PENDING[:3]]
    # A second pass fills the last place and never queues a job twice.
    assert top_up(conn, redis, ABI, depth=10, job_timeout=600).queued == 1
    assert top_up(conn, redis, ABI, depth=10, job_timeout=600).queued == 0
    assert build_queue(redis, ABI).job_ids == [build_job_id(p, v, ABI) for p, v in PENDING]


def test_running_and_failed_jobs_are_not_queued_again(tmp_path, redis):
    conn = catalogue(tmp_path, HISTORY)
    record_build(conn, "built", "1.0")
    top_up(conn, redis, ABI, depth=10, job_timeout=600)
    queue = build_queue(redis, ABI)
    running = queue.dequeue_any([queue], None, connection=redis,
                                serializer=queue.serializer)[0]
    assert running.id == build_job_id("beta", "0.2", ABI)
    assert top_up(conn, redis, ABI, depth=10, job_timeout=600).queued == 0


def test_redis_loss_restores_exactly_the_pending_jobs(tmp_path, redis):
    conn = catalogue(tmp_path, HISTORY)
    record_build(conn, "built", "1.0")
    top_up(conn, redis, ABI, depth=10, job_timeout=600)
    before = build_queue(redis, ABI).job_ids
    redis.flushall()
    assert build_queue(redis, ABI).count == 0
    top_up(conn, redis, ABI, depth=10, job_timeout=600)
    assert build_queue(redis, ABI).job_ids == before
    assert sorted(before) == sorted(build_job_id(p, v, ABI) for p, v in PENDING)


def test_end_of_life_abis_are_drained_and_never_fed(tmp_path, redis):
    conn = catalogue(tmp_path, HISTORY)
    top_up(conn, redis, "cp35m", depth=10, job_timeout=600)
    assert build_queue(redis, "cp35m").count == 5
    follower = Follower(conn, FileSource(tmp_path / "none.jsonl"), redis=redis,
                        abis=(ABI, "cp35m"), disabled_abis=("cp35m",))
    follower.schedule()
    assert build_queue(redis, "cp35m").count == 0
    assert build_queue(redis, ABI).count == 5


def test_a_live_release_goes_to_the_front_of_a_full_queue(tmp_path, redis):
    conn = catalogue(tmp_path, HISTORY)
    events = tmp_path / "live.jsonl"
    events.write_text("")
    follower = Follower(conn, FileSource(events), redis=redis, abis=(ABI,), depth=2)
    follower.run(until_caught_up=True)
    assert build_queue(redis, ABI).count == 2  # full: the backlog waits
    with events.open("a") as f:
        for serial, action in [(800_001, "new release"),
                               (800_002, "add source file hot-1.0.tar.gz")]:
            f.write(f'{{"serial": {serial}, "timestamp": 1800000000, "name": "Hot", '
                    f'"version": "1.0", "action": "{action}"}}\n')
    follower.step()
    assert build_queue(redis, ABI).job_ids[0] == build_job_id("hot", "1.0", ABI)
    assert build_queue(redis, ABI).count == 3


def test_deletions_and_yanks_reach_the_publisher(tmp_path, redis):
    events = tmp_path / "events.jsonl"
    rows = [("keep", "1.0", "new release"), ("keep", "1.0", "add source file keep-1.0.tar.gz"),
            ("yanky", "1.0", "new release"), ("yanky", "1.0", "yank release"),
            ("dropped", "1.0", "new release"), ("dropped", None, "remove project"),
            ("trimmed", "1.0", "new release"), ("trimmed", "1.0", "remove file trimmed.tar.gz")]
    events.write_text("".join(
        json.dumps({"serial": 800_000 + i, "timestamp": 0, "name": n, "version": v,
                    "action": a}) + "\n"
        for i, (n, v, a) in enumerate(rows)))
    conn = connect(tmp_path / "c.db")
    Follower(conn, FileSource(events), redis=redis, abis=(ABI,)).run(until_caught_up=True)
    publish = Queue(PUBLISH_QUEUE, connection=redis, serializer=SERIALIZER)
    jobs = sorted(publish.fetch_job(j).args[0] for j in publish.job_ids)
    assert jobs == ["dropped", "trimmed", "yanky"]


def test_a_release_deleted_and_released_again_is_built_again(tmp_path, redis):
    conn = catalogue(tmp_path, release("phoenix", "1.0"))
    top_up(conn, redis, ABI, depth=10, job_timeout=600)  # its job stays in Redis a while
    record_build(conn, "phoenix", "1.0")
    events = [Event(710_000 + i, 0, name, version, action) for i, (name, version, action) in
              enumerate([("phoenix", None, "remove project"), ("Phoenix", None, "create"),
                         *release("Phoenix", "1.0")])]
    conn.execute("BEGIN")
    apply_batch(conn, batch_of(events))
    conn.execute("COMMIT")
    redis.delete(build_queue(redis, ABI).key)  # as if a worker had taken the old job
    assert top_up(conn, redis, ABI, depth=10, job_timeout=600).queued == 1
    [job_id] = build_queue(redis, ABI).job_ids
    assert job_id != build_job_id("phoenix", "1.0", ABI)


def test_searched_projects_get_their_newest_release_built_first(tmp_path, redis):
    """Installers searching our index for a project we have not built raise its
    newest release to the front; one client's searches, or a bot's, do not."""
    from datetime import datetime, timedelta, timezone

    from ingest.demand import searched_projects
    from stats.clients import ClientHasher, client_key
    from stats.loader import Parser, load_file
    from stats.store import open_db
    from tests.stats_logs import GOOGLEBOT, PIP23, UV, line

    conn = catalogue(tmp_path, [*release("Gamma", "1.0"), *release("old-lib", "0.9"),
                                *release("old-lib", "1.0"), *HISTORY])
    when = datetime.now(timezone.utc) - timedelta(hours=1)
    lines = [
        line("10.0.0.1", when, "GET /simple/old-lib/ HTTP/1.1", 404, 0, PIP23),
        line("10.0.0.2", when, "GET /simple/old-lib/ HTTP/1.1", 200, 900, UV),
        line("10.0.0.3", when, "GET /simple/gamma/ HTTP/1.1", 404, 0, PIP23),
        line("10.0.0.3", when, "GET /simple/gamma/ HTTP/1.1", 404, 0, PIP23),
        line("10.0.0.4", when, "GET /simple/gamma/ HTTP/1.1", 200, 900, GOOGLEBOT),
        line("10.0.0.5", when, "GET /simple/gamma/ HTTP/1.1", 200, 900, GOOGLEBOT),
    ]
    log = tmp_path / "access.log"
    log.write_text("".join(f"{text}\n" for text in lines))
    stats = tmp_path / "data" / "stats.db"
    load_file(open_db(stats), Parser(ClientHasher(client_key(tmp_path / "data"))), log)
    assert searched_projects(stats, clients=2) == ["old-lib"]
    assert searched_projects(stats, clients=0) == []
    assert searched_projects(tmp_path / "missing.db", clients=2) == []

    follower = Follower(conn, FileSource(tmp_path / "none.jsonl"), redis=redis,
                        abis=(ABI,), depth=2,
                        demand=lambda: searched_projects(stats, clients=2))
    follower.schedule()
    assert build_queue(redis, ABI).job_ids == [
        build_job_id("old-lib", "1.0", ABI),  # demand: its newest release only, first
        build_job_id(*PENDING[0], ABI),  # then the backlog, newest first, to the depth
    ]
