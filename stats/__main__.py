"""`python -m stats <command>`: access logs into stats.db, explored with Datasette."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import time
from pathlib import Path

from ingest import settings
from ingest.errors import claim_port, master_errors
from stats import windows
from stats.clients import ClientHasher, client_key
from stats.loader import Parser, load_file, progress_printer
from stats.rollups import prune
from stats.store import open_db
from worker.stopping import stops_quietly

log = logging.getLogger("stats")


def _parser(config: settings.Settings) -> Parser:
    return Parser(ClientHasher(client_key(config.data_dir)))


def _stop_flag():
    stopping = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopping.append(True))
    return lambda: bool(stopping)


def cmd_load(args, config: settings.Settings) -> None:
    missing = [name for name in args.files if not Path(name).is_file()]
    if missing:
        sys.exit(f"stats load: no such file: {', '.join(missing)}")
    db = open_db(config.stats_path)
    parser = _parser(config)
    for name in args.files:
        result = load_file(db, parser, Path(name), progress_printer())
        print(result.summary(), flush=True)
    pruned = prune(db, config.stats_raw_days)
    if pruned.requests:
        print(f"pruned {pruned.requests:,} raw rows older than "
              f"{config.stats_raw_days} days (the daily rollups keep them)", flush=True)
    summed = windows.refresh(db, config.catalogue_path)
    print(f"30-day sums: {summed.projects:,} projects downloaded since {summed.first_day}",
          flush=True)


def cmd_follow(args, config: settings.Settings) -> None:
    from stats.follow import follow

    path = Path(args.file) if args.file else config.logs_dir / "access.log"
    db = open_db(config.stats_path)
    print(f"following {path}", file=sys.stderr, flush=True)
    result = follow(db, _parser(config), path, args.interval, _stop_flag(),
                    report=lambda n: log.info("%d lines", n),
                    raw_days=config.stats_raw_days, catalogue=config.catalogue_path)
    print(result.summary(), flush=True)


def cmd_health(args, config: settings.Settings) -> None:
    from stats.health import sample
    from worker.queues import connect

    db = open_db(config.stats_path)
    redis = connect(config.effective_redis_url)
    stop = _stop_flag()
    while True:
        result = sample(redis, db)
        if result.stored or result.bad or args.once:
            print(f"{result.seen} health records, {result.stored} new, "
                  f"{len(result.bad)} unusable", file=sys.stderr, flush=True)
        if args.once:
            return
        deadline = time.monotonic() + args.interval
        while not stop() and time.monotonic() < deadline:
            time.sleep(0.2)
        if stop():
            return


def cmd_serve(args, config: settings.Settings) -> None:
    from stats.site import make_datasette, serve

    claim_port("WHEELWRIGHT_STATS_WEB (or --host/--port)", args.host, args.port)
    serve(make_datasette(config.stats_path, config.catalogue_path), args.host, args.port)


def cmd_screenshot(args, config: settings.Settings) -> None:
    from stats.screenshot import screenshot

    out = Path(args.output)
    screenshot(config.stats_path, config.catalogue_path, out, width=args.width,
               height=args.height)
    print(f"wrote {out}", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m stats", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser(
        "load", help="load access log files (plain or gzipped) into stats.db",
        description="Load every line of each FILE (Combined Log Format, plain or "
        "gzipped) that is not in stats.db yet. Loading a file again, or its rotated "
        "or gzipped copy, adds nothing; malformed lines are counted and listed by "
        "offset in the rejects table. Then raw rows older than "
        "WHEELWRIGHT_STATS_RAW_DAYS are pruned (the daily rollups keep them).")
    p.add_argument("files", nargs="+", metavar="FILE", help="access log files")
    p.set_defaults(func=cmd_load)
    p = sub.add_parser(
        "follow", help="follow a live access log into stats.db",
        description="Follow FILE (default DATA/logs/access.log) as it grows, through "
        "rotation by rename and by truncation, resuming after a restart from the "
        "position stored in stats.db; raw rows older than WHEELWRIGHT_STATS_RAW_DAYS "
        "are pruned as it goes (the daily rollups keep them).")
    p.add_argument("file", nargs="?", help="the access log (default DATA/logs/access.log)")
    p.add_argument("--interval", type=float, default=1.0,
                   help="seconds between polls (default 1)")
    p.set_defaults(func=cmd_follow)
    p = sub.add_parser(
        "health", help="sample the workers' health records from Redis into stats.db",
        description="Copy every wheelwright:health:* record in Redis into the "
        "worker_health table, every INTERVAL seconds (or once).")
    p.add_argument("--interval", type=float, default=30.0,
                   help="seconds between samples (default 30)")
    p.add_argument("--once", action="store_true", help="take one sample and stop")
    p.set_defaults(func=cmd_health)
    p = sub.add_parser(
        "serve", help="run Datasette over stats.db and the catalogue",
        description="Serve stats.db and the catalogue (read-only, also attached to "
        "stats.db as `catalogue`) with Datasette: canned queries, and the dashboard "
        "at /-/dashboards/wheelwright.")
    host, port = settings.load().stats_bind
    p.add_argument("--host", default=host, help=f"address to listen on (default {host})")
    p.add_argument("--port", type=int, default=port, help=f"port (default {port})")
    p.set_defaults(func=cmd_serve)
    p = sub.add_parser(
        "screenshot", help="save a PNG of the dashboard, drawn by headless Chromium",
        description="Start Datasette on a free port, load the dashboard in headless "
        "Chromium, wait until every chart has drawn, and save a screenshot.")
    p.add_argument("output", help="the PNG to write")
    p.add_argument("--width", type=int, default=1400)
    p.add_argument("--height", type=int, default=2000)
    p.set_defaults(func=cmd_screenshot)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    config = settings.load()
    name = f"stats {args.command}"
    with stops_quietly(name), master_errors(name, config, config.stats_path):
        args.func(args, config)


if __name__ == "__main__":
    main()
