"""What the build interpreter builds for: its ABI and platform tags.

The worker may run on a newer Python than the one that builds (a Buster Pi runs
the worker on Python >= 3.10 and builds cp37m with python3.7), so the tags are
asked of the build interpreter itself, never of the running one."""

from __future__ import annotations

import functools
import json
import subprocess
from dataclasses import dataclass

from worker.targets import target_key

# pip's own copy of packaging is there even on an old Python that today's
# packaging no longer supports. sys_tags() lists the most specific tags first,
# so the last platform of the first ABI is the plain one (linux_armv7l, not manylinux).
PROBE = """\
import json, os, sys
from pip._vendor.packaging import tags
found = list(tags.sys_tags())
abi = found[0].abi
print(json.dumps({
    "interpreter": found[0].interpreter,
    "abi": abi,
    "platform": [t.platform for t in found if t.abi == abi][-1],
    "version": "%d.%d.%d" % sys.version_info[:3],
    "paths": sorted({os.path.realpath(p) for p in (
        sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix,
        os.path.dirname(os.path.realpath(sys.executable)))}),
}))
"""


@dataclass(frozen=True)
class BuildInterpreter:
    python: str  # path of the interpreter that runs pip wheel
    interpreter: str  # e.g. cp37
    abi: str  # e.g. cp37m
    platform: str  # e.g. linux_armv7l
    version: str  # e.g. 3.7.3
    paths: tuple[str, ...] = ()  # its installation: a sandboxed build must see these

    @property
    def key(self) -> str:
        """The build target it builds for (worker.targets): its queue, its jobs'
        and its reports' `abi`."""
        return target_key(self.abi, self.platform)

    def accepts(self, abi: str, platform: str) -> bool:
        """Whether a wheel tagged abi/platform is one this interpreter can have built."""
        return abi in (self.abi, "none", "abi3") and platform in (self.platform, "any")


class InterpreterError(RuntimeError):
    """The build interpreter cannot be run or has no pip."""


@functools.cache
def probe(python: str) -> BuildInterpreter:
    """Ask `python` for its tags (cached: the answer cannot change while we run)."""
    try:
        out = subprocess.run([python, "-c", PROBE], capture_output=True, text=True,
                             check=True, timeout=120)
    except (OSError, subprocess.SubprocessError) as error:
        detail = getattr(error, "stderr", "") or error
        raise InterpreterError(f"cannot read the tags of {python}: {detail}") from None
    found = json.loads(out.stdout)
    return BuildInterpreter(python=python, **{**found, "paths": tuple(found["paths"])})
