"""`python -m ingest <command>`: the event log, the catalogue and the build queues."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import time
from functools import partial
from pathlib import Path

from redis.exceptions import ConnectionError as RedisConnectionError

from ingest import catalogue, redis_server
from ingest.demand import searched_projects
from ingest.dump import dumps
from ingest.follower import STATUS_KEY, Follower, FollowStats
from ingest.metadata import MetadataFetcher
from ingest.scheduler import build_queue
from ingest.sources import FileSource, Source, XmlRpcSource
from worker import settings
from worker.queues import connect

log = logging.getLogger("ingest")


def _progress():
    """A progress line at most every 2 s, and only when something moved."""
    last = {"time": time.monotonic(), "seen": (0, 0)}

    def report(stats: FollowStats) -> None:
        now, seen = time.monotonic(), (stats.events, stats.queued)
        if now - last["time"] >= 2.0 and seen != last["seen"]:
            last.update(time=now, seen=seen)
            print(f"applied {stats.events:,} events ({stats.rate:,.0f}/s), "
                  f"{stats.malformed} malformed, {stats.queued} builds queued",
                  file=sys.stderr, flush=True)

    return report


def follower(config: settings.Settings, source: Source, pypi_url: str | None) -> Follower:
    conn = catalogue.connect(config.catalogue_path)
    return Follower(
        conn, source, redis=connect(config.effective_redis_url), abis=config.abis,
        disabled_abis=config.disabled_abis, depth=config.queue_depth,
        job_timeout=config.build_timeout + 600, retries=config.build_retries,
        margin=config.pypi_margin,
        metadata=MetadataFetcher(pypi_url) if pypi_url else None, progress=_progress(),
        demand=partial(searched_projects, config.stats_path, config.demand_clients),
    )


def _summary(stats: FollowStats) -> None:
    print(f"applied {stats.events:,} events in {time.monotonic() - stats.started:.1f} s "
          f"({stats.rate:,.0f}/s), {stats.malformed} malformed, {stats.queued} builds queued",
          file=sys.stderr)


def cmd_replay(args, config: settings.Settings) -> None:
    path = Path(args.file)
    if not path.is_file():
        sys.exit(f"ingest replay: no such file: {path}")
    stats = follower(config, FileSource(path, config.replay_chunk), None).run(until_caught_up=True)
    _summary(stats)


def cmd_follow(args, config: settings.Settings) -> None:
    pypi_url = args.pypi_url or config.pypi_url
    if pypi_url:
        source: Source = XmlRpcSource(pypi_url.rstrip("/") + "/pypi", margin=config.pypi_margin)
        log.info("following the changelog at %s", source.url)
    else:
        if not config.events_file.is_file():
            sys.exit(f"ingest follow: no event file {config.events_file} "
                     "(set WHEELWRIGHT_EVENTS or WHEELWRIGHT_PYPI_URL)")
        source = FileSource(config.events_file, config.replay_chunk)
        log.info("following %s", config.events_file)
    stats = follower(config, source, pypi_url).run(
        until_caught_up=args.until_caught_up, interval=args.interval, stop=_stop_flag())
    _summary(stats)


def cmd_schedule(args, config: settings.Settings) -> None:
    follower(config, FileSource(config.events_file), None).schedule()


def cmd_status(args, config: settings.Settings) -> None:
    conn = catalogue.connect(config.catalogue_path)
    counts = conn.execute(
        "SELECT (SELECT COUNT(*) FROM live_projects), (SELECT COUNT(*) FROM live_versions), "
        "(SELECT COUNT(*) FROM builds)"
    ).fetchone()
    print(f"projects {counts[0]:,}  versions {counts[1]:,}  builds {counts[2]:,}")
    status = json.loads(catalogue.get_state(conn, STATUS_KEY) or "{}")
    if status:
        behind = time.time() - status["timestamp"]
        line = f"serial {status['serial']:,}, newest event {behind:,.0f} s old"
        if status.get("upstream_serial"):
            line += f", {status['upstream_serial'] - status['serial']:,} serials behind PyPI"
        print(line)
        if status.get("rate") is not None:
            print(f"last run applied {status['rate']:,.0f} events/s")
    else:
        print("no events applied yet")
    try:
        redis = connect(config.effective_redis_url, wait=2)
    except RedisConnectionError:
        print(f"queues: Redis at {config.effective_redis_url} is not reachable")
        return
    for abi in config.abis:
        print(f"queue build-{abi}: {build_queue(redis, abi).count} waiting")


def cmd_dump(args, config: settings.Settings) -> None:
    print(dumps(catalogue.connect(config.catalogue_path)))


def cmd_redis(args, config: settings.Settings) -> None:
    if config.redis_url:
        print(f"REDIS_URL is set ({config.redis_url}): no embedded Redis to run", flush=True)
        signal.sigwait({signal.SIGINT, signal.SIGTERM})
        return
    print(f"embedded redis-server on {config.redis_socket}", flush=True)
    redis_server.exec_server(config.redis_socket)


def cmd_dashboard(args, config: settings.Settings) -> None:
    """rq-dashboard for our queues: JSON serializer, loopback unless it has a password."""
    bind = "127.0.0.1"
    if os.environ.get("RQ_DASHBOARD_USERNAME") and os.environ.get("RQ_DASHBOARD_PASSWORD"):
        bind = args.bind
    connect(config.effective_redis_url)  # wait for Redis, so the dashboard starts clean
    command = ["rq-dashboard", "--json", "--bind", bind, "--port", str(args.port),
               "--redis-url", config.effective_redis_url]
    os.execvp(command[0], command)


def _stop_flag():
    stopping = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopping.append(True))
    return lambda: bool(stopping)


def _sleep_until(stop, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not stop() and time.monotonic() < deadline:
        time.sleep(0.1)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m ingest", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("replay", help="apply a JSONL event file, then top up the build queues",
                       description="Apply the events of FILE (newline-delimited JSON objects "
                       "with serial, timestamp, name, version, action) not applied before, "
                       "then queue the builds they make possible.")
    p.add_argument("file", help="the event file")
    p.set_defaults(func=cmd_replay)
    p = sub.add_parser("follow", help="follow the event source and keep the queues full",
                       description="Follow PyPI's changelog (--pypi-url or "
                       "WHEELWRIGHT_PYPI_URL) or else the file WHEELWRIGHT_EVENTS (lines "
                       "appended later are applied as they arrive), and keep every build "
                       "queue topped up.")
    p.add_argument("--pypi-url", help="upstream base URL (XML-RPC at URL/pypi, JSON at "
                   "URL/pypi/NAME/json); default WHEELWRIGHT_PYPI_URL")
    p.add_argument("--until-caught-up", action="store_true",
                   help="stop once every event available now is applied")
    p.add_argument("--interval", type=float, default=1.0,
                   help="seconds between polls (default 1)")
    p.set_defaults(func=cmd_follow)
    p = sub.add_parser("schedule", help="top up the build queues once",
                       description="Queue the builds the catalogue allows, up to "
                       "WHEELWRIGHT_QUEUE_DEPTH per ABI.")
    p.set_defaults(func=cmd_schedule)
    p = sub.add_parser("status", help="catalogue counts and queue depths",
                       description="Show catalogue counts and build queue depths.")
    p.set_defaults(func=cmd_status)
    p = sub.add_parser("dump", help="print the catalogue as canonical JSON",
                       description="Print the catalogue's PyPI facts as canonical JSON.")
    p.set_defaults(func=cmd_dump)
    p = sub.add_parser("redis", help="run the embedded redis-server (when REDIS_URL is unset)",
                       description="Run a private redis-server on a unix socket in the data "
                       "directory, in the foreground. With REDIS_URL set, wait idly instead.")
    p.set_defaults(func=cmd_redis)
    p = sub.add_parser("dashboard", help="run rq-dashboard on our Redis",
                       description="Run rq-dashboard with the JSON serializer on our Redis. "
                       "It binds to 127.0.0.1 unless RQ_DASHBOARD_USERNAME and "
                       "RQ_DASHBOARD_PASSWORD are set.")
    p.add_argument("--bind", default="0.0.0.0",  # noqa: S104 - only with credentials
                   help="address to bind when credentials are set (default 0.0.0.0)")
    p.add_argument("--port", type=int, default=9181, help="port (default 9181)")
    p.set_defaults(func=cmd_dashboard)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    config = settings.load()
    try:
        args.func(args, config)
    except RedisConnectionError as error:
        sys.exit(f"ingest {args.command}: cannot reach Redis at {config.effective_redis_url} "
                 f"({error}); with no REDIS_URL, start `python -m ingest redis` first")


if __name__ == "__main__":
    main()
