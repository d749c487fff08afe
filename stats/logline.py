"""One line of an access log in the Combined Log Format, as nginx, Apache and
`publish serve` write it:

    %h %l %u [%t] "%r" %>s %b "%{Referer}i" "%{User-agent}i"

Fields after the user agent (nginx configurations often add some) are ignored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

QUOTED = r'[^"\\]*(?:\\.[^"\\]*)*'  # a quoted field's insides, escapes allowed
COMBINED = re.compile(
    rf'(?P<host>\S+) \S+ \S+ \[(?P<time>[^\]]+)\] "(?P<request>{QUOTED})" '
    rf'(?P<status>\d{{3}}) (?P<size>\d+|-) "{QUOTED}" "(?P<agent>{QUOTED})"(?:\s|$)'
)
CLF_TIME = re.compile(
    r"(\d{2})/([A-Z][a-z]{2})/(\d{4}):(\d{2}):(\d{2}):(\d{2}) ([+-])(\d{2})(\d{2})$"
)
MONTHS = {name: number for number, name in enumerate(
    ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1)}
BAD_REQUEST = "request line is not METHOD TARGET HTTP/VERSION"
# nginx writes a quote inside a field as \x22, Apache as \"
ESCAPE = re.compile(r"\\(x[0-9A-Fa-f]{2}|.)")


class MalformedLine(ValueError):
    """A line that is not in the Combined Log Format; the message says why."""


@dataclass(frozen=True, slots=True)
class LogLine:
    host: str          # the client address, as logged (never stored)
    time: str          # UTC, "YYYY-MM-DD HH:MM:SS"
    method: str
    target: str        # the path and query string, as requested
    status: int
    size: int          # bytes of the response body
    agent: str         # the User-Agent as logged: `unescape` it (agents.AgentCache does)


def parse(text: str, times: dict[str, str] | None = None) -> LogLine:
    """Parse one line (without its newline). `times` caches converted timestamps:
    a busy log repeats each second many times."""
    host, stamp, request, status, size, agent = split_fields(text)
    parts = request.split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/"):
        raise MalformedLine(BAD_REQUEST)
    if times is None:
        when = utc_time(stamp)
    else:
        when = times.get(stamp)
        if when is None:
            if len(times) > 4096:
                times.clear()
            when = times[stamp] = utc_time(stamp)
    return LogLine(host, when, parts[0], parts[1], int(status),
                   0 if size == "-" else int(size), agent)


def split_fields(text: str) -> tuple[str, str, str, str, str, str]:
    """(host, time, request, status, size, agent) of a line. Splitting at quotes is
    several times faster than COMBINED on long agent strings, and right whenever no
    quoted field holds an escaped quote (nginx escapes quotes as \\x22; Apache's \\"
    leaves a piece ending in a backslash); COMBINED decides the rest, and what COMBINED
    rejects is malformed."""
    parts = text.split('"', 6)
    if len(parts) == 7 and parts[4] == " " and (not parts[6] or parts[6][0].isspace()) \
            and parts[1][-1:] != "\\" and parts[3][-1:] != "\\" and parts[5][-1:] != "\\":
        head, tail = parts[0], parts[2].split(" ")
        space, bracket = head.find(" "), head.find(" [")
        if (0 < space < bracket and head.endswith("] ") and len(tail) == 4
                and not tail[0] and not tail[3] and len(tail[1]) == 3
                and tail[1].isdigit() and (tail[2].isdigit() or tail[2] == "-")):
            return head[:space], head[bracket + 2:-2], parts[1], tail[1], tail[2], parts[5]
    match = COMBINED.match(text)
    if match is None:
        raise MalformedLine("not in the Combined Log Format")
    return match.group("host", "time", "request", "status", "size", "agent")


def utc_time(stamp: str) -> str:
    """`10/Oct/2023:13:55:36 +0200` -> `2023-10-10 11:55:36`."""
    match = CLF_TIME.match(stamp)
    if match is None or match.group(2) not in MONTHS:
        raise MalformedLine(f"bad timestamp {stamp[:40]!r}")
    day, month, year, hour, minute, second, sign, off_h, off_m = match.groups()
    try:
        local = datetime(int(year), MONTHS[month], int(day), int(hour), int(minute),
                         int(second), tzinfo=timezone.utc)
    except ValueError as error:
        raise MalformedLine(f"bad timestamp {stamp[:40]!r}: {error}") from None
    offset = timedelta(hours=int(off_h), minutes=int(off_m))
    utc = local - offset if sign == "+" else local + offset
    return utc.strftime("%Y-%m-%d %H:%M:%S")


def unescape(field: str) -> str:
    if "\\" not in field:
        return field
    return ESCAPE.sub(_unescape_one, field)


def _unescape_one(match: re.Match) -> str:
    code = match.group(1)
    return chr(int(code[1:], 16)) if len(code) == 3 and code[0] == "x" else code
