"""The catalogue converges: any order of one history's events gives the same state."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.catalogue import connect
from ingest.dump import dump
from ingest.events import (
    EARLY_SERIAL,
    Event,
    MalformedEvent,
    apply_batch,
    batch_of,
    classify,
)

SPELLINGS = ["Foo_Bar", "foo-bar", "foo.bar", "Chai", "chai"]
VERSIONS = ["0.1", "1.0", "2.0rc1"]
ACTIONS = [
    "create", "new release", "add source file {file}", "add py3 file {wheel}",
    "remove file {file}", "remove file {wheel}", "remove release", "remove project", "remove",
    "yank release", "unyank release", "add Owner alice", "remove Owner alice",
    "invite Maintainer bob", "remove Maintainer bob", "docupdate",
]


def apply(conn, events):
    conn.execute("BEGIN")
    apply_batch(conn, batch_of(events))
    conn.execute("COMMIT")


def catalogue_dump(path, batches):
    conn = connect(path)
    for batch in batches:
        apply(conn, batch)
    result = dump(conn)
    conn.close()
    return result


@st.composite
def events(draw):
    name = draw(st.sampled_from(SPELLINGS))
    version = draw(st.sampled_from(VERSIONS))
    action = draw(st.sampled_from(ACTIONS))
    stem = name.lower().replace("-", "_").replace(".", "_")
    action = action.format(file=f"{stem}-{version}.tar.gz",
                           wheel=f"{stem}-{version}-py3-none-any.whl")
    if action in ("create", "remove project") or (action == "remove" and draw(st.booleans())):
        version = None
    if action.startswith(("add Owner", "remove Owner", "invite", "remove Maintainer")):
        version = None
    return name, version, action


@st.composite
def histories(draw):
    """Events with unique serials, some in the early era where serial order and time
    order disagree (as in PyPI's first years), the rest in serial order."""
    rows = draw(st.lists(events(), min_size=1, max_size=40))
    serials = draw(st.lists(st.integers(1, 2 * EARLY_SERIAL), min_size=len(rows),
                            max_size=len(rows), unique=True))
    history = []
    for (name, version, action), serial in zip(rows, sorted(serials), strict=True):
        if serial < EARLY_SERIAL:
            timestamp = draw(st.integers(1_200_000_000, 1_300_000_000))
        else:
            timestamp = 1_400_000_000 + serial + draw(st.integers(-180, 0))
        history.append(Event(serial, timestamp, name, version, action))
    return history


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(history=histories(), data=st.data())
def test_any_order_gives_the_same_catalogue(tmp_path_factory, history, data):
    directory = tmp_path_factory.mktemp("converge")
    in_order = catalogue_dump(directory / "ordered.db", [[e] for e in history])
    shuffled = data.draw(st.permutations(history))
    # Some events arrive twice (a poller re-reads a margin) and batches vary in size.
    repeats = data.draw(st.lists(st.sampled_from(history), max_size=5))
    stream = shuffled + repeats
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=4)))
    batches = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
    assert catalogue_dump(directory / "shuffled.db", batches) == in_order


def make(serial, timestamp, name, version, action):
    return Event(serial, timestamp, name, version, action)


def test_chai_early_history(tmp_path):
    """Serial order says remove after create; the timestamps (right in the early
    log) say the removal came a minute before the creation, so chai lives."""
    history = [
        make(256850, 1320710400, "chai", "0.1.18", "new release"),  # 2011-11-08
        make(264082, 1299029460, "chai", None, "create"),  # 2011-03-02 01:31
        make(264426, 1299029397, "chai", None, "remove"),  # 2011-03-02 01:29:57
    ]
    state = catalogue_dump(tmp_path / "c.db", [history])["projects"]["chai"]
    assert state["alive"] and list(state["versions"]) == ["0.1.18"]


def test_recreated_under_another_spelling(tmp_path):
    history = [
        make(700001, 0, "Foo_Bar", "1.0", "new release"),
        make(700002, 0, "Foo_Bar", "1.0", "add source file Foo_Bar-1.0.tar.gz"),
        make(700003, 0, "Foo_Bar", "1.0", "yank release"),
        make(700004, 0, "Foo_Bar", None, "remove project"),
        make(700005, 0, "foo.bar", None, "create"),
        make(700006, 0, "foo.bar", "1.0", "new release"),
        make(700007, 0, "foo.bar", "1.0", "add py3 file foo.bar-1.0-py3-none-any.whl"),
    ]
    state = catalogue_dump(tmp_path / "c.db", [history])["projects"]["foo-bar"]
    assert state["alive"] and state["display_name"] == "foo.bar"
    assert state["aliases"] == ["Foo_Bar", "foo.bar"]
    release = state["versions"]["1.0"]
    # The old incarnation's sdist and yank are gone with it.
    assert release["files"] == {"foo.bar-1.0-py3-none-any.whl": "binary"}
    assert release["yanked"] is False


def test_removals_never_bring_anything_back(tmp_path):
    history = [
        make(700001, 0, "gone", "1.0", "new release"),
        make(700002, 0, "gone", "1.0", "add source file gone-1.0.tar.gz"),
        make(700003, 0, "gone", "1.0", "remove release"),
        make(700004, 0, "gone", "1.0", "remove file gone-1.0.tar.gz"),
        make(700005, 0, "gone", "1.0", "yank release"),
        make(700006, 0, "kept", "2.0", "new release"),
        make(700007, 0, "kept", "2.0", "add source file kept-2.0.tar.gz"),
        make(700008, 0, "kept", "2.0", "remove file kept-2.0.tar.gz"),
    ]
    state = catalogue_dump(tmp_path / "c.db", [history])["projects"]
    assert state["gone"]["versions"] == {}
    assert state["kept"]["versions"]["2.0"]["files"] == {}


def test_owner_changes_delete_nothing(tmp_path):
    history = [make(700001, 0, "live", "1.0", "new release")] + [
        make(700002 + i, 0, "live", None, action) for i, action in enumerate([
            "remove Owner alice", "remove Maintainer bob", "invite Owner carol",
            "accepted Owner carol", "change Owner role dave"])
    ]
    state = catalogue_dump(tmp_path / "c.db", [history])["projects"]["live"]
    assert state["alive"] and "1.0" in state["versions"]


def test_unknown_and_versionless_actions_are_skipped(caplog):
    caplog.set_level("INFO", logger="ingest")
    assert classify(make(700001, 0, "x", None, "something new")) is None
    assert classify(make(700002, 0, "x", None, "new release")) is None
    assert "unknown action" in caplog.text


def test_malformed_rows_are_refused():
    for row in [{"serial": "1", "timestamp": 0, "name": "x", "action": "create"},
                {"serial": 1, "timestamp": 0, "name": "", "action": "create"},
                {"serial": 1, "timestamp": 0, "name": "x"},
                ["x", None, 0, "create"], "create", None,
                {"serial": True, "timestamp": 0, "name": "x", "action": "create"}]:
        with pytest.raises(MalformedEvent):
            Event.from_row(row)
    assert Event.from_row(json.loads('["x", null, 5, "create", 9]')).serial == 9


def test_a_file_with_bad_lines_loses_only_them(tmp_path):
    from ingest.sources import FileSource

    good = [{"serial": 700_001 + i, "timestamp": 0, "name": f"p{i}", "version": "1.0",
             "action": "new release"} for i in range(4)]
    path = tmp_path / "events.jsonl"
    path.write_bytes(
        (json.dumps(good[0]) + "\n").encode() + b"{not json\n" + b"\n"
        + (json.dumps(good[1]) + "\n").encode()
        + b'{"serial": true, "timestamp": 0, "name": "x", "action": "create"}\n'
        + (json.dumps(good[2]) + "\n").encode() + b'["short"]\n'
        + json.dumps(good[3]).encode()  # no newline yet: still being written
    )
    source = FileSource(path)
    fetched = source.fetch(None)
    assert fetched.malformed == 3 and fetched.batch.count == 3
    assert sorted(fetched.batch.projects) == ["p0", "p1", "p2"]
    assert int(fetched.cursor) == path.stat().st_size - len(json.dumps(good[3]))
    with path.open("ab") as f:
        f.write(b"\n")
    again = source.fetch(fetched.cursor)
    assert list(again.batch.projects) == ["p3"] and again.malformed == 0


def test_a_long_file_is_read_a_chunk_at_a_time_in_whole_lines(tmp_path):
    from bench.history import write
    from ingest.reading import BLOCK
    from ingest.sources import FileSource

    path = write(tmp_path / "events.jsonl", 60_000, seed=5)
    data = path.read_bytes()
    per_block = data[:BLOCK].count(b"\n")
    assert per_block < 10_000 < 3 * per_block  # a fetch is a few blocks
    source, cursor, counts = FileSource(path, chunk=20_000), None, []
    while True:
        fetched = source.fetch(cursor)
        assert data[:int(fetched.cursor)].endswith(b"\n")
        counts.append(fetched.batch.count)
        cursor = fetched.cursor
        if fetched.caught_up:
            break
    assert sum(counts) == data.count(b"\n") and int(cursor) == len(data)
    assert len(counts) >= 3
    assert all(20_000 <= count < 20_000 + 1.5 * per_block for count in counts[:-1])


@pytest.mark.parametrize("action", [
    "add source file a-1.0.tar.gz", "add cp311 file a-1.0-cp311-cp311-linux_armv7l.whl",
    "remove file a-1.0.tar.gz", "add source file ", "add source file a\tb",
    "add source file a\u00a0b", "add source file a\u200bb", "add Owner file x",
    "add Ownerx file x", "add source file a b", "remove file", "add  file x",
])
def test_file_actions_read_from_a_known_head_match_the_pattern(action):
    """After a file action has taught the cache its head, every action with that
    head is classified exactly as the anchored pattern alone would."""
    from ingest.events import ACTION_RE, classify_action

    for teacher in ["add source file t.tar.gz", "add cp311 file t.whl", "remove file t.zip",
                    "add Ownerx file t.whl", "add source file a"]:
        classify_action(teacher, "1.0", 1)
    match = ACTION_RE.match(action)
    if match is None or match.lastgroup == "ignore":
        expected = None
    elif match.lastgroup in ("source", "binary", "remove_file"):
        expected = (match.lastgroup, match.group(match.lastgroup))
    else:
        expected = (match.lastgroup, None)
    assert classify_action(action, "1.0", 1) == expected
