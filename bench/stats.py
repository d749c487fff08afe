"""Benchmark: access log lines into stats.db.

    python bench/stats.py [--lines 1000000] [--runs 3]

Generates a log in the Combined Log Format with a realistic mix of clients (pip of
several versions on several Raspberry Pi OS releases, uv, browsers, bots, a few
malformed lines; mostly wheel downloads and simple-page searches), then loads it into
a fresh stats.db with `stats.loader`, and in the same run with the naive baseline:
every line's user agent parsed by linehaul, every row inserted on its own with
sqlite-utils. Each runs in a child process of its own; prints lines/s, lines per
CPU-second (the loader's writer process included) and peak RSS (the writer's apart).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

RELEASES = [  # (distro name, version, id, glibc, python, cpu, kernel)
    ("Raspbian GNU/Linux", "10", "buster", "2.28", "3.7.3", "armv7l", "5.10.103-v7l+"),
    ("Raspbian GNU/Linux", "11", "bullseye", "2.31", "3.9.2", "armv7l", "6.1.21-v7+"),
    ("Raspbian GNU/Linux", "12", "bookworm", "2.36", "3.11.2", "armv7l", "6.6.51+rpt-rpi-v7"),
    ("Debian GNU/Linux", "12", "bookworm", "2.36", "3.11.2", "aarch64", "6.6.51+rpt-rpi-v8"),
    ("Raspbian GNU/Linux", "9", "stretch", "2.24", "3.5.3", "armv6l", "4.19.66+"),
]
PIPS = ["9.0.1", "18.1", "20.3.4", "22.3.1", "23.0.1", "24.2", "25.1.1"]
UVS = ["0.4.18", "0.5.11", "0.6.9"]
BROWSERS = [
    "Mozilla/5.0 (X11; Linux aarch64; rv:128.0) Gecko/20100101 Firefox/128.0",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/126.0.0.0 Safari/537.36",
]
BOTS = [
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)",
    "Go-http-client/1.1",
]
MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]


def installer_agent(rng: random.Random, name: str, version: str) -> str:
    distro, distro_version, distro_id, glibc, python, cpu, kernel = rng.choice(RELEASES)
    data = {
        "ci": rng.choice([None, None, None, True]),
        "cpu": cpu,
        "distro": {"id": distro_id, "libc": {"lib": "glibc", "version": glibc},
                   "name": distro, "version": distro_version},
        "implementation": {"name": "CPython", "version": python},
        "installer": {"name": name, "version": version},
        "openssl_version": rng.choice(["OpenSSL 1.1.1n  15 Mar 2022",
                                       "OpenSSL 3.0.15 3 Sep 2024"]),
        "python": python,
        "setuptools_version": rng.choice(["40.8.0", "52.0.0", "66.1.1", None]),
        "system": {"name": "Linux", "release": kernel},
    }
    if name == "pip" and rng.random() < 0.3:
        data["rustc_version"] = "1.63.0"
    return f"{name}/{version} {json.dumps(data, separators=(',', ':'), sort_keys=True)}"


def agent_pool(rng: random.Random, size: int = 2000) -> list[str]:
    """Distinct agent strings, weighted the way a wheel index sees them."""
    pool = []
    for _ in range(size):
        roll = rng.random()
        if roll < 0.80:
            pool.append(installer_agent(rng, "pip", rng.choice(PIPS)))
        elif roll < 0.90:
            pool.append(installer_agent(rng, "uv", rng.choice(UVS)))
        elif roll < 0.95:
            pool.append(rng.choice(BROWSERS))
        else:
            pool.append(rng.choice(BOTS))
    return pool


def clf_time(when: datetime) -> str:
    return (f"{when.day:02d}/{MONTHS[when.month - 1]}/{when.year}:"
            f"{when:%H:%M:%S} +0000")


def generate(path: Path, lines: int, seed: int = 6) -> None:
    rng = random.Random(seed)
    agents = agent_pool(rng)
    projects = [f"project-{i}" for i in range(20_000)]
    weights = [1 / (i + 1) for i in range(len(projects))]  # a few projects dominate
    popular = rng.choices(projects, weights, k=lines)
    clients = [f"{rng.randrange(1, 224)}.{rng.randrange(256)}.{rng.randrange(256)}."
               f"{rng.randrange(1, 255)}" for _ in range(50_000)]
    start = datetime(2024, 6, 1, tzinfo=timezone.utc)
    step = timedelta(days=1) / lines
    with path.open("w") as out:
        for i in range(lines):
            if rng.random() < 0.0005:
                out.write("garbage \x00 that is no log line\n")
                continue
            project = popular[i]
            roll = rng.random()
            if roll < 0.45:
                wheel = f"{project.replace('-', '_')}-1.{i % 7}-cp311-cp311-linux_armv7l.whl"
                target = f"/simple/{project}/{wheel}"
            elif roll < 0.90:
                target = f"/simple/{project}/"
            elif roll < 0.95:
                target = f"/project/{project}/"
            else:
                target = "/simple/"
            method = "HEAD" if rng.random() < 0.01 else "GET"
            status = 404 if rng.random() < 0.03 else 200
            agent = rng.choice(agents).replace('"', "\\x22")  # nginx escapes quotes so
            out.write(f'{rng.choice(clients)} - - [{clf_time(start + step * i)}] '
                      f'"{method} {target} HTTP/1.1" {status} {rng.randrange(300, 900_000)} '
                      f'"-" "{agent}"\n')


def run_ours(log: Path, db_path: Path) -> dict:
    from stats.clients import ClientHasher
    from stats.loader import Parser, load_file
    from stats.store import open_db

    db = open_db(db_path)
    started, cpu = time.perf_counter(), time.process_time()
    result = load_file(db, Parser(ClientHasher(b"k" * 32)), log)
    return {"seconds": time.perf_counter() - started, "cpu": time.process_time() - cpu,
            "lines": result.lines, "stored": result.stored}


def run_baseline(log: Path, db_path: Path) -> dict:
    """The obvious loader: parse every agent with linehaul, insert each row alone."""
    from stats.agents import parse_agent
    from stats.clients import ClientHasher
    from stats.loader import fingerprint
    from stats.logline import MalformedLine, parse, unescape
    from stats.paths import SEARCH, SIMPLE, classify
    from stats.store import _agent_row, open_db

    db = open_db(db_path)
    hasher = ClientHasher(b"k" * 32)
    requests, agents = db["requests"], db["agents"]
    started, cpu = time.perf_counter(), time.process_time()
    lines = stored = 0
    with log.open("rb") as handle:
        fingerprint(handle.readline())
        handle.seek(0)
        for raw in handle:
            lines += 1
            try:
                entry = parse(raw.decode("utf-8", "replace").rstrip("\n"))
            except MalformedLine:
                continue
            agent = parse_agent(unescape(entry.agent))
            agents.insert(_agent_row(agent), ignore=True)
            target = classify(entry.target)
            kind = target.kind
            if kind == SIMPLE:
                kind = SEARCH if agent.is_installer else "page"
            requests.insert({"time": entry.time, "kind": kind, "project": target.project,
                             "filename": target.filename, "method": entry.method,
                             "status": entry.status, "bytes": entry.size,
                             "client": hasher(entry.host), "agent": agent.id})
            stored += 1
    return {"seconds": time.perf_counter() - started, "cpu": time.process_time() - cpu,
            "lines": lines, "stored": stored}


def child(kind: str, log: Path, db_path: Path, limit: int) -> None:
    if kind == "baseline" and limit:
        # The baseline is slow: it runs over the first `limit` lines; lines/s compares.
        short = log.with_name("baseline.log")
        with log.open() as source, short.open("w") as out:
            for _, line in zip(range(limit), source, strict=False):
                out.write(line)
        log = short
    result = (run_ours if kind == "ours" else run_baseline)(log, db_path)
    result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    # The writer process, if the loader started one (it has been waited for by now).
    writer = resource.getrusage(resource.RUSAGE_CHILDREN)
    result["writer_rss_mib"] = writer.ru_maxrss / 1024
    result["writer_cpu"] = writer.ru_utime + writer.ru_stime
    print(json.dumps(result))


def measure(kind: str, log: Path, work: Path, limit: int) -> dict:
    db_path = work / f"{kind}.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db_path}{suffix}").unlink(missing_ok=True)
    out = subprocess.run([sys.executable, __file__, "--child", kind, "--log", str(log),
                          "--db", str(db_path), "--baseline-lines", str(limit)],
                         check=True, capture_output=True, text=True).stdout
    result = json.loads(out.strip().splitlines()[-1])
    result["rate"] = result["lines"] / result["seconds"]
    # lines per CPU-second, the loading process and its writer process together
    result["cpu_rate"] = result["lines"] / (result["cpu"] + result["writer_cpu"])
    return result


def describe(result: dict) -> str:
    rss = f"peak RSS {result['peak_rss_mib']:,.0f} MiB"
    if result["writer_rss_mib"]:
        rss += f" + writer {result['writer_rss_mib']:,.0f} MiB"
    return (f"{result['rate']:,.0f} lines/s ({result['cpu_rate']:,.0f} per CPU-s, "
            f"{rss}, {result['stored']:,} rows)")


def load_average() -> str:
    return "/".join(f"{load:.2f}" for load in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--baseline-lines", type=int, default=100_000,
                        help="lines the naive baseline loads (its rate is what compares)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--log", help=argparse.SUPPRESS)
    parser.add_argument("--db", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, Path(args.log), Path(args.db), args.baseline_lines)
        return
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        log = work / "access.log"
        print(f"generating {args.lines:,} lines ...", flush=True)
        generate(log, args.lines)
        ours, base = [], []
        for run in range(args.runs):
            before = load_average()
            ours.append(measure("ours", log, work, args.baseline_lines))
            base.append(measure("baseline", log, work, args.baseline_lines))
            print(f"run {run + 1} (load average {before} before, {load_average()} after):\n"
                  f"  ours     {describe(ours[-1])}\n  baseline {describe(base[-1])}\n"
                  f"  ratio {ours[-1]['rate'] / base[-1]['rate']:.1f}", flush=True)
        rate = statistics.median(r["rate"] for r in ours)
        base_rate = statistics.median(r["rate"] for r in base)
        rss = statistics.median(r["peak_rss_mib"] for r in ours)
        writer_rss = statistics.median(r["writer_rss_mib"] for r in ours)
        cpu_rate = statistics.median(r["cpu_rate"] for r in ours)
        print(f"median of {args.runs}: ours {rate:,.0f} lines/s ({cpu_rate:,.0f} per CPU-s), "
              f"peak RSS {rss:,.0f} MiB + writer "
              f"{writer_rss:,.0f} MiB; baseline {base_rate:,.0f} lines/s; "
              f"ratio {rate / base_rate:.1f}")


if __name__ == "__main__":
    main()
