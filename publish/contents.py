"""Which Debian package holds a file: a build that failed for want of a header, a
tool or a library is told which package to install.

Debian publishes, per release and architecture, a Contents index: every file of
every package (`dists/<codename>/main/Contents-<arch>.gz`, with the files of
architecture-independent packages in `Contents-all.gz`; `swig`, for one, is only
there). It is what `apt-file` searches. We keep the few paths a failed build can
name (headers, programs, link-time libraries, pkg-config files) in an SQLite file
under the data directory, built once from a download of some tens of MB and made
again when it is older than the configured age.

A path may belong to several packages (`usr/bin/make`: make, make-guile); every
owner is kept and a lookup ranks them the same way each time (see the _rank_*
functions), so that the answer does not depend on the order of the index."""

from __future__ import annotations

import contextlib
import gzip
import http.client
import io
import logging
import os
import re
import sqlite3
import tempfile
import threading
import time
import urllib.request
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from ingest.catalogue import transaction

if TYPE_CHECKING:
    from ingest.settings import Settings

HEADER, TOOL, LIBRARY, PKGCONFIG = "header", "tool", "library", "pkgconfig"
INCLUDE_ROOT = "usr/include/"
# Programs: /usr/bin/x, /usr/sbin/x, and /bin/x, /sbin/x (merged-/usr makes them one).
TOOL_PATH = re.compile(r"(?:usr/)?s?bin/[^/]+")
# What `-lfoo` finds at link time: libfoo.so or libfoo.a in a library directory.
LIBRARY_PATH = re.compile(r"(?:usr/)?lib(?:32|64)?/(?:.+/)?lib[^/]+\.(?:so|a)")
PKGCONFIG_PATH = re.compile(r".+/pkgconfig/[^/]+\.pc")
# A multiarch directory (arm-linux-gnueabihf, x86_64-linux-gnu), which the compiler
# searches as it searches usr/include itself: ffi.h lives in one.
MULTIARCH = re.compile(r"[a-z0-9_]+-linux-[a-z0-9_]+")
LONGEST_LINE = 4096  # a Contents line is a path and a package list; longer is junk
PROGRESS_EVERY = 5 << 20  # bytes downloaded between two progress lines
SCHEMA = """
CREATE TABLE provided (kind TEXT NOT NULL, name TEXT NOT NULL, path TEXT NOT NULL,
                    package TEXT NOT NULL, PRIMARY KEY (kind, name, path, package))
                    WITHOUT ROWID;
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


@dataclass(frozen=True)
class ContentsEntry:
    """One kept path of the index and one package that ships it."""

    kind: str  # HEADER, TOOL, LIBRARY or PKGCONFIG
    name: str  # what a lookup asks for: the file's base name
    path: str  # as the index writes it, without a leading slash
    package: str


def kind_of(path: str) -> str | None:
    """Which of the kept kinds a path of the index is, or None to drop it."""
    if path.startswith(INCLUDE_ROOT):
        return HEADER
    if TOOL_PATH.fullmatch(path):
        return TOOL
    if LIBRARY_PATH.fullmatch(path):
        return LIBRARY
    if PKGCONFIG_PATH.fullmatch(path):
        return PKGCONFIG
    return None


def parse_line(line: str) -> list[ContentsEntry]:
    """The kept entries of one index line, `path   section/pkg,section/pkg`.
    The package list is the last column and has no spaces; a path may have some."""
    if len(line) > LONGEST_LINE:
        return []
    parts = line.rstrip("\r\n").rsplit(None, 1)
    if len(parts) != 2:
        return []
    path, owners = parts[0].rstrip().lstrip("/"), parts[1]
    kind = kind_of(path)
    if kind is None:
        return []
    name = path.rsplit("/", 1)[-1]
    # "libdevel/libffi-dev", or "non-free/libdevel/x": the package is the last part.
    packages = {owner.rsplit("/", 1)[-1] for owner in owners.split(",")}
    return [ContentsEntry(kind, name, path, package) for package in sorted(packages) if package]


def parse(stream: BinaryIO) -> Iterator[ContentsEntry]:
    """The kept entries of a gzip-compressed index, read as it streams in."""
    with gzip.GzipFile(fileobj=stream) as unzipped:
        for line in io.TextIOWrapper(unzipped, encoding="utf-8", errors="replace"):
            yield from parse_line(line)


class Contents:
    """Lookups in a Contents cache file made by `build` (or `cached`)."""

    def __init__(self, path: Path):
        if not path.is_file():
            raise FileNotFoundError(f"no Contents cache at {path}")
        self.path = path
        # Read-only: the cache is replaced whole by a rebuild, never written in place.
        self._db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True,
                                   check_same_thread=False)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Contents:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @classmethod
    def build(cls, path: Path, sources: Iterable[Path | BinaryIO],
              about: dict[str, str] | None = None) -> Contents:
        """Make the cache at `path` from gzip-compressed index files (local paths
        or open binary streams, such as a download), then open it. The file
        appears whole or not at all, so readers never see half of one."""
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-", suffix=".tmp")
        os.close(fd)
        try:
            db = sqlite3.connect(temporary, isolation_level=None)
            try:
                db.executescript("PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF;" + SCHEMA)
                kept = 0
                with transaction(db):
                    for source in sources:
                        with _opened(source) as stream:
                            for batch in _batches(parse(stream), 10_000):
                                db.executemany(
                                    "INSERT OR IGNORE INTO provided VALUES (?, ?, ?, ?)",
                                    [(e.kind, e.name, e.path, e.package) for e in batch])
                                kept += len(batch)
                    meta = {"built": str(time.time()), "entries": str(kept), **(about or {})}
                    db.executemany("INSERT INTO meta VALUES (?, ?)", sorted(meta.items()))
            finally:
                db.close()
            os.chmod(temporary, 0o644)  # mkstemp's 0600 would hide it from other readers
            os.replace(temporary, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise
        return cls(path)

    @property
    def built(self) -> float:
        """When the cache was made (seconds since the epoch)."""
        return float(self.meta().get("built", "0"))

    def meta(self) -> dict[str, str]:
        """What the cache records of its making: built, entries, sources."""
        return dict(self._db.execute("SELECT key, value FROM meta"))

    def _rows(self, kind: str, name: str) -> list[tuple[str, str]]:
        return self._db.execute("SELECT path, package FROM provided WHERE kind = ? AND name = ?",
                                (kind, name)).fetchall()

    def package_for_header(self, name: str) -> str | None:
        """The package with the header `name` as `#include <name>` names it ("ffi.h",
        "libxml/parser.h"). A header directly in an include directory the compiler
        searches wins; then -dev packages, then the shortest path."""
        wanted = name.strip().lstrip("./")
        if not wanted:
            return None
        candidates = []
        for path, package in self._rows(HEADER, wanted.rsplit("/", 1)[-1]):
            relative = path[len(INCLUDE_ROOT):]
            if relative == wanted or relative.endswith("/" + wanted):
                candidates.append(_rank_header(relative, wanted, package))
        return min(candidates)[-1] if candidates else None

    def package_for_tool(self, name: str) -> str | None:
        """The package with the program `name` in /usr/bin, /usr/sbin, /bin or /sbin.
        A package named as the program wins (gcc over pentium-builder's diversion)."""
        wanted = name.strip().rsplit("/", 1)[-1]
        if not wanted:
            return None
        candidates = [(package != wanted, not path.startswith("usr/bin/"), len(package),
                       package) for path, package in self._rows(TOOL, wanted)]
        return min(candidates)[-1] if candidates else None

    def package_for_library(self, name: str) -> str | None:
        """The package that lets `-lname` link: "-lyaml", "yaml" or "libyaml.so" all
        ask for libyaml.so (or, failing that, the static libyaml.a)."""
        stem = name.strip()
        stem = stem[2:] if stem.startswith("-l") else stem
        if not stem or stem.startswith(":"):  # -l:libz.so.1 names a runtime file we drop
            return None
        stem = re.sub(r"\.(?:so|a)$", "", stem)
        stem = stem[3:] if stem.startswith("lib") else stem
        candidates = []
        for static, file_name in enumerate((f"lib{stem}.so", f"lib{stem}.a")):
            for path, package in self._rows(LIBRARY, file_name):
                candidates.append((static, not package.endswith("-dev"), path.count("/"),
                                   len(package), package))
        return min(candidates)[-1] if candidates else None

    def package_for_pkgconfig(self, name: str) -> str | None:
        """The package with the pkg-config module `name` ("yaml-0.1" or "yaml-0.1.pc")."""
        stem = name.strip().removesuffix(".pc")
        if not stem:
            return None
        candidates = [(not package.endswith("-dev"), path.count("/"), len(package), package)
                      for path, package in self._rows(PKGCONFIG, f"{stem}.pc")]
        return min(candidates)[-1] if candidates else None


def _rank_header(relative: str, wanted: str, package: str) -> tuple:
    """Sort key of one owner of a header; the package is last."""
    prefix = relative[: len(relative) - len(wanted)].strip("/")
    searched = prefix == "" or bool(MULTIARCH.fullmatch(prefix))
    return (not searched, not package.endswith("-dev"), relative.count("/"), len(package),
            package)


def _batches(items: Iterable[ContentsEntry], size: int) -> Iterator[list[ContentsEntry]]:
    batch: list[ContentsEntry] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


@contextlib.contextmanager
def _opened(source: Path | BinaryIO) -> Iterator[BinaryIO]:
    if isinstance(source, (str, os.PathLike)):
        with open(source, "rb") as f:
            yield f
    else:
        yield source


# -- the cache in the data directory ------------------------------------------------


def cache_path(data_dir: Path, codename: str, arch: str) -> Path:
    """Where the cache of one release and architecture lives."""
    return data_dir / "contents" / f"{codename}-{arch}.db"


def index_urls(mirror: str, codename: str, arch: str) -> list[str]:
    """The index files of one release and architecture on a Debian mirror: the
    architecture's own and the architecture-independent packages'."""
    base = f"{mirror.rstrip('/')}/dists/{codename}/main"
    return [f"{base}/Contents-{arch}.gz", f"{base}/Contents-all.gz"]


class _Progress(io.RawIOBase):
    """A download read through, saying every few MB how far it has got."""

    def __init__(self, response: BinaryIO, label: str, total: int | None,
                 say: Callable[[str], None]):
        self.response, self.label, self.total, self.say = response, label, total, say
        self.done = 0
        self.next_report = PROGRESS_EVERY
        self.ended = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[override]
        count = self.response.readinto(buffer)
        self.done += count
        # Readers may ask again after the end: the last line is said once.
        end = count == 0 and not self.ended
        self.ended = self.ended or count == 0
        if self.done >= self.next_report or end:
            self.next_report = self.done + PROGRESS_EVERY
            of = f" of {self.total / 1e6:.1f}" if self.total else ""
            self.say(f"contents: {self.label}: {self.done / 1e6:.1f}{of} MB")
        return count


def download(mirror: str, codename: str, arch: str, path: Path,
             say: Callable[[str], None] = print, timeout: float = 60) -> Contents:
    """Fetch the index of `codename`/`arch` from `mirror` and build the cache at
    `path` from it, parsing as it streams in (nothing but the cache is written)."""
    started = time.monotonic()
    urls = index_urls(mirror, codename, arch)

    def streams() -> Iterator[BinaryIO]:
        for url in urls:
            say(f"contents: downloading {url}")
            with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310
                length = response.headers.get("Content-Length")
                total = int(length) if length and length.isdigit() else None
                label = url.rsplit("/", 1)[-1]
                yield io.BufferedReader(_Progress(response, label, total, say), 1 << 16)

    contents = Contents.build(path, streams(), about={
        "sources": " ".join(urls), "codename": codename, "arch": arch})
    say(f"contents: {contents.meta()['entries']} entries in {path} "
        f"({path.stat().st_size / 1e6:.1f} MB, {time.monotonic() - started:.0f} s)")
    return contents


def cached(data_dir: Path, codename: str, arch: str, mirror: str | None,
           max_age_days: float, say: Callable[[str], None] = print) -> Contents | None:
    """The cache of `codename`/`arch`, downloaded first when there is none or it is
    older than `max_age_days`. With no mirror, or when the download fails, an old
    cache is still used and None is returned when there is none: a failure reason
    without a package name is better than none."""
    path = cache_path(data_dir, codename, arch)
    current: Contents | None = None
    if path.is_file():
        with contextlib.suppress(sqlite3.DatabaseError, ValueError):
            current = Contents(path)
            if time.time() - current.built < max_age_days * 86400:
                return current
    if mirror is None:
        return current
    try:
        fresh = download(mirror, codename, arch, path, say)
    except (OSError, EOFError, zlib.error, http.client.HTTPException,
            sqlite3.DatabaseError) as error:
        # A download cut short or garbled (IncompleteRead, a bad gzip stream) leaves
        # the old cache in place: Contents.build replaces it only once whole.
        say(f"contents: could not refresh {path.name} from {mirror}: {error}")
        return current
    if current is not None:
        current.close()
    return fresh


def default_mirror(configured: str | None) -> str | None:
    """The configured Debian mirror, else the first Debian source of this host's apt."""
    if configured:
        return configured
    from worker.chroot import host_mirror

    return host_mirror()


# -- kept fresh by the publish worker ------------------------------------------------

REFRESH_CHECK = 3600.0  # seconds between two looks at the caches' age
CACHE_NAME = re.compile(r"([a-z]+)-([a-z0-9]+)\.db")
log = logging.getLogger("publish.contents")
_refreshing = threading.Lock()
_next_check = 0.0


def stale_caches(data_dir: Path, max_age_days: float) -> list[tuple[str, str]]:
    """(codename, arch) of each cache in DATA/contents/ older than `max_age_days`
    (or unreadable). Only caches that exist: `python -m publish contents` makes the
    first, and nothing else downloads one unasked."""
    stale = []
    for path in sorted((data_dir / "contents").glob("*.db")):
        match = CACHE_NAME.fullmatch(path.name)
        if match is None:
            continue
        try:
            with Contents(path) as current:
                fresh = time.time() - current.built < max_age_days * 86400
        except (OSError, sqlite3.DatabaseError, ValueError):
            fresh = False
        if not fresh:
            stale.append((match[1], match[2]))
    return stale


def refresh_stale(data_dir: Path, mirror: str | None, max_age_days: float,
                  say: Callable[[str], None] = log.info) -> list[tuple[str, str]]:
    """Download again every cache older than `max_age_days` (see stale_caches);
    those it looked at. One that cannot be refreshed stays as it is."""
    stale = stale_caches(data_dir, max_age_days)
    for codename, arch in stale:
        refreshed = cached(data_dir, codename, arch, mirror, max_age_days, say)
        if refreshed is not None:
            refreshed.close()
    return stale


def refresh_in_background(config: Settings) -> None:
    """Called by the publish worker's refresher at each of its polls: at most once
    every REFRESH_CHECK seconds, a thread of its own refreshes the stale caches with
    WHEELWRIGHT_ARM_MIRROR (or the host's apt source), so that the refresher, which
    keeps the home page current, never waits for a download."""
    global _next_check
    if time.monotonic() < _next_check or not _refreshing.acquire(blocking=False):
        return
    _next_check = time.monotonic() + REFRESH_CHECK

    def run() -> None:
        try:
            if stale_caches(config.data_dir, config.contents_days):
                refresh_stale(config.data_dir, default_mirror(config.arm_mirror),
                              config.contents_days)
        except Exception:  # noqa: BLE001 - a failed refresh keeps the old cache; try later
            log.exception("could not refresh the Contents caches")
        finally:
            _refreshing.release()

    threading.Thread(target=run, name="contents-refresh", daemon=True).start()
