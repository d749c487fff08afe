"""Project-wide checks: ruff is clean, and every command has help text."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

COMMANDS = {
    "ingest": ["replay", "follow", "schedule", "status", "dump", "redis", "dashboard",
               "settings", "up", "admin"],
    # A group of commands is listed as "package group".
    "ingest admin": ["add", "skip", "unskip", "remove", "rebuild", "retry-failed", "import",
                     "opt-out", "opt-in", "verify", "scan-compiled", "reconcile"],
    "worker": ["chroot", "armhf-chroot", "acl", "profile", "settings"],
    "publish": ["intake", "serve", "worker", "write", "screenshot", "contents", "downloads"],
    "stats": ["load", "follow", "health", "serve", "screenshot"],
}


def test_ruff_is_clean():
    result = subprocess.run([sys.executable, "-m", "ruff", "check", str(ROOT)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("package,command", [
    (package, command) for package, commands in COMMANDS.items()
    for command in [None, *commands]
])
def test_every_command_has_help(package, command):
    argv = [sys.executable, "-m", *package.split()] + ([command] if command else []) + \
        ["--help"]
    result = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "usage:" in result.stdout and len(result.stdout.splitlines()) >= 3


@pytest.mark.parametrize("package", sorted(COMMANDS))
def test_commands_are_all_listed(package):
    """COMMANDS names every subcommand, so that a new one cannot miss the help check:
    argparse lists them indented by four spaces under the package's --help."""
    result = subprocess.run([sys.executable, "-m", *package.split(), "--help"],
                            capture_output=True, text=True, cwd=ROOT, timeout=60)
    listed = re.findall(r"^ {4}(\S+)", result.stdout, re.MULTILINE)
    assert sorted(listed) == sorted(COMMANDS[package])
