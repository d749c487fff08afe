"""PEP 691 content negotiation: which form of a simple page a client's Accept asks for."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

JSON = "application/vnd.pypi.simple.v1+json"
V1_HTML = "application/vnd.pypi.simple.v1+html"
TEXT_HTML = "text/html"

# What each media type a client may name means, and how we prefer them on a tie.
ALIASES = {
    JSON: JSON,
    "application/vnd.pypi.simple.latest+json": JSON,
    V1_HTML: V1_HTML,
    "application/vnd.pypi.simple.latest+html": V1_HTML,
    TEXT_HTML: TEXT_HTML,
}
PREFERENCE = {JSON: 2, V1_HTML: 1, TEXT_HTML: 0}


@dataclass(frozen=True)
class Choice:
    content_type: str  # the Content-Type to answer with
    suffix: str  # "json" or "html": which file holds that form


@lru_cache(maxsize=512)
def choose(accept: str | None) -> Choice | None:
    """The form to serve for this Accept header; None means 406 Not Acceptable.

    No header, or one that only wildcards match, gets text/html (browsers and
    plain HTTP clients). Otherwise the highest q wins, then the most specific
    range, then JSON over HTML."""
    if not accept or not accept.strip():
        return Choice(TEXT_HTML + "; charset=utf-8", "html")
    ranges = list(_parse(accept))
    best: tuple | None = None
    for media in PREFERENCE:
        q, specificity = _quality(media, ranges)
        if q <= 0:
            continue
        key = (q, specificity, PREFERENCE[media] if specificity else -PREFERENCE[media])
        if best is None or key > best[0]:
            best = (key, media)
    if best is None:
        return None
    media = best[1]
    if media == JSON:
        return Choice(JSON, "json")
    if media == TEXT_HTML:
        return Choice(TEXT_HTML + "; charset=utf-8", "html")
    return Choice(V1_HTML, "html")


def _parse(accept: str):
    for item in accept.split(","):
        media, _, params = item.partition(";")
        media = media.strip().lower()
        if not media:
            continue
        q = 1.0
        for param in params.split(";"):
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = max(0.0, min(1.0, float(value.strip())))
                except ValueError:
                    q = 0.0
        yield ALIASES.get(media, media), q


def _quality(media: str, ranges: list[tuple[str, float]]) -> tuple[float, int]:
    """The q of the most specific range that matches `media`, and how specific (2:
    exact, 1: type/*, 0: */*); (0, 0) when none matches."""
    kind = media.split("/")[0]
    found: tuple[int, float] | None = None
    for pattern, q in ranges:
        if pattern == media:
            specificity = 2
        elif pattern == f"{kind}/*":
            specificity = 1
        elif pattern == "*/*":
            specificity = 0
        else:
            continue
        if found is None or specificity > found[0]:
            found = (specificity, q)
    if found is None:
        return 0.0, 0
    return found[1], found[0]
