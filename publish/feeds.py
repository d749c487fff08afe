"""Atom feeds (RFC 4287): new builds of the whole index (www/feed.xml) and of each
project (project/<name>/feed.xml), and each project's failed builds
(project/<name>/failures.xml), for its maintainers. Every feed is always written,
empty or not: a subscriber to a project whose failures are all fixed reads an empty
feed, not a 404.

Rendered from templates/feed.xml by the pages' Jinja2 environment, which escapes
everything (names, versions and display names come from strangers), rather than
with a feed library: the bytes depend only on the catalogue (no generator stamp,
no clock), so a rebuild rewrites no unchanged feed. An entry's id is its build's
project page URL with the version, ABI and build time as fragment: stable across
rewrites, and new when a release deleted and released again is built again.
Timestamps are RFC 3339, from the catalogue's built_at (UTC). A feed's `updated` is
its newest entry's; an empty one's is the last time anything it could list changed:
the newest of the project's builds (a failure built again) and releases, or of the
index's builds of any status, from the catalogue too, so the bytes stay stable."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from urllib.parse import quote

from publish.releases import RELEASE_INDEXES, Project
from worker.targets import target_label

INDEX_ENTRIES = 100  # the whole index's feed: the newest builds
PROJECT_ENTRIES = 50  # a project's feeds
# An empty feed's `updated` when nothing at all dates it (a project with no dated
# release and no build, an index with no build): fixed, so its bytes never change.
NOTHING_YET = "2000-01-01T00:00:00Z"
# Characters XML 1.0 cannot carry at all, even escaped: a feed with one is not XML.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def xml_text(text: str) -> str:
    """`text` without the characters XML cannot carry (escaping is the template's)."""
    return _NOT_XML.sub("\ufffd", text)


@dataclass
class FeedBuild:
    """A build as a feed entry tells it."""

    project: str
    display_name: str
    version: str
    abi: str
    status: str  # success or failed
    built_at: str
    log_path: str | None = None


@dataclass
class Entry:
    id: str
    title: str
    updated: str  # RFC 3339
    link: str
    summary: str


@dataclass
class Feed:
    url: str  # where it is served, also its id
    title: str
    page: str  # the page it follows
    updated: str  # RFC 3339: its newest entry's (see above for an empty feed)
    entries: list[Entry]


def rfc3339(stamp: str) -> str:
    """The catalogue's built_at (ISO 8601, UTC) as RFC 3339 to the second."""
    when = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _release_name(abi: str) -> str:
    release = RELEASE_INDEXES.get(abi)
    return f"Raspberry Pi OS {release.codename.capitalize()} ({target_label(abi)})" \
        if release else abi


def entry(public_url: str, build: FeedBuild) -> Entry:
    page = f"{public_url}project/{build.project}/"
    updated = rfc3339(build.built_at)
    built = build.status == "success"
    link = page if built or not build.log_path else f"{public_url}{quote(build.log_path)}"
    return Entry(
        id=f"{page}#{quote(build.version, safe='')}/{build.abi}/{updated}",
        title=f"{build.display_name} {build.version} {'built' if built else 'failed'} "
              f"for {build.abi}",
        updated=updated, link=link,
        summary=f"{build.display_name} {build.version} "
                f"{'was built' if built else 'failed to build'} for "
                f"{_release_name(build.abi)} at {updated}"
                f"{'' if built or not build.log_path else '; the link is its build log'}.")


def feed(url: str, title: str, page: str, public_url: str, builds: list[FeedBuild],
         limit: int, quiet_since: str) -> Feed:
    """The newest `limit` builds, newest first (ties in name, version and ABI
    order, for stable bytes); `quiet_since`: its `updated` if it has none."""
    builds = sorted(builds, key=lambda b: (b.project, b.version, b.abi))
    builds.sort(key=lambda b: rfc3339(b.built_at), reverse=True)
    entries = [entry(public_url, b) for b in builds[:limit]]
    return Feed(url, title, page, entries[0].updated if entries else quiet_since, entries)


def newest(stamps: Iterable[str | None]) -> str:
    """The newest of the catalogue's times (RFC 3339), NOTHING_YET if none; one
    that does not parse is passed over, since a feed must not fail for it."""
    found = NOTHING_YET
    for stamp in stamps:
        try:
            found = max(found, rfc3339(stamp)) if stamp else found
        except ValueError:
            continue
    return found


def project_builds(project: Project, status: str) -> list[FeedBuild]:
    return [FeedBuild(project.name, project.display_name, release.version, build.abi,
                      build.status, build.built_at, build.log_path)
            for release in project.releases for build in release.builds.values()
            if build.status == status]


def _project_changed(project: Project) -> str:
    return newest([r.released for r in project.releases] +
                  [b.built_at for r in project.releases for b in r.builds.values()])


def project_feed(public_url: str, project: Project) -> Feed:
    builds = project_builds(project, "success")
    page = f"{public_url}project/{project.name}/"
    return feed(f"{page}feed.xml", f"New builds of {project.display_name}", page,
                public_url, builds, PROJECT_ENTRIES, _project_changed(project))


def failures_feed(public_url: str, project: Project) -> Feed:
    builds = project_builds(project, "failed")
    page = f"{public_url}project/{project.name}/"
    return feed(f"{page}failures.xml", f"Failed builds of {project.display_name}", page,
                public_url, builds, PROJECT_ENTRIES, _project_changed(project))


def index_feed(public_url: str, builds: list[FeedBuild], newest_build: str | None
               ) -> Feed:
    """The index's successful `builds`; `newest_build`: the built_at of its newest
    build of any status (None: none)."""
    return feed(f"{public_url}feed.xml", "New builds for the Raspberry Pi", public_url,
                public_url, builds, INDEX_ENTRIES, newest([newest_build]))
