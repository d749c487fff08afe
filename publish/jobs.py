"""Job functions the publish worker runs (allowlisted in PublishJob)."""

from __future__ import annotations

from contextlib import closing

from rq import get_current_job

from ingest import catalogue
from ingest.scheduler import PUBLISH_FUNCTION
from publish import index
from worker import settings
from worker.queues import AllowlistJob

# The home page's totals and packages.json cover every project: rewriting them on
# each publish would cost more than the publish, so once a minute is enough.
HOME_KEY = "wheelwright:publish:home-written"
HOME_EVERY = 60  # seconds


class PublishJob(AllowlistJob):
    ALLOWED = frozenset({PUBLISH_FUNCTION})


def publish_project(project: str) -> dict:
    """Rewrite one project's pages (and the root index if it came or went) from the
    catalogue; refresh the home page if it is over a minute old."""
    config = settings.load()
    site = index.site_of(config)
    with closing(catalogue.connect(config.catalogue_path)) as conn:
        outcome = index.publish_project(conn, config.www_dir, site, project)
        job = get_current_job()
        if job is None or job.connection.set(HOME_KEY, "1", nx=True, ex=HOME_EVERY):
            index.write_home(conn, config.www_dir, site)
    return {"project": project, "live": outcome.live, "written": outcome.files_written,
            "removed": outcome.files_removed}
