"""Access log lines for the stats tests, in the Combined Log Format, with the user
agents real clients send, and the rows each must become."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]


def pip_agent(version: str, python: str, distro: tuple[str, str, str, str], cpu: str,
              kernel: str, ci: bool | None = None, name: str = "pip") -> str:
    """A User-Agent the way pip (>= 6) and uv build it: name/version and JSON."""
    distro_name, distro_version, distro_id, glibc = distro
    data = {
        "ci": ci, "cpu": cpu,
        "distro": {"id": distro_id, "libc": {"lib": "glibc", "version": glibc},
                   "name": distro_name, "version": distro_version},
        "implementation": {"name": "CPython", "version": python},
        "installer": {"name": name, "version": version},
        "openssl_version": "OpenSSL 3.0.15 3 Sep 2024", "python": python,
        "setuptools_version": "66.1.1", "system": {"name": "Linux", "release": kernel},
    }
    return f"{name}/{version} {json.dumps(data, separators=(',', ':'), sort_keys=True)}"


BOOKWORM = ("Raspbian GNU/Linux", "12", "bookworm", "2.36")
BULLSEYE = ("Raspbian GNU/Linux", "11", "bullseye", "2.31")
BUSTER = ("Raspbian GNU/Linux", "10", "buster", "2.28")
DEBIAN12 = ("Debian GNU/Linux", "12", "bookworm", "2.36")

PIP23 = pip_agent("23.0.1", "3.11.2", BOOKWORM, "armv7l", "6.6.51+rpt-rpi-v7")
PIP20 = pip_agent("20.3.4", "3.9.2", BULLSEYE, "armv7l", "6.1.21-v7+")
PIP18 = pip_agent("18.1", "3.7.3", BUSTER, "armv6l", "5.10.103+")
PIP24_CI = pip_agent("24.2", "3.11.2", DEBIAN12, "aarch64", "6.6.51+rpt-rpi-v8", ci=True)
UV = pip_agent("0.4.18", "3.11.2", BOOKWORM, "aarch64", "6.6.51+rpt-rpi-v8", name="uv")
PIP_OLD = "pip/1.5.6 CPython/2.7.9 Linux/4.1.19+"
FIREFOX = "Mozilla/5.0 (X11; Linux aarch64; rv:128.0) Gecko/20100101 Firefox/128.0"
GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"

NUMPY_WHL = "numpy-1.26.4-cp311-cp311-linux_armv7l.whl"
NUMPY_V6 = "numpy-1.26.4-cp311-cp311-linux_armv6l.whl"
SIX_WHL = "six-1.16.0-py2.py3-none-any.whl"


def clf_time(when: datetime) -> str:
    local = when.astimezone(timezone(timedelta(hours=2)))  # logs keep local time
    return f"{local.day:02d}/{MONTHS[local.month - 1]}/{local:%Y:%H:%M:%S +0200}"


def line(ip: str, when: datetime, request: str, status: int, size: int | str,
         agent: str, style: str = "nginx", extra: str = "") -> str:
    """One log line; nginx escapes a quote in a field as \\x22, Apache as \\"."""
    escaped = agent.replace('"', "\\x22" if style == "nginx" else '\\"')
    return (f'{ip} - - [{clf_time(when)}] "{request}" {status} {size} "-" '
            f'"{escaped}"{extra}')


@dataclass(frozen=True)
class Expected:
    time: str
    kind: str
    project: str | None
    filename: str | None
    method: str
    status: int
    bytes: int
    installer: str | None


def sample_log(base: datetime) -> tuple[list[str], list[Expected], list[str]]:
    """Lines of a log whose first line is at `base` (UTC), the rows they must make in
    order, and the malformed lines among them."""
    lines: list[str] = []
    rows: list[Expected] = []

    def add(minutes: int, ip: str, method: str, target: str, status: int, size: int,
            agent: str, kind: str, project: str | None, filename: str | None,
            installer: str | None, **options) -> None:
        when = base + timedelta(minutes=minutes)
        lines.append(line(ip, when, f"{method} {target} HTTP/1.1", status, size, agent,
                          **options))
        rows.append(Expected(when.strftime("%Y-%m-%d %H:%M:%S"), kind, project, filename,
                             method, status, size, installer))

    add(0, "192.0.2.10", "GET", "/simple/numpy/", 200, 1200, PIP23,
        "search", "numpy", None, "pip")
    add(1, "192.0.2.10", "GET", f"/simple/numpy/{NUMPY_WHL}.metadata", 200, 900, PIP23,
        "metadata", "numpy", NUMPY_WHL, "pip")
    add(1, "192.0.2.10", "GET", f"/simple/numpy/{NUMPY_WHL}", 200, 5_000_000, PIP23,
        "download", "numpy", NUMPY_WHL, "pip")
    add(2, "198.51.100.7", "GET", "/simple/numpy/", 304, 0, PIP18,
        "search", "numpy", None, "pip")
    add(2, "198.51.100.7", "GET", f"/simple/numpy/{NUMPY_V6}", 200, 5_000_000, PIP18,
        "download", "numpy", NUMPY_V6, "pip")
    add(3, "203.0.113.5", "GET", "/simple/Six/", 200, 800, PIP20,
        "search", "six", None, "pip", style="apache")
    add(3, "203.0.113.5", "GET", f"/simple/six/{SIX_WHL}", 200, 11_000, PIP20,
        "download", "six", SIX_WHL, "pip", style="apache")
    add(4, "2001:db8::1", "GET", "/simple/not.built_yet/", 404, 150, UV,
        "search", "not-built-yet", None, "uv")
    add(4, "2001:db8::2", "GET", "/simple/typo-pkg/", 404, 150, PIP24_CI,
        "search", "typo-pkg", None, "pip")
    add(5, "2001:db8::1", "GET", "/simple/not-built-yet/", 404, 150, PIP_OLD,
        "search", "not-built-yet", None, "pip")
    add(6, "192.0.2.99", "GET", "/project/numpy/", 200, 4000, FIREFOX,
        "project_page", "numpy", None, "Browser")
    add(6, "192.0.2.99", "GET", "/project/numpy/json/?x=1", 200, 700, FIREFOX,
        "project_json", "numpy", None, "Browser")
    add(7, "192.0.2.99", "GET", "/simple/numpy/", 200, 1200, FIREFOX,
        "page", "numpy", None, "Browser")
    add(7, "192.0.2.99", "GET", "/", 200, 300, FIREFOX, "page", None, None, "Browser",
        extra=" 0.003")
    add(8, "66.249.66.1", "GET", "/simple/numpy/", 200, 1200, GOOGLEBOT,
        "page", "numpy", None, "Browser")
    add(8, "66.249.66.1", "GET", "/robots.txt", 404, 150, GOOGLEBOT,
        "page", None, None, "Browser")
    add(9, "192.0.2.10", "HEAD", f"/simple/numpy/{NUMPY_WHL}", 200, 0, PIP23,
        "download", "numpy", NUMPY_WHL, "pip")
    add(9, "192.0.2.10", "GET", f"/simple/numpy/{NUMPY_WHL}", 500, 0, PIP23,
        "download", "numpy", NUMPY_WHL, "pip")
    add(10, "192.0.2.11", "GET", "/simple/numpy/../../etc/passwd", 404, 150, "-",
        "page", None, None, None)
    add(11, "192.0.2.12", "GET", f"/simple/numpy/{NUMPY_WHL}", 200, 5_000_000, PIP24_CI,
        "download", "numpy", NUMPY_WHL, "pip")
    lines[-1] += "\r"  # a CRLF line ending
    malformed = [
        "this is not a log line",
        '192.0.2.10 - - [10/Foo/2024:10:00:00 +0000] "GET / HTTP/1.1" 200 1 "-" "curl/8.0"',
        '192.0.2.10 - - [10/Oct/2024:10:00:00 +0000] "\\x16\\x03\\x01\\x00\\xF1" 400 157 "-" "-"',
        '192.0.2.10 - - [10/Oct/2024:10:00:00 +0000] "GET / HTTP/1.1" 200 1 "-" "cut off',
    ]
    for position, bad in zip((3, 8, 12, 16), malformed, strict=True):
        lines.insert(position, bad)
    return lines, rows, malformed


def write_log(path, lines: list[str]) -> None:
    path.write_bytes("".join(f"{text}\n" for text in lines).encode())
