"""Failure reasons read from build logs (publish.failures), and the Debian package
of a missing file (publish.contents).

The logs are made here by real failing builds of sdists these tests write, run by
the worker's own build path (worker.jobs.build_in: pip wheel with the worker's time
and memory limits, and its notes). The few causes a test cannot bring about offline
(Rust, pkg-config from a wheel, a compiler killed from outside) use logs captured
from such builds, in tests/fixtures/failure-logs (see its README)."""

from __future__ import annotations

import io
import os
import platform
import shutil
import socket
import sys
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from publish import contents as contents_module
from publish import failures
from publish.contents import Contents, parse_line
from publish.failures import Failure, classify, label
from tests.sdists import write_index
from worker import notes

FIXTURES = Path(__file__).resolve().parent / "fixtures"
CONTENTS_EXTRACTS = [FIXTURES / "contents" / "bookworm-armhf-extract.gz",
                     FIXTURES / "contents" / "bookworm-all-extract.gz"]
CAPTURED = FIXTURES / "failure-logs"

SETUP_C = """\
from setuptools import Extension, setup
setup(name={name!r}, version="1.0",
      ext_modules=[Extension({module!r}, [{module!r} + ".c"]{options})])
"""
C_MODULE = """\
#include <Python.h>
{lines}
static struct PyModuleDef module = {{PyModuleDef_HEAD_INIT, "{module}", NULL, -1, NULL}};
PyMODINIT_FUNC PyInit_{module}(void) {{ return PyModule_Create(&module); }}
"""
# An expression that doubles at each level: 2**26 terms, far more memory than cc1
# gets under the build's address-space limit, from a source of a few lines.
DOUBLING = "\n".join(["#define X0 x"] + [f"#define X{i} (X{i - 1}+X{i - 1})"
                                         for i in range(1, 27)])


@dataclass(frozen=True)
class Case:
    """One sdist that fails to build, and the worker settings its build runs with."""

    files: dict[str, str]  # besides PKG-INFO
    settings: dict[str, str] = field(default_factory=dict)
    empty_path: bool = False  # the build finds no programs on PATH


def c_extension(name: str, lines: str = "", options: str = "") -> dict[str, str]:
    module = name.replace("-", "_")
    return {"setup.py": SETUP_C.format(name=name, module=module, options=options),
            f"{module}.c": C_MODULE.format(lines=lines, module=module)}


def setup_running(code: str) -> dict[str, str]:
    return {"setup.py": code}


def closed_port() -> int:
    """A local port nothing listens on (it was free a moment ago)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cases() -> dict[str, Case]:
    return {
        "ww-header": Case(c_extension("ww-header", "#include <nonexistent_ww.h>")),
        # libxml2-dev puts this under /usr/include/libxml2, which gcc does not search:
        # the include fails whether or not the package is installed.
        "ww-libxml": Case(c_extension("ww-libxml", "#include <libxml/parser.h>")),
        "ww-subprocess": Case(setup_running(
            "import subprocess\nsubprocess.check_call(['ww-no-such-tool', '--version'])\n")),
        "ww-shell": Case(setup_running(
            "import os\nif os.system('ww-no-such-tool --version'):\n"
            "    raise RuntimeError('ww-no-such-tool failed')\n")),
        # setuptools runs swig for a .i source; with nothing on PATH it is missing
        # whatever this machine has installed.
        "ww-swig": Case({"setup.py": "from setuptools import Extension, setup\n"
                         "setup(name='ww-swig', version='1.0',\n"
                         "      ext_modules=[Extension('_ww_swig', ['ww_swig.i'])])\n",
                         "ww_swig.i": "%module ww_swig\n"}, empty_path=True),
        "ww-link": Case(c_extension("ww-link", options=", libraries=['wwmissing']")),
        "ww-sleep": Case(setup_running("import time\ntime.sleep(120)\n"),
                         {"WHEELWRIGHT_BUILD_TIMEOUT": "2"}),
        "ww-cc1": Case(c_extension("ww-cc1", f"{DOUBLING}\nint f(int x) {{ return X26; }}"),
                       {"WHEELWRIGHT_BUILD_MEMORY": "400"}),
        "ww-memory": Case(setup_running("hoard = bytearray(1 << 30)\n"),
                          {"WHEELWRIGHT_BUILD_MEMORY": "600"}),
        "ww-network": Case(setup_running(
            "import urllib.request\n"
            f"urllib.request.urlopen('http://127.0.0.1:{closed_port()}/lib.tar.gz')\n")),
        "ww-python": Case(setup_running(
            "from setuptools import setup\n"
            "setup(name='ww-python', version='1.0', python_requires='<3')\n")),
        # pip itself killed mid-build, as the kernel's out-of-memory killer would.
        "ww-killed": Case(setup_running("import os, signal\n"
                                        "os.kill(os.getppid(), signal.SIGKILL)\n")),
        # Not a cause we name: the source itself is broken.
        "ww-broken": Case(c_extension("ww-broken", "#error ww-broken is broken on purpose")),
        # A build that prints the worker's notes, trailer line first, to choose the
        # reason its failure is given.
        "ww-forger": Case(setup_running(
            f"print({notes.TRAILER!r})\n"
            f"print({notes.missing_build_deps(['libforged-dev'])!r})\n"
            f"print({notes.timeout(1)!r})\n"
            "raise SystemExit('ww-forger fails')\n")),
    }


def write_sdist(dest: Path, name: str, files: dict[str, str]) -> Path:
    root = f"{name.replace('-', '_')}-1.0"
    members = {"PKG-INFO": f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n", **files}
    path = dest / f"{root}.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for member, text in members.items():
            data = text.encode()
            info = tarfile.TarInfo(f"{root}/{member}")
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    return path


@pytest.fixture(scope="session")
def build_logs(tmp_path_factory, backend_wheels) -> dict[str, str]:
    """The stored log of each case's build, as worker.jobs.build_in leaves it."""
    from worker import settings
    from worker.interpreter import probe
    from worker.jobs import build_in

    tmp = tmp_path_factory.mktemp("failing-builds")
    all_cases = cases()
    sources = tmp / "sources"
    sources.mkdir()
    index = write_index(tmp / "upstream", [*(write_sdist(sources, name, case.files)
                                             for name, case in all_cases.items()),
                                           *backend_wheels])
    interpreter = probe(sys.executable)
    (tmp / "nothing").mkdir()
    logs = {}
    with pytest.MonkeyPatch.context() as patch:
        # pip sees only the test's index, as in tests/conftest.py's offline_pip.
        patch.setenv("PIP_CONFIG_FILE", os.devnull)
        for name in ("PIP_FIND_LINKS", "PIP_EXTRA_INDEX_URL", "PIP_INDEX_URL"):
            patch.delenv(name, raising=False)
        path = os.environ.get("PATH", "")
        for name, case in all_cases.items():
            patch.setenv("PATH", str(tmp / "nothing") if case.empty_path else path)
            config = settings.load({
                "WHEELWRIGHT_DATA": str(tmp / "var"),
                "WHEELWRIGHT_BUILD_INDEX_URL": index,
                "WHEELWRIGHT_BUILD_SANDBOX": "off",
                "WHEELWRIGHT_BUILD_TIMEOUT": "300",
                **case.settings})
            workdir = tmp / "work" / name
            workdir.mkdir(parents=True)
            outcome = build_in(workdir, config, interpreter, name, "1.0")
            assert outcome.status == "failed", (name, outcome.log)
            logs[name] = outcome.log
    return logs


@pytest.fixture(scope="session")
def contents(tmp_path_factory) -> Iterator[Contents]:
    path = tmp_path_factory.mktemp("contents") / "bookworm-armhf.db"
    with Contents.build(path, CONTENTS_EXTRACTS) as built:
        yield built


def captured(name: str) -> str:
    return (CAPTURED / name).read_text()


# -- the classifier on logs of real builds -------------------------------------------


@pytest.mark.parametrize("case,expected", [
    ("ww-header", Failure("missing-header", "nonexistent_ww.h")),
    ("ww-subprocess", Failure("missing-tool", "ww-no-such-tool")),
    ("ww-shell", Failure("missing-tool", "ww-no-such-tool")),
    ("ww-link", Failure("missing-library", "-lwwmissing")),
    ("ww-sleep", Failure("timeout", "after 2 s")),
    ("ww-cc1", Failure("out-of-memory", "virtual memory exhausted")),
    ("ww-memory", Failure("out-of-memory", "MemoryError")),
    ("ww-killed", Failure("killed", "SIGKILL")),
    ("ww-python", Failure("python-version", f"{platform.python_version()} not in '<3'")),
])
def test_each_cause_is_named_from_the_log_of_a_real_build(build_logs, case, expected):
    assert classify(build_logs[case]) == expected, build_logs[case]


def test_a_build_that_needs_the_network_is_named(build_logs):
    failure = classify(build_logs["ww-network"])
    assert failure is not None and failure.reason == "network-needed", build_logs["ww-network"]
    assert "Connection refused" in failure.detail


def test_a_missing_file_is_given_its_debian_package(build_logs, contents):
    header = classify(build_logs["ww-libxml"], contents)
    assert header == Failure("missing-header", "libxml/parser.h", "libxml2-dev")
    assert label(header) == "missing header libxml/parser.h (libxml2-dev)"
    tool = classify(build_logs["ww-swig"], contents)
    assert tool == Failure("missing-tool", "swig", "swig")
    # Nothing in Debian provides what the test made up: no package, same reason.
    assert classify(build_logs["ww-link"], contents) == Failure("missing-library",
                                                                "-lwwmissing")


def test_a_failure_of_no_known_cause_gives_none(build_logs):
    assert "ww-broken is broken on purpose" in build_logs["ww-broken"]
    assert classify(build_logs["ww-broken"]) is None
    assert classify("") is None


def test_the_last_decisive_line_wins(build_logs):
    """A log holding several causes is named by the one that stopped the build,
    printed last; pip's "no matching distribution" only when nothing else is there."""
    header, timeout = build_logs["ww-header"], build_logs["ww-sleep"]
    assert classify(header + timeout).reason == "timeout"
    assert classify(build_logs["ww-network"] + header).reason == "missing-header"
    assert classify(header + build_logs["ww-network"]).reason == "network-needed"


@pytest.mark.parametrize("log,expected", [
    ("setuptools-rust-no-cargo.log",
     Failure("rust-missing", "setuptools-rust found no Rust compiler")),
    ("maturin-no-cargo.log", Failure("rust-missing", "maturin found no cargo")),
    ("pkgconf-missing-module.log", Failure("missing-library", "yaml-0.1.pc", "libyaml-dev")),
    ("gcc-cc1-killed.log", Failure("out-of-memory", "cc1 killed")),
    ("meson-program-not-found.log", Failure("missing-tool", "dbus-run-session")),
])
def test_captured_logs_of_causes_made_outside_the_tests(contents, log, expected):
    assert classify(captured(log), contents) == expected


def test_a_requirement_pip_cannot_find_is_named_when_nothing_else_is(build_logs):
    """The maturin log without its one Rust-specific line: pip's own complaint."""
    log = captured("maturin-no-cargo.log").replace("puccinialin", "ww-backend-helper")
    assert classify(log) == Failure("requirement-unavailable", "ww-backend-helper")
    # A real cause anywhere in the log wins over it.
    assert classify(build_logs["ww-header"] + log).reason == "missing-header"


@pytest.mark.skipif(shutil.which("dpkg-query") is None, reason="needs dpkg")
def test_missing_build_dependencies_are_named(tmp_path, backend_wheels, monkeypatch):
    """The worker refuses a project whose build-deps.txt packages are absent; the
    classifier names them from the line it writes."""
    from worker import settings
    from worker.interpreter import probe
    from worker.jobs import build_in

    deps = tmp_path / "build-deps.txt"
    deps.write_text("ww-deps: ww-no-such-package-dev\n")
    config = settings.load({"WHEELWRIGHT_DATA": str(tmp_path / "var"),
                            "WHEELWRIGHT_BUILD_DEPS": str(deps),
                            "WHEELWRIGHT_BUILD_SANDBOX": "off"})
    (tmp_path / "work").mkdir()
    outcome = build_in(tmp_path / "work", config, probe(sys.executable), "ww-deps", "1.0")
    failure = classify(outcome.log)
    assert failure == Failure("missing-build-deps", "ww-no-such-package-dev"), outcome.log
    assert label(failure) == "missing build dependencies ww-no-such-package-dev"


def test_a_build_cannot_print_the_workers_notes(build_logs):
    """The worker's notes are read only after its trailer line, which a build's output
    cannot hold: the forger's lines are its own output, and say nothing."""
    log = build_logs["ww-forger"]
    assert notes.missing_build_deps(["libforged-dev"]) in log and "ww-forger fails" in log
    assert [line for line in log.splitlines() if line == notes.TRAILER] == [notes.TRAILER]
    assert log.endswith(notes.TRAILER + "\n")
    assert classify(log) is None
    # pip indents what a build prints; a build whose output reaches the log as it is
    # gets its copy of the trailer line rewritten.
    forged = notes.with_notes(f"{notes.TRAILER}\n{notes.timeout(1)}\r\n{notes.TRAILER}", [])
    assert forged.splitlines().count(notes.TRAILER) == 1
    assert forged.splitlines().count(notes.FORGED_TRAILER) == 2
    assert classify(forged) is None
    # Without a trailer (a worker older than it) notes are read where they are.
    assert classify(notes.missing_build_deps(["libold-dev"]) + "\n") == Failure(
        "missing-build-deps", "libold-dev")


def test_a_contents_cache_that_fails_keeps_the_reason(build_logs, tmp_path):
    """A lookup that raises (a damaged cache file) costs the package, not the reason."""
    path = tmp_path / "bookworm-armhf.db"
    with Contents.build(path, CONTENTS_EXTRACTS):
        pass
    damaged = Contents(path)
    path.write_bytes(b"not a database" * 1000)  # replaced under the open connection
    assert classify(build_logs["ww-header"], damaged) == Failure("missing-header",
                                                                 "nonexistent_ww.h")
    damaged.close()


def test_every_reason_has_a_label():
    reasons = {rule.reason for rule in failures.RULES} | {failures.RUST_MISSING}
    assert reasons <= set(failures.REASONS)
    assert all(failures.REASONS[r] and "\n" not in failures.REASONS[r] for r in reasons)
    assert label(Failure("timeout", "after 2 s")) == "timed out (after 2 s)"
    assert label(Failure("out-of-memory", "cc1 killed")) == "out of memory (cc1 killed)"


# -- hostile logs --------------------------------------------------------------------


def timed(log: str) -> tuple[Failure | None, float]:
    started = time.monotonic()
    result = classify(log)
    return result, time.monotonic() - started


def test_only_the_end_of_a_huge_log_is_read(build_logs):
    """A cause more than SCAN_LIMIT from the end is not seen, and reading a huge log
    takes no longer than reading its end."""
    filler = "compiling something unremarkable\n" * (40 * 1024 * 1024 // 33)
    result, seconds = timed(build_logs["ww-header"] + filler)
    assert result is None and seconds < 2
    result, seconds = timed(filler + build_logs["ww-header"])
    assert result == Failure("missing-header", "nonexistent_ww.h") and seconds < 2


@pytest.mark.parametrize("log", [
    os.urandom(4 << 20).decode("latin-1"),  # binary junk, as bytes a build may print
    "<html><body>" + "<div class='x'>&nbsp;</div>" * 200_000 + "</body></html>",
    # Lines built to make a backtracking pattern slow: a long run without spaces
    # before the fixed string of a rule, and a rule's opening over and over.
    ("a" * 4000 + ": out of memory allocating\n") * 300,
    (":1:1: fatal error: " * 200 + "x: No such file or directory\n") * 300,
    ("Package " * 500 + "not found\n") * 300,
    "\x00" * (3 << 20),
])
def test_a_hostile_log_neither_crashes_nor_takes_long(log):
    result, seconds = timed(log)
    assert result is None or result.reason in failures.REASONS
    assert result is None or len(result.detail) <= failures.DETAIL_LIMIT
    assert seconds < 2


# -- the Contents index --------------------------------------------------------------


@pytest.mark.parametrize("header,package", [
    ("ffi.h", "libffi-dev"),  # in the multiarch directory; libbotan-2-dev has one too
    ("libxml/parser.h", "libxml2-dev"),
    ("yaml.h", "libyaml-dev"),
    ("zlib.h", "zlib1g-dev"),
    ("openssl/ssl.h", "libssl-dev"),
    ("jpeglib.h", "libjpeg62-turbo-dev"),
    ("gpiod.h", "libgpiod-dev"),
    ("portaudio.h", "portaudio19-dev"),
    ("nonexistent_ww.h", None),
    ("ssl.h", "libssl-dev"),  # a suffix: openssl/ssl.h
])
def test_package_for_header(contents, header, package):
    assert contents.package_for_header(header) == package


@pytest.mark.parametrize("tool,package", [
    ("swig", "swig"),  # from Contents-all: an architecture-independent package
    ("make", "make"),  # make-guile ships /usr/bin/make too
    ("gcc", "gcc"),  # and pentium-builder a /usr/bin/gcc
    ("cmake", "cmake"),
    ("pkg-config", "pkgconf"),
    ("cargo", "cargo"),
    ("ww-no-such-tool", None),
])
def test_package_for_tool(contents, tool, package):
    assert contents.package_for_tool(tool) == package


@pytest.mark.parametrize("library,package", [
    ("-lyaml", "libyaml-dev"), ("yaml", "libyaml-dev"), ("libffi.so", "libffi-dev"),
    ("-lssl", "libssl-dev"), ("-lz", "zlib1g-dev"), ("-ljpeg", "libjpeg62-turbo-dev"),
    ("-lgpiod", "libgpiod-dev"), ("-lportaudio", "portaudio19-dev"),
    ("-lxml2", "libxml2-dev"), ("-lwwmissing", None), ("-l:libz.so.1", None),
])
def test_package_for_library(contents, library, package):
    assert contents.package_for_library(library) == package


def test_package_for_pkgconfig(contents):
    assert contents.package_for_pkgconfig("yaml-0.1") == "libyaml-dev"
    assert contents.package_for_pkgconfig("libffi.pc") == "libffi-dev"
    assert contents.package_for_pkgconfig("ww-missing") is None


def test_answers_do_not_depend_on_the_order_of_the_index(tmp_path, contents):
    with Contents.build(tmp_path / "reversed.db", CONTENTS_EXTRACTS[::-1]) as other:
        for name in ("ffi.h", "parser.h", "yaml.h", "Python.h"):
            assert other.package_for_header(name) == contents.package_for_header(name)
        for name in ("make", "gcc", "g++", "swig"):
            assert other.package_for_tool(name) == contents.package_for_tool(name)


def test_only_paths_a_failure_can_name_are_kept():
    assert parse_line("usr/share/doc/swig/copyright     interpreters/swig\n") == []
    assert parse_line("usr/lib/arm-linux-gnueabihf/libyaml-0.so.2   libs/libyaml-0-2") == []
    [entry] = parse_line("usr/include/odd name.h      non-free/libdevel/ww-odd-dev\n")
    assert (entry.kind, entry.name, entry.package) == ("header", "odd name.h", "ww-odd-dev")
    shared = parse_line("usr/bin/make     devel/make,devel/make-guile")
    assert sorted(e.package for e in shared) == ["make", "make-guile"]
    assert parse_line("x" * 10_000 + " libdevel/x") == []


def mirror_with_extracts(root: Path, codename: str = "bookworm", arch: str = "armhf") -> str:
    """A directory laid out as a Debian mirror, holding the extracts; its file:// URL."""
    main = root / "dists" / codename / "main"
    main.mkdir(parents=True)
    shutil.copy(CONTENTS_EXTRACTS[0], main / f"Contents-{arch}.gz")
    shutil.copy(CONTENTS_EXTRACTS[1], main / "Contents-all.gz")
    return root.as_uri()


def test_the_cache_is_downloaded_once_and_refreshed_when_old(tmp_path):
    mirror = mirror_with_extracts(tmp_path / "mirror")
    said: list[str] = []
    data = tmp_path / "var"
    first = contents_module.cached(data, "bookworm", "armhf", mirror, 30, said.append)
    assert first is not None and first.package_for_tool("swig") == "swig"
    assert first.path == data / "contents" / "bookworm-armhf.db"
    assert any("Contents-armhf.gz" in line for line in said)
    assert any("entries" in line for line in said)  # the closing line, with the size
    built = first.built
    said.clear()
    again = contents_module.cached(data, "bookworm", "armhf", mirror, 30, said.append)
    assert said == [] and again.built == built
    refreshed = contents_module.cached(data, "bookworm", "armhf", mirror, 0, said.append)
    assert refreshed.built > built and said
    assert [p.name for p in (data / "contents").iterdir()] == ["bookworm-armhf.db"]
    for opened in (first, again, refreshed):
        opened.close()


def test_a_broken_download_keeps_the_old_cache(tmp_path):
    """A mirror serving a truncated or garbled index: the refresh fails, and the cache
    it would have replaced stays, whole."""
    mirror = mirror_with_extracts(tmp_path / "mirror")
    data = tmp_path / "var"
    contents_module.cached(data, "bookworm", "armhf", mirror, 30, print).close()
    main = tmp_path / "mirror" / "dists" / "bookworm" / "main"
    index = (main / "Contents-armhf.gz").read_bytes()
    said: list[str] = []
    for broken in (index[: len(index) // 2],  # cut short: EOFError from gzip
                   index[:20] + bytes(b ^ 0xFF for b in index[20:])):  # zlib.error
        (main / "Contents-armhf.gz").write_bytes(broken)
        kept = contents_module.cached(data, "bookworm", "armhf", mirror, 0, said.append)
        assert kept is not None and kept.package_for_header("ffi.h") == "libffi-dev"
        kept.close()
    assert sum("could not refresh" in line for line in said) == 2


def test_the_publish_worker_refreshes_only_caches_that_exist(tmp_path):
    """What the publish worker's refresher runs (publish.contents.refresh_in_background
    calls it in a thread): an old cache is downloaded again, a fresh one is not, and
    none is made where there was none."""
    data = tmp_path / "var"
    mirror = mirror_with_extracts(tmp_path / "mirror")
    said: list[str] = []
    assert contents_module.refresh_stale(data, mirror, 30, said.append) == [] and said == []
    assert not (data / "contents").exists()
    old = contents_module.cache_path(data, "bookworm", "armhf")
    Contents.build(old, CONTENTS_EXTRACTS[:1], about={"built": "0"}).close()  # 1970
    fresh = contents_module.cache_path(data, "trixie", "armhf")
    Contents.build(fresh, CONTENTS_EXTRACTS[:1]).close()
    assert contents_module.stale_caches(data, 30) == [("bookworm", "armhf")]
    assert contents_module.refresh_stale(data, mirror, 30, said.append) == [
        ("bookworm", "armhf")]
    with Contents(old) as refreshed:
        assert time.time() - refreshed.built < 600
        assert refreshed.package_for_tool("swig") == "swig"  # from Contents-all.gz
    assert contents_module.stale_caches(data, 30) == []
    assert not any("trixie" in line for line in said)


def test_an_unreachable_mirror_keeps_the_old_cache(tmp_path):
    data = tmp_path / "var"
    said: list[str] = []
    missing = (tmp_path / "no-mirror").as_uri()
    assert contents_module.cached(data, "bookworm", "armhf", missing, 30, said.append) is None
    assert any("could not refresh" in line for line in said)
    assert not (data / "contents" / "bookworm-armhf.db").exists()
    mirror = mirror_with_extracts(tmp_path / "mirror")
    contents_module.cached(data, "bookworm", "armhf", mirror, 30, said.append).close()
    old = contents_module.cached(data, "bookworm", "armhf", missing, 0, said.append)
    assert old is not None and old.package_for_header("ffi.h") == "libffi-dev"
    assert [p.name for p in (data / "contents").iterdir()] == ["bookworm-armhf.db"]
    old.close()
    kept = contents_module.cached(data, "bookworm", "armhf", None, 0, said.append)
    assert kept is not None
    kept.close()
