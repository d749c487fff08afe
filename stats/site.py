"""Datasette over stats.db, with the catalogue beside it and attached to it.

Datasette opens both files read-only. Queries on stats.db see the catalogue as the
schema `catalogue` (stats.datasette_plugin ATTACHes it with mode=ro), so canned
queries can join downloads to builds.
"""

from __future__ import annotations

import sys
from pathlib import Path

from datasette.app import Datasette
from datasette.plugins import pm

from ingest import catalogue as catalogue_db
from stats import datasette_plugin, store, windows
from stats.metadata import metadata


def register_plugin() -> None:
    if pm.get_plugin(datasette_plugin.NAME) is None:
        pm.register(datasette_plugin, name=datasette_plugin.NAME)


def make_datasette(stats_path: Path, catalogue_path: Path) -> Datasette:
    """A Datasette instance over both databases, their schemas made if missing, and
    the 30-day sums brought up to date (Datasette itself only reads)."""
    catalogue_db.connect(catalogue_path).close()
    db = store.open_db(stats_path)
    try:
        windows.refresh_if_stale(db, catalogue_path)
    finally:
        db.close()
    register_plugin()
    return Datasette(
        files=[str(stats_path), str(catalogue_path)],
        metadata=metadata(str(catalogue_path)),
        settings={"sql_time_limit_ms": 5000, "facet_time_limit_ms": 1000},
    )


def serve(datasette: Datasette, host: str, port: int) -> None:
    import uvicorn

    print(f"Datasette on http://{host}:{port}/ (dashboard: /-/dashboards/wheelwright)",
          file=sys.stderr, flush=True)
    uvicorn.run(datasette.app(), host=host, port=port, log_level="warning")
