"""`python -m worker`: run an rq worker on the build queue of the build interpreter's ABI."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from worker import settings
from worker.interpreter import InterpreterError, probe


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m worker",
        description="Run a build worker: pull jobs from build-<abi> and push wheels "
        "to the intake. The ABI and platform are read from the build interpreter.",
    )
    parser.add_argument("--python", help="build interpreter (default WHEELWRIGHT_BUILD_PYTHON "
                        "or the running one), e.g. /usr/bin/python3.7 for cp37m")
    parser.add_argument("--burst", action="store_true", help="exit when the queue is empty")
    sub = parser.add_subparsers(dest="command", metavar="command")
    armhf = sub.add_parser(
        "armhf-chroot", help="build in an emulated armhf Debian chroot (slow, opt-in)",
        description="Set up (once) a Debian armhf chroot with debootstrap and "
        "qemu-user-static, then run a worker inside it against this host's Redis "
        "and intake, building real linux_armv7l wheels. Needs root.")
    from worker.armhf import add_arguments

    add_arguments(armhf)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.command == "armhf-chroot":
        from worker.armhf import main as armhf_main

        return armhf_main(args)
    return run_worker(args)


def run_worker(args: argparse.Namespace) -> int:
    if args.python:
        # The job functions read their build interpreter from the settings.
        os.environ["WHEELWRIGHT_BUILD_PYTHON"] = args.python
    config = settings.load()
    try:
        interpreter = probe(config.build_python)
    except InterpreterError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    from worker.runner import run

    run(config, interpreter, burst=args.burst)
    return 0


if __name__ == "__main__":
    sys.exit(main())
