"""Benchmark of publishing and serving the index.

    python bench/publish.py [--projects 100000] [--runs 3] [--seconds 10]
                            [--serving-only | --no-serving]

Generates a catalogue of PROJECTS projects with five wheels each (three releases,
armv7l for cp39 and cp311), then measures:
  - a full rebuild of www/ (`publish write`) into an empty directory, RUNS times:
    /simple/, the project pages, and the bullseye and bookworm indexes;
  - a rebuild of the last tree with nothing changed;
  - one-project incremental publishes (a summary changed) in ms;
  - requests/s for simple pages (pip's Accept header, keep-alive, wrk on loopback)
    from `publish serve` and from Debian's nginx with publish/nginx.conf, serving
    the same www/ in the same run.
With --serving-only, www/ is written once, untimed, and only the serving figures
are measured. Needs wrk and nginx (apt-get install wrk nginx). Prints the load average before each
measurement and one JSON summary at the end.

Each full rebuild writes into a new directory and the trees are deleted only at the
end: on ext4 without a journal (this machine's disk) the kernel skips inodes freed in
the last half minute or so when it allocates new ones, so creating files right after
deleting a few hundred thousand runs several times slower than on a quiet disk. That
would measure the previous run's cleanup, not the rebuild."""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ingest import catalogue  # noqa: E402
from publish import index  # noqa: E402
from publish.pages import Site  # noqa: E402

PIP_ACCEPT = ("application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html; "
              "q=0.1, text/html; q=0.01")
RELEASES = [("1.0", ("cp39", "cp311")), ("1.1", ("cp39", "cp311")), ("2.0", ("cp311",))]
SITE = Site(("cp39", "cp311"), "http://127.0.0.1:8080/", None)


def generate(conn, projects: int) -> None:
    key = 1 << 52
    rows = {"projects": [], "versions": [], "files": [], "builds": [], "wheels": [],
            "dependencies": []}
    for i in range(projects):
        name = f"project-{i:06d}"
        key += 1
        rows["projects"].append((name, name.replace("-", "_"), key, key, 0,
                                 f"Summary of project {i}"))
        for version, abis in RELEASES:
            rows["versions"].append((name, version, key, "2024-01-01T00:00:00Z", ">=3.7"))
            rows["files"].append((name, version, f"{name}-{version}.tar.gz", "source", key))
            for abi in abis:
                filename = f"project_{i:06d}-{version}-{abi}-{abi}-linux_armv7l.whl"
                rows["builds"].append((name, version, abi, "success", "pi", 10.0,
                                       "2024-01-02T00:00:00Z",
                                       f"logs/{name}/{version}/{abi}.txt.gz"))
                rows["wheels"].append((filename, name, version, abi, abi, abi, "linux_armv7l",
                                       123456, f"{i:064x}", ">=3.7", f"{i + 1:064x}",
                                       "2024-01-02T00:00:00Z", 1))  # runs on ARMv6
                rows["dependencies"] += [(filename, "apt", "libatlas3-base", 0),
                                         (filename, "apt", "libc6", 1),
                                         (filename, "pip", "numpy", 0)]
    conn.execute("BEGIN")
    conn.executemany("INSERT INTO projects (name, display_name, display_key, seen_key, "
                     "deleted_key, summary) VALUES (?, ?, ?, ?, ?, ?)", rows["projects"])
    conn.executemany("INSERT INTO versions (project, version, seen_key, released, "
                     "requires_python) VALUES (?, ?, ?, ?, ?)", rows["versions"])
    conn.executemany("INSERT INTO files (project, version, filename, kind, seen_key) "
                     "VALUES (?, ?, ?, ?, ?)", rows["files"])
    conn.executemany("INSERT INTO builds (project, version, abi, status, worker, duration, "
                     "built_at, log_path) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows["builds"])
    conn.executemany("INSERT INTO wheels (filename, project, version, builder_abi, "
                     "python_tag, abi_tag, platform_tag, size, sha256, requires_python, "
                     "metadata_sha256, uploaded_at, armv6) "
                     "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows["wheels"])
    conn.executemany("INSERT INTO dependencies VALUES (?, ?, ?, ?)", rows["dependencies"])
    conn.execute("COMMIT")


def full_rebuild(conn, www: Path, processes: int | None) -> float:
    """Seconds to write every page into `www`, which must not exist yet."""
    assert not www.exists(), www
    start = time.perf_counter()
    index.publish_all(conn, www, SITE, processes=processes)
    return time.perf_counter() - start


def load() -> float:
    """The one-minute load average: other work on the machine skews every figure."""
    return round(os.getloadavg()[0], 2)


def incremental(conn, www: Path, projects: int, runs: int = 50) -> list[float]:
    times = []
    for run in range(runs):
        name = f"project-{(run * 7919) % projects:06d}"
        conn.execute("UPDATE projects SET summary = ? WHERE name = ?", (f"changed {run}", name))
        start = time.perf_counter()
        index.publish_project(conn, www, SITE, name)
        times.append((time.perf_counter() - start) * 1000)
    return times


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(port: int, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if process.poll() is not None:
                raise RuntimeError("server exited") from None
            time.sleep(0.05)
    raise RuntimeError("server did not start")


def start_publish_serve(data: Path, processes: int) -> tuple[subprocess.Popen, int]:
    port = free_port()
    env = {**os.environ, "WHEELWRIGHT_DATA": str(data), "WHEELWRIGHT_WEB": f"127.0.0.1:{port}"}
    process = subprocess.Popen([sys.executable, "-m", "publish", "serve", "--processes",
                                str(processes)], cwd=ROOT, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(port, process)
    return process, port


def start_nginx(data: Path, www: Path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    nginx_dir = data / "nginx"
    (nginx_dir / "logs").mkdir(parents=True, exist_ok=True)
    if not (nginx_dir / "www").exists():
        (nginx_dir / "www").symlink_to(www)
    conf = (ROOT / "publish" / "nginx.conf").read_text()
    conf = conf.replace("/srv/wheelwright/var", str(nginx_dir))
    conf = conf.replace("listen 8080;", f"listen 127.0.0.1:{port};")
    conf = conf.replace("user www-data;", "user root;" if os.geteuid() == 0 else "")
    (nginx_dir / "nginx.conf").write_text(conf)
    process = subprocess.Popen(["nginx", "-c", str(nginx_dir / "nginx.conf"), "-g",
                                "daemon off;"], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    wait_for(port, process)
    return process, port


WRK_SCRIPT = """
local paths = {}
for i = 0, 999 do paths[#paths + 1] = string.format("/simple/project-%%06d/", i * %d) end
local n = 0
request = function()
  n = n + 1
  return wrk.format("GET", paths[(n %% #paths) + 1])
end
"""


def wrk(port: int, seconds: int, script: Path) -> float:
    out = subprocess.run(["wrk", "-t2", "-c32", f"-d{seconds}s", "-s", str(script),
                          "-H", f"Accept: {PIP_ACCEPT}", "-H", "User-Agent: bench/1",
                          f"http://127.0.0.1:{port}/"], capture_output=True, text=True,
                         check=True).stdout
    if "Non-2xx" in out:
        raise RuntimeError(f"errors while benchmarking:\n{out}")
    return float(next(line.split()[1] for line in out.splitlines()
                       if line.startswith("Requests/sec")))


def serving(data: Path, www: Path, args: argparse.Namespace) -> dict:
    """Requests/s from nginx and `publish serve` (1 and 2 processes), in turns,
    RUNS times each; medians and ratios to nginx."""
    script = data / "paths.lua"
    script.write_text(WRK_SCRIPT % max(1, args.projects // 1000))
    rates: dict[str, list[float]] = {"nginx": [], "serve-1": [], "serve-2": []}
    loads = []
    for _ in range(args.runs):
        for kind in rates:
            if kind == "nginx":
                process, port = start_nginx(data, www)
            else:
                process, port = start_publish_serve(data, int(kind[-1]))
            loads.append(load())
            try:
                rates[kind].append(wrk(port, args.seconds, script))
            finally:
                process.terminate()
                process.wait(30)
            print(f"{kind}: {rates[kind][-1]:,.0f} requests/s (load before {loads[-1]})",
                  flush=True)
    nginx = statistics.median(rates["nginx"])
    return {
        "nginx_rps": round(nginx),
        **{f"{k}_rps": round(statistics.median(v)) for k, v in rates.items() if k != "nginx"},
        **{f"{k}_vs_nginx": round(statistics.median(v) / nginx, 2)
           for k, v in rates.items() if k != "nginx"},
        "serving_runs_rps": {k: [round(r) for r in v] for k, v in rates.items()},
        "load_before_serving": loads,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--projects", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--processes", type=int,
                        help="processes for a rebuild (default: publish_all's choice)")
    parser.add_argument("--serving-only", action="store_true",
                        help="write www/ once, untimed, and measure only the serving")
    parser.add_argument("--no-serving", action="store_true",
                        help="measure the rebuilds and incremental publishes only")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="wheelwright-bench-") as tmp:
        data = Path(tmp)
        conn = catalogue.connect(data / "catalogue.db")
        start = time.perf_counter()
        generate(conn, args.projects)
        wheels = conn.execute("SELECT COUNT(*) FROM wheels").fetchone()[0]
        print(f"generated {args.projects:,} projects, {wheels:,} wheels in "
              f"{time.perf_counter() - start:.1f} s", flush=True)
        if args.serving_only:
            www = data / "www"
            index.publish_all(conn, www, SITE, processes=args.processes)
            summary = {"projects": args.projects, "wheels": wheels,
                       **serving(data, www, args)}
            print(json.dumps(summary, indent=1))
            return
        rebuilds, loads = [], []
        for run in range(args.runs):
            www = data / f"www-{run + 1}"
            loads.append(load())
            rebuilds.append(full_rebuild(conn, www, args.processes))
            print(f"full rebuild {run + 1}: {rebuilds[-1]:.1f} s "
                  f"({args.projects / rebuilds[-1]:,.0f} projects/s; load before "
                  f"{loads[-1]}, after {load()})", flush=True)
        www = www.rename(data / "www")  # where `publish serve` looks for it
        unchanged_load = load()
        start = time.perf_counter()
        index.publish_all(conn, www, SITE, processes=args.processes)
        unchanged = time.perf_counter() - start
        print(f"full rebuild with nothing changed: {unchanged:.1f} s (load before "
              f"{unchanged_load})", flush=True)
        increments = incremental(conn, www, args.projects)
        print(f"incremental publish: median {statistics.median(increments):.2f} ms",
              flush=True)
        summary = {
            "projects": args.projects, "wheels": wheels,
            "full_rebuild_s": round(statistics.median(rebuilds), 1),
            "full_rebuild_projects_per_s": round(args.projects / statistics.median(rebuilds)),
            "full_rebuild_runs_s": [round(r, 1) for r in rebuilds],
            "load_before_rebuilds": loads,
            "processes": args.processes or index.default_processes(args.projects),
            "unchanged_rebuild_s": round(unchanged, 1),
            "load_before_unchanged": unchanged_load,
            "incremental_ms": round(statistics.median(increments), 2),
            **({} if args.no_serving else serving(data, www, args)),
        }
        print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
