"""The catalogue owns the catalogue: one transaction helper that leaves nothing behind
when a write fails, and no SQL writing its tables anywhere else."""

from __future__ import annotations

import ast
import re
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ingest import catalogue
from ingest.catalogue import schema
from ingest.events import Event, apply_batch, batch_of

ROOT = Path(__file__).resolve().parent.parent
SCANNED = ("ingest", "publish", "stats", "worker")  # the packages that run in production
HOME = ROOT / "ingest" / "catalogue"  # the one place allowed to write the catalogue


# Objects shaped like the build report and a checked wheel: the catalogue reads
# attributes, whichever module defines the report.
@dataclass
class File:
    filename: str
    size: int = 3
    sha256: str = "ab" * 32
    apt_dependencies: list[str] = field(default_factory=lambda: ["libfoo1", "libc6"])
    apt_preinstalled: list[str] = field(default_factory=lambda: ["libc6"])
    unresolved_sonames: list[str] = field(default_factory=lambda: ["libbar.so.2"])
    armv6: bool | None = None


@dataclass
class Report:
    project: str
    version: str
    abi: str = "cp311"
    status: str = "success"
    duration: float = 1.5
    worker: str = "pi-1"
    files: list[File] = field(default_factory=list)
    machine: None = None  # as from a worker older than the machine it names


@dataclass
class Wheel:
    filename: str
    python_tag: str = "cp311"
    abi_tag: str = "cp311"
    platform_tag: str = "linux_armv7l"
    requires_python: str | None = ">=3.8"
    metadata: bytes = b"Metadata-Version: 2.1\n"
    requires_dist: list[str] = field(default_factory=lambda: ["six"])


def wheel_name(project: str, version: str) -> str:
    return f"{project}-{version}-cp311-cp311-linux_armv7l.whl"


@pytest.fixture
def conn(tmp_path):
    """A catalogue with a few releases, one built, a skip and a cursor."""
    conn = catalogue.connect(tmp_path / "catalogue.db")
    events = [Event(700_000 + i, 1_700_000_000 + i * 60, name, version, action)
              for i, (name, version, action) in enumerate([
                  ("alpha", "1.0", "new release"),
                  ("alpha", "1.0", "add source file alpha-1.0.tar.gz"),
                  ("Beta", "2.0", "new release"),
                  ("Beta", "2.0", "add source file beta-2.0.tar.gz"),
              ])]
    with catalogue.transaction(conn):
        apply_batch(conn, batch_of(events))
        catalogue.set_state(conn, "cursor", "700003")
    name = wheel_name("alpha", "1.0")
    catalogue.record_build(conn, Report("alpha", "1.0", files=[File(name)]), [Wheel(name)],
                           "logs/alpha/1.0/cp311.log")
    catalogue.record_skips(conn, [catalogue.Skip("beta", "2.0", "cp34m", "too old")])
    yield conn
    conn.close()


def dump(conn: sqlite3.Connection) -> str:
    return "\n".join(conn.iterdump())


def insert_bad_build(conn: sqlite3.Connection) -> None:
    """A statement that fails in SQLite: the status CHECK refuses it."""
    conn.execute("INSERT INTO builds (project, version, abi, status, built_at) "
                 "VALUES ('beta', '2.0', 'cp311', 'maybe', '2026-01-01T00:00:00Z')")


def statement_fails(conn: sqlite3.Connection) -> None:
    with catalogue.transaction(conn):
        catalogue.set_state(conn, "cursor", "999999")
        conn.execute("DELETE FROM skips")
        insert_bad_build(conn)


def interrupted(conn: sqlite3.Connection) -> None:
    """A Ctrl-C between two writes of one pass (a BaseException, not an Exception)."""
    more = batch_of([Event(800_000, 1_800_000_000, "gamma", "0.1", "new release")])
    with catalogue.transaction(conn):
        apply_batch(conn, more)
        raise KeyboardInterrupt


def build_fails_part_way(conn: sqlite3.Connection) -> None:
    """record_build writes the build and its first wheel, then meets a wheel the
    report does not list."""
    good, stray = wheel_name("beta", "2.0"), "beta-2.0-py3-none-any.whl"
    catalogue.record_build(conn, Report("beta", "2.0", files=[File(good)]),
                           [Wheel(good), Wheel(stray)], None)


def nested(conn: sqlite3.Connection) -> None:
    """A transaction opened inside another refuses to start, and takes the outer
    one's writes with it rather than committing them early."""
    with catalogue.transaction(conn):
        catalogue.remember_serials(conn, [900_001, 900_002], forget_below=0)
        catalogue.record_skips(conn, [catalogue.Skip("alpha", "1.0", "cp39", "nested")])


@pytest.mark.parametrize(("write", "error"), [
    (statement_fails, sqlite3.IntegrityError),
    (interrupted, KeyboardInterrupt),
    (build_fails_part_way, KeyError),
    (nested, sqlite3.OperationalError),
])
def test_a_failing_write_leaves_the_catalogue_unchanged(conn, tmp_path, write: Callable,
                                                        error: type[BaseException]):
    before = dump(conn)
    with pytest.raises(error):
        write(conn)
    assert not conn.in_transaction
    assert dump(conn) == before
    # Another connection (another process) sees the same, and the file is not locked.
    other = catalogue.connect(tmp_path / "catalogue.db")
    assert dump(other) == before
    other.close()
    # The connection that failed still writes.
    with catalogue.transaction(conn):
        catalogue.set_state(conn, "cursor", "700004")
    assert catalogue.get_state(conn, "cursor") == "700004"


def test_a_transaction_commits_for_every_connection(conn, tmp_path):
    other = catalogue.connect(tmp_path / "catalogue.db")
    with catalogue.transaction(conn):
        catalogue.set_state(conn, "cursor", "700010")
        catalogue.remember_serials(conn, [700_010], forget_below=0)
        # Not visible elsewhere until the block ends.
        assert catalogue.get_state(other, "cursor") == "700003"
    assert catalogue.get_state(other, "cursor") == "700010"
    assert catalogue.seen_serials(other, 700_000) == {700_010}
    other.close()


def test_a_failing_migration_leaves_the_schema_as_it_was(conn, monkeypatch):
    before = dump(conn)
    # Its first statement works, its second cannot: neither may stay.
    monkeypatch.setattr(schema, "MIGRATIONS", [*schema.MIGRATIONS, """
        CREATE TABLE extra (x INTEGER);
        CREATE TABLE projects (x INTEGER);
    """])
    monkeypatch.setattr(schema, "SCHEMA_VERSION", len(schema.MIGRATIONS))
    with pytest.raises(sqlite3.OperationalError, match="already exists"):
        schema.migrate(conn)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == len(schema.MIGRATIONS) - 1
    assert dump(conn) == before


def test_record_build_stores_the_wheels_details(conn):
    name = wheel_name("alpha", "1.0")
    first = conn.execute("SELECT uploaded_at FROM wheels WHERE filename = ?",
                         (name,)).fetchone()[0]
    assert sorted(tuple(r) for r in conn.execute(
        "SELECT tool, name, preinstalled FROM dependencies WHERE filename = ?", (name,))
    ) == [("apt", "libc6", 1), ("apt", "libfoo1", 0), ("pip", "six", 0)]
    assert [r[0] for r in conn.execute("SELECT soname FROM unresolved_sonames")] == [
        "libbar.so.2"]
    # A re-push replaces the details and keeps the first upload time.
    catalogue.record_build(
        conn, Report("alpha", "1.0", files=[File(name, apt_dependencies=[],
                                                 unresolved_sonames=[])]),
        [Wheel(name, requires_dist=[])], None)
    assert conn.execute("SELECT COUNT(*) FROM dependencies").fetchone()[0] == 0
    assert conn.execute("SELECT uploaded_at FROM wheels WHERE filename = ?",
                        (name,)).fetchone()[0] == first


# --- no SQL writes a catalogue table outside ingest/catalogue/ ----------------------

# A write statement and its table, in either case; what follows the table must be
# what SQL allows there, so that prose ("delete from files the ones...") is not one.
WRITE_RE = re.compile(
    r"\b(?:(?:INSERT|REPLACE)(?:\s+OR\s+[a-z]+)?\s+INTO\s+(?P<into>[^\s(;]+)"
    r"\s*(?:\(|VALUES\b|SELECT\b|DEFAULT\b|$)"
    r"|UPDATE(?:\s+OR\s+[a-z]+)?\s+(?P<update>[^\s(;]+)\s+SET\b"
    r"|DELETE\s+FROM\s+(?P<delete>[^\s(;]+)\s*(?:WHERE\b|RETURNING\b|;|$))",
    re.IGNORECASE)
# sqlite-utils' table methods that write: db["wheels"].insert(...) and the like.
WRITE_METHODS = frozenset({"insert", "insert_all", "upsert", "upsert_all", "update",
                           "delete", "delete_where", "drop", "transform", "create"})
PLACEHOLDER = "{}"  # where a computed value is in a formatted string


def catalogue_tables() -> frozenset[str]:
    """The catalogue's tables and views, from the schema itself."""
    conn = sqlite3.connect(":memory:", isolation_level=None)
    schema.migrate(conn)
    names = frozenset(r[0] for r in conn.execute(
        "SELECT name FROM sqlite_master WHERE type IN ('table', 'view')"))
    conn.close()
    return names


def _text(node: ast.AST) -> str | None:
    """A string expression's text, computed parts as PLACEHOLDER; None for the rest."""
    if isinstance(node, ast.Constant):
        return node.value if isinstance(node.value, str) else None
    if isinstance(node, ast.JoinedStr):
        return "".join(_text(v) or PLACEHOLDER for v in node.values)
    if isinstance(node, ast.FormattedValue):
        return None
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = _text(node.left), _text(node.right)
        if left is not None or right is not None:
            return (left or PLACEHOLDER) + (right or PLACEHOLDER)
    return None


def _strings(tree: ast.AST) -> list[tuple[int, str]]:
    """Every outermost string expression: an f-string or a concatenation is read
    whole, not as its pieces."""
    found: list[tuple[int, str]] = []

    def visit(node: ast.AST) -> None:
        text = _text(node)
        if text is not None:
            found.append((node.lineno, text))
            return
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def _target(token: str, tables: frozenset[str]) -> str | None:
    """What a write's table token names, when it may be the catalogue: the table, or
    the token when it is computed (which cannot be told apart from a catalogue table)."""
    name = token.strip("\"'`[]").rsplit(".", 1)[-1].strip("\"'`[]")
    if name.isidentifier():
        return name if name.lower() in tables else None
    return token


def catalogue_writes(source: str, tables: frozenset[str]) -> list[str]:
    """The writes to catalogue tables in one file's source, as 'line: what'."""
    tree = ast.parse(source)
    found = []
    for line, text in _strings(tree):
        for match in WRITE_RE.finditer(text):
            token = match["into"] or match["update"] or match["delete"]
            if _target(token, tables) is not None:
                found.append(f"{line}: {' '.join(match[0].split())}")
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr in WRITE_METHODS):
            continue
        table = node.func.value
        name = None
        if isinstance(table, ast.Subscript):  # db["wheels"]
            name = _text(table.slice)
        elif (isinstance(table, ast.Call) and isinstance(table.func, ast.Attribute)
              and table.func.attr == "table" and table.args):  # db.table("wheels")
            name = _text(table.args[0])
        if name is not None and name.lower() in tables:
            found.append(f"{node.lineno}: {name}.{node.func.attr}()")
    return found


def test_the_scan_finds_writes_in_every_spelling():
    tables = catalogue_tables()
    assert {"projects", "versions", "files", "builds", "wheels", "dependencies",
            "unresolved_sonames", "skips", "seen_serials", "state"} <= tables
    # The code that wrote the catalogue before it had one home, and other spellings.
    caught = '''
conn.executemany("INSERT OR REPLACE INTO skips (project, version, abi, reason) "
                 "VALUES (?, ?, ?, ?)", rows)
conn.execute("UPDATE versions SET metadata_state = 'unavailable' WHERE project = ?", (n,))
conn.execute("DELETE FROM seen_serials WHERE serial < ?", (low,))
UPSERT = """
INSERT INTO projects (name) VALUES (?)
ON CONFLICT (name) DO UPDATE SET seen_key = MAX(seen_key, excluded.seen_key)
"""
for table in ("dependencies", "wheels"):
    conn.executemany(f"DELETE FROM {table} WHERE filename = ?", files)
conn.execute("delete from " + table)
conn.execute('replace into "main"."wheels" (filename) values (?)', (name,))
conn.execute("UPDATE OR IGNORE catalogue.builds SET status = 'failed'")
db["wheels"].insert_all(rows)
db.table("builds").delete_where("project = ?", [name])
'''
    assert len(catalogue_writes(caught, tables)) == 10
    # stats.db's own tables, reads, and prose are not catalogue writes.
    left = '''
INSERT_REQUEST = "INSERT INTO requests (time, kind, project) VALUES (?, ?, ?)"
db.conn.execute("INSERT INTO sources (fingerprint) VALUES (?) ON CONFLICT (fingerprint) "
                "DO UPDATE SET offset = excluded.offset", row)
db["agents"].insert_all(rows, ignore=True)
conn.execute("SELECT * FROM wheels WHERE filename IN (SELECT filename FROM builds)")
"""Update files in www/ and delete from files the ones that are gone."""
# INSERT INTO wheels: a comment is not code
'''
    assert catalogue_writes(left, tables) == []
    # And the catalogue's own writes are found where they are.
    assert len(catalogue_writes((HOME / "writes.py").read_text(), tables)) >= 15


def test_no_sql_writes_the_catalogue_outside_its_module():
    tables = catalogue_tables()
    sources = [path for top in SCANNED for path in sorted((ROOT / top).rglob("*.py"))
               if not path.is_relative_to(HOME)]
    assert len(sources) > 30  # the scan looks where the code is
    found = [f"{path.relative_to(ROOT)}:{write}" for path in sources
             for write in catalogue_writes(path.read_text(), tables)]
    assert found == [], "write the catalogue through ingest.catalogue:\n" + "\n".join(found)


CONTROL_RE = re.compile(r"\s*(?:BEGIN(?:\s+(?:DEFERRED|IMMEDIATE|EXCLUSIVE))?|COMMIT|END"
                        r"|ROLLBACK)(?:\s+TRANSACTION)?\s*;?\s*", re.IGNORECASE)


def transaction_control(source: str) -> list[str]:
    """Statements and calls that begin or end a transaction by hand, as 'line: what'."""
    tree = ast.parse(source)
    found = [f"{line}: {text.strip()}" for line, text in _strings(tree)
             if CONTROL_RE.fullmatch(text)]
    found += [f"{node.lineno}: .{node.func.attr}()" for node in ast.walk(tree)
              if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and node.func.attr in ("commit", "rollback") and not node.args]
    return found


def test_transactions_on_the_catalogue_are_begun_only_by_its_helper():
    caught = '''
conn.execute("BEGIN IMMEDIATE")
conn.execute("COMMIT")
conn.execute("rollback;")
conn.commit()
"""End-of-life ABIs: their queues are emptied."""
'''
    assert len(transaction_control(caught)) == 4
    # stats/ is left out: stats.db is another database, with its own transactions.
    found = [f"{path.relative_to(ROOT)}:{where}"
             for top in ("ingest", "publish") for path in sorted((ROOT / top).rglob("*.py"))
             if not path.is_relative_to(HOME)
             for where in transaction_control(path.read_text())]
    assert found == [], "use ingest.catalogue.transaction:\n" + "\n".join(found)
