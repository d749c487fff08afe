"""Writing the static index: www/simple/ for pip, www/project/ for people."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from html import escape
from pathlib import Path

from publish.files import inside, write_atomic

REPOSITORY_VERSION = "1.1"


@dataclass
class WheelRow:
    filename: str
    version: str
    sha256: str
    size: int
    requires_python: str | None
    yanked: bool


def project_wheels(conn: sqlite3.Connection, project: str) -> list[WheelRow]:
    rows = conn.execute(
        """SELECT w.filename, w.version, w.sha256, w.size, w.requires_python, v.yanked
           FROM wheels w JOIN live_versions v ON v.project = w.project AND v.version = w.version
           WHERE w.project = ? ORDER BY w.filename""",
        (project,),
    )
    return [WheelRow(r[0], r[1], r[2], r[3], r[4], bool(r[5])) for r in rows]


def simple_project_html(display_name: str, wheels: list[WheelRow]) -> str:
    links = []
    for w in wheels:
        attrs = f' href="{escape(w.filename)}#sha256={w.sha256}"'
        if w.requires_python:
            attrs += f' data-requires-python="{escape(w.requires_python)}"'
        if w.yanked:
            attrs += ' data-yanked=""'
        links.append(f"<a{attrs}>{escape(w.filename)}</a><br>")
    title = f"Links for {display_name}"
    return _page(title, f"<h1>{escape(title)}</h1>\n" + "\n".join(links))


def simple_root_html(names: list[str]) -> str:
    links = "\n".join(f'<a href="{escape(n)}/">{escape(n)}</a><br>' for n in names)
    return _page("Simple index", links)


def project_page_html(project: str, display_name: str, summary: str | None,
                      wheels: list[WheelRow]) -> str:
    rows = "\n".join(
        f"<tr><td>{escape(w.version)}</td><td><a href=\"../../simple/"
        f"{escape(project)}/{escape(w.filename)}\">{escape(w.filename)}</a>"
        f"</td><td>{w.size:,}</td><td><code>{w.sha256}</code></td></tr>"
        for w in wheels
    )
    body = (
        f"<h1>{escape(display_name)}</h1>\n<p>{escape(summary or '')}</p>\n"
        f"<pre>pip install {escape(display_name)}</pre>\n"
        "<table><tr><th>Version</th><th>File</th><th>Size</th><th>sha256</th></tr>\n"
        f"{rows}\n</table>"
    )
    return _page(display_name, body)


def _page(title: str, body: str) -> str:
    return (
        "<!DOCTYPE html>\n<html>\n<head>\n"
        f'<meta name="pypi:repository-version" content="{REPOSITORY_VERSION}">\n'
        f"<title>{escape(title)}</title>\n</head>\n<body>\n"
        f"{body}\n</body>\n</html>\n"
    )


def publish_project(conn: sqlite3.Connection, www: Path, project: str, root: bool = True
                    ) -> None:
    """Rewrite one project's pages (or remove them if it is gone) and the root index."""
    row = conn.execute(
        "SELECT display_name, summary FROM live_projects WHERE name = ?", (project,)
    ).fetchone()
    simple = inside(www, "simple", project, "index.html")
    page = inside(www, "project", project, "index.html")
    if row is None:
        simple.unlink(missing_ok=True)
        page.unlink(missing_ok=True)
    else:
        wheels = project_wheels(conn, project)
        write_atomic(simple, simple_project_html(row["display_name"], wheels).encode())
        write_atomic(page, project_page_html(project, row["display_name"], row["summary"],
                                             wheels).encode())
    if root:
        write_root(conn, www)


def write_root(conn: sqlite3.Connection, www: Path) -> None:
    names = [r[0] for r in conn.execute("SELECT name FROM live_projects ORDER BY name")]
    write_atomic(inside(www, "simple", "index.html"), simple_root_html(names).encode())


def publish_all(conn: sqlite3.Connection, www: Path) -> int:
    names = [r[0] for r in conn.execute("SELECT name FROM projects ORDER BY name")]
    for name in names:
        publish_project(conn, www, name, root=False)
    write_root(conn, www)
    return len(names)
