"""Per-job overhead of the build worker: everything except pip's own build.

    python bench/worker.py [--jobs 20] [--kind pure|zlib]

Queues `--jobs` builds of small sdists made here, runs one burst worker over them
(a real redis-server, the real intake over HTTP, real `pip wheel`), and splits
each job's wall time into pip's run and the rest: dequeue, fork, wheel
inspection, ELF scan, push and the intake's checks, rq's bookkeeping. Jobs run
one after another, so a job's wall time is the gap between its end and the
previous one's. Prints medians, and the overhead as a ratio of pip's own time."""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ingest import redis_server  # noqa: E402
from ingest.__main__ import main as ingest_main  # noqa: E402
from tests.sdists import c_sdist, pure_sdist, write_index  # noqa: E402
from tests.servers import serve  # noqa: E402

BACKENDS = ROOT / "tests" / ".cache" / "wheels"


def backend_wheels() -> list[Path]:
    if not any(BACKENDS.glob("setuptools-*.whl")):
        BACKENDS.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "--only-binary=:all:",
                        "--dest", str(BACKENDS), "setuptools", "wheel"], check=True)
    return sorted(BACKENDS.glob("*.whl"))


def prepare(tmp: Path, jobs: int, kind: str, redis_url: str) -> list[tuple[str, str]]:
    sources = tmp / "sources"
    sources.mkdir()
    releases = [(f"bench-{kind}-{i}", "1.0") for i in range(jobs)]
    make = (lambda d, n, v: c_sdist(d, n, v, link_zlib=True)) if kind == "zlib" else pure_sdist
    index = write_index(tmp / "upstream", [make(sources, n, v) for n, v in releases]
                        + backend_wheels())
    os.environ.update({
        "WHEELWRIGHT_DATA": str(tmp / "var"), "REDIS_URL": redis_url,
        "WHEELWRIGHT_WORKER_NAME": "bench", "WHEELWRIGHT_BUILD_INDEX_URL": index,
        "WHEELWRIGHT_BUILD_DIR": str(tmp / "builds"), "PIP_CONFIG_FILE": os.devnull,
    })
    for name in ("PIP_FIND_LINKS", "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "WHEELWRIGHT_ABIS",
                 "WHEELWRIGHT_WORKER_TOKENS", "WHEELWRIGHT_WORKER_TOKEN"):
        os.environ.pop(name, None)
    events = tmp / "events.jsonl"
    with events.open("w") as f:
        serial = 3_000_000
        for name, version in releases:
            for action in ("new release", f"add source file {name.replace('-', '_')}-1.0.tar.gz"):
                serial += 1
                f.write(json.dumps({"serial": serial, "timestamp": 1_700_000_000 + serial,
                                    "name": name, "version": version, "action": action}) + "\n")
    ingest_main(["replay", str(events)])
    return releases


def measure(jobs: int, kind: str) -> dict:
    from ingest import settings
    from publish.intake import Intake as IntakeApp
    from worker.interpreter import probe
    from worker.queues import SERIALIZER, AllowlistJob, build_job_id, connect
    from worker.runner import make_worker

    with tempfile.TemporaryDirectory(prefix="wheelwright-bench-") as tmpdir:
        tmp = Path(tmpdir)
        redis = redis_server.start(tmp / "redis" / "redis.sock")
        try:
            releases = prepare(tmp, jobs, kind, redis.url)
            server = serve(IntakeApp(settings.load()).app)
            os.environ["WHEELWRIGHT_INTAKE_URL"] = server.url
            config = settings.load()
            abi = probe(config.build_python).abi
            conn = connect(redis.url)
            worker = make_worker(conn, config, abi)
            started = time.time()
            worker.work(burst=True, with_scheduler=False, logging_level="WARNING")
            server.stop()
            fetched = [AllowlistJob.fetch(build_job_id(n, v, abi), connection=conn,
                                          serializer=SERIALIZER) for n, v in releases]
            done = [(j.ended_at, j.return_value()) for j in fetched if j.is_finished]
        finally:
            redis.stop()
    if len(done) < jobs or any(value["status"] != "success" for _, value in done):
        raise SystemExit(f"only {len(done)} of {jobs} jobs built")
    done.sort(key=lambda pair: pair[0])
    previous, rows = started, []
    for ended_at, value in done:
        ended = ended_at.replace(tzinfo=timezone.utc).timestamp()
        timings = value["timings"]
        wall = ended - previous
        previous = ended
        rows.append({"wall": wall, "pip": timings["pip"], "inspect": timings["inspect"],
                     "push": timings["push"], "overhead": wall - timings["pip"]})
    # The first job also pays the worker's start; it is left out of the medians.
    steady = rows[1:]
    return {key: statistics.median(r[key] for r in steady)
            for key in ("wall", "pip", "overhead", "inspect", "push")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=21, help="jobs per run (default 21: "
                        "the first, which pays the worker's start, is left out)")
    parser.add_argument("--kind", choices=("pure", "zlib"), default="pure",
                        help="pure Python, or a C extension linking zlib (ELF scan, dpkg)")
    args = parser.parse_args()
    result = measure(args.jobs, args.kind)
    print(f"{args.kind}: {args.jobs - 1} jobs, medians in seconds")
    for key, value in result.items():
        print(f"  {key:9} {value:7.3f}")
    print(f"  overhead / pip time = {result['overhead'] / result['pip']:.3f}"
          f"   (goal: overhead < 1 s)")


if __name__ == "__main__":
    main()
