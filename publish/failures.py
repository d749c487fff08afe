"""Why a build failed, read from its log: a missing header, tool or library, memory,
time, Rust, the network, the Python version. A maintainer or an operator reads one
line ("missing header ffi.h (libffi-dev)") instead of digging through the log.

The patterns are what the tools print in the builds' locale (the worker fixes
LC_ALL=C.UTF-8, so messages are in English): gcc, clang and ld, Python's traceback
of a program that could not be started, setuptools, sh, make, pkg-config, pip,
setuptools-rust and maturin, and the worker's own notes (worker.notes), which are
trusted only after the worker's trailer line, where a build cannot write. Each rule
has a fixed string a line must hold before its pattern is tried, and every pattern's
repetitions are bounded, so that a hostile log cannot make the scan slow; only the
end of a log is read."""

from __future__ import annotations

import logging
import re
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from worker import notes

log = logging.getLogger("publish.failures")

MISSING_HEADER = "missing-header"
MISSING_TOOL = "missing-tool"
MISSING_LIBRARY = "missing-library"
OUT_OF_MEMORY = "out-of-memory"
TIMEOUT = "timeout"
KILLED = "killed"
RUST_MISSING = "rust-missing"
NETWORK_NEEDED = "network-needed"
PYTHON_VERSION = "python-version"
REQUIREMENT_UNAVAILABLE = "requirement-unavailable"
MISSING_BUILD_DEPS = "missing-build-deps"

# Every reason, with what a person reads for it (stats count failures by reason).
REASONS: dict[str, str] = {
    MISSING_HEADER: "missing header",
    MISSING_TOOL: "missing tool",
    MISSING_LIBRARY: "missing library",
    OUT_OF_MEMORY: "out of memory",
    TIMEOUT: "timed out",
    KILLED: "killed from outside",
    RUST_MISSING: "no Rust compiler",
    NETWORK_NEEDED: "needs the network",
    PYTHON_VERSION: "unsupported Python version",
    REQUIREMENT_UNAVAILABLE: "unavailable build requirement",
    MISSING_BUILD_DEPS: "missing build dependencies",
}
# Reasons whose detail is the name of the thing missing (a file, a program, a
# requirement), written after the label; other details are written in brackets.
NAMED = {MISSING_HEADER, MISSING_TOOL, MISSING_LIBRARY, REQUIREMENT_UNAVAILABLE,
         MISSING_BUILD_DEPS}

SCAN_LIMIT = 1 << 20  # characters read from the end of a log (the worker keeps 1 MB)
LINE_LIMIT = 4096  # characters of a line the patterns see
DETAIL_LIMIT = 120  # characters of a detail kept
# The build interpreter's own headers: Debian's generic package for them, rather
# than whichever of several versioned ones (or PyPy's) the Contents index ranks first.
PYTHON_HEADERS = {"Python.h": "python3-dev"}
RUST_TOOLS = {"cargo", "rustc"}


@dataclass(frozen=True)
class Failure:
    """The cause of one failed build."""

    reason: str  # one of REASONS
    detail: str  # what is missing or what happened: "ffi.h", "swig", "-lyaml", "cc1 killed"
    package: str | None = None  # the Debian package that provides what is missing


class PackageLookup(Protocol):
    """What classify asks of a Contents index (publish.contents.Contents)."""

    def package_for_header(self, name: str) -> str | None: ...
    def package_for_tool(self, name: str) -> str | None: ...
    def package_for_library(self, name: str) -> str | None: ...
    def package_for_pkgconfig(self, name: str) -> str | None: ...


@dataclass(frozen=True)
class Rule:
    """A line pattern: `needle` is a fixed string the line must hold (cheap to test
    first); `pattern`'s groups become the detail through `detail`."""

    needle: str
    pattern: re.Pattern[str]
    reason: str
    detail: Callable[[re.Match[str]], str]
    # A weak rule names a cause only when no other rule matched anywhere: pip's
    # "No matching distribution" is what a missing network or Python version ends in.
    weak: bool = False
    # Some lines decide only when an earlier line says what they are about: a
    # FileNotFoundError is a program only if subprocess was starting it.
    after: str | None = None
    # A worker's note (worker.notes): read in the worker's trailer only.
    note: bool = False


def _group(number: int = 1) -> Callable[[re.Match[str]], str]:
    return lambda match: match.group(number)


def _fixed(text: str) -> Callable[[re.Match[str]], str]:
    return lambda match: text


def _base(match: re.Match[str]) -> str:
    return match.group(1).rstrip("/").rsplit("/", 1)[-1]


def _note(template: str, reason: str, detail: Callable[[re.Match[str]], str],
          **fields: str) -> Rule:
    """The rule for a worker's note, made from its template in worker.notes: the
    fixed text up to the first field is the needle, and each {field} becomes the
    group given for it."""
    pattern = "^" + re.escape(template)
    for name, group in fields.items():
        pattern = pattern.replace(re.escape("{" + name + "}"), group)
    return Rule(template.split("{", 1)[0], re.compile(pattern), reason, detail, note=True)


RULES: tuple[Rule, ...] = (
    # The worker's note when it kills a build at the time limit.
    _note(notes.TIMEOUT, TIMEOUT, lambda m: f"after {m.group(1)} s", seconds=r"([0-9.]{1,20})"),
    # Its note when pip was killed by someone else (often the kernel's out-of-memory
    # killer, but not surely: an operator's kill reads the same).
    _note(notes.KILLED, KILLED, _group(), signal=r"(\w{1,20})"),
    # Its refusal to build without the Debian packages build-deps.txt names for the
    # project (the detail is the packages, comma-separated).
    _note(notes.MISSING_BUILD_DEPS, MISSING_BUILD_DEPS, _group(),
          packages=r"([\w.+:, -]{1,300}?)", command=r"[^)]{0,600}"),
    # gcc: "x.c:2:10: fatal error: ffi.h: No such file or directory"; the position
    # tells an #include from a missing input file ("cc1: fatal error: x.c: ...").
    Rule(": No such file or directory", re.compile(
        r":\d{1,9}:\d{1,9}: fatal error: ([^\s:'\"]{1,200}): No such file or directory"),
        MISSING_HEADER, _group()),
    # clang: "x.c:2:10: fatal error: 'ffi.h' file not found"
    Rule("' file not found", re.compile(
        r":\d{1,9}:\d{1,9}: fatal error: '([^'\s]{1,200})' file not found"),
        MISSING_HEADER, _group()),
    # ld (binutils >= 2.40 adds ": No such file or directory"), gold and lld.
    Rule("cannot find -l", re.compile(r"\bld(?:\.\w{1,8})?: cannot find (-l:?[^\s:]{1,100})"),
         MISSING_LIBRARY, _group()),
    Rule("unable to find library -l", re.compile(r"unable to find library (-l:?[^\s:]{1,100})"),
         MISSING_LIBRARY, _group()),
    # pkg-config and pkgconf, old and new wordings, for a module (a .pc file).
    Rule("Package ", re.compile(
        r"\bPackage '?([\w.+-]{1,100})'?,? (?:required by '[^']{0,200}', )?(?:was )?not found"),
        MISSING_LIBRARY, lambda m: f"{m.group(1)}.pc"),
    Rule("No package '", re.compile(r"No package '([\w.+-]{1,100})' found"), MISSING_LIBRARY,
         lambda m: f"{m.group(1)}.pc"),
    # Python could not start a program: subprocess raises FileNotFoundError.
    Rule("FileNotFoundError: [Errno 2] No such file or directory: '", re.compile(
        r"FileNotFoundError: \[Errno 2\] No such file or directory: '([^'\s]{1,200})'"),
        MISSING_TOOL, _base, after="child_exception_type"),
    # setuptools' spawn, new and old wordings.
    Rule("error: command '", re.compile(
        r"error: command '([^'\s]{1,200})' failed: No such file or directory"),
        MISSING_TOOL, _base),
    Rule("unable to execute '", re.compile(
        r"unable to execute '([^'\s]{1,200})': No such file or directory"),
        MISSING_TOOL, _base),
    # sh (dash: "sh: 1: swig: not found") and bash ("bash: line 1: swig: command not found").
    Rule("not found", re.compile(
        r"\b(?:ba|da)?sh: (?:line )?(?:\d{1,9}: )?([^\s:]{1,200}): (?:command )?not found"),
        MISSING_TOOL, _base),
    # make running a program it cannot find: "make: swig: No such file or directory".
    Rule("make", re.compile(
        r"\bmake(?:\[\d{1,4}\])?: ([^\s:*\[]{1,200}): "
        r"(?:No such file or directory|Command not found)"),
        MISSING_TOOL, _base),
    # Meson (meson-python builds): "meson.build:72:19: ERROR: Program 'dbus-run-session'
    # not found or not executable".
    Rule("ERROR: Program '", re.compile(
        r"ERROR: Program '([^'\s]{1,200})' not found or not executable"), MISSING_TOOL, _base),
    # CMake without the build tool or the compiler it was asked to use.
    Rule("CMake was unable to find a build program", re.compile(
        r"CMake was unable to find a build program corresponding to \"(Unix Makefiles|Ninja)\""),
        MISSING_TOOL, lambda m: {"Ninja": "ninja"}.get(m.group(1), "make")),
    Rule("_COMPILER could be found", re.compile(r"No CMAKE_(C|CXX)_COMPILER could be found"),
         MISSING_TOOL, lambda m: {"C": "cc", "CXX": "c++"}[m.group(1)]),
    # gcc's driver when the kernel's out-of-memory killer ends cc1, old and new wordings.
    Rule("Killed signal terminated program", re.compile(
        r"fatal error: Killed signal terminated program (\S{1,100})"), OUT_OF_MEMORY,
        lambda m: f"{m.group(1)} killed"),
    Rule("internal compiler error: Killed", re.compile(
        r"internal compiler error: Killed \(program ([^\s)]{1,100})\)"), OUT_OF_MEMORY,
        lambda m: f"{m.group(1)} killed"),
    # gcc under an address-space limit (WHEELWRIGHT_BUILD_MEMORY), two wordings.
    Rule("virtual memory exhausted", re.compile(r"virtual memory exhausted"), OUT_OF_MEMORY,
         _fixed("virtual memory exhausted")),
    Rule(": out of memory allocating", re.compile(r"([\w.+-]{1,100}): out of memory allocating"),
         OUT_OF_MEMORY, lambda m: f"{_base(m)} out of memory"),
    # Python (the last line of a traceback), C++ and Rust allocators, fork.
    Rule("MemoryError", re.compile(r"^\s*MemoryError\b"), OUT_OF_MEMORY, _fixed("MemoryError")),
    Rule("std::bad_alloc", re.compile(r"std::bad_alloc"), OUT_OF_MEMORY, _fixed("std::bad_alloc")),
    Rule("memory allocation of ", re.compile(r"memory allocation of \d{1,20} bytes failed"),
         OUT_OF_MEMORY, _fixed("memory allocation failed")),
    Rule("[Errno 12] Cannot allocate memory", re.compile(r"\[Errno 12\] Cannot allocate memory"),
         OUT_OF_MEMORY, _fixed("cannot allocate memory")),
    # setuptools-rust, and maturin's own setup.py, without cargo on PATH.
    Rule("can't find Rust compiler", re.compile(r"error: can't find Rust compiler"),
         RUST_MISSING, _fixed("setuptools-rust found no Rust compiler")),
    Rule("Cargo, the Rust package manager, is not installed", re.compile(
        r"Cargo, the Rust package manager, is not installed"), RUST_MISSING,
        _fixed("cargo is not installed")),
    # maturin >= 1.8 asks for puccinialin (which downloads Rust) when cargo is missing.
    Rule("No matching distribution found for puccinialin", re.compile(
        r"No matching distribution found for puccinialin"), RUST_MISSING,
        _fixed("maturin found no cargo")),
    # Reaching the network from a build: urllib, urllib3 (pip and requests), curl and
    # git; git is limited to local repositories in every build (GIT_ALLOW_PROTOCOL).
    Rule("<urlopen error ", re.compile(r"<urlopen error ([^>]{1,200})>"), NETWORK_NEEDED,
         _group()),
    Rule("Failed to establish a new connection", re.compile(
        r"Failed to establish a new connection: (\[Errno -?\d{1,5}\] [^'\")]{1,200})"),
        NETWORK_NEEDED, _group()),
    Rule("Temporary failure in name resolution", re.compile(
        r"Temporary failure in name resolution"), NETWORK_NEEDED,
        _fixed("temporary failure in name resolution")),
    Rule("Could not resolve host", re.compile(r"Could not resolve host: ?(\S{0,200})"),
         NETWORK_NEEDED, lambda m: f"could not resolve host {m.group(1)}".strip()),
    Rule("transport '", re.compile(r"transport '(\w{1,20})' not allowed"), NETWORK_NEEDED,
         lambda m: f"git over {m.group(1)}"),
    Rule("Could not fetch URL", re.compile(r"Could not fetch URL (\S{1,300}?):? "), NETWORK_NEEDED,
         lambda m: f"could not fetch {m.group(1)}"),
    Rule("Read timed out", re.compile(r"Read timed out"), NETWORK_NEEDED,
         _fixed("read timed out")),
    # pip, on a Requires-Python that excludes the build interpreter.
    Rule("requires a different Python", re.compile(
        r"Package '[^']{1,200}' requires a different Python: (.{1,100})$"),
        PYTHON_VERSION, _group()),
    Rule("require a different python version", re.compile(
        r"Ignored the following versions that require a different python version: "
        r"(.{1,100})$"), PYTHON_VERSION, _group()),
    # pip, on a build requirement (or the release itself) its index does not offer.
    Rule("No matching distribution found for ", re.compile(
        r"No matching distribution found for (\S{1,200})"), REQUIREMENT_UNAVAILABLE, _group(),
        weak=True),
)
# How far back an `after` rule looks for its context (Python 3.11 puts a line of
# carets between the raise and the error).
AFTER_WINDOW = 4


def classify(log: str, contents: PackageLookup | None = None) -> Failure | None:
    """The cause of a failed build from its log, or None when no rule knows it.
    The last decisive line wins: the first error often causes others after it,
    but a build goes on after some (an optional extension), and the one that
    stopped it is printed last. With `contents`, a missing file gets its package."""
    output, trailer = notes.split(log[-SCAN_LIMIT:])
    if trailer is None:  # a worker older than the trailer: its notes are where it put them
        parts = [(output, RULES)]
    else:
        parts = [(output, tuple(r for r in RULES if not r.note)),
                 (trailer, tuple(r for r in RULES if r.note))]
    weak: Failure | None = None
    for text, candidates in reversed(parts):  # the trailer is the end of the log
        # Only the rules whose fixed string is in the text at all are tried on its lines.
        rules = [rule for rule in candidates if rule.needle in text]
        lines = text.splitlines() if rules else []
        for index in range(len(lines) - 1, -1, -1):
            line = lines[index][:LINE_LIMIT]
            for rule in rules:
                if rule.needle not in line or (weak is not None and rule.weak):
                    continue
                match = rule.pattern.search(line)
                if match is None or not _context_holds(rule, lines, index):
                    continue
                failure = _failure(rule, match)
                if not rule.weak:
                    return _with_package(failure, contents)
                weak = failure
                break
    return _with_package(weak, contents) if weak is not None else None


def _context_holds(rule: Rule, lines: list[str], index: int) -> bool:
    if rule.after is None:
        return True
    return any(rule.after in line[:LINE_LIMIT]
               for line in lines[max(index - AFTER_WINDOW, 0):index])


def _failure(rule: Rule, match: re.Match[str]) -> Failure:
    detail = rule.detail(match).strip()[:DETAIL_LIMIT]
    if rule.reason == MISSING_TOOL and detail in RUST_TOOLS:
        return Failure(RUST_MISSING, f"{detail} not found")
    return Failure(rule.reason, detail)


def _with_package(failure: Failure, contents: PackageLookup | None) -> Failure:
    """`failure` with the Debian package that provides what it lacks, if known. A
    Contents cache that cannot answer (damaged, replaced under us) costs the package
    name only, never the reason."""
    reason, detail = failure.reason, failure.detail
    package: str | None = None
    if reason == MISSING_HEADER and detail in PYTHON_HEADERS:
        package = PYTHON_HEADERS[detail]
    elif contents is None:
        return failure
    else:
        try:
            package = _lookup(contents, reason, detail)
        except sqlite3.DatabaseError as error:
            log.warning("Contents lookup of %s failed: %s", detail, error)
    return Failure(reason, detail, package) if package else failure


def _lookup(contents: PackageLookup, reason: str, detail: str) -> str | None:
    if reason == MISSING_HEADER:
        return contents.package_for_header(detail)
    if reason == MISSING_TOOL:
        return contents.package_for_tool(detail)
    if reason == MISSING_LIBRARY and detail.endswith(".pc"):
        return contents.package_for_pkgconfig(detail)
    if reason == MISSING_LIBRARY:
        return contents.package_for_library(detail)
    return None


def label(failure: Failure) -> str:
    """One line for people: "missing header ffi.h (libffi-dev)",
    "out of memory (cc1 killed)", "timed out (after 3 s)"."""
    text = REASONS.get(failure.reason, failure.reason)
    if failure.detail:
        text += f" {failure.detail}" if failure.reason in NAMED else f" ({failure.detail})"
    if failure.package:
        text += f" ({failure.package})"
    return text
