"""The test cluster itself: a job submitted with sbatch runs and its output comes back."""

from __future__ import annotations

import subprocess
import time

import pytest
from _cluster import slurm_cluster  # noqa: F401

pytestmark = pytest.mark.slurm


def test_a_batch_job_runs_on_the_test_cluster(tmp_path, slurm_cluster):  # noqa: F811
    out = tmp_path / "hello.out"
    sub = subprocess.run(["sbatch", "--parsable", "-p", slurm_cluster.partition, "-o", str(out),
                          "--wrap", "echo hello from $SLURM_JOB_ID"],
                         capture_output=True, text=True, check=True)
    job_id = sub.stdout.strip().split(";")[0]
    end = time.monotonic() + 60
    while time.monotonic() < end and not (out.exists() and out.read_text().strip()):
        time.sleep(0.2)
    assert out.read_text().strip() == f"hello from {job_id}"
