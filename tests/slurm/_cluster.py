"""The live SLURM the tests marked ``slurm`` run against (a test module imports the fixture:
``from _cluster import slurm_cluster``; not a conftest.py, whose name the top one owns).

``slurm_cluster`` (session) uses the single-node cluster of ``start-cluster.sh`` when it
answers; otherwise, as root with ``slurm-wlm`` and ``munge`` installed, it starts one (and stops
it at the end of the session); otherwise every ``slurm`` test is skipped with the reason. A
cluster that answers but is not the test cluster (another ``ClusterName``) is used only when
``LUBENCH_SLURM_TESTS=1``: these tests submit jobs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
START, STOP = HERE / "start-cluster.sh", HERE / "stop-cluster.sh"
TEST_CLUSTER = "lubench"  # ClusterName in the slurm.conf start-cluster.sh writes


@dataclass(frozen=True)
class Cluster:
    """A SLURM that answers: its name and default partition."""

    name: str
    partition: str
    started_here: bool


def _out(*cmd: str) -> str | None:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=20,
                              check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def _answering() -> tuple[str, str] | None:
    """(cluster name, default partition) when a SLURM controller answers with a usable node."""
    if " is UP" not in (_out("scontrol", "ping") or ""):  # fast; sinfo would wait ~10 s
        return None
    states = _out("sinfo", "-h", "-N", "-o", "%T")
    if not states or not {"idle", "mixed", "allocated"} & set(states.split()):
        return None
    config = _out("scontrol", "show", "config") or ""
    name = next((line.split("=", 1)[1].strip() for line in config.splitlines()
                 if line.split("=", 1)[0].strip() == "ClusterName"), "?")
    parts = (_out("sinfo", "-h", "-o", "%P") or "").split()
    default = next((p.rstrip("*") for p in parts if p.endswith("*")), parts[0] if parts else "")
    return name, default


def _why_not_startable() -> str | None:
    missing = [c for c in ("munged", "slurmctld", "slurmd", "sbatch") if not shutil.which(c)]
    if missing:
        return (f"no SLURM here ({', '.join(missing)} not found; as root: apt-get install "
                f"slurm-wlm munge, then tests/slurm/start-cluster.sh)")
    if os.geteuid() != 0:
        return f"no SLURM running and not root to start one (run {START} as root)"
    return None


@pytest.fixture(scope="session")
def slurm_cluster():
    """The running test cluster, started here if need be; skips when there can be none."""
    found = _answering()
    started = False
    if found is None:
        reason = _why_not_startable()
        if reason:
            pytest.skip(reason)
        proc = subprocess.run(["bash", str(START)], capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            pytest.skip(f"could not start SLURM: {proc.stderr.strip().splitlines()[-1:]}")
        started = True
        found = _answering()
        if found is None:
            pytest.skip("start-cluster.sh succeeded but sinfo shows no usable node")
    name, partition = found
    if name != TEST_CLUSTER and os.environ.get("LUBENCH_SLURM_TESTS") != "1":
        pytest.skip(f"a SLURM cluster answers ({name}), not the test cluster; "
                    f"LUBENCH_SLURM_TESTS=1 runs the slurm tests on it")
    yield Cluster(name=name, partition=partition, started_here=started)
    if started:
        subprocess.run(["bash", str(STOP)], capture_output=True, timeout=60)

