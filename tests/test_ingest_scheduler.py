"""The scheduler: what it queues, in what order, and what it restores after Redis loses
its data."""

from __future__ import annotations

import json

from rq import Queue

from ingest.catalogue import connect
from ingest.events import Event, apply_batch, batch_of
from ingest.follower import Follower
from ingest.scheduler import build_queue, top_up
from ingest.sources import FileSource
from worker.queues import PUBLISH_QUEUE, SERIALIZER, build_job_id

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
    # Live, a new release gets its page at once too (pending, or skipped and why).
    assert jobs == ["dropped", "keep", "trimmed", "yanky"]


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


# --- PyPI coverage: releases PyPI already serves a Pi are not built (issue 10) --------

PI_ABIS = ("cp37m", "cp39", "cp311", "cp313")


def with_wheels(name, version, *wheels):
    return [*release(name, version),
            *[(name, version, f"add {w.split('-')[2]} file {w}") for w in wheels]]


def queued_releases(redis, abi):
    queue = build_queue(redis, abi)
    return sorted(job.args[:2] for job in queue.get_jobs())


def skips(conn):
    return {(r[0], r[1], r[2]): r[3] for r in conn.execute(
        "SELECT project, version, abi, reason FROM skips")}


COVERAGE_HISTORY = [
    *with_wheels("pure", "1.0", "pure-1.0-py3-none-any.whl"),
    *with_wheels("x86", "1.0", "x86-1.0-cp311-cp311-manylinux_2_17_x86_64.whl",
                 "x86-1.0-cp37-cp37m-manylinux_2_17_x86_64.whl"),
    *with_wheels("newglibc", "1.0", "newglibc-1.0-cp37-abi3-manylinux_2_31_armv7l.whl",
                 "newglibc-1.0-cp37-abi3-linux_armv6l.whl"),
    *with_wheels("zero", "1.0", "zero-1.0-cp311-cp311-linux_armv6l.whl"),
    *release("sdist-only", "1.0"),
    *release("wheel-only", "1.0", source=False),
    ("wheel-only", "1.0", "add py3 file wheel_only-1.0-py3-none-any.whl"),
]


def test_what_pypi_serves_a_pi_is_not_queued(tmp_path, redis):
    conn = catalogue(tmp_path, COVERAGE_HISTORY)
    results = {abi: top_up(conn, redis, abi, depth=100, job_timeout=600) for abi in PI_ABIS}
    # A pure wheel covers every release; an x86 one none; armv6l alone leaves
    # armv7l users out; manylinux_2_31 is too new for Buster's glibc 2.28.
    assert queued_releases(redis, "cp311") == [
        ["sdist-only", "1.0"], ["x86", "1.0"], ["zero", "1.0"]]
    assert queued_releases(redis, "cp37m") == [
        ["newglibc", "1.0"], ["sdist-only", "1.0"], ["x86", "1.0"], ["zero", "1.0"]]
    assert [results[abi].covered for abi in PI_ABIS] == [1, 2, 2, 2]
    found = skips(conn)
    assert found[("pure", "1.0", "cp311")] == "PyPI has pure-1.0-py3-none-any.whl"
    assert found[("newglibc", "1.0", "cp311")] == (
        "PyPI has newglibc-1.0-cp37-abi3-manylinux_2_31_armv7l.whl and "
        "newglibc-1.0-cp37-abi3-linux_armv6l.whl")
    assert ("newglibc", "1.0", "cp37m") not in found
    # The skips are remembered: the next pass looks at nothing new.
    assert top_up(conn, redis, "cp311", depth=100, job_timeout=600).covered == 0


def test_the_reason_shows_on_the_page_and_in_the_json(tmp_path, redis):
    from publish import index
    from publish.pages import Site

    conn = catalogue(tmp_path, COVERAGE_HISTORY)
    for abi in ("cp37m", "cp311"):
        top_up(conn, redis, abi, depth=100, job_timeout=600)
    www = tmp_path / "www"
    index.publish_all(conn, www, Site(abis=("cp37m", "cp311"), public_url="http://pi/",
                                      pypi_url=None))
    page = (www / "project" / "pure" / "index.html").read_text()
    reason = "PyPI has pure-1.0-py3-none-any.whl"
    assert page.count(f'<td class="skipped" title="{reason}">skipped</td>') == 2
    data = json.loads((www / "project" / "pure" / "json" / "index.json").read_text())
    assert data["releases"]["1.0"]["skip_reason"] == reason
    # Covered for one release's users and not the other's: the JSON says for which.
    data = json.loads((www / "project" / "newglibc" / "json" / "index.json").read_text())
    assert data["releases"]["1.0"]["skip_reason"] == (
        "cp311: PyPI has newglibc-1.0-cp37-abi3-manylinux_2_31_armv7l.whl and "
        "newglibc-1.0-cp37-abi3-linux_armv6l.whl")
    page = (www / "project" / "newglibc" / "index.html").read_text()
    assert page.count('<td class="skipped"') == 1 and '<td class="pending">' in page
    # Nothing to build from: the page and the JSON say the same (issue 10 item 6).
    page = (www / "project" / "wheel-only" / "index.html").read_text()
    assert page.count('title="no source distribution">skipped</td>') == 2
    data = json.loads((www / "project" / "wheel-only" / "json" / "index.json").read_text())
    assert data["releases"]["1.0"]["skip_reason"] == "no source distribution"


def write_jsonl(path, rows, serial0):
    with path.open("a") as f:
        for i, (name, version, action) in enumerate(rows):
            f.write(json.dumps({"serial": serial0 + i, "timestamp": 1_700_000_000 + i,
                                "name": name, "version": version, "action": action}) + "\n")


def test_a_pypi_upload_named_like_our_wheel_withdraws_ours(tmp_path, config, redis):
    """Built from an sdist, our pure wheel is served; when PyPI later gets a file of
    the same name, ours leaves www/ (one name, one file) and the others stay."""
    from rq import Worker

    from publish import index
    from publish.jobs import PublishJob
    from tests.publishing import add_builds

    events = tmp_path / "events.jsonl"
    write_jsonl(events, [*release("Foo", "0.9"), *release("Foo", "1.0")], 800_000)
    conn = connect(config.catalogue_path)
    follower = Follower(conn, FileSource(events), redis=redis, abis=(ABI,))
    follower.run(until_caught_up=True)
    assert queued_releases(redis, ABI) == [["foo", "0.9"], ["foo", "1.0"]]
    www = config.www_dir
    add_builds(conn, www, [
        ("foo", "0.9", ABI, "success", [("foo-0.9-py3-none-any.whl", None, [], [], [], [])]),
        ("foo", "1.0", ABI, "success", [("foo-1.0-py3-none-any.whl", None, [], [], [], [])]),
    ])
    index.publish_all(conn, www, index.site_of(config))
    simple = www / "simple" / "foo"
    assert "foo-1.0-py3-none-any.whl#sha256=" in (simple / "index.html").read_text()

    redis.flushall()
    write_jsonl(events, [("foo", "1.0", "add py3 file foo-1.0-py3-none-any.whl"),
                         ("foo", "0.9", "add cp311 file foo-0.9-cp311-cp311-win_amd64.whl")],
                800_010)
    follower.step()
    Worker([PUBLISH_QUEUE], connection=redis, serializer=SERIALIZER,
           job_class=PublishJob).work(burst=True)

    assert not (simple / "foo-1.0-py3-none-any.whl").exists()
    assert not (simple / "foo-1.0-py3-none-any.whl.metadata").exists()
    assert (simple / "foo-0.9-py3-none-any.whl").exists()
    for listing in (simple / "index.html", simple / "index.json",
                    www / "project" / "foo" / "index.html",
                    www / "project" / "foo" / "json" / "index.json"):
        text = listing.read_text()
        assert "foo-1.0-py3-none-any.whl" not in text and "foo-0.9-py3-none-any.whl" in text
    assert [r[0] for r in conn.execute("SELECT filename FROM wheels")] == [
        "foo-0.9-py3-none-any.whl"]
    assert queued_releases(redis, ABI) == []  # built once; not built again
