"""How every long-running process of the system ends on SIGINT or SIGTERM: quietly.

Each process installs its own stop handlers once it runs (rq's workers, the
servers, the followers' stop flags). Before that, while it imports, connects or
waits for Redis, a signal would end it with a KeyboardInterrupt traceback (SIGINT)
or by the signal (SIGTERM). `stops_quietly` covers that stretch: both signals end
the process with status 0 and one line, which is what a supervisor stopping the
system a moment after starting it should see."""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager


def _interrupt(signum: int, frame) -> None:
    raise KeyboardInterrupt


@contextmanager
def stops_quietly(name: str) -> Iterator[None]:
    """Run the body with SIGTERM treated as SIGINT, and end the process with status
    0 and one line on stderr if either interrupts it."""
    if threading.current_thread() is threading.main_thread():  # else: called as a library
        signal.signal(signal.SIGTERM, _interrupt)
        signal.signal(signal.SIGINT, _interrupt)
    try:
        yield
    except KeyboardInterrupt:
        print(f"{name}: stopped", file=sys.stderr, flush=True)
        sys.exit(0)


# A build worker's stop interrupts its build (worker.runner), but not once the
# outcome is on its way to the intake: the intake may have taken it already, and a
# job put back then would build the release twice. A work horse runs one job and
# exits, so the latch never outlives the job that set it.
_finishing = False


def let_finish() -> None:
    """From now on a stop lets this process's job run to its end."""
    global _finishing
    _finishing = True


def interruptible() -> bool:
    """Whether a stop may interrupt the work now."""
    return not _finishing
