"""`python -m publish <command>`: the intake, the static index and its server."""

from __future__ import annotations

import argparse
import logging
import secrets
from contextlib import closing
from pathlib import Path

from rq import Queue, Worker

from ingest import catalogue, settings
from ingest.errors import claim_port, master_errors
from worker.queues import PUBLISH_QUEUE, SERIALIZER, connect
from worker.stopping import stops_quietly


def cmd_intake(args, config: settings.Settings) -> None:
    from publish.intake import DRAIN, Intake
    from publish.server import IntakeLimits, run

    claim_port("WHEELWRIGHT_INTAKE", *config.intake_bind)
    # Pushes a little over the limit reach the intake, which drains them and says why;
    # waitress refuses larger ones before reading them.
    run(Intake(config).app, *config.intake_bind,
        limits=IntakeLimits(max_body=config.max_upload + DRAIN + 1))


def cmd_serve(args, config: settings.Settings) -> None:
    from publish.server import serve_forever

    config.www_dir.mkdir(parents=True, exist_ok=True)
    host, port = config.web_bind
    claim_port("WHEELWRIGHT_WEB", host, port)
    serve_forever(config.www_dir, config.logs_dir / "access.log", host, port,
                  processes=args.processes,
                  ready=lambda line: print(line, flush=True))


def cmd_worker(args, config: settings.Settings) -> None:
    from publish.jobs import HomeRefresher, PublishJob, refresh_home_if_due

    conn = connect(config.effective_redis_url)
    queue = Queue(PUBLISH_QUEUE, connection=conn, serializer=SERIALIZER, job_class=PublishJob)
    # A name of its own per start: a stopped publisher's registration may outlive it
    # (Redis gone first, or a kill), and rq refuses a second worker of the same name.
    worker = Worker([queue], connection=conn, serializer=SERIALIZER, job_class=PublishJob,
                    name=f"{config.worker_name}-publish-{secrets.token_hex(3)}")
    # The home page follows the publishes from a thread of this process, with a
    # connection of its own (the worker's blocks on the queue).
    refresher = HomeRefresher(connect(config.effective_redis_url), config)
    refresher.start()
    try:
        worker.work(burst=args.burst, with_scheduler=False)
    finally:
        refresher.stop()
    if args.burst:  # the trailing edge of a burst run: nothing comes after it
        refresh_home_if_due(refresher.redis, config, force=True)


def cmd_write(args, config: settings.Settings) -> None:
    from publish.index import publish_all, site_of

    with closing(catalogue.connect(config.catalogue_path)) as conn:
        count = publish_all(conn, config.www_dir, site_of(config),
                            progress=lambda line: print(line, flush=True))
    print(f"wrote {count} projects into {config.www_dir}")


def cmd_downloads(args, config: settings.Settings) -> None:
    from publish.jobs import refresh_downloads_if_due

    with closing(connect(config.effective_redis_url)) as redis:
        refreshed = refresh_downloads_if_due(redis, config, force=True)
    assert refreshed is not None  # forced
    print(f"downloads read from {config.stats_path} for {refreshed.read} projects; "
          f"publishes of {len(refreshed.pending)} queued (the publish worker writes "
          "their pages)")


def cmd_contents(args, config: settings.Settings) -> None:
    from publish.contents import cached, default_mirror
    from publish.releases import release_indexes
    from worker.targets import DEBIAN_ARCHES, DEFAULT_PLATFORM, parse_target

    # Each release we build for, with the Debian architectures of its targets we build
    # (armhf for the 32-bit image, arm64 for the 64-bit one): the intake looks a failed
    # build's missing file up in its own target's index.
    built = {r.codename: list(dict.fromkeys(parse_target(key).debian_arch
                                            for key in r.keys if key in config.abis))
             for r in release_indexes(config.abis)}
    codenames = args.codename or list(built)
    if not codenames:
        raise SystemExit("publish contents: no Raspberry Pi OS release among the ABIs we "
                         f"build ({', '.join(config.abis)}); name one with --codename")
    mirror = default_mirror(config.arm_mirror)
    for codename in codenames:
        for arch in ([args.arch] if args.arch else
                     built.get(codename) or [DEBIAN_ARCHES[DEFAULT_PLATFORM]]):
            # The intake only reads this cache: a push never waits on a mirror.
            contents = cached(config.data_dir, codename, arch, mirror,
                              0 if args.refresh else config.contents_days)
            if contents is None:
                raise SystemExit(f"publish contents: no {codename}/{arch} index cached and "
                                 "none could be fetched: set WHEELWRIGHT_ARM_MIRROR to a "
                                 "Debian mirror")
            print(f"{contents.path}: {contents.meta().get('entries', '?')} entries")
            contents.close()


def cmd_screenshot(args, config: settings.Settings) -> None:
    from publish.screenshot import screenshot_site

    for path in screenshot_site(config.www_dir, args.out, args.project):
        print(f"wrote {path}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m publish", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("intake", help="receive builds from workers over HTTP",
                       description="Serve the intake on WHEELWRIGHT_INTAKE: workers push "
                       "wheels, logs and reports to POST /builds with their token.")
    p.set_defaults(func=cmd_intake)
    p = sub.add_parser("serve", help="serve www/ over HTTP",
                       description="Serve the static index in www/ on WHEELWRIGHT_WEB the "
                       "way production nginx does (PEP 691 negotiation, redirects to "
                       "canonical names, ETag, Range), logging every request to "
                       "DATA/logs/access.log in the Combined Log Format.")
    p.add_argument("--processes", type=int, default=1,
                   help="server processes sharing the port (default 1)")
    p.set_defaults(func=cmd_serve)
    p = sub.add_parser("worker", help="run the publish worker",
                       description="Run an rq worker on the publish queue: it rewrites "
                       "project pages as builds, deletions and yanks arrive.")
    p.add_argument("--burst", action="store_true", help="exit when the queue is empty")
    p.set_defaults(func=cmd_worker)
    p = sub.add_parser("write", help="rewrite all of www/ from the catalogue",
                       description="Rewrite every page of www/ from the catalogue, "
                       "leaving unchanged files alone and removing what belongs to "
                       "deleted projects and releases.")
    p.set_defaults(func=cmd_write)
    p = sub.add_parser("downloads", help="show stats.db's downloads on the pages now",
                       description="Read each project's downloads (30 days, all time) from "
                       "stats.db and queue a publish of each project whose figures changed, as "
                       "the publish worker does every WHEELWRIGHT_DOWNLOADS_REFRESH seconds.")
    p.set_defaults(func=cmd_downloads)
    p = sub.add_parser("contents", help="cache Debian's Contents index for failure reasons",
                       description="Download Debian's Contents index of a release and "
                       "architecture from WHEELWRIGHT_ARM_MIRROR (or this host's Debian "
                       "mirror) into DATA/contents/, unless the cached one is younger than "
                       "WHEELWRIGHT_CONTENTS_DAYS: the intake reads it to name the package "
                       "a failed build's missing header, tool or library is in.")
    p.add_argument("--codename", action="append",
                   help="Debian release, e.g. bookworm (repeatable; default: the releases "
                   "of the ABIs we build)")
    p.add_argument("--arch", help="Debian architecture (default: those of the targets we "
                   "build on each release, armhf for 32-bit, arm64 for 64-bit; armhf for a "
                   "release we do not build)")
    p.add_argument("--refresh", action="store_true", help="download even if the cache is "
                   "fresh")
    p.set_defaults(func=cmd_contents)
    p = sub.add_parser("screenshot", help="take screenshots of the pages with Chromium",
                       description="Serve www/ on a free loopback port and take headless "
                       "Chromium screenshots of the home page and of one project page.")
    p.add_argument("--out", type=Path, default=Path("screenshots"),
                   help="directory for the PNG files (default ./screenshots)")
    p.add_argument("--project", help="the project page to take (default: the project "
                   "with the most releases)")
    p.set_defaults(func=cmd_screenshot)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s publish %(message)s")
    config = settings.load()
    name = f"publish {args.command}"
    with stops_quietly(name), master_errors(name, config, config.catalogue_path):
        args.func(args, config)


if __name__ == "__main__":
    main()
