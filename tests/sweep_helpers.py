"""Shared by the sweep tests (test_sweep.py, test_sweep_resume.py): a module's local Ray instance and a run
directory's execution log."""

import json
from pathlib import Path

import pytest

from lmlab.sweep import ray_env, start_ray

ray_env()  # before Ray is imported: a local instance on 127.0.0.1

TOY = "lmlab.studies.toy:ToyStudy"


def executions(run_dir: Path) -> list[dict]:
    p = run_dir / "executions.log"
    return [json.loads(line) for line in p.read_text().splitlines()] if p.exists() else []


@pytest.fixture(scope="module")
def ray_address():
    """One local Ray instance per test module (per `make test` process), shut down after the module."""
    import ray

    started = start_ray(num_cpus=2, preload=["lmlab.studies.toy"])
    yield ray.get_runtime_context().gcs_address
    if started:
        ray.shutdown()
