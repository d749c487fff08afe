"""`python -m ingest <command>`: the event log, the catalogue and the build queues."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import time
from functools import partial
from pathlib import Path

from ingest import catalogue, redis_server, settings
from ingest.demand import searched_projects
from ingest.dump import dumps
from ingest.errors import claim_port, master_errors
from ingest.follower import Follower, FollowStats
from ingest.metadata import MetadataFetcher
from ingest.profile_rebuilds import profile_version
from ingest.sources import FileSource, Source, XmlRpcSource
from worker.errors import masked_url
from worker.queues import connect
from worker.settings import describe
from worker.stopping import stops_quietly

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
        profile=partial(profile_version, config.build_deps_file),
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
    else:
        if not config.events_file.is_file():
            sys.exit(f"ingest follow: no event file {config.events_file} "
                     "(set WHEELWRIGHT_EVENTS or WHEELWRIGHT_PYPI_URL)")
        source = FileSource(config.events_file, config.replay_chunk)
    following = follower(config, source, pypi_url)  # connects to Redis, or says why not
    log.info("following %s", f"the changelog at {source.url}" if pypi_url else source.path)
    stats = following.run(
        until_caught_up=args.until_caught_up, interval=args.interval, stop=_stop_flag())
    _summary(stats)


def cmd_schedule(args, config: settings.Settings) -> None:
    follower(config, FileSource(config.events_file), None).schedule()


def cmd_status(args, config: settings.Settings) -> None:
    from ingest.status import gather, render

    status = gather(config)
    print(status.to_json() if args.json else "\n".join(render(status)))


def cmd_dump(args, config: settings.Settings) -> None:
    print(dumps(catalogue.connect(config.catalogue_path)))


# How long `ingest redis` waits, once told to stop, for the processes using Redis
# to let go: under honcho, which stops every process at once and kills what is
# left after 5 s, Redis must outlast the workers putting their jobs back.
REDIS_LINGER = 4.0


def cmd_redis(args, config: settings.Settings) -> None:
    stop = {signal.SIGINT, signal.SIGTERM}
    if config.redis_url:
        print(f"REDIS_URL is set ({masked_url(config.redis_url)}): no embedded Redis to "
              "run", flush=True)
        signal.pthread_sigmask(signal.SIG_BLOCK, stop)
        signal.sigwait(stop)
        return
    try:
        server = redis_server.start(config.redis_socket, quiet=False)
    except redis_server.RedisAlreadyRunning:
        sys.exit(f"ingest redis: a redis-server already answers on {config.redis_socket}: "
                 "another instance runs on this data directory; stop it first")
    print(f"embedded redis-server on {config.redis_socket}", flush=True)
    try:
        # Blocked only now: redis-server would inherit the mask, and never hear of
        # its own stop.
        signal.pthread_sigmask(signal.SIG_BLOCK, stop)
        signal.sigwait(stop)
        if left := redis_server.clients_left(server.url, REDIS_LINGER):
            print(f"stopping Redis with {left} clients still connected", flush=True)
    finally:
        server.stop()  # redis-server saves its data as it stops


def cmd_up(args, config: settings.Settings) -> None:
    from ingest import supervisor

    procfile = Path(args.procfile) if args.procfile else supervisor.PROCFILE
    if config.redis_url:  # a wrong one is told now, in one line, before anything starts
        connect(config.redis_url).close()
    try:
        code = supervisor.run(config, procfile)
    except (supervisor.AlreadyRunning, redis_server.RedisAlreadyRunning) as error:
        sys.exit(f"ingest up: {error}")
    sys.exit(code)


def cmd_dashboard(args, config: settings.Settings) -> None:
    """rq-dashboard for our queues: JSON serializer, loopback unless it has a password."""
    from rq_dashboard.cli import run as dashboard

    bind = "127.0.0.1"
    if os.environ.get("RQ_DASHBOARD_USERNAME") and os.environ.get("RQ_DASHBOARD_PASSWORD"):
        bind = args.bind
    port = args.port or config.dashboard_port
    claim_port("WHEELWRIGHT_DASHBOARD_PORT", bind, port)
    connect(config.effective_redis_url)  # wait for Redis, so the dashboard starts clean
    # In this process rather than exec'd, so that SIGTERM too ends it quietly (its
    # server takes a KeyboardInterrupt as a stop).
    dashboard.main(args=["--json", "--bind", bind, "--port", str(port),
                         "--redis-url", config.effective_redis_url], prog_name="rq-dashboard")


def cmd_settings(args, config: settings.Settings) -> None:
    for line in describe(config):
        print(line)


def _stop_flag():
    stopping = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopping.append(True))
    return lambda: bool(stopping)


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
    p = sub.add_parser("status", help="the farm at a glance: events, builds, queues, "
                       "workers",
                       description="Show the catalogue's counts, how far the events are "
                       "followed, builds and failed builds of the last day, the depth of "
                       "each build queue, and each worker with its health. --json prints "
                       "the same facts for scripts.")
    p.add_argument("--json", action="store_true",
                   help="the same facts as JSON (durations in seconds), for scripts")
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
    p.add_argument("--port", type=int,
                   help="port (default WHEELWRIGHT_DASHBOARD_PORT, 9181)")
    p.set_defaults(func=cmd_dashboard)
    p = sub.add_parser("up", help="run the whole system (every Procfile process)",
                       description="Run every process of the Procfile on this data "
                       "directory: the embedded Redis first (unless REDIS_URL is set), "
                       "then the others, with their output prefixed by name. Ctrl-C "
                       "or SIGTERM stops them all, Redis last. One instance per data "
                       "directory: a second start exits with a message.")
    p.add_argument("--procfile", help="the Procfile to run (default: the repository's)")
    p.set_defaults(func=cmd_up)
    p = sub.add_parser("settings", help="print every setting the master reads",
                       description="Print each environment variable the master's processes "
                       "(ingest, publish, stats) and its local worker read: the current "
                       "value (tokens masked), the default and what it means.")
    p.set_defaults(func=cmd_settings)
    from ingest.admin import add_admin_parser  # the operator's commands

    add_admin_parser(sub)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    config = settings.load()
    name = f"ingest {args.command}"
    with stops_quietly(name), master_errors(name, config, config.catalogue_path):
        args.func(args, config)


if __name__ == "__main__":
    main()
