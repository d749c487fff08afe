"""`python -m worker`: run an rq worker on the build queue of the build interpreter's ABI."""

from __future__ import annotations

import argparse
import logging
import os
import subprocess

from rq import Queue, Worker

from worker import settings
from worker.queues import SERIALIZER, AllowlistJob, build_queue_name, connect

ABI_PROBE = "from pip._vendor.packaging import tags; print(next(iter(tags.sys_tags())).abi)"


def interpreter_abi(python: str) -> str:
    """Ask the build interpreter for its ABI tag: pip's own copy of packaging
    is there even on an old Python that today's packaging no longer supports."""
    out = subprocess.run([python, "-c", ABI_PROBE], capture_output=True, text=True, check=True)
    return out.stdout.strip()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m worker",
        description="Run a build worker: pull jobs from build-<abi> and push wheels "
        "to the intake. The ABI is read from the build interpreter.",
    )
    parser.add_argument("--python", help="build interpreter (default WHEELWRIGHT_BUILD_PYTHON "
                        "or the running one)")
    parser.add_argument("--burst", action="store_true", help="exit when the queue is empty")
    args = parser.parse_args(argv)
    config = settings.load()
    python = args.python or config.build_python
    abi = interpreter_abi(python)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s worker %(message)s")
    logging.info("building %s wheels with %s", abi, python)
    if args.python:
        # the job function reads its build interpreter from the settings
        os.environ["WHEELWRIGHT_BUILD_PYTHON"] = python
    conn = connect(config.effective_redis_url)
    queue = Queue(build_queue_name(abi), connection=conn, serializer=SERIALIZER,
                  job_class=AllowlistJob)
    worker = Worker([queue], connection=conn, serializer=SERIALIZER, job_class=AllowlistJob,
                    name=f"{config.worker_name}-{abi}")
    worker.work(burst=args.burst, with_scheduler=False)


if __name__ == "__main__":
    main()
