"""Every setting of wheelwright, read from environment variables.

This is the one place configuration comes from. It lives in the worker package
because the worker depends on nothing else of ours, while the master's packages
(ingest, publish, stats) may depend on the worker.

Each setting: environment variable (default) meaning.

  WHEELWRIGHT_DATA (./var)
      data directory: catalogue.db, stats.db, www/, logs/, secrets/, redis/
  REDIS_URL (unset: embedded)
      Redis for the queues; unset means a private redis-server on DATA/redis/redis.sock
  WHEELWRIGHT_ABIS (the host interpreter's ABI)
      comma-separated ABIs to build, e.g. cp37m,cp39,cp311
  WHEELWRIGHT_DISABLED_ABIS (cp34m,cp35m)
      end-of-life ABIs: never built, and their queues are emptied
  WHEELWRIGHT_PYPI_MARGIN (2000)
      serials re-read behind the newest applied one (late-visible serials)
  WHEELWRIGHT_PYPI_URL (unset)
      upstream PyPI base URL: XML-RPC at <url>/pypi, JSON at <url>/pypi/<name>/json
  WHEELWRIGHT_EVENTS (ingest/sample/events.jsonl)
      event file `ingest follow` reads when no PYPI_URL is set
  WHEELWRIGHT_REPLAY_CHUNK (350000)
      events per transaction when reading an event file
  WHEELWRIGHT_QUEUE_DEPTH (1000)
      build jobs each build-<abi> queue holds at most
  WHEELWRIGHT_DEMAND_CLIENTS (2)
      distinct clients whose searches (last 30 days, stats.db) put a project's newest
      release ahead of the backlog; 0 turns search demand off
  WHEELWRIGHT_WEB (127.0.0.1:8080)
      where `publish serve` listens
  WHEELWRIGHT_PUBLIC_URL (http://WHEELWRIGHT_WEB/)
      the index's public address, written into project JSON (file_url, piwheels_url)
  WHEELWRIGHT_INTAKE (127.0.0.1:8081)
      where `publish intake` listens
  WHEELWRIGHT_STATS_WEB (127.0.0.1:8001)
      where `stats serve` (Datasette over stats.db) listens
  WHEELWRIGHT_INTAKE_URL (http://127.0.0.1:8081/)
      where workers push builds
  WHEELWRIGHT_WORKER_TOKENS (unset: one local worker, token in DATA/secrets/)
      intake side: name:token pairs, comma-separated
  WHEELWRIGHT_WORKER_NAME (the host name)
      worker side: this worker's name
  WHEELWRIGHT_WORKER_TOKEN (unset: DATA/secrets/worker-token)
      worker side: this worker's token
  WHEELWRIGHT_BUILD_PYTHON (the running interpreter)
      interpreter that runs `pip wheel`; it decides the ABI
  WHEELWRIGHT_BUILD_INDEX_URL (unset: pip's own configuration)
      index `pip wheel` downloads sources from
  WHEELWRIGHT_BUILD_RETRIES (1)
      more tries a build job gets when the job itself fails (its worker died
      mid-build, the intake was out of reach); a failed build is recorded, not retried
  WHEELWRIGHT_BUILD_TIMEOUT (10800)
      seconds before a build is killed
  WHEELWRIGHT_BUILD_MEMORY (0)
      address-space limit for a build in MiB; 0 means none
  WHEELWRIGHT_MAX_UPLOAD (268435456)
      largest push the intake accepts, in bytes
  WHEELWRIGHT_BUILD_DIR (the system's temporary directory)
      worker side: builds run in fresh directories under DIR/wheelwright-<worker>;
      that directory is emptied whenever the worker starts
  WHEELWRIGHT_BUILD_LOG_LIMIT (1048576)
      bytes of a build log kept (its head and tail); the middle is cut
  WHEELWRIGHT_PREINSTALLED (unset)
      worker side: file naming the Debian packages preinstalled on the target OS
      image, one per line; `{abi}` in the path is replaced by the worker's ABI.
      Packages of priority required/important count as preinstalled anyway
  WHEELWRIGHT_PUSH_RETRIES (6)
      worker side: attempts at a push before the job fails (network errors, 5xx)
  WHEELWRIGHT_PUSH_BACKOFF (1.0)
      worker side: seconds before the first retry of a push; doubled each time
  WHEELWRIGHT_HEARTBEAT_INTERVAL (30)
      worker side: seconds between a building worker's heartbeats in Redis
  WHEELWRIGHT_ABANDON_GRACE (60)
      seconds past a missed heartbeat before a running job counts as abandoned
  WHEELWRIGHT_MAINTENANCE_INTERVAL (60)
      seconds between a worker's sweeps of rq's registries; a sweep fails the
      abandoned jobs. A job whose worker died unseen (power cut, SIGKILL) is thus
      failed within HEARTBEAT_INTERVAL + ABANDON_GRACE + MAINTENANCE_INTERVAL
      seconds of its last heartbeat, once an idle worker serves its queue (a busy
      worker sweeps between jobs)
  WHEELWRIGHT_HEALTH_INTERVAL (30)
      worker side: seconds between health reports (key TTL 120 s)
  WHEELWRIGHT_ARM_DIR (DATA/armhf)
      where `python -m worker armhf-chroot` keeps its Debian armhf chroot
  WHEELWRIGHT_ARM_MIRROR (the host's first Debian apt source)
      Debian mirror debootstrap fetches the armhf chroot from
"""

from __future__ import annotations

import os
import secrets
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path

PACKAGE_ROOT = Path(__file__).resolve().parent.parent
SAMPLE_EVENTS = PACKAGE_ROOT / "ingest" / "sample" / "events.jsonl"


def _host_abi() -> str:
    from packaging import tags

    return next(iter(tags.sys_tags())).abi


def _split_bind(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    return host or "127.0.0.1", int(port)


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    redis_url: str | None
    abis: tuple[str, ...]
    pypi_url: str | None
    disabled_abis: tuple[str, ...]
    pypi_margin: int
    events_file: Path
    queue_depth: int
    demand_clients: int
    replay_chunk: int
    web_bind: tuple[str, int]
    intake_bind: tuple[str, int]
    intake_url: str
    worker_name: str
    build_python: str
    build_index_url: str | None
    build_timeout: int
    build_retries: int
    build_memory_mb: int
    max_upload: int
    build_dir: Path | None = None
    build_log_limit: int = 1024 * 1024
    preinstalled_file: str | None = None
    push_retries: int = 6
    push_backoff: float = 1.0
    heartbeat_interval: int = 30
    abandon_grace: int = 60
    maintenance_interval: int = 60
    health_interval: int = 30
    arm_dir: Path | None = None
    arm_mirror: str | None = None
    public_url_value: str | None = None
    stats_bind: tuple[str, int] = ("127.0.0.1", 8001)
    worker_tokens_spec: str | None = field(default=None, repr=False)
    worker_token_value: str | None = field(default=None, repr=False)

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
    def redis_socket(self) -> Path:
        return self.data_dir / "redis" / "redis.sock"

    @property
    def public_url(self) -> str:
        """Where people and pip reach www/, ending in a slash."""
        host, port = self.web_bind
        return (self.public_url_value or f"http://{host}:{port}/").rstrip("/") + "/"

    @property
    def effective_redis_url(self) -> str:
        """The configured Redis, or the embedded one's unix socket."""
        return self.redis_url or f"unix://{self.redis_socket}"

    @property
    def worker_token(self) -> str:
        return self.worker_token_value or local_worker_token(self.data_dir)

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


def data_secret(data_dir: Path, name: str) -> str:
    """A random secret kept in DATA/secrets/<name> (mode 0600), made on first use."""
    path = data_dir / "secrets" / name
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(secrets.token_hex(32))
        tmp.chmod(0o600)
        # Two processes may race here; the rename makes one of them win whole.
        if not path.exists():
            tmp.rename(path)
        else:
            tmp.unlink()
    return path.read_text().strip()


def local_worker_token(data_dir: Path) -> str:
    """The token shared by the embedded intake and the local worker."""
    return data_secret(data_dir, "worker-token")


def load(env: dict[str, str] | None = None) -> Settings:
    """Read the settings from `env` (default: the process environment)."""
    env = os.environ if env is None else env
    abis = env.get("WHEELWRIGHT_ABIS", "")
    return Settings(
        data_dir=Path(env.get("WHEELWRIGHT_DATA", "var")).resolve(),
        redis_url=env.get("REDIS_URL") or None,
        abis=tuple(a.strip() for a in abis.split(",") if a.strip()) or (_host_abi(),),
        pypi_url=env.get("WHEELWRIGHT_PYPI_URL") or None,
        disabled_abis=tuple(a.strip() for a in env.get(
            "WHEELWRIGHT_DISABLED_ABIS", "cp34m,cp35m").split(",") if a.strip()),
        pypi_margin=int(env.get("WHEELWRIGHT_PYPI_MARGIN", "2000")),
        events_file=Path(env.get("WHEELWRIGHT_EVENTS") or SAMPLE_EVENTS),
        queue_depth=int(env.get("WHEELWRIGHT_QUEUE_DEPTH", "1000")),
        demand_clients=int(env.get("WHEELWRIGHT_DEMAND_CLIENTS", "2")),
        replay_chunk=int(env.get("WHEELWRIGHT_REPLAY_CHUNK", "350000")),
        web_bind=_split_bind(env.get("WHEELWRIGHT_WEB", "127.0.0.1:8080")),
        intake_bind=_split_bind(env.get("WHEELWRIGHT_INTAKE", "127.0.0.1:8081")),
        intake_url=env.get("WHEELWRIGHT_INTAKE_URL", "http://127.0.0.1:8081/"),
        worker_name=env.get("WHEELWRIGHT_WORKER_NAME") or socket.gethostname(),
        build_python=env.get("WHEELWRIGHT_BUILD_PYTHON") or sys.executable,
        build_index_url=env.get("WHEELWRIGHT_BUILD_INDEX_URL") or None,
        build_timeout=int(env.get("WHEELWRIGHT_BUILD_TIMEOUT", "10800")),
        build_retries=int(env.get("WHEELWRIGHT_BUILD_RETRIES", "1")),
        build_memory_mb=int(env.get("WHEELWRIGHT_BUILD_MEMORY", "0")),
        max_upload=int(env.get("WHEELWRIGHT_MAX_UPLOAD", str(256 * 1024 * 1024))),
        build_dir=Path(env["WHEELWRIGHT_BUILD_DIR"]) if env.get("WHEELWRIGHT_BUILD_DIR")
        else None,
        build_log_limit=int(env.get("WHEELWRIGHT_BUILD_LOG_LIMIT", str(1024 * 1024))),
        preinstalled_file=env.get("WHEELWRIGHT_PREINSTALLED") or None,
        push_retries=int(env.get("WHEELWRIGHT_PUSH_RETRIES", "6")),
        push_backoff=float(env.get("WHEELWRIGHT_PUSH_BACKOFF", "1.0")),
        heartbeat_interval=int(env.get("WHEELWRIGHT_HEARTBEAT_INTERVAL", "30")),
        abandon_grace=int(env.get("WHEELWRIGHT_ABANDON_GRACE", "60")),
        maintenance_interval=int(env.get("WHEELWRIGHT_MAINTENANCE_INTERVAL", "60")),
        health_interval=int(env.get("WHEELWRIGHT_HEALTH_INTERVAL", "30")),
        arm_dir=Path(env["WHEELWRIGHT_ARM_DIR"]) if env.get("WHEELWRIGHT_ARM_DIR") else None,
        arm_mirror=env.get("WHEELWRIGHT_ARM_MIRROR") or None,
        public_url_value=env.get("WHEELWRIGHT_PUBLIC_URL") or None,
        stats_bind=_split_bind(env.get("WHEELWRIGHT_STATS_WEB", "127.0.0.1:8001")),
        worker_tokens_spec=env.get("WHEELWRIGHT_WORKER_TOKENS") or None,
        worker_token_value=env.get("WHEELWRIGHT_WORKER_TOKEN") or None,
    )
