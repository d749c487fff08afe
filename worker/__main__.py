"""`python -m worker`: run an rq worker on the build queue of the build interpreter's ABI."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from worker import settings
from worker.errors import one_line_errors
from worker.interpreter import InterpreterError, probe
from worker.stopping import stops_quietly


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
    from worker.chroot import add_arguments

    chroot = sub.add_parser(
        "chroot", help="build in an emulated ARM Debian chroot (slow, opt-in)",
        description="Set up (once) a Debian chroot of --arch (armhf: 32-bit Raspberry Pi "
        "OS, linux_armv7l wheels; arm64: 64-bit, linux_aarch64) and --release with "
        "debootstrap and qemu-user-static, install the builder profile in it, then run a "
        "worker inside it against this host's Redis and intake. Needs root.")
    add_arguments(chroot)
    armhf = sub.add_parser(
        "armhf-chroot", help="`chroot --arch armhf`",
        description="The same as `python -m worker chroot --arch armhf`: a Debian armhf "
        "chroot building real linux_armv7l wheels. Needs root.")
    add_arguments(armhf, arch=False)
    acl = sub.add_parser(
        "acl", help="print the Redis ACL for a remote worker",
        description="Print the ACL SETUSER command that gives worker NAME its own Redis "
        "user, limited to rq's keys and its health key (no FLUSHALL, CONFIG, scripts, "
        "modules or other keys), with a new random password; run it on the master's "
        "Redis as an admin, and put the REDIS_URL line in the worker's worker.env.")
    acl.add_argument("name", help="the worker's name (WHEELWRIGHT_WORKER_NAME)")
    acl.add_argument("--password", help="use this password instead of a new random one")
    profile = sub.add_parser(
        "profile", help="print or install the builder profile",
        description="Print the builder profile (worker/builder-profile.txt): its version, "
        "the version installed on this machine, and its Debian packages, then the extra "
        "packages worker/build-deps.txt names for some projects. With --install, install "
        "them all with apt-get (needs root) and record the profile version.")
    profile.add_argument("--install", action="store_true",
                         help="apt-get install the profile and the build dependencies, "
                         "and record the version in WHEELWRIGHT_PROFILE_MARKER")
    sub.add_parser(
        "settings", help="print every setting a worker reads",
        description="Print each environment variable a worker reads: its current "
        "value (tokens masked), its default and what it means.")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.command in ("chroot", "armhf-chroot"):
        from worker.chroot import main as chroot_main

        return chroot_main(args)
    if args.command == "acl":
        return print_acl(args)
    if args.command == "profile":
        from worker.profile import main as profile_main

        return profile_main(settings.load(), install_it=args.install)
    if args.command == "settings":
        for line in settings.describe(settings.load()):
            print(line)
        return 0
    with stops_quietly("worker"):  # until rq's own stop handling is in place
        return run_worker(args)


def print_acl(args: argparse.Namespace) -> int:
    from worker.acl import new_password, worker_acl

    password = args.password or new_password()
    try:
        command = worker_acl(args.name, password)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(command)
    print(f"# worker.env: REDIS_URL=redis://{args.name}:{password}@MASTER:6379/0")
    return 0


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
    from worker.profile import ProfileError, load_build_deps

    try:  # read at every build: a mistake in it is better seen at once
        load_build_deps(config.build_deps_file)
    except (OSError, ProfileError) as error:
        print(f"error: build dependencies: {error}", file=sys.stderr)
        return 2
    from worker.sandbox import SandboxUnavailable, find_bwrap

    try:  # asked once here (and said once), so that every work horse inherits it
        find_bwrap(config.build_sandbox)
    except SandboxUnavailable as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    from worker.runner import run

    with one_line_errors("worker", config):
        run(config, interpreter, burst=args.burst)
    return 0


if __name__ == "__main__":
    sys.exit(main())
