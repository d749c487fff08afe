"""The whole of www/ for a fixture catalogue, compared with a golden copy; and how
publishing changes it: only what it must, atomically, deletions included.

Set WHEELWRIGHT_UPDATE_GOLDEN=1 to rewrite tests/golden/www after a deliberate change."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from ingest import catalogue
from publish import index
from publish.pages import Site
from tests.publishing import HOSTILE_NAMES, apply_events, make_catalogue, tree

GOLDEN = Path(__file__).parent / "golden" / "www"
SITE = Site(abis=("cp311", "cp39"), public_url="http://pi.example/",
            pypi_url="http://upstream.example")


@pytest.fixture
def published(tmp_path):
    conn = catalogue.connect(tmp_path / "catalogue.db")
    www = tmp_path / "www"
    make_catalogue(conn, www)
    index.publish_all(conn, www, SITE)
    yield conn, www
    conn.close()


def stamps(www: Path) -> dict[str, tuple[int, int]]:
    """Inode and mtime of every file: a rewrite (temp file and rename) changes both."""
    return {p.relative_to(www).as_posix(): (p.lstat().st_ino, p.lstat().st_mtime_ns)
            for p in www.rglob("*") if p.is_symlink() or not p.is_dir()}


def test_www_matches_golden_tree(published):
    _, www = published
    if os.environ.get("WHEELWRIGHT_UPDATE_GOLDEN") == "1":
        shutil.rmtree(GOLDEN, ignore_errors=True)
        shutil.copytree(www, GOLDEN, symlinks=True)
    assert tree(www) == tree(GOLDEN)


def test_tree_covers_the_cases(published):
    _, www = published
    simple = www / "simple"
    # Deleted project and deleted release: files, pages and logs gone.
    assert not (simple / "gone").exists() and not (www / "project" / "gone").exists()
    assert not (www / "logs" / "gone").exists()
    assert not list(simple.glob("gamma/gamma-1.0-*"))
    assert not (www / "logs" / "gamma" / "1.0").exists()
    # Known but unbuilt: an empty page.
    assert (simple / "empty-one" / "index.html").exists()
    # An armv7l wheel that runs on a Pi Zero/1 is also listed under its armv6l name,
    # as a link, not a copy; one that does not (ARMv7 code) is not, and its page says so.
    alias = simple / "alpha" / "alpha-1.0-cp39-cp39-linux_armv6l.whl"
    assert alias.is_symlink() and os.readlink(alias) == "alpha-1.0-cp39-cp39-linux_armv7l.whl"
    listing = (simple / "alpha" / "index.html").read_text()
    assert "alpha-1.0-cp39-cp39-linux_armv6l.whl#sha256=" in listing
    assert not (simple / "alpha" / "alpha-1.0-cp311-cp311-linux_armv6l.whl").is_symlink()
    assert "alpha-1.0-cp311-cp311-linux_armv6l" not in listing
    page = (www / "project" / "alpha" / "index.html").read_text()
    [row] = [line for line in page.splitlines() if "Pi 2 and later</span>" in line]
    assert ">alpha-1.0-cp311-cp311-linux_armv7l.whl</a>" in row
    assert "cp311-cp311-linux_armv6l" not in (www / "project" / "alpha" / "json" /
                                              "index.json").read_text().split('"1.0"')[1]
    assert "pre-release</span>" in page and "yanked</span>" in page and "✗ failed" in page
    assert "sudo apt install libopenblas0-pthread</pre>" in page  # libc6 is preinstalled
    # A failed build says why, next to its log; each build names its machine; a wheel
    # tagged for a platform without compiled code in it says so.
    assert '✗ failed</a> <span class="reason">missing header yaml.h (libyaml-dev)</span>' \
        in page
    assert 'title="built on pi-1-bookworm: Debian GNU/Linux 12 (bookworm), gcc (Debian ' \
        '12.2.0-14) 12.2.0, builder profile 2">' in page
    [row] = [line for line in page.splitlines() if "built without compiled code</span>" in line]
    assert ">alpha-1.1-cp311-cp311-linux_armv7l.whl</a>" in row


def test_hostile_input_is_escaped_and_stays_inside(published, tmp_path):
    conn, www = published
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["catalogue.db", "catalogue.db-shm", "catalogue.db-wal", "www"])
    for name in HOSTILE_NAMES:  # never a page, never a path
        assert name not in (www / "simple" / "index.html").read_text()
    assert sorted(p.name for p in (www / "simple").iterdir()) == [
        "alpha", "beta-lib", "empty-one", "gamma", "hostile", "index.html", "index.json"]
    for page in [www / "project" / "hostile" / "index.html", www / "index.html",
                 www / "simple" / "hostile" / "index.html"]:
        text = page.read_text()
        assert "<script>alert" not in text and "<img src=x" not in text and "<b>" not in text
    text = (www / "project" / "hostile" / "index.html").read_text()
    assert "&lt;script&gt;alert(&quot;summary&quot;)&lt;/script&gt;" in text
    assert "&lt;img src=x onerror=alert(1)&gt;" in text


def test_full_rebuild_rewrites_nothing_unchanged(published):
    conn, www = published
    before = stamps(www)
    index.publish_all(conn, www, SITE)
    assert stamps(www) == before


def test_incremental_publish_touches_only_its_project(published):
    conn, www = published
    before = stamps(www)
    conn.execute("UPDATE projects SET summary = 'Faster arrays' WHERE name = 'alpha'")
    outcome = index.publish_project(conn, www, SITE, "alpha")
    after = stamps(www)
    changed = sorted(k for k in after if after[k] != before.get(k))
    assert changed == ["project/alpha/index.html", "project/alpha/json/index.json"]
    assert not outcome.root_written


def test_deleting_a_project_removes_its_files_and_root_entry(published):
    conn, www = published
    apply_events(conn, [("Alpha", None, "remove project")], serial0=3_000_000)
    outcome = index.publish_project(conn, www, SITE, "alpha")
    assert outcome.root_written and not outcome.live
    assert not (www / "simple" / "alpha").exists()
    assert not (www / "project" / "alpha").exists() and not (www / "logs" / "alpha").exists()
    assert 'href="alpha/"' not in (www / "simple" / "index.html").read_text()
    assert conn.execute("SELECT COUNT(*) FROM wheels WHERE project = 'alpha'").fetchone()[0] == 0


def test_deleting_a_release_removes_its_wheels_aliases_and_logs(published):
    conn, www = published
    apply_events(conn, [("Alpha", "1.0", "remove release")], serial0=3_000_000)
    index.publish_project(conn, www, SITE, "alpha")
    left = sorted(p.name for p in (www / "simple" / "alpha").iterdir())
    assert not [name for name in left if name.startswith("alpha-1.0-")]
    assert "alpha-1.1-cp311-cp311-linux_armv6l.whl" in left
    assert not (www / "logs" / "alpha" / "1.0").exists()
    assert "alpha-1.0" not in (www / "simple" / "alpha" / "index.json").read_text()


def test_yank_and_unyank_change_the_listing(published):
    conn, www = published
    apply_events(conn, [("Alpha", "1.0", "yank release")], serial0=3_000_000)
    index.publish_project(conn, www, SITE, "alpha")
    assert 'linux_armv7l.whl</a>' in (www / "simple" / "alpha" / "index.html").read_text()
    html = (www / "simple" / "alpha" / "index.html").read_text()
    assert html.count('data-yanked=""') == 3  # both 1.0 wheels and the cp39 one's alias
    apply_events(conn, [("Alpha", "1.0", "unyank release")], serial0=3_000_010)
    index.publish_project(conn, www, SITE, "alpha")
    assert 'data-yanked=""' not in (www / "simple" / "alpha" / "index.html").read_text()


def test_publishing_takes_away_an_alias_the_verdict_no_longer_allows(published):
    """A link made before the wheel's verdict was known (every armv7l wheel got one)
    goes at the next publish; a real file of that name is not ours to remove."""
    conn, www = published
    directory = www / "simple" / "alpha"
    stale = "alpha-1.0-cp311-cp311-linux_armv6l.whl"
    (directory / stale).symlink_to("alpha-1.0-cp311-cp311-linux_armv7l.whl")
    (directory / f"{stale}.metadata").symlink_to("alpha-1.0-cp311-cp311-linux_armv7l.whl"
                                                 ".metadata")
    index.publish_project(conn, www, SITE, "alpha")
    assert not os.path.lexists(directory / stale)
    assert not os.path.lexists(directory / f"{stale}.metadata")
    conn.execute("UPDATE wheels SET armv6 = NULL "
                 "WHERE filename = 'alpha-1.0-cp39-cp39-linux_armv7l.whl'")  # unknown
    index.publish_project(conn, www, SITE, "alpha")
    assert not os.path.lexists(directory / "alpha-1.0-cp39-cp39-linux_armv6l.whl")
    (directory / stale).write_bytes(b"a real wheel of that name")
    index.publish_project(conn, www, SITE, "alpha")
    assert (directory / stale).read_bytes() == b"a real wheel of that name"


def test_parallel_rebuild_writes_the_same_tree(tmp_path):
    conn = catalogue.connect(tmp_path / "catalogue.db")
    make_catalogue(conn, tmp_path / "www")
    index.publish_all(conn, tmp_path / "www", SITE, processes=3)
    conn.close()
    assert tree(tmp_path / "www") == tree(GOLDEN)


def test_release_deleted_and_released_again_drops_the_old_build(published):
    conn, www = published
    apply_events(conn, [("Alpha", "1.1", "remove release"), ("Alpha", "1.1", "new release"),
                        ("Alpha", "1.1", "add source file alpha-1.1.tar.gz")],
                 serial0=3_000_000)
    index.publish_project(conn, www, SITE, "alpha")
    assert not list((www / "simple" / "alpha").glob("alpha-1.1-*"))
    assert not (www / "logs" / "alpha" / "1.1").exists()
    page = (www / "project" / "alpha" / "index.html").read_text()
    row = next(line for line in page.splitlines() if line.startswith("<tr><td>1.1"))
    assert row.count('class="pending"') == 2  # to be built again for both ABIs
