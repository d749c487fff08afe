"""The notes a worker adds to a build log, and where they start.

A build's own output comes first; then the worker writes the line TRAILER and its
notes, one a line. A line of the build's output that reads TRAILER is rewritten
(`build_output`), so the last TRAILER line of a log is always the worker's, and
what follows it is the worker's alone: the master's failure classifier
(publish.failures) trusts a note only there, so a build that prints "missing build
dependencies" cannot choose its own failure reason. The wording of each note is
what that classifier matches: both sides build it from the constants here."""

from __future__ import annotations

TRAILER = "[wheelwright] ---- the worker's notes (the build's own output ends above) ----"
# What a line of the build's output that reads TRAILER becomes.
FORGED_TRAILER = "[wheelwright] (the build printed the worker's trailer line here)"

PREFIX = "[wheelwright] "
TIMEOUT = "[build killed after {seconds} s]"  # the build ran past WHEELWRIGHT_BUILD_TIMEOUT
KILLED = PREFIX + "the build was killed ({signal}) from outside"
MISSING_BUILD_DEPS = PREFIX + "missing build dependencies: {packages} (apt-get install {command})"
REFUSED = PREFIX + "build refused: {why}"
NO_WHEEL = PREFIX + "pip succeeded but made no wheel"


def timeout(seconds: float) -> str:
    return TIMEOUT.format(seconds=f"{seconds:g}")


def killed(signal: str = "SIGKILL") -> str:
    return KILLED.format(signal=signal)


def missing_build_deps(packages: list[str]) -> str:
    return MISSING_BUILD_DEPS.format(packages=", ".join(packages), command=" ".join(packages))


def build_output(log: str) -> str:
    """The build's own output with any line that reads TRAILER rewritten (split as
    str.splitlines splits, the way the classifier reads a log)."""
    if TRAILER not in log:
        return log
    lines = log.splitlines(keepends=True)
    for index, line in enumerate(lines):
        text = (line.splitlines() or [""])[0]
        if text == TRAILER:
            lines[index] = FORGED_TRAILER + line[len(text):]
    return "".join(lines)


def with_notes(output: str, notes: list[str]) -> str:
    """A build log: the build's output (made safe by build_output), then TRAILER and
    the worker's notes, each on its own line. The trailer is written even without
    notes, so that no line of the output can pass for it."""
    text = build_output(output)
    if text and not text.endswith("\n"):
        text += "\n"
    return text + "".join(f"{line}\n" for line in [TRAILER, *notes])


def split(log: str) -> tuple[str, str | None]:
    """(the build's output, the worker's notes) of a log; notes None when the log has
    no trailer (a worker older than it, or a log cut short)."""
    lines = log.splitlines(keepends=True)
    for index in range(len(lines) - 1, -1, -1):
        if (lines[index].splitlines() or [""])[0] == TRAILER:
            return "".join(lines[:index]), "".join(lines[index + 1:])
    return log, None
