"""Sending a build's wheels, log and report to the intake."""

from __future__ import annotations

import json
import time
from contextlib import ExitStack

import requests

from worker.build import BuildResult

RETRIES = 5


def report_of(result: BuildResult, worker: str) -> dict:
    return {
        "project": result.project,
        "version": result.version,
        "abi": result.abi,
        "status": result.status,
        "duration": round(result.duration, 3),
        "worker": worker,
        "files": [
            {"filename": f.filename, "size": f.size, "sha256": f.sha256} for f in result.files
        ],
    }


def push(intake_url: str, worker: str, token: str, result: BuildResult) -> dict:
    """POST the build to the intake, retrying network errors and 5xx with backoff.
    The intake is idempotent, so a retry after a lost response is harmless."""
    url = intake_url.rstrip("/") + "/builds"
    headers = {"Authorization": f"Bearer {token}"}
    delay = 1.0
    for attempt in range(RETRIES):
        try:
            with ExitStack() as stack:
                files = [
                    ("report", ("report.json", json.dumps(report_of(result, worker)),
                                "application/json")),
                    ("log", ("build.log", result.log.encode(), "text/plain")),
                ] + [
                    ("wheel", (f.filename, stack.enter_context(f.path.open("rb")),
                               "application/octet-stream"))
                    for f in result.files
                ]
                response = requests.post(url, files=files, headers=headers, timeout=300)
            if response.status_code < 500:
                response.raise_for_status()
                return response.json()
        except (requests.ConnectionError, requests.Timeout):
            if attempt == RETRIES - 1:
                raise
        time.sleep(delay)
        delay *= 2
    response.raise_for_status()
    return response.json()
