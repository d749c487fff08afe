"""Writing into www/: whole new directories at once, unchanged files left alone, and
a directory that appears meanwhile never overwritten."""

from __future__ import annotations

import os

from publish.files import write_atomic, write_directory


def test_new_directory_appears_whole_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "project" / "alpha"
    files = {"index.html": b"<p>alpha</p>\n", "json/index.json": b"{}\n"}
    assert write_directory(target, files)
    assert (target / "index.html").read_bytes() == b"<p>alpha</p>\n"
    assert (target / "json" / "index.json").read_bytes() == b"{}\n"
    assert sorted(os.listdir(tmp_path / "project")) == ["alpha"]
    assert oct((target / "index.html").stat().st_mode & 0o777) == oct(0o644)


def test_existing_directory_is_left_alone(tmp_path):
    target = tmp_path / "simple" / "alpha"
    target.mkdir(parents=True)
    (target / "alpha-1.0-py3-none-any.whl").write_bytes(b"wheel")
    assert not write_directory(target, {"index.html": b"new"})
    # The wheel the intake placed is still there, nothing was half-written beside it.
    assert sorted(os.listdir(target)) == ["alpha-1.0-py3-none-any.whl"]
    assert sorted(os.listdir(tmp_path / "simple")) == ["alpha"]


def test_unchanged_file_is_not_rewritten_and_changed_one_is(tmp_path):
    path = tmp_path / "index.html"
    assert write_atomic(path, b"one")
    before = path.stat()
    assert not write_atomic(path, b"one")
    assert path.stat().st_ino == before.st_ino
    assert write_atomic(path, b"two!")  # same length or not, new content is written
    assert path.read_bytes() == b"two!" and path.stat().st_ino != before.st_ino
    assert write_atomic(path, b"twe!")
    assert path.read_bytes() == b"twe!"
    assert sorted(os.listdir(tmp_path)) == ["index.html"]
