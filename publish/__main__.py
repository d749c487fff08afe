"""`python -m publish <command>`: the intake, the static index and its server."""

from __future__ import annotations

import argparse
import logging
from contextlib import closing

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
    from publish.server import make_app, run

    config.www_dir.mkdir(parents=True, exist_ok=True)
    run(make_app(config.www_dir), *config.web_bind)


def cmd_worker(args, config: settings.Settings) -> None:
    from publish.jobs import PublishJob

    conn = connect(config.effective_redis_url)
    queue = Queue(PUBLISH_QUEUE, connection=conn, serializer=SERIALIZER, job_class=PublishJob)
    worker = Worker([queue], connection=conn, serializer=SERIALIZER, job_class=PublishJob,
                    name=f"{config.worker_name}-publish")
    worker.work(burst=args.burst, with_scheduler=False)


def cmd_write(args, config: settings.Settings) -> None:
    from publish.index import publish_all

    with closing(catalogue.connect(config.catalogue_path)) as conn:
        count = publish_all(conn, config.www_dir)
    print(f"wrote {count} projects into {config.www_dir}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m publish", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("intake", help="receive builds from workers over HTTP",
                       description="Serve the intake on WHEELWRIGHT_INTAKE: workers push "
                       "wheels, logs and reports to POST /builds with their token.")
    p.set_defaults(func=cmd_intake)
    p = sub.add_parser("serve", help="serve www/ over HTTP",
                       description="Serve the static index in www/ on WHEELWRIGHT_WEB.")
    p.set_defaults(func=cmd_serve)
    p = sub.add_parser("worker", help="run the publish worker",
                       description="Run an rq worker on the publish queue: it rewrites "
                       "project pages as builds, deletions and yanks arrive.")
    p.add_argument("--burst", action="store_true", help="exit when the queue is empty")
    p.set_defaults(func=cmd_worker)
    p = sub.add_parser("write", help="rewrite all of www/ from the catalogue",
                       description="Rewrite every page of www/ from the catalogue.")
    p.set_defaults(func=cmd_write)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s publish %(message)s")
    args.func(args, settings.load())


if __name__ == "__main__":
    main()
