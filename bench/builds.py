"""Build success on a Pi-like builder: real Pi-relevant sdists from the upstream index,
built one after another in the armhf chroot that `python -m worker armhf-chroot` sets
up from the builder profile, by the worker's own build code (worker.jobs.build_in:
the same `pip wheel`, wheel inspection and ELF scan a job runs; no Redis, no push).

    python bench/builds.py [--root DATA/armhf] [--only NAME ...] [--json FILE]

Slow and opt-in: setting the chroot up takes minutes once, and each build runs under
qemu-user-static. Sources come from pip's index as configured in the chroot
(PIP_INDEX_URL if set, else pip's default). Prints, per release, the outcome, the
failure reason (publish.failures) and the wall time; then the success rate, and the
reasons counted."""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from worker import chroot, settings  # noqa: E402

# Pi-relevant releases that need a C compiler: GPIO, SPI, I2C, LED strips, input
# devices, audio, D-Bus, process and IPC tools, and the compiled dependencies of
# popular Pi software. Most have no armv7l wheel on the upstream index: the gap a
# Pi wheel farm fills. Fixed versions, so that runs compare.
RELEASES = [
    ("RPi.GPIO", "0.7.1"), ("spidev", "3.6"), ("smbus", "1.1.post2"),
    ("rpi_ws281x", "5.0.0"), ("gpiod", "2.2.1"), ("evdev", "1.7.1"),
    ("PyAudio", "0.2.14"), ("dbus-python", "1.3.2"), ("python-prctl", "1.8.1"),
    ("PyYAML", "6.0.2"), ("cffi", "1.17.1"), ("netifaces", "0.11.0"),
    ("psutil", "6.1.0"), ("MarkupSafe", "3.0.2"), ("msgpack", "1.1.0"),
    ("ujson", "5.10.0"), ("crcmod", "1.7"), ("wrapt", "1.16.0"), ("sysv_ipc", "1.1.0"),
    ("posix_ipc", "1.1.1"), ("setproctitle", "1.3.4"), ("frozenlist", "1.5.0"),
]

# Runs inside the chroot: one build by the worker's code, its outcome as one JSON line.
DRIVER = """
import json, sys, tempfile, time, zipfile
from pathlib import Path
from worker import settings
from worker.elf import compiled_code
from worker.interpreter import probe
from worker.jobs import build_in
project, version = sys.argv[1:3]
config = settings.load()
started = time.monotonic()
with tempfile.TemporaryDirectory(dir="/var/tmp") as workdir:
    outcome = build_in(Path(workdir), config, probe(config.build_python), project, version)
    seconds = time.monotonic() - started
    compiled = []
    for built in outcome.wheels:  # build_in leaves the wheels in WORKDIR/wheels
        with zipfile.ZipFile(Path(workdir, "wheels", built.wheel.filename)) as archive:
            compiled.append(compiled_code(built.wheel, archive))
print(json.dumps({"status": outcome.status, "seconds": seconds,
                  "files": [w.wheel.filename for w in outcome.wheels],
                  # the intake's rule: False is a platform wheel that lost its extension
                  "compiled": compiled, "log": outcome.log[-200000:]}))
"""


@dataclass
class Result:
    project: str
    version: str
    status: str
    seconds: float
    files: list[str]
    compiled: list[bool | None]  # worker.elf.compiled_code of each file
    reason: str  # a failure's label; "" for a success
    log: str


def build(root: Path, project: str, version: str) -> Result:
    env = {"WHEELWRIGHT_DATA": "/opt/wheelwright/var", "WHEELWRIGHT_BUILD_SANDBOX": "off",
           "WHEELWRIGHT_BUILD_TIMEOUT": "3600", "PYTHONPATH": chroot.CODE,
           "PIP_CERT": "/etc/ssl/certs/ca-certificates.crt"}
    started = time.monotonic()
    done = subprocess.run(["chroot", str(root), f"{chroot.VENV}/bin/python", "-c", DRIVER,
                           project, version], env=chroot.chroot_env(env),
                          capture_output=True, text=True)
    if done.returncode != 0 or not done.stdout.strip():
        return Result(project, version, "error", time.monotonic() - started, [], [],
                      f"driver failed: {done.stderr.strip()[-300:]}", done.stderr)
    data = json.loads(done.stdout.strip().splitlines()[-1])
    failed = data["status"] != "success"
    return Result(project, version, data["status"], data["seconds"], data["files"],
                  data["compiled"], reason_of(data["log"]) if failed else "", data["log"])


def reason_of(log: str) -> str:
    from publish import failures

    failure = failures.classify(log)
    return failures.label(failure) if failure else "unrecognised"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, help="the chroot (default: DATA/armhf)")
    parser.add_argument("--only", nargs="+", help="build only these projects of the list")
    parser.add_argument("--json", type=Path, help="write every result, logs included")
    args = parser.parse_args()
    config = settings.load()
    root = (args.root or chroot.default_root(config)).resolve()
    subprocess.run([sys.executable, "-m", "worker", "armhf-chroot", "--root", str(root),
                    "--setup-only"], check=True, cwd=ROOT)
    chroot.copy_code(root)
    releases = [r for r in RELEASES if not args.only or r[0] in args.only]
    results = []
    with chroot.mounted(root, []):
        for i, (project, version) in enumerate(releases, 1):
            result = build(root, project, version)
            results.append(result)
            files = " ".join(f"{f} (built without compiled code)" if code is False else f
                             for f, code in zip(result.files, result.compiled, strict=True))
            print(f"[{i}/{len(releases)}] {project} {version}: {result.status} in "
                  f"{result.seconds:.0f} s {files}{result.reason}", flush=True)
    built = [r for r in results if r.status == "success"]
    print(f"\n{len(built)} of {len(results)} built ({100 * len(built) / len(results):.0f}%); "
          f"wall time per build: median {statistics.median(r.seconds for r in results):.0f} s,"
          f" total {sum(r.seconds for r in results) / 60:.1f} min")
    for reason, count in Counter(r.reason for r in results if r.reason).most_common():
        print(f"  {count} × {reason}")
    if args.json:
        args.json.write_text(json.dumps([vars(r) for r in results], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
