"""The master's settings (ingest, publish, stats), read from environment variables.

They extend a worker's (worker/settings.py): the master shares the data directory,
Redis and the build timeout with its workers, and runs a local one. Each setting is
declared once below; `python -m ingest settings` prints them all.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from worker import settings as worker_settings
from worker.settings import local_worker_token, optional, read, setting
from worker.targets import check_target, target_key

SAMPLE_EVENTS = Path(__file__).resolve().parent / "sample" / "events.jsonl"


def split_bind(value: str) -> tuple[str, int]:
    """host:port (host defaults to 127.0.0.1) as a pair."""
    host, _, port = value.rpartition(":")
    return host or "127.0.0.1", int(port)


def join_bind(bind: tuple[str, int]) -> str:
    return f"{bind[0]}:{bind[1]}"


def _abis(text: str) -> tuple[str, ...]:
    """Build target keys (worker.targets), each checked: a key becomes a queue's name."""
    return tuple(check_target(a.strip()) for a in text.split(",") if a.strip())


def _abis_or_host(text: str) -> tuple[str, ...]:
    """The host's own target by default: the local worker builds for it."""
    if abis := _abis(text):
        return abis
    from packaging import tags

    # The plain platform (linux_aarch64) comes last, as worker.interpreter reads it.
    return (target_key(next(iter(tags.sys_tags())).abi, list(tags.platform_tags())[-1]),)


def _events(text: str) -> Path:
    return Path(text) if text else SAMPLE_EVENTS


@dataclass(frozen=True)
class Settings(worker_settings.Settings):
    """Read by the master's processes (python -m ingest, publish, stats)."""

    abis: tuple[str, ...] = setting(
        "WHEELWRIGHT_ABIS", "", "comma-separated build targets to build: an ABI for "
        "Raspberry Pi OS's 32-bit image, the ABI and -aarch64 for its 64-bit one, e.g. "
        "cp37m,cp39,cp311,cp311-aarch64", _abis_or_host,
        shown_default="the host interpreter's target")
    disabled_abis: tuple[str, ...] = setting(
        "WHEELWRIGHT_DISABLED_ABIS", "cp34m,cp35m", "end-of-life build targets (as in "
        "WHEELWRIGHT_ABIS): never built, their queues are emptied, their files kept",
        _abis)
    pypi_url: str | None = setting(
        "WHEELWRIGHT_PYPI_URL", "", "upstream PyPI base URL: XML-RPC at <url>/pypi, JSON "
        "at <url>/pypi/<name>/json", optional)
    pypi_margin: int = setting(
        "WHEELWRIGHT_PYPI_MARGIN", "2000", "serials re-read behind the newest applied one "
        "(late-visible serials)", int)
    events_file: Path = setting(
        "WHEELWRIGHT_EVENTS", "", "event file `ingest follow` reads when no PYPI_URL is set",
        _events, shown_default="ingest/sample/events.jsonl")
    replay_chunk: int = setting(
        "WHEELWRIGHT_REPLAY_CHUNK", "350000", "events per transaction when reading an "
        "event file", int)
    queue_depth: int = setting(
        "WHEELWRIGHT_QUEUE_DEPTH", "1000", "build jobs each build-<abi> queue holds at most",
        int)
    build_retries: int = setting(
        "WHEELWRIGHT_BUILD_RETRIES", "1", "more tries a build job gets when the job itself "
        "fails (its worker died mid-build, the intake was out of reach); a failed build "
        "is recorded, not retried", int)
    demand_clients: int = setting(
        "WHEELWRIGHT_DEMAND_CLIENTS", "2", "distinct clients whose searches (last 30 days, "
        "stats.db) put a project's newest release ahead of the backlog; 0 turns search "
        "demand off", int)
    web_bind: tuple[str, int] = setting(
        "WHEELWRIGHT_WEB", "127.0.0.1:8080", "where `publish serve` listens", split_bind,
        show=join_bind)
    public_url_value: str | None = setting(
        "WHEELWRIGHT_PUBLIC_URL", "", "the index's public address, written into project "
        "JSON (file_url, piwheels_url)", optional, shown_default="http://WHEELWRIGHT_WEB/")
    intake_bind: tuple[str, int] = setting(
        "WHEELWRIGHT_INTAKE", "127.0.0.1:8081", "where `publish intake` listens", split_bind,
        show=join_bind)
    worker_tokens_spec: str | None = setting(
        "WHEELWRIGHT_WORKER_TOKENS", "", "the workers the intake accepts: name:token "
        "pairs, comma-separated", optional,
        shown_default="one local worker, its token in DATA/secrets/", secret=True)
    max_upload: int = setting(
        "WHEELWRIGHT_MAX_UPLOAD", "268435456", "largest push the intake accepts, in bytes",
        int)
    dashboard_port: int = setting(
        "WHEELWRIGHT_DASHBOARD_PORT", "9181", "port of rq-dashboard (`ingest dashboard`)",
        int)
    stats_bind: tuple[str, int] = setting(
        "WHEELWRIGHT_STATS_WEB", "127.0.0.1:8001", "where `stats serve` (Datasette over "
        "stats.db) listens", split_bind,
        show=join_bind)
    downloads_refresh: float = setting(
        "WHEELWRIGHT_DOWNLOADS_REFRESH", "86400", "seconds between the publish worker's "
        "readings of downloads from stats.db; each rewrites the pages of the projects "
        "whose downloads changed (0: never)", float)
    stats_raw_days: int = setting(
        "WHEELWRIGHT_STATS_RAW_DAYS", "90", "days of raw request rows stats.db keeps "
        "(UTC days, today included); the daily rollups every chart reads are kept for "
        "ever; 0 keeps the raw rows too", int)
    contents_days: float = setting(
        "WHEELWRIGHT_CONTENTS_DAYS", "30", "days before the cached Debian Contents index "
        "(DATA/contents/, which names the package of a failed build's missing file) is "
        "downloaded again from WHEELWRIGHT_ARM_MIRROR", float)

    @property
    def catalogue_path(self) -> Path:
        return self.data_dir / "catalogue.db"

    @property
    def stats_path(self) -> Path:
        return self.data_dir / "stats.db"

    @property
    def www_dir(self) -> Path:
        return self.data_dir / "www"

    @property
    def logs_dir(self) -> Path:
        return self.data_dir / "logs"

    @property
    def public_url(self) -> str:
        """Where people and pip reach www/, ending in a slash."""
        host, port = self.web_bind
        return (self.public_url_value or f"http://{host}:{port}/").rstrip("/") + "/"

    @property
    def worker_tokens(self) -> dict[str, str]:
        """The intake's map of worker name to token."""
        if not self.worker_tokens_spec:
            return {self.worker_name: local_worker_token(self.data_dir)}
        tokens = {}
        for pair in self.worker_tokens_spec.split(","):
            name, sep, token = pair.strip().partition(":")
            if not sep or not name or not token:
                raise ValueError("WHEELWRIGHT_WORKER_TOKENS wants name:token pairs")
            tokens[name] = token
        return tokens


def load(env: Mapping[str, str] | None = None) -> Settings:
    """Read the master's settings from `env` (default: the process environment)."""
    return read(Settings, env)
