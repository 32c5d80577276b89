"""The SLURM executor's parts that need no cluster: what a task asks for, the job ledger, the
one-line sbatch error, and the whole path through submitit's local executor."""

from __future__ import annotations

import json

import pytest
from _runner_fixtures import _only_test_plugins, make_suite, rt_plugin  # noqa: F401

from lubench.api import LubenchError
from lubench.execution.slurm.ledger import Ledger
from lubench.execution.slurm.resources import (
    DEFAULT_MEM_GB,
    MEM_HEADROOM_GB,
    gres_gpus,
    minutes,
    submitit_parameters,
)
from lubench.execution.slurm.submit import sbatch_message
from lubench.execution.slurm.tasks import result_file


def _cases(tmp_path, plugin, device="cpu", **entry):
    """One classical rt_lu case, and one that asks for a GPU like the learned methods do."""
    _, suite = make_suite(tmp_path, plugin, [
        {"name": "rt_lu", **entry},
        {"name": "rt_lu", "params": {"behave": "train"}, "resources": {"gpus_per_task": 1}},
    ], sizes=(8,), device=device)
    return suite.cases


def _as_learned(case):
    """rt_lu is 'classical'; the GPU rule is for methods that are not."""
    from dataclasses import replace

    return replace(case, family="learned")


def test_time_cpus_and_pass_through_options(tmp_path, rt_plugin):  # noqa: F811
    plain, _ = _cases(tmp_path, rt_plugin, timeout=600)
    opts = {"slurm_partition": "debug", "slurm_array_parallelism": 4}
    p = submitit_parameters(plain, opts)
    assert p["timeout_min"] == 15 and p["cpus_per_task"] == 1  # 10 min + margin
    assert p["slurm_partition"] == "debug" and p["slurm_array_parallelism"] == 4
    assert submitit_parameters(plain, {"slurm_time": "1:30"})["timeout_min"] == 90
    assert minutes("1-00:00") == 1440 and minutes(45) == 45 and minutes("0:00:30") == 1
    with pytest.raises(LubenchError, match="--slurm-time"):
        minutes("soon")


def test_memory_follows_the_limit_then_the_estimate_then_the_default(tmp_path, rt_plugin):  # noqa: F811
    limited, _ = _cases(tmp_path, rt_plugin, memory_limit="3GiB")
    assert submitit_parameters(limited, {})["mem_gb"] == 3 + MEM_HEADROOM_GB
    (tmp_path / "b").mkdir()
    estimated, _ = _cases(tmp_path / "b", rt_plugin, resources={"mem_gb": 6})
    assert submitit_parameters(estimated, {})["mem_gb"] == 6
    (tmp_path / "c").mkdir()
    plain, _ = _cases(tmp_path / "c", rt_plugin)
    assert submitit_parameters(plain, {})["mem_gb"] == DEFAULT_MEM_GB
    assert submitit_parameters(limited, {"slurm_mem_gb": 2})["mem_gb"] == 2


@pytest.mark.parametrize("device, option, offered, expected", [
    ("cpu", None, 4, 0),     # device cpu: never a GPU
    ("cpu", 2, 4, 0),
    ("cuda", None, 0, 1),    # device cuda: the method's request (sbatch says if there is none)
    ("cuda", 2, 0, 2),
    ("cuda", 0, 4, 0),       # --slurm-gpus-per-task 0: none
    ("auto", None, 0, 0),    # auto: what the partition offers
    ("auto", None, 4, 1),
    ("auto", 3, 0, 3),       # auto with an explicit count: the user knows the partition
    ("auto", 0, 4, 0),
])
def test_a_gpu_only_when_the_case_will_use_one(tmp_path, rt_plugin, device, option,  # noqa: F811
                                               offered, expected):
    classical, asks = _cases(tmp_path, rt_plugin, device=device)
    learned = _as_learned(asks)
    opts = {} if option is None else {"slurm_gpus_per_task": option}
    asked: list[int] = []

    def partition() -> int:
        asked.append(1)
        return offered

    p = submitit_parameters(learned, opts, partition)
    assert p.get("slurm_gpus_per_task", 0) == expected
    assert bool(asked) == (device == "auto" and option is None)  # sinfo only when needed
    assert "slurm_gpus_per_task" not in submitit_parameters(classical, opts, partition)
    assert "slurm_gpus_per_task" not in submitit_parameters(asks, opts, partition)  # classical


def test_gres_strings_as_sinfo_prints_them():
    assert [gres_gpus(g) for g in ("gpu:4", "gpu:a100:4(S:0-1)", "gpu:2,mps:200", "(null)",
                                    "mps:100", "gpu")] == [4, 4, 2, 0, 0, 1]


def test_the_ledger_keeps_the_latest_job_of_each_case(tmp_path):
    ledger = Ledger(tmp_path)
    ledger.submitted([("7_0", "aaa", 0), ("7_1", "bbb", 0)], tmp_path / "submitit")
    ledger.cancelled(["7_1"], "interrupted")
    ledger.refused([("ccc", 0)], "Invalid partition name specified")
    ledger.submitted([("9_0", "bbb", 0)], tmp_path / "submitit")
    with open(ledger.path, "a") as fh:
        fh.write('{"event": "submitted", "job_id": "10_0", "case_')  # killed mid-write
    latest = ledger.latest()
    assert {k: v["job_id"] for k, v in latest.items()} == {("aaa", 0): "7_0", ("bbb", 0): "9_0"}
    events = [json.loads(line)["event"] for line in ledger.path.read_text().splitlines()[:-1]]
    assert events == ["submitted", "submitted", "cancelled", "refused", "submitted"]
    assert result_file(latest[("aaa", 0)]["folder"], "7_0") == \
        tmp_path / "submitit" / "7_0" / "7_0_0_result.pkl"


def test_sbatch_errors_become_one_line():
    err = RuntimeError("sbatch: error: invalid partition specified: nope\n"
                       "sbatch: error: Batch job submission failed: Invalid partition name "
                       "specified\n")
    assert sbatch_message(err) == ("invalid partition specified: nope; Batch job submission "
                                    "failed: Invalid partition name specified")
