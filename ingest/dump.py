"""The catalogue's PyPI facts as canonical JSON: the same state, the same bytes."""

from __future__ import annotations

import json
import sqlite3


def dump(conn: sqlite3.Connection) -> dict:
    projects: dict[str, dict] = {}
    for row in conn.execute("SELECT * FROM projects ORDER BY name"):
        projects[row["name"]] = {
            "display_name": row["display_name"],
            "alive": row["seen_key"] > row["deleted_key"],
            "aliases": [],
            "summary": row["summary"],
            "skip_reason": row["skip_reason"],
            "versions": {},
        }
    for row in conn.execute("SELECT project, alias FROM aliases ORDER BY project, alias"):
        projects[row["project"]]["aliases"].append(row["alias"])
    for row in conn.execute("SELECT * FROM live_versions ORDER BY project, version"):
        projects[row["project"]]["versions"][row["version"]] = {
            "yanked": bool(row["yanked"]),
            "released": row["released"],
            "requires_python": row["requires_python"],
            "skip_reason": row["skip_reason"],
            "files": {},
        }
    for row in conn.execute("SELECT * FROM live_files ORDER BY project, version, filename"):
        projects[row["project"]]["versions"][row["version"]]["files"][row["filename"]] = row["kind"]
    return {"projects": projects}


def dumps(conn: sqlite3.Connection) -> str:
    return json.dumps(dump(conn), sort_keys=True, indent=1, ensure_ascii=False)
