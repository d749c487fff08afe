"""Which machine made a build: the worker's name, its builder profile, its OS release
and its C compiler, sent with every build report (worker.wire.Machine)."""

from __future__ import annotations

import functools
import shlex
import subprocess
from pathlib import Path

from worker.profile import installed_profile
from worker.wire import Machine

OS_RELEASE = Path("/etc/os-release")


def os_release(path: Path = OS_RELEASE) -> str:
    """PRETTY_NAME of os-release(5), e.g. "Debian GNU/Linux 12 (bookworm)"; "" without."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    for line in text.splitlines():
        name, _, value = line.partition("=")
        if name.strip() == "PRETTY_NAME":
            # The file is shell-quoted; shlex undoes the quoting and escapes alike.
            try:
                words = shlex.split(value, comments=False)
            except ValueError:  # unbalanced quotes: the text as it stands
                return value.strip().strip("'\"")[:200]
            return words[0] if words else ""
    return ""


@functools.cache
def toolchain() -> str:
    """The first line of `gcc --version`; "" without gcc. Asked once per process
    (the worker asks before rq forks its work horses, so they inherit the answer):
    under emulation gcc takes a while to start, and it changes only with an upgrade."""
    try:
        done = subprocess.run(["gcc", "--version"], capture_output=True, text=True,
                              timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    lines = done.stdout.splitlines()
    return lines[0].strip() if done.returncode == 0 and lines else ""


def this_machine(name: str, marker: Path) -> Machine:
    """This worker as its build reports describe it; the profile is read afresh, since
    an operator may install a new one while the worker runs."""
    return Machine(name=name, profile=installed_profile(marker), os_release=os_release(),
                   toolchain=toolchain())
