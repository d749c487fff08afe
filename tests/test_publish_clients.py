"""Real clients against the served index: pip, uv and pypi-simple read what the
intake received over HTTP and the publisher wrote, from `publish serve` and from
Debian's nginx with the shipped nginx.conf."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from pypi_simple import ACCEPT_HTML_ONLY, ACCEPT_JSON_ONLY, PyPISimple
from redis import Redis

from ingest import catalogue, settings
from publish import index
from publish.intake import Intake
from publish.server import start_in_thread
from tests.publishing import apply_events, started_job, wheel_bytes
from tests.servers import nginx_binary, serve, start_nginx

PROJECT = "ww-demo"
RELEASES = {  # version: Requires-Python
    "1.0": ">=3.7",
    "1.1": ">=3.7",  # yanked
    "2.0": ">=3.99",  # no Python we run may pick it (uv ignores upper bounds)
    "2.1rc1": ">=3.7",  # a pre-release
}


def filename(version: str) -> str:
    return f"ww_demo-{version}-py3-none-any.whl"


@pytest.fixture(scope="module")
def www(tmp_path_factory, redis_instance):
    """www/ holding ww-demo's releases, each pushed through a real intake."""
    data = tmp_path_factory.mktemp("clients")
    config = settings.load({"WHEELWRIGHT_DATA": str(data), "REDIS_URL": redis_instance.url,
                            "WHEELWRIGHT_WORKER_NAME": "pi-1", "WHEELWRIGHT_ABIS": "cp311"})
    conn = catalogue.connect(config.catalogue_path)
    events = [(PROJECT, v, action) for v in RELEASES
              for action in ("new release", f"add source file ww_demo-{v}.tar.gz")]
    apply_events(conn, [*events, (PROJECT, "1.1", "yank release")])
    intake = serve(Intake(config).app)
    try:
        for version, requires_python in RELEASES.items():
            wheel, _ = wheel_bytes(PROJECT, version, filename(version), requires_python)
            job_id = started_job(Redis.from_url(redis_instance.url), PROJECT, version,
                                 "cp311", worker="pi-1")
            report = {"project": PROJECT, "version": version, "abi": "cp311",
                      "status": "success", "duration": 1.0, "worker": "pi-1",
                      "job_id": job_id,
                      "files": [{"filename": filename(version), "size": len(wheel),
                                 "sha256": __import__("hashlib").sha256(wheel).hexdigest(),
                                 "requires_python": requires_python,
                                 "apt_dependencies": [], "apt_preinstalled": [],
                                 "unresolved_sonames": [], "armv6": True}]}
            response = requests.post(
                intake.url + "builds",
                headers={"Authorization": f"Bearer {config.worker_tokens['pi-1']}"},
                files=[("report", ("r.json", json.dumps(report))),
                       ("log", ("log", b"ok")), ("wheel", (filename(version), wheel))],
                timeout=30)
            assert response.status_code == 200, response.text
    finally:
        intake.stop()
    index.publish_all(conn, config.www_dir, index.site_of(config))
    conn.close()
    return config.www_dir


@dataclass
class Served:
    url: str  # ends in /
    access_log: Path
    stop: object

    @property
    def index_url(self) -> str:
        return self.url + "simple/"

    def log_lines(self) -> list[str]:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # both servers write their log within a second
            if self.access_log.exists() and self.access_log.read_text():
                return self.access_log.read_text().splitlines()
            time.sleep(0.05)
        return []


def _nginx_or_skip() -> None:
    """nginx, installed from Debian's packages when we may (root, apt-get, and
    WHEELWRIGHT_NO_APT unset); the test is skipped when neither."""
    if nginx_binary():
        return
    if os.geteuid() == 0 and shutil.which("apt-get") and not os.environ.get("WHEELWRIGHT_NO_APT"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update"], env=env, capture_output=True, timeout=300)
        subprocess.run(["apt-get", "install", "-y", "nginx"], env=env, capture_output=True,
                       timeout=600)
    if not nginx_binary():
        pytest.skip("nginx is not installed and cannot be installed here")


def serve_with_nginx(www: Path, data: Path) -> Served:
    _nginx_or_skip()
    (data / "www").symlink_to(www)
    nginx = start_nginx(data)
    return Served(nginx.url, data / "logs" / "access.log", nginx.stop)


@pytest.fixture(scope="module", params=["publish-serve",
                                        pytest.param("nginx", marks=pytest.mark.nginx)])
def served(request, www, tmp_path_factory):
    data = tmp_path_factory.mktemp(request.param)
    if request.param == "nginx":
        server = serve_with_nginx(www, data)
    else:
        web = start_in_thread(www, data / "logs" / "access.log")
        server = Served(web.url, data / "logs" / "access.log", web.stop)
    yield server
    server.stop()


def client_env(tmp_path: Path) -> dict[str, str]:
    """No configuration, no cache, no other index: only the one under test."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "UV_"))}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_NO_CACHE_DIR="1", UV_NO_CONFIG="1",
               UV_CACHE_DIR=str(tmp_path / "uv-cache"), UV_NO_PROGRESS="1")
    return env


def pip_resolves(served: Served, tmp_path: Path, requirement: str) -> str:
    """The version of ww-demo pip picks, resolved without downloading a wheel."""
    report = tmp_path / "report.json"
    subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed",
                    "--quiet", "--report", str(report), "--index-url", served.index_url,
                    requirement], check=True, env=client_env(tmp_path), timeout=120)
    [item] = json.loads(report.read_text())["install"]
    return item["metadata"]["version"]


def test_pip_installs_and_imports(served, tmp_path):
    target = tmp_path / "target"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--target", str(target),
                    "--index-url", served.index_url, PROJECT], check=True,
                   env=client_env(tmp_path), timeout=120)
    out = subprocess.run([sys.executable, "-c", "import ww_demo; print(ww_demo.VALUE)"],
                         cwd=target, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "1.0"


def test_pip_skips_yanked_prerelease_and_python_mismatch(served, tmp_path):
    # 2.1rc1 is a pre-release, 2.0 wants Python 3.99, 1.1 is yanked: 1.0 is left.
    assert pip_resolves(served, tmp_path, PROJECT) == "1.0"
    assert pip_resolves(served, tmp_path, f"{PROJECT}==1.1") == "1.1"  # pinned: allowed
    assert pip_resolves(served, tmp_path, f"{PROJECT}>=2.0.dev0") == "2.1rc1"  # never 2.0
    result = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--index-url",
         served.index_url, f"{PROJECT}==2.0"], env=client_env(tmp_path),
        capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and "Requires-Python" in result.stdout + result.stderr


def test_pip_fetches_core_metadata(served, tmp_path):
    pip_resolves(served, tmp_path, f"{PROJECT}==1.0")
    lines = served.log_lines()
    metadata = f'"GET /simple/{PROJECT}/{filename("1.0")}.metadata HTTP/1.1" 200'
    assert any(metadata in line and '"pip/' in line for line in lines), lines[-5:]


def test_uv_installs_the_same(served, tmp_path):
    uv = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")
    if uv is None:
        pytest.skip("uv is not installed (tests/requirements.txt)")
    target = tmp_path / "uv-target"
    subprocess.run([uv, "pip", "install", "--quiet", "--python", sys.executable, "--target",
                    str(target), "--index-url", served.index_url, PROJECT], check=True,
                   env=client_env(tmp_path), timeout=120)
    assert [p.name for p in target.glob("*.dist-info")] == ["ww_demo-1.0.dist-info"]


def _packages(page) -> list[tuple]:
    # "Yanked, no reason given" is data-yanked="" in HTML and true in JSON, which
    # pypi-simple reports as "" and None: the same fact.
    return sorted((p.filename, p.url, p.version, p.digests, p.requires_python, p.is_yanked,
                   p.yanked_reason or None, p.has_metadata, p.metadata_digests)
                  for p in page.packages)


def test_pypi_simple_reads_html_and_json_alike(served, www):
    with PyPISimple(endpoint=served.index_url, accept=ACCEPT_JSON_ONLY) as as_json, \
            PyPISimple(endpoint=served.index_url, accept=ACCEPT_HTML_ONLY) as as_html:
        assert as_json.get_index_page().projects == as_html.get_index_page().projects
        assert as_json.get_index_page().projects == [PROJECT]
        json_page = as_json.get_project_page(PROJECT)
        html_page = as_html.get_project_page(PROJECT)
        assert _packages(json_page) == _packages(html_page)
        assert json_page.repository_version == html_page.repository_version == "1.1"
        assert {p.filename: p.is_yanked for p in json_page.packages}[filename("1.1")]
        assert all(p.size and p.upload_time for p in json_page.packages)
        assert sorted(json_page.versions) == sorted(RELEASES)
        for package in json_page.packages:
            assert as_json.get_package_metadata(package).startswith("Metadata-Version")
