"""The job functions a build worker runs. Only names listed in
worker.queues.AllowlistJob.ALLOWED can ever be executed."""

from __future__ import annotations

from pathlib import Path

from worker import settings
from worker.build import build_release, temporary_workdir
from worker.push import push


def build(project: str, version: str, abi: str) -> dict:
    """Build `project==version` for `abi` and push the outcome to the intake."""
    config = settings.load()
    with temporary_workdir() as tmp:
        result = build_release(
            project, version, abi, python=config.build_python,
            index_url=config.build_index_url, timeout=config.build_timeout, workdir=Path(tmp),
        )
        push(config.intake_url, config.worker_name, config.worker_token, result)
    return {"status": result.status, "files": [f.filename for f in result.files]}
