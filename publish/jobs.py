"""Job functions the publish worker runs (allowlisted in PublishJob)."""

from __future__ import annotations

from contextlib import closing

from ingest import catalogue
from ingest.scheduler import PUBLISH_FUNCTION
from publish.index import publish_project as write_project
from worker import settings
from worker.queues import AllowlistJob


class PublishJob(AllowlistJob):
    ALLOWED = frozenset({PUBLISH_FUNCTION})


def publish_project(project: str) -> None:
    """Rewrite one project's pages and the root index from the catalogue."""
    config = settings.load()
    with closing(catalogue.connect(config.catalogue_path)) as conn:
        write_project(conn, config.www_dir, project)
