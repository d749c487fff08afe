"""Sending a build's wheels, log and report to the intake."""

from __future__ import annotations

import logging
import time
from contextlib import ExitStack
from dataclasses import dataclass

import requests

from worker.report import BuildOutcome

log = logging.getLogger(__name__)


class PushRefused(RuntimeError):
    """The intake answered 4xx: retrying the same push cannot help."""

    def __init__(self, status: int, reason: str):
        super().__init__(f"intake refused the push ({status}): {reason}")
        self.status, self.reason = status, reason


@dataclass(frozen=True)
class Intake:
    url: str
    worker: str
    token: str
    retries: int = 6
    backoff: float = 1.0  # seconds before the first retry, doubled each time
    timeout: float = 300.0


def _parts(outcome: BuildOutcome, worker: str, stack: ExitStack) -> list[tuple]:
    report = outcome.report(worker).to_json()
    return [
        ("report", ("report.json", report, "application/json")),
        ("log", ("build.log", outcome.log.encode("utf-8", "replace"), "text/plain")),
    ] + [
        ("wheel", (w.wheel.filename, stack.enter_context(w.wheel.path.open("rb")),
                   "application/octet-stream"))
        for w in outcome.wheels
    ]


def push(intake: Intake, outcome: BuildOutcome) -> dict:
    """POST the build to the intake. Network errors and 5xx are retried with
    backoff (507 among them: the intake is short of disk space, and takes pushes
    again once it has room); the intake is idempotent, so a retry after a lost
    answer is harmless. A 4xx raises PushRefused at once."""
    url = intake.url.rstrip("/") + "/builds"
    headers = {"Authorization": f"Bearer {intake.token}"}
    delay = intake.backoff
    for attempt in range(1, intake.retries + 1):
        try:
            with ExitStack() as stack:
                response = requests.post(url, files=_parts(outcome, intake.worker, stack),
                                         headers=headers, timeout=intake.timeout)
            if response.status_code < 400:
                return response.json()
            if response.status_code < 500:
                raise PushRefused(response.status_code, _reason(response))
            problem = f"intake answered {response.status_code}: {_reason(response)}"
        except (requests.ConnectionError, requests.Timeout) as error:
            problem = f"{type(error).__name__}: {error}"
        if attempt == intake.retries:
            raise RuntimeError(f"push failed after {attempt} attempts; last: {problem}")
        log.warning("push attempt %d failed (%s); retrying in %.1f s", attempt, problem, delay)
        time.sleep(delay)
        delay *= 2
    raise AssertionError("unreachable")


def _reason(response: requests.Response) -> str:
    try:
        return str(response.json().get("error", response.text[:200]))
    except ValueError:
        return response.text[:200]
