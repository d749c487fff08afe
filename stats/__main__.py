"""`python -m stats <command>`: access logs into stats.db, explored with Datasette."""

from __future__ import annotations

import argparse


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m stats", description=__doc__)
    parser.add_subparsers(dest="command")
    parser.parse_args(argv)
    parser.print_help()


if __name__ == "__main__":
    main()
