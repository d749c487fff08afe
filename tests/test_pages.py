"""The pages people read come from Jinja2 templates with autoescape on: whatever a
stranger wrote reaches the HTML as text, never as markup, whichever field it is in."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
import tempfile
from html.parser import HTMLParser
from pathlib import Path

import pytest

from publish import pages
from publish.releases import Build, Project, Release, Wheel
from stats.downloads import Downloads

HOSTILE = '<script>alert("x")</script> & "quoted"'

SITE = pages.Site(abis=("cp311", "cp39"), public_url="http://pi.example/",
                  pypi_url="http://upstream.example")

# Every tag and attribute the templates write. Anything else in a page came from data.
TAGS = {"html", "head", "meta", "title", "link", "body", "header", "a", "h1", "h2", "p",
        "pre", "code", "table", "tr", "th", "td", "span", "form", "label", "input",
        "button", "datalist", "noscript", "script", "img", "strong"}
ATTRIBUTES = {"lang", "charset", "name", "content", "rel", "href", "class", "title",
              "action", "method", "id", "hidden", "type", "list", "autocomplete",
              "src", "alt"}


class Tags(HTMLParser):
    """The tags and attribute names of a page, as a browser's tokenizer sees them."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.attributes: set[str] = set()
        self.scripts = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attributes.update(name for name, _ in attrs)
        self.scripts += tag == "script"


def parsed(page: str) -> Tags:
    tags = Tags()
    tags.feed(page)
    tags.close()
    return tags


def hostile_project() -> Project:
    """A project with the hostile text in every field a page shows."""
    wheel = Wheel(
        filename=f"{HOSTILE}-1.0-cp311-cp311-linux_armv7l.whl", version=HOSTILE,
        builder_abi="cp311", python_tag="cp311", abi_tag="cp311",
        platform_tag="linux_armv7l", size=2048, sha256="ab" * 32, requires_python=None,
        metadata_sha256=None, uploaded_at="2024-01-02T00:00:00Z",
        apt=[f"apt {HOSTILE}"], apt_preinstalled=[f"pre {HOSTILE}"],
        pip=[f"pip {HOSTILE}"], unresolved_sonames=[f"so {HOSTILE}"])
    built = Release(version=HOSTILE, released="2024-01-01T00:00:00Z", requires_python=None,
                    yank_reason=f"yanked {HOSTILE}", skip_reason=None, yanked=True,
                    has_source=True, wheels=[wheel],
                    builds={"cp311": Build(HOSTILE, "cp311", "success", 1.0,
                                           "2024-01-02T00:00:00Z", f"logs/{HOSTILE}.txt.gz")})
    skipped = Release(version="0.9", released=None, requires_python=None, yank_reason=None,
                      skip_reason=f"skipped {HOSTILE}", yanked=False)
    return Project(name=f"name {HOSTILE}", display_name=f"display {HOSTILE}",
                   summary=f"summary {HOSTILE}", skip_reason=None,
                   releases=[built, skipped])


def test_the_environment_escapes_every_template():
    assert pages.ENV.autoescape is True
    for name in pages.ENV.list_templates():
        source = (Path(pages.__file__).parent / "templates" / name).read_text()
        # Ways a template edit could let a field through unescaped.
        for bypass in ("|safe", "| safe", "autoescape false", "Markup"):
            assert bypass not in source, (name, bypass)
    for template in (pages.BASE, pages.PROJECT_PAGE, pages.HOME_PAGE, pages.FEED,
                     pages.BADGE):
        assert template.environment is pages.ENV
    rendered = pages.ENV.from_string("{{ x }}").render(x=HOSTILE)
    assert rendered == "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; &#34;quoted&#34;"


def test_project_page_escapes_every_field():
    page = pages.project_page(SITE, hostile_project())
    assert "<script" not in page
    tags = parsed(page)
    assert set(tags.tags) <= TAGS and tags.scripts == 0
    assert tags.attributes <= ATTRIBUTES
    # Each field is there, escaped as html.escape writes it (the published bytes).
    for text in (f"display {HOSTILE}", f"summary {HOSTILE}", HOSTILE, f"yanked {HOSTILE}",
                 f"skipped {HOSTILE}", f"apt {HOSTILE}", f"pre {HOSTILE}", f"pip {HOSTILE}",
                 f"so {HOSTILE}", f"{HOSTILE}-1.0-cp311-cp311-linux_armv7l.whl"):
        assert html.escape(text) in page, text
    assert "&#34;" not in page and "&#39;" not in page
    # URLs are quoted, not only escaped: no space, quote or angle bracket in an href.
    assert 'href="../../logs/%3Cscript%3Ealert%28%22x%22%29%3C/script%3E%20%26%20' in page
    assert "simple/name &lt;script&gt;" in page  # a name never valid, still inert


def test_home_page_escapes_recent_builds():
    recent = [pages.RecentBuild(project="ok", display_name=f"display {HOSTILE}",
                                version=HOSTILE, abi=f"abi {HOSTILE}", status="failed",
                                built_at="2024-01-02T00:00:00Z")]
    totals = pages.Totals(projects=1234, releases_built=1, wheels=2, wheel_bytes=4096,
                          builds_succeeded=0, builds_failed=1)
    page = pages.home_page(SITE, totals, recent)
    tags = parsed(page)
    assert set(tags.tags) <= TAGS and tags.attributes <= ATTRIBUTES
    assert tags.scripts == 1 and "<script>alert" not in page  # only the search script
    for text in (f"display {HOSTILE}", HOSTILE, f"abi {HOSTILE}"):
        assert html.escape(text) in page, text
    assert "<tr><td>1,234</td><td>projects</td></tr>" in page
    assert "wheels (4.0 KiB)" in page


@pytest.mark.parametrize("text", ["&#34;", "&#39;", "a &#34;b&#34; c"])
def test_text_that_looks_like_an_entity_stays_text(text):
    """The pages turn MarkupSafe's &#34; and &#39; into &quot; and &#x27;: text a
    stranger wrote in that form must still come out as the same text."""
    project = Project(name="x", display_name=text, summary=text, skip_reason=None)
    page = pages.project_page(SITE, project)
    assert f'<p class="summary">{html.escape(text)}</p>' in page
    assert html.unescape(html.escape(text)) == text


def test_downloads_line_says_the_day_or_is_left_out():
    project = hostile_project()
    assert "Downloads:" not in pages.project_page(SITE, project)
    shown = Downloads(last_30_days=1234, all_time=98765, as_of="2025-02-03")
    page = pages.project_page(SITE, project, downloads=shown)
    assert ('<p class="downloads">Downloads: <strong>1,234</strong> in the last 30 days, '
            '<strong>98,765</strong> in all, as of 2025-02-03 (UTC)</p>') in page
    data = json.loads(pages.project_json(SITE, project, shown))
    assert (data["downloads_recent"], data["downloads_all"], data["downloads_as_of"]) == (
        1234, 98765, "2025-02-03")
    assert "downloads_all" not in json.loads(pages.project_json(SITE, project))


def test_packages_json_is_ranked_by_downloads():
    rows = [pages.SearchRow("b", "bee", Downloads(5, 10, "2025-01-01")),
            pages.SearchRow("a", None, None),
            pages.SearchRow("c", "sea", Downloads(5, 20, "2025-01-01")),
            pages.SearchRow("d", HOSTILE, Downloads(0, 1, "2025-01-01"))]
    # name, 30 days, all time, summary: nothing else (no always-empty column)
    assert json.loads(pages.packages_json(rows)) == [
        ["c", 5, 20, "sea"], ["b", 5, 10, "bee"], ["d", 0, 1, HOSTILE], ["a", 0, 0, ""]]


# What a test page beside the home page does in Chromium: type into the home page's
# search box (in a frame, as a person's keystroke would: the value, then an "input"
# event) until the suggestions come, and write down their order.
TYPIST = """<!DOCTYPE html>
<html><body><pre id="out"></pre><iframe id="home" src="index.html"></iframe>
<script>
var frame = document.getElementById("home");
function type() {
  var doc = frame.contentDocument, input = doc && doc.querySelector("#search input");
  if (input) {
    input.value = %s;
    input.dispatchEvent(new Event("input"));
    var options = doc.querySelectorAll("#names option");
    if (options.length) {
      document.getElementById("out").textContent = JSON.stringify(
        Array.prototype.map.call(options, function (o) { return o.value; }));
      return;
    }
  }
  setTimeout(type, 20);  // packages.json not fetched yet
}
frame.addEventListener("load", type);
</script></body></html>
"""


def suggestions(www: Path, typed: str) -> list[str]:
    """The names the home page's search offers for `typed`, in real headless Chromium
    running the real search.js against the served packages.json."""
    from publish.screenshot import CHROMIUM_FLAGS, chromium
    from publish.server import start_in_thread

    (www / "typist.html").write_text(TYPIST % json.dumps(typed))
    server = start_in_thread(www, access_log=None)
    try:
        with tempfile.TemporaryDirectory(prefix="wheelwright-chromium-") as profile:
            result = subprocess.run(
                [chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
                 "--virtual-time-budget=10000", "--dump-dom", f"{server.url}typist.html"],
                capture_output=True, text=True, timeout=120, check=False)
    finally:
        server.stop()
    found = re.search(r'<pre id="out">(.*?)</pre>', result.stdout, re.S)
    assert found and found.group(1), f"no suggestions came: {result.stderr[-2000:]}"
    return json.loads(html.unescape(found.group(1)))


@pytest.mark.skipif(not (shutil.which("chromium") or shutil.which("chromium-browser")),
                    reason="Debian's chromium package is not installed")
def test_search_offers_the_exact_name_then_the_most_downloaded_first(tmp_path):
    www = tmp_path / "www"
    www.mkdir()
    figures = {"numpy-aaa": 1, "numpy": 5, "numpyro": 50, "numpy-zzz": 100, "scipy": 1000}
    rows = [pages.SearchRow(name, None, Downloads(recent, recent, "2025-01-01"))
            for name, recent in figures.items()]
    # More matches than are offered, never downloaded, named to sort first.
    rows += [pages.SearchRow(f"numpy-a{i:02d}", None, None) for i in range(30)]
    (www / "packages.json").write_text(pages.packages_json(rows))
    totals = pages.Totals(len(rows), 0, 0, 0, 0, 0)
    (www / "index.html").write_text(pages.home_page(SITE, totals, []))

    offered = suggestions(www, "NumPy")  # as typed, not as canonical
    assert offered[:4] == ["numpy", "numpy-zzz", "numpyro", "numpy-aaa"]
    assert offered[4:] == [f"numpy-a{i:02d}" for i in range(16)]  # 20 at most
    # The exact name first even when it is not among the 20 most downloaded matches.
    assert suggestions(www, "numpy-a00") == ["numpy-a00"]
    assert suggestions(www, "nump")[:3] == ["numpy-zzz", "numpyro", "numpy"]
