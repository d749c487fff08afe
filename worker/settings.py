"""The settings a build worker reads from environment variables, and the way every
process's settings are declared.

A Pi imports this module and nothing of the master's: the master's settings
(ingest, publish, stats) extend these in ingest/settings.py. Each setting is
declared once, as a field of a Settings dataclass carrying its variable, default
and meaning; `load()` reads them and `python -m worker settings` prints them.
"""

from __future__ import annotations

import os
import re
import secrets
import socket
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import Field, dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

_SETTING = "wheelwright.setting"
# The shipped build dependencies (worker.profile) and where `python -m worker profile
# --install` records the profile it installed: outside the data directory, since the
# packages belong to the system and the install runs as root, the worker as its user.
BUILD_DEPS = Path(__file__).resolve().parent / "build-deps.txt"
PROFILE_MARKER = Path("/etc/wheelwright/builder-profile")
_URL_PASSWORD = re.compile(r"(://[^/@:]*:)[^/@]*@")

S = TypeVar("S")


@dataclass(frozen=True)
class Setting:
    """One environment variable: its name, the text read when it is unset, what it
    means, how that text becomes the field's value, what an empty default stands
    for (`shown_default`), and how a value is written back as text (`show`, when
    the generic way will not do). A secret's value is never printed."""
    env: str
    default: str
    doc: str
    parse: Callable[[str], Any] = str
    shown_default: str | None = None
    secret: bool = False
    show: Callable[[Any], str] | None = None


def setting(env: str, default: str, doc: str, parse: Callable[[str], Any] = str, *,
            shown_default: str | None = None, secret: bool = False,
            show: Callable[[Any], str] | None = None) -> Any:
    """A Settings field read from the variable `env` (see Setting)."""
    return field(repr=not secret, metadata={
        _SETTING: Setting(env, default, doc, parse, shown_default, secret, show)})


def declared(cls: type) -> list[tuple[Field, Setting]]:
    """The fields of a Settings class with their declarations, in declaration order."""
    return [(f, f.metadata[_SETTING]) for f in fields(cls) if _SETTING in f.metadata]


def read(cls: type[S], env: Mapping[str, str] | None = None) -> S:
    """Build `cls` from `env` (default: the process environment)."""
    env = os.environ if env is None else env
    values = {}
    for f, s in declared(cls):
        raw = env.get(s.env, s.default)
        try:
            values[f.name] = s.parse(raw)
        except ValueError as error:
            raise ValueError(f"{s.env}={raw!r}: {error}") from None
    return cls(**values)


def describe(config: Any) -> Iterator[str]:
    """Lines naming every variable `config` was read from: its value (secrets
    masked), its default and its meaning, under a heading per Settings class."""
    entries = declared(type(config))
    for owner in reversed(type(config).__mro__):
        own = [(f, s) for f, s in entries if f.name in owner.__dict__.get("__annotations__", {})]
        if not own:
            continue
        yield f"# {(owner.__doc__ or owner.__name__).strip().splitlines()[0]}"
        for f, s in own:
            default = s.shown_default or s.default or "unset"
            yield f"{s.env} = {_show(s, getattr(config, f.name))}   (default: {default})"
            yield f"    {s.doc}"


def _show(s: Setting, value: Any) -> str:
    if value is None:
        return "(unset)"
    if s.secret:
        return "****"
    if s.show is not None:
        return s.show(value)
    if isinstance(value, tuple):
        return ",".join(str(item) for item in value) or "(none)"
    # A URL may carry a password (Redis, a private index): never print it.
    return _URL_PASSWORD.sub(r"\1****@", str(value))


def optional(text: str) -> str | None:
    return text or None


def optional_path(text: str) -> Path | None:
    return Path(text) if text else None


def _data_dir(text: str) -> Path:
    return Path(text).resolve()


def _host_name(text: str) -> str:
    return text or socket.gethostname()


def _interpreter(text: str) -> str:
    return text or sys.executable


def flag(text: str) -> bool:
    value = text.strip().lower()
    if value not in ("1", "0", "yes", "no", "on", "off", "true", "false"):
        raise ValueError("1/yes/on/true or 0/no/off/false")
    return value in ("1", "yes", "on", "true")


def _sandbox_mode(text: str) -> str:
    if text not in ("auto", "bwrap", "off"):
        raise ValueError("auto, bwrap or off")
    return text


@dataclass(frozen=True)
class Settings:
    """Read by a build worker (python -m worker)."""

    data_dir: Path = setting(
        "WHEELWRIGHT_DATA", "var", "data directory: secrets/ (the local worker's token), "
        "redis/ (the embedded Redis); the master keeps its databases, www/ and logs/ there",
        _data_dir)
    redis_url: str | None = setting(
        "REDIS_URL", "", "Redis for the queues; unset means a private redis-server on "
        "DATA/redis/redis.sock", optional, shown_default="embedded")
    intake_url: str = setting(
        "WHEELWRIGHT_INTAKE_URL", "http://127.0.0.1:8081/", "where workers push builds")
    worker_name: str = setting(
        "WHEELWRIGHT_WORKER_NAME", "", "this worker's name", _host_name,
        shown_default="the host name")
    machine_name_value: str | None = setting(
        "WHEELWRIGHT_MACHINE_NAME", "", "the builder its builds and health are recorded "
        "under: the worker's name, or it and a suffix (`python -m worker chroot` gives "
        "its worker <name>-<arch>-<release>); the intake keeps no other", optional,
        shown_default="WHEELWRIGHT_WORKER_NAME")
    worker_token_value: str | None = setting(
        "WHEELWRIGHT_WORKER_TOKEN", "", "this worker's token for the intake", optional,
        shown_default="DATA/secrets/worker-token", secret=True)
    build_python: str = setting(
        "WHEELWRIGHT_BUILD_PYTHON", "", "interpreter that runs `pip wheel`; it decides "
        "the ABI", _interpreter, shown_default="the running interpreter")
    build_index_url: str | None = setting(
        "WHEELWRIGHT_BUILD_INDEX_URL", "", "index `pip wheel` downloads sources from",
        optional, shown_default="pip's own configuration")
    build_sandbox: str = setting(
        "WHEELWRIGHT_BUILD_SANDBOX", "auto", "walls around a build: `bwrap` (bubblewrap, "
        "required: the worker refuses to build without it), `auto` (bubblewrap where "
        "installed, else a warning and only a scrubbed environment) or `off`",
        _sandbox_mode)
    build_network: bool = setting(
        "WHEELWRIGHT_BUILD_NETWORK", "1", "whether a sandboxed build reaches the network "
        "(pip downloads the sdist and its build requirements from the index; a file:// "
        "index needs none)", flag)
    build_timeout: int = setting(
        "WHEELWRIGHT_BUILD_TIMEOUT", "10800", "seconds before a build is killed (the "
        "master gives its jobs 600 s more)", int)
    build_memory_mb: int = setting(
        "WHEELWRIGHT_BUILD_MEMORY", "0", "address-space limit for a build in MiB; 0 means "
        "none", int)
    build_dir: Path | None = setting(
        "WHEELWRIGHT_BUILD_DIR", "", "builds run in fresh directories under "
        "DIR/wheelwright-<worker>, emptied whenever the worker starts", optional_path,
        shown_default="the system's temporary directory")
    min_free_mb: int = setting(
        "WHEELWRIGHT_MIN_FREE_MB", "512", "free space in MiB below which a worker takes "
        "no build job (the build directory's file system) and the intake refuses pushes "
        "with 507 (the data directory's); both carry on by themselves once there is "
        "room again; 0 turns the check off", int)
    build_log_limit: int = setting(
        "WHEELWRIGHT_BUILD_LOG_LIMIT", "1048576", "bytes of a build log kept (its head and "
        "tail); the middle is cut", int)
    preinstalled_file: str | None = setting(
        "WHEELWRIGHT_PREINSTALLED", "", "file naming the Debian packages preinstalled on "
        "the target OS image, one a line, `{abi}` replaced by the worker's build target "
        "(cp311, cp311-aarch64: worker.targets) (Debian's "
        "base system on the builder, Essential and required/important packages and all "
        "they depend on, counts as preinstalled anyway)", optional)
    build_deps_file: Path = setting(
        "WHEELWRIGHT_BUILD_DEPS", str(BUILD_DEPS), "file mapping projects to the extra "
        "Debian packages their builds need (`project: package ...`); a build whose "
        "packages are not all installed fails before pip runs; its `# version:` adds to "
        "the builder profile's (worker.profile)", Path,
        shown_default="worker/build-deps.txt")
    profile_marker: Path = setting(
        "WHEELWRIGHT_PROFILE_MARKER", str(PROFILE_MARKER), "file where "
        "`python -m worker profile --install` records the builder profile version it "
        "installed; workers report it in their health and builds", Path)
    push_retries: int = setting(
        "WHEELWRIGHT_PUSH_RETRIES", "6", "attempts at a push before the job fails "
        "(network errors, 5xx)", int)
    push_backoff: float = setting(
        "WHEELWRIGHT_PUSH_BACKOFF", "1.0", "seconds before the first retry of a push; "
        "doubled each time", float)
    heartbeat_interval: int = setting(
        "WHEELWRIGHT_HEARTBEAT_INTERVAL", "30", "seconds between a building worker's "
        "heartbeats in Redis", int)
    abandon_grace: int = setting(
        "WHEELWRIGHT_ABANDON_GRACE", "60", "seconds past a missed heartbeat before a "
        "running job counts as abandoned", int)
    maintenance_interval: int = setting(
        "WHEELWRIGHT_MAINTENANCE_INTERVAL", "60", "seconds between a worker's sweeps of "
        "rq's registries, which fail abandoned jobs: a job whose worker died unseen fails "
        "within HEARTBEAT_INTERVAL + ABANDON_GRACE + MAINTENANCE_INTERVAL s of its last "
        "heartbeat, once an idle worker serves its queue", int)
    health_interval: int = setting(
        "WHEELWRIGHT_HEALTH_INTERVAL", "30", "seconds between health reports (key TTL "
        "120 s)", int)
    arm_dir: Path | None = setting(
        "WHEELWRIGHT_ARM_DIR", "", "where `python -m worker armhf-chroot` keeps its Debian "
        "bookworm armhf chroot (other chroots: DATA/chroot-<arch>-<release>)", optional_path,
        shown_default="DATA/armhf")
    arm_mirror: str | None = setting(
        "WHEELWRIGHT_ARM_MIRROR", "", "Debian mirror debootstrap fetches the ARM chroots "
        "from", optional, shown_default="the host's first Debian apt source")

    @property
    def redis_socket(self) -> Path:
        return self.data_dir / "redis" / "redis.sock"

    @property
    def effective_redis_url(self) -> str:
        """The configured Redis, or the embedded one's unix socket."""
        return self.redis_url or f"unix://{self.redis_socket}"

    @property
    def machine_name(self) -> str:
        return self.machine_name_value or self.worker_name

    @property
    def worker_token(self) -> str:
        return self.worker_token_value or local_worker_token(self.data_dir)


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


def load(env: Mapping[str, str] | None = None) -> Settings:
    """Read a worker's settings from `env` (default: the process environment)."""
    return read(Settings, env)
