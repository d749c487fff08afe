"""Per-release indexes, /<codename>/simple/: what each lists, pushed through the real
intake over HTTP, published, and read by pip, uv and pypi-simple from `publish serve`
and from nginx with publish/nginx.conf, in both forms (PEP 503 HTML, PEP 691 JSON).

The fixture's pushes, for a farm building cp39 (bullseye) and cp311 (bookworm):
- ww-abi3: an abi3 name built by both with different bytes, then pushed again by
  cp311 with yet other bytes (a differing push, not another copy);
- ww-pure: a pure wheel built by both with different bytes;
- ww-shared: a pure wheel built by both with the same bytes;
- ww-only311: a pure and an abi3 wheel built by cp311 alone."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from pypi_simple import ACCEPT_HTML_ONLY, ACCEPT_JSON_ONLY, PyPISimple
from redis import Redis

from ingest import catalogue, settings
from ingest.coverage import TARGETS
from publish import index
from publish.intake import Intake
from publish.releases import CODENAMES
from publish.server import start_in_thread
from tests.publishing import apply_events, started_job, wheel_bytes
from tests.servers import NGINX_CONF, nginx_binary, serve, start_nginx

ABI3 = "ww_abi3-1.0-cp39-abi3-linux_armv7l.whl"
PURE = "ww_pure-1.0-py3-none-any.whl"
SHARED = "ww_shared-1.0-py3-none-any.whl"
ONLY_PURE = "ww_only311-1.0-py3-none-any.whl"
ONLY_ABI3 = "ww_only311-1.0-cp311-abi3-linux_armv7l.whl"
PROJECTS = ["ww-abi3", "ww-only311", "ww-pure", "ww-shared"]


def build(filename: str, requires_python: str) -> bytes:
    """A wheel whose bytes (and metadata) differ with requires_python, as two
    releases' builds of one name may."""
    name = filename.split("-")[0].replace("_", "-")
    return wheel_bytes(name, "1.0", filename, requires_python)[0]


# What each release's builder pushed, by name: the bytes each index must serve.
BULLSEYE = {ABI3: build(ABI3, ">=3.8"), PURE: build(PURE, ">=3.8"),
            SHARED: build(SHARED, ">=3.7")}
BOOKWORM = {ABI3: build(ABI3, ">=3.9"), PURE: build(PURE, ">=3.9"),
            SHARED: build(SHARED, ">=3.7"), ONLY_PURE: build(ONLY_PURE, ">=3.7"),
            ONLY_ABI3: build(ONLY_ABI3, ">=3.7")}
REPUSHED = build(ABI3, ">=3.10")  # cp311 again, bytes that did not reproduce
SERVED = {"bullseye": BULLSEYE, "bookworm": BOOKWORM}


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def push(url: str, token: str, redis: Redis, abi: str, files: dict[str, bytes]) -> dict:
    """One build's push, for the job a worker runs, as worker.push sends it."""
    project = next(iter(files)).split("-")[0].replace("_", "-")
    job_id = started_job(redis, project, "1.0", abi, worker="pi-1")
    report = {"project": project, "version": "1.0", "abi": abi, "status": "success",
              "duration": 1.0, "worker": "pi-1", "job_id": job_id,
              "files": [{"filename": name, "size": len(data), "sha256": sha(data),
                         "requires_python": None, "apt_dependencies": [],
                         "apt_preinstalled": [], "unresolved_sonames": [], "armv6": None}
                        for name, data in files.items()]}
    response = requests.post(
        url + "builds", headers={"Authorization": f"Bearer {token}"},
        files=[("report", ("r.json", json.dumps(report))), ("log", ("log", b"ok")),
               *(("wheel", (name, data)) for name, data in files.items())], timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


@dataclass
class Farm:
    config: settings.Settings
    www: Path
    answers: dict[str, dict]  # the intake's answer to each push, by label


@pytest.fixture(scope="module")
def farm(tmp_path_factory, redis_instance) -> Farm:
    data = tmp_path_factory.mktemp("releases")
    config = settings.load({"WHEELWRIGHT_DATA": str(data), "REDIS_URL": redis_instance.url,
                            "WHEELWRIGHT_WORKER_NAME": "pi-1",
                            "WHEELWRIGHT_ABIS": "cp39,cp311"})
    conn = catalogue.connect(config.catalogue_path)
    apply_events(conn, [(p, "1.0", a) for p in PROJECTS
                        for a in ("new release", f"add source file {p}-1.0.tar.gz")])
    redis = Redis.from_url(redis_instance.url)
    intake = serve(Intake(config).app)
    token = config.worker_tokens["pi-1"]
    answers = {}
    try:
        # The first builder of each shared name is bullseye's, but for ww-pure.
        answers["abi3 cp39"] = push(intake.url, token, redis, "cp39", {ABI3: BULLSEYE[ABI3]})
        answers["abi3 cp311"] = push(intake.url, token, redis, "cp311",
                                     {ABI3: BOOKWORM[ABI3]})
        answers["abi3 cp311 again"] = push(intake.url, token, redis, "cp311",
                                           {ABI3: REPUSHED})
        answers["pure cp311"] = push(intake.url, token, redis, "cp311", {PURE: BOOKWORM[PURE]})
        answers["pure cp39"] = push(intake.url, token, redis, "cp39", {PURE: BULLSEYE[PURE]})
        for abi, built in (("cp39", BULLSEYE), ("cp311", BOOKWORM)):
            answers[f"shared {abi}"] = push(intake.url, token, redis, abi,
                                            {SHARED: built[SHARED]})
        answers["only311"] = push(intake.url, token, redis, "cp311",
                                  {n: BOOKWORM[n] for n in (ONLY_PURE, ONLY_ABI3)})
    finally:
        intake.stop()
        redis.close()
    index.publish_all(conn, config.www_dir, index.site_of(config))
    conn.close()
    return Farm(config, config.www_dir, answers)


# --- what is listed where, read from www/ and the catalogue --------------------------

def listed(www: Path, codename: str | None, project: str) -> dict[str, dict]:
    """A project page's files (JSON form) by filename; {} when there is no page."""
    path = (www / "simple" / project / f"{codename}.json" if codename
            else www / "simple" / project / "index.json")
    if not path.exists():
        return {}
    return {f["filename"]: f for f in json.loads(path.read_text())["files"]}


def test_an_abi3_name_built_differently_is_in_each_release_index_and_not_in_simple(farm):
    assert ABI3 not in listed(farm.www, None, "ww-abi3")
    for codename, built in SERVED.items():
        files = listed(farm.www, codename, "ww-abi3")
        assert files[ABI3]["hashes"]["sha256"] == sha(built[ABI3])
    # bookworm's bytes are kept apart; bullseye's (the first) stay where they were.
    assert (farm.www / "bookworm" / "simple" / "ww-abi3" / ABI3).read_bytes() == BOOKWORM[ABI3]
    assert listed(farm.www, "bookworm", "ww-abi3")[ABI3]["url"] == ABI3
    assert listed(farm.www, "bullseye", "ww-abi3")[ABI3]["url"] == \
        f"../../../simple/ww-abi3/{ABI3}"
    assert (farm.www / "simple" / "ww-abi3" / ABI3).read_bytes() == BULLSEYE[ABI3]


def test_a_repush_by_the_same_abi_is_a_differing_push_not_a_copy(farm):
    assert farm.answers["abi3 cp311 again"]["differs"] == [
        {"filename": ABI3, "sha256": sha(REPUSHED), "served_sha256": sha(BOOKWORM[ABI3])}]
    with catalogue.connect(farm.config.catalogue_path) as conn:
        copies = conn.execute("SELECT builder_abi, sha256 FROM wheel_copies "
                              "WHERE filename = ?", (ABI3,)).fetchall()
        pushes = conn.execute("SELECT abi, sha256, served_sha256 FROM differing_pushes "
                              "WHERE filename = ?", (ABI3,)).fetchall()
    assert [tuple(r) for r in copies] == [("cp311", sha(BOOKWORM[ABI3]))]
    assert [tuple(r) for r in pushes] == [("cp311", sha(REPUSHED), sha(BOOKWORM[ABI3]))]


def test_the_same_bytes_share_one_file_listed_everywhere(farm):
    assert listed(farm.www, None, "ww-shared")[SHARED]["hashes"]["sha256"] == \
        sha(BOOKWORM[SHARED])
    for codename in SERVED:
        entry = listed(farm.www, codename, "ww-shared")[SHARED]
        assert entry["url"] == f"../../../simple/ww-shared/{SHARED}"
        assert entry["hashes"]["sha256"] == sha(BOOKWORM[SHARED])
    assert not (farm.www / "bookworm" / "simple" / "ww-shared").exists()
    assert not (farm.www / "bullseye" / "simple" / "ww-shared").exists()


def test_another_release_gets_pure_wheels_but_never_abi3_ones(farm):
    # No ELF code in these wheels: each armv7l one is listed under its armv6l name too.
    alias = ONLY_ABI3.replace("armv7l", "armv6l")
    assert sorted(listed(farm.www, "bookworm", "ww-only311")) == [alias, ONLY_ABI3, ONLY_PURE]
    assert sorted(listed(farm.www, "bullseye", "ww-only311")) == [ONLY_PURE]
    assert sorted(listed(farm.www, None, "ww-only311")) == [alias, ONLY_ABI3, ONLY_PURE]


def test_release_roots_list_what_their_indexes_hold(farm):
    for codename in SERVED:
        root = json.loads((farm.www / codename / "simple" / "index.json").read_text())
        assert [p["name"] for p in root["projects"]] == PROJECTS


def test_the_project_page_says_why_a_file_is_only_per_release(farm):
    page = (farm.www / "project" / "ww-abi3" / "index.html").read_text()
    assert sha(BULLSEYE[ABI3]) in page and sha(BOOKWORM[ABI3]) in page
    assert ">bullseye only</a>" in page and ">bookworm only</a>" in page
    assert 'id="per-release"' in page and "not in the <a" in page
    assert f'href="../../bookworm/simple/ww-abi3/{ABI3}"' in page
    assert "pip3 install --extra-index-url http://" in page
    shared = (farm.www / "project" / "ww-shared" / "index.html").read_text()
    assert "only</a>" not in shared and 'id="per-release"' not in shared


def test_the_home_page_has_a_pip_conf_per_release(farm):
    home = (farm.www / "index.html").read_text()
    for codename in SERVED:
        assert f"extra-index-url = {farm.config.public_url}{codename}/simple/</pre>" in home


def test_nginx_conf_names_the_releases_of_the_targets():
    """nginx.conf cannot import TARGETS: every list of codenames in it must be theirs."""
    codenames = {t.codename for t in TARGETS.values()}
    assert set(CODENAMES) == codenames
    found = re.findall(r"\((?:\?:)?((?:[a-z]+\|)+[a-z]+)\)", NGINX_CONF.read_text())
    lists = [set(f.split("|")) for f in found if set(f.split("|")) & codenames]
    assert len(lists) >= 5 and all(names == codenames for names in lists), lists


# --- the same, over HTTP, from both servers --------------------------------------------

@dataclass
class Served:
    url: str  # ends in /
    stop: object


@pytest.fixture(scope="module", params=["publish-serve",
                                        pytest.param("nginx", marks=pytest.mark.nginx)])
def served(request, farm, tmp_path_factory):
    data = tmp_path_factory.mktemp(request.param)
    if request.param == "nginx":
        if nginx_binary() is None:
            pytest.skip("nginx is not installed")
        (data / "www").symlink_to(farm.www)
        nginx = start_nginx(data)
        yield Served(nginx.url, nginx.stop)
        nginx.stop()
    else:
        web = start_in_thread(farm.www, data / "access.log")
        yield Served(web.url, web.stop)
        web.stop()


def html_only(upstream: str):
    """A proxy that asks `upstream` for HTML whatever the client accepts: pip and uv
    both prefer JSON, and the HTML pages must install as well."""

    def app(environ, start_response):
        path = environ.get("PATH_INFO", "/")
        if environ.get("QUERY_STRING"):
            path += "?" + environ["QUERY_STRING"]
        answer = requests.get(upstream.rstrip("/") + path, allow_redirects=False,
                              headers={"Accept": "text/html"}, timeout=30)
        headers = [(k, v) for k, v in answer.headers.items()
                   if k.lower() in ("content-type", "location", "etag", "last-modified")]
        start_response(f"{answer.status_code} {answer.reason}", headers)
        return [answer.content]

    return app


@pytest.fixture(params=["json", "html"])
def index_root(request, served):
    """The served root in one form: JSON as pip and uv ask, or HTML only."""
    if request.param == "json":
        yield served.url
        return
    proxy = serve(html_only(served.url))
    page = requests.get(f"{proxy.url}bookworm/simple/ww-pure/", timeout=10)
    assert page.headers["Content-Type"].startswith("text/html"), page.headers
    yield proxy.url
    proxy.stop()


def client_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "UV_"))}
    env.update(PIP_CONFIG_FILE="/dev/null", PIP_NO_CACHE_DIR="1", UV_NO_CONFIG="1",
               UV_CACHE_DIR=str(tmp_path / "uv-cache"), UV_NO_PROGRESS="1")
    return env


@pytest.mark.parametrize("codename", list(SERVED))
def test_pip_installs_each_release_s_own_bytes(index_root, codename, tmp_path):
    report = tmp_path / "report.json"
    target = tmp_path / "target"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--target",
                    str(target), "--report", str(report), "--index-url",
                    f"{index_root}{codename}/simple/", "ww-pure"], check=True,
                   env=client_env(tmp_path), timeout=120)
    [item] = json.loads(report.read_text())["install"]
    assert item["download_info"]["archive_info"]["hashes"]["sha256"] == \
        sha(SERVED[codename][PURE])
    out = subprocess.run([sys.executable, "-c", "import ww_pure; print(ww_pure.VALUE)"],
                         cwd=target, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "1.0"


def test_uv_installs_each_release_s_own_bytes(index_root, tmp_path):
    uv = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")
    if uv is None:
        pytest.skip("uv is not installed (tests/requirements.txt)")
    for codename, built in SERVED.items():
        target = tmp_path / codename
        subprocess.run([uv, "pip", "install", "--quiet", "--no-config", "--python",
                        sys.executable, "--target", str(target), "--index-url",
                        f"{index_root}{codename}/simple/", "ww-pure"], check=True,
                       env=client_env(tmp_path), timeout=120)
        metadata = (target / "ww_pure-1.0.dist-info" / "METADATA").read_text()
        wanted = re.search(r"Requires-Python: (.*)", built[PURE].decode("latin-1"))
        assert f"Requires-Python: {wanted[1].strip()}" in metadata


def test_pypi_simple_reads_each_release_alike_in_both_forms(served):
    for codename, built in SERVED.items():
        endpoint = f"{served.url}{codename}/simple/"
        with PyPISimple(endpoint=endpoint, accept=ACCEPT_JSON_ONLY) as as_json, \
                PyPISimple(endpoint=endpoint, accept=ACCEPT_HTML_ONLY) as as_html:
            assert as_json.get_index_page().projects == PROJECTS
            assert as_html.get_index_page().projects == PROJECTS
            json_page = as_json.get_project_page("ww-abi3")
            html_page = as_html.get_project_page("ww-abi3")
            for page in (json_page, html_page):
                by_name = {p.filename: p for p in page.packages}
                assert by_name[ABI3].digests["sha256"] == sha(built[ABI3])
                for package in page.packages:  # the files themselves, aliases too
                    data = requests.get(package.url, timeout=30).content
                    assert sha(data) == package.digests["sha256"]
                    assert as_json.get_package_metadata(package).startswith(
                        "Metadata-Version")
    with PyPISimple(endpoint=served.url + "simple/", accept=ACCEPT_JSON_ONLY) as union:
        assert ABI3 not in {p.filename for p in union.get_project_page("ww-abi3").packages}


def test_release_paths_are_negotiated_and_canonical(served):
    base = served.url + "bookworm/simple/"
    page = requests.get(base + "ww-abi3/", headers={"Accept": "text/html"}, timeout=10)
    assert page.status_code == 200 and page.headers["Vary"] == "Accept"
    assert page.headers["Content-Type"].startswith("text/html")
    page = requests.get(base + "ww-abi3/", timeout=10,
                        headers={"Accept": "application/vnd.pypi.simple.v1+json"})
    assert page.headers["Content-Type"] == "application/vnd.pypi.simple.v1+json"
    assert requests.get(base + "ww-abi3/", headers={"Accept": "image/png"},
                        timeout=10).status_code == 406
    for asked, location in (("WW_Abi3/", "/bookworm/simple/ww-abi3/"),
                            ("ww-abi3", "/bookworm/simple/ww-abi3/"),
                            ("Ww.Abi3", "/bookworm/simple/ww-abi3/")):
        # nginx fixes one occurrence per redirect: "WW" takes two.
        assert requests.get(base + asked, allow_redirects=False,
                            timeout=10).status_code == 301, asked
        final = requests.get(base + asked, timeout=10)
        assert final.status_code == 200 and final.url.endswith(location), asked
    assert requests.get(base + "no-such-project/", timeout=10).status_code == 404
    assert requests.get(base + "no-such-project", timeout=10).status_code == 404
    root = requests.get(base, headers={"Accept": "application/vnd.pypi.simple.v1+json"},
                        timeout=10)
    assert [p["name"] for p in root.json()["projects"]] == PROJECTS


# --- incremental publishing -----------------------------------------------------------

def test_publishing_one_project_keeps_release_roots_in_step(tmp_path):
    from publish.pages import Site
    from tests.publishing import make_catalogue

    site = Site(abis=("cp311", "cp39"), public_url="http://pi.example/", pypi_url=None)
    conn = catalogue.connect(tmp_path / "catalogue.db")
    www = tmp_path / "www"
    make_catalogue(conn, www)
    index.publish_all(conn, www, site)

    def root(codename: str) -> list[str]:
        text = (www / codename / "simple" / "index.json").read_text()
        return [p["name"] for p in json.loads(text)["projects"]]

    assert root("bullseye") == ["alpha", "beta-lib"]  # beta-lib: pure, built by cp311
    apply_events(conn, [("beta_lib", "0.1", "remove release")], serial0=3_000_000)
    outcome = index.publish_project(conn, www, site, "beta-lib")
    assert outcome.root_written
    assert root("bullseye") == root("bookworm") == ["alpha"]
    assert not (www / "simple" / "beta-lib" / "bookworm.html").exists()
    assert not (www / "simple" / "beta-lib" / "bullseye.json").exists()
    before = {p: p.stat().st_mtime_ns for p in www.rglob("index.json")}
    index.publish_all(conn, www, site)  # a rebuild finds nothing to change
    assert {p: p.stat().st_mtime_ns for p in www.rglob("index.json")} == before
    conn.close()


def test_json_pages_are_the_encoder_s_bytes():
    """project_json builds its text from strings: the same bytes as the encoder's
    for the dict of each file, whatever strangers put in names and reasons."""
    from publish import simple
    from publish.releases import Project, Release

    odd = ['plain', 'quo"te', 'back\\slash', 'new\nline', 'tab\t', 'ünï\u2028', '\x00\x1f',
           '<b>&amp;</b>', '']
    files = [simple.Listed(f"x-{i}-py3-none-any.whl", "ab" * 32, i, text or "t",
                           text or None, yanked, "cd" * 32 if i % 2 else None,
                           base="../../../simple/x/" if i % 3 else "")
             for i, text in enumerate(odd) for yanked in (None, "", text)]
    project = Project("x", "X", None, None, [Release("1.0", None, None, None, None, False,
                                                     wheels=[object()])])
    expected = simple.COMPACT_JSON.encode({
        "meta": {"api-version": simple.API_VERSION}, "name": "x", "versions": ["1.0"],
        "files": [simple._file_json(f) for f in files]}) + "\n"
    assert simple.project_json(project, files) == expected


def test_a_copy_goes_with_its_release(tmp_path):
    """Another release's bytes of a pure name: listed in its index alone, beside the
    page; when the release is deleted, its file and row go with the first build's."""
    from publish.pages import Site
    from tests.publishing import make_catalogue

    site = Site(abis=("cp311", "cp39"), public_url="http://pi.example/", pypi_url=None)
    conn = catalogue.connect(tmp_path / "catalogue.db")
    www = tmp_path / "www"
    make_catalogue(conn, www)
    name = "beta_lib-0.1-py3-none-any.whl"  # built by cp311 in the fixture
    data = build(name, ">=3.6")
    copy = www / "bullseye" / "simple" / "beta-lib" / name
    copy.parent.mkdir(parents=True)
    copy.write_bytes(data)
    conn.execute("INSERT INTO builds (project, version, abi, status, built_at) "
                 "VALUES ('beta-lib', '0.1', 'cp39', 'success', '2024-02-01T00:00:00Z')")
    conn.execute("INSERT INTO wheel_copies (filename, builder_abi, project, version, size, "
                 "sha256, uploaded_at) VALUES (?, 'cp39', 'beta-lib', '0.1', ?, ?, "
                 "'2024-02-01T00:00:00Z')", (name, len(data), sha(data)))
    index.publish_all(conn, www, site)
    assert listed(www, None, "beta-lib") == {}
    assert listed(www, "bullseye", "beta-lib")[name]["url"] == name
    assert listed(www, "bullseye", "beta-lib")[name]["hashes"]["sha256"] == sha(data)
    assert listed(www, "bookworm", "beta-lib")[name]["url"] == f"../../../simple/beta-lib/{name}"
    page = (www / "project" / "beta-lib" / "index.html").read_text()
    assert ">bullseye only</a>" in page and ">bookworm only</a>" in page
    apply_events(conn, [("beta_lib", "0.1", "remove release")], serial0=3_000_000)
    index.publish_project(conn, www, site, "beta-lib")
    assert not copy.exists() and not (www / "simple" / "beta-lib" / name).exists()
    assert conn.execute("SELECT COUNT(*) FROM wheel_copies").fetchone()[0] == 0
    conn.close()
