"""A Datasette plugin (registered by stats.site): every connection to stats.db gets
the catalogue ATTACHed read-only as `catalogue`, so queries can join the two."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

from datasette import hookimpl

NAME = "wheelwright-stats"


@hookimpl
def prepare_connection(conn, database, datasette):
    if database != "stats":
        return
    path = (datasette.plugin_config(NAME) or {}).get("catalogue")
    if not path:
        return
    attached = {row[1] for row in conn.execute("PRAGMA database_list")}
    if "catalogue" not in attached:
        conn.execute("ATTACH DATABASE ? AS catalogue",
                     [f"file:{quote(str(Path(path).resolve()))}?mode=ro"])
