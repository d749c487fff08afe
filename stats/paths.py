"""What a requested path is, in the www/ layout publish writes.

    /simple/<project>/<file>.whl            a wheel download
    /simple/<project>/<file>.whl.metadata   a PEP 658 metadata fetch
    /simple/<project>/ (index.html, .json)  the project's simple page: a search when an
                                            installer asks, a page when a person does
    /<codename>/simple/...                  the same, in a Raspberry Pi OS release's
                                            own index (its page of the project, and
                                            its own copies of wheels)
    /project/<project>/ (index.html)        the project page
    /project/<project>/json/ (index.json)   the project JSON
    anything else                           a page
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import unquote

from packaging.utils import canonicalize_name

from ingest.coverage import TARGETS

DOWNLOAD = "download"
METADATA = "metadata"
SIMPLE = "simple"          # becomes SEARCH or PAGE once the agent is known
SEARCH = "search"
PROJECT_PAGE = "project_page"
PROJECT_JSON = "project_json"
PAGE = "page"
KINDS = (DOWNLOAD, METADATA, SEARCH, PROJECT_PAGE, PROJECT_JSON, PAGE)

NAME = r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?"
# /simple/ or a release's /<codename>/simple/ (publish.index): both serve pip.
SIMPLE_ROOT = "(?:/(?:{}))?/simple".format("|".join(
    sorted({re.escape(t.codename) for t in TARGETS.values()})))
SIMPLE_FILE = re.compile(rf"{SIMPLE_ROOT}/({NAME})/([^/]+\.whl)(\.metadata)?")
SIMPLE_PAGE = re.compile(rf"{SIMPLE_ROOT}/({NAME})/(?:index\.html|index\.json)?")
PROJECT = re.compile(rf"/project/({NAME})/(?:index\.html)?")
PROJECT_JSON_PATH = re.compile(rf"/project/({NAME})/json/(?:index\.json)?")


@dataclass(frozen=True, slots=True)
class Target:
    kind: str
    project: str | None = None      # canonical name
    filename: str | None = None     # the wheel, for downloads and metadata fetches


def classify(target: str) -> Target:
    """Classify a request target (path and query string, as logged)."""
    path = target.split("?", 1)[0].split("#", 1)[0]
    if "%" in path:
        path = unquote(path)
    match = SIMPLE_FILE.fullmatch(path)
    if match:
        project, filename, metadata = match.groups()
        return Target(METADATA if metadata else DOWNLOAD, _canonical(project), filename)
    for pattern, kind in ((SIMPLE_PAGE, SIMPLE), (PROJECT, PROJECT_PAGE),
                          (PROJECT_JSON_PATH, PROJECT_JSON)):
        match = pattern.fullmatch(path)
        if match:
            return Target(kind, _canonical(match.group(1)))
    return Target(PAGE)


@lru_cache(maxsize=65536)
def _canonical(name: str) -> str:
    return canonicalize_name(name)
