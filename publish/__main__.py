"""`python -m publish <command>`: the intake, the static index and its server."""

from __future__ import annotations

import argparse
import logging
from contextlib import closing
from pathlib import Path

from rq import Queue, Worker

from ingest import catalogue
from ingest.scheduler import PUBLISH_QUEUE
from worker import settings
from worker.queues import SERIALIZER, connect


def cmd_intake(args, config: settings.Settings) -> None:
    from publish.intake import Intake
    from publish.server import run

    run(Intake(config).app, *config.intake_bind)


def cmd_serve(args, config: settings.Settings) -> None:
    from publish.server import serve_forever

    config.www_dir.mkdir(parents=True, exist_ok=True)
    host, port = config.web_bind
    serve_forever(config.www_dir, config.logs_dir / "access.log", host, port,
                  processes=args.processes,
                  ready=lambda line: print(line, flush=True))


def cmd_worker(args, config: settings.Settings) -> None:
    from publish.jobs import PublishJob

    conn = connect(config.effective_redis_url)
    queue = Queue(PUBLISH_QUEUE, connection=conn, serializer=SERIALIZER, job_class=PublishJob)
    worker = Worker([queue], connection=conn, serializer=SERIALIZER, job_class=PublishJob,
                    name=f"{config.worker_name}-publish")
    worker.work(burst=args.burst, with_scheduler=False)


def cmd_write(args, config: settings.Settings) -> None:
    from publish.index import publish_all, site_of

    with closing(catalogue.connect(config.catalogue_path)) as conn:
        count = publish_all(conn, config.www_dir, site_of(config),
                            progress=lambda line: print(line, flush=True))
    print(f"wrote {count} projects into {config.www_dir}")


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
    args.func(args, settings.load())


if __name__ == "__main__":
    main()
