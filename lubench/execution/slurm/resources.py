"""What one SLURM array task asks for: CPUs, memory, a time limit, and a GPU only when the case
will use one.

GPUs
    A task gets GPUs only when its method asks for them (``resources: {gpus_per_task: N}``, a
    class attribute a suite entry may override) *and* the case's device resolves to CUDA:
    ``device: cpu`` → none; ``device: cuda`` → the method's N; ``device: auto`` → the method's N
    when the partition offers GPUs (``sinfo``'s GRES of its nodes), else none. The option
    ``slurm_gpus_per_task`` (``--slurm-gpus-per-task``) replaces N for the cases that use CUDA,
    counting ``device: auto`` as CUDA; ``0`` means no GPU for any case.
Memory
    ``slurm_mem_gb`` when given; else the case's ``memory_limit`` plus
    :data:`MEM_HEADROOM_GB` (the task holds the supervisor as well as the worker the limit
    applies to); else the method's estimate ``resources: {mem_gb: X}``; else
    :data:`DEFAULT_MEM_GB`. Always a request: a cluster whose default is a whole node would
    otherwise run one case per node.
Time
    ``slurm_time``; else the method's ``resources: {timeout_min: M}``; else the case's timeout
    plus five minutes (the runner's own hard timeout acts first); else two hours.
"""

from __future__ import annotations

import math
import re
import subprocess
from collections.abc import Callable
from typing import Any

from lubench.errors import LubenchError
from lubench.suite.cases import Case

__all__ = ["submitit_parameters", "partition_gpus", "DEFAULT_MEM_GB", "MEM_HEADROOM_GB",
           "DEFAULT_TIME_MIN"]

# Per task without memory_limit or estimate. Measured on laplacian_2d at n = 4096, the largest
# dense size of the shipped suites: gfmm_lu adds 1.09 GiB, dense_masked_lu 0.92, plu 0.64, to
# a supervisor of 0.24 GiB; 4 GB leaves room for the rest and still packs several per node.
DEFAULT_MEM_GB = 4.0
MEM_HEADROOM_GB = 1.0  # above memory_limit: the task's supervisor process and the interpreter
DEFAULT_TIME_MIN = 120
TIMEOUT_MARGIN_MIN = 5  # beyond the case's own timeout, so that the runner records it first

_PASS_THROUGH = ("slurm_partition", "slurm_account", "slurm_qos", "slurm_constraint",
                 "slurm_additional_parameters", "slurm_array_parallelism")


def minutes(text: Any) -> int:
    """SLURM time ``MM``, ``HH:MM``, ``HH:MM:SS`` or ``D-HH:MM[:SS]`` → whole minutes."""
    s = str(text).strip()
    try:
        days = 0
        if "-" in s:
            d, s = s.split("-", 1)
            days = int(d)
        parts = [float(p) for p in s.split(":")]
        if len(parts) == 1:
            total = parts[0]
        elif len(parts) == 2:
            total = parts[0] * 60 + parts[1]
        elif len(parts) == 3:
            total = parts[0] * 60 + parts[1] + parts[2] / 60
        else:
            raise ValueError
    except ValueError:
        raise LubenchError(f"--slurm-time: expected HH:MM (or D-HH:MM, or minutes), "
                           f"got {text!r}") from None
    return max(1, math.ceil(days * 1440 + total))


def gres_gpus(gres: str) -> int:
    """GPUs in one node's GRES string as ``sinfo -o %G`` prints it: ``gpu:4``,
    ``gpu:a100:4(S:0-1)``, ``gpu:2,mps:200`` → 4, 4, 2; ``(null)`` → 0."""
    count = 0
    for item in gres.split(","):
        item = re.sub(r"\(.*?\)", "", item.strip())
        if item.split(":")[0] != "gpu":
            continue
        last = item.split(":")[-1]
        count = max(count, int(last) if last.isdigit() else 1)
    return count


def partition_gpus(partition: str | None) -> int:
    """The most GPUs a node of ``partition`` (default: the cluster's default partition) has,
    from ``sinfo``; 0 when it has none or ``sinfo`` does not answer."""
    cmd = ["sinfo", "-h", "-o", "%P %G"] + (["-p", partition] if partition else [])
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return 0
    best = 0
    for line in out.splitlines():
        name, _, gres = line.strip().partition(" ")
        if partition or name.endswith("*"):  # without -p: the default partition is starred
            best = max(best, gres_gpus(gres))
    return best


def task_gpus(case: Case, options: dict, offered: Callable[[], int]) -> int:
    """GPUs per task for ``case`` (module docstring); ``offered()`` asks the partition."""
    asked = int((case.resources or {}).get("gpus_per_task") or 0)
    if not asked or case.family == "classical" or case.device == "cpu":
        return 0
    option = options.get("slurm_gpus_per_task")
    if option is not None:
        return max(0, int(option))
    if case.device == "cuda":
        return asked
    return asked if offered() > 0 else 0  # device auto: what the partition has


def task_mem_gb(case: Case, options: dict) -> float:
    """Memory per task, GB (module docstring)."""
    if options.get("slurm_mem_gb"):
        return float(options["slurm_mem_gb"])
    if case.memory_limit:
        return float(math.ceil(case.memory_limit / 2**30 + MEM_HEADROOM_GB))
    estimate = (case.resources or {}).get("mem_gb")
    return float(estimate) if estimate else DEFAULT_MEM_GB


def task_minutes(case: Case, options: dict) -> int:
    """Time limit per task, minutes (module docstring)."""
    res = case.resources or {}
    if options.get("slurm_time"):
        return minutes(options["slurm_time"])
    if res.get("timeout_min"):
        return int(res["timeout_min"])
    if case.timeout:
        return math.ceil(case.timeout / 60) + TIMEOUT_MARGIN_MIN
    return DEFAULT_TIME_MIN


def submitit_parameters(case: Case, options: dict,
                        offered_gpus: Callable[[], int] = lambda: 0) -> dict:
    """submitit ``update_parameters`` for one case: the pass-through ``slurm_*`` options, CPUs,
    memory, time and GPUs as the module docstring says. ``offered_gpus()`` is asked only for a
    ``device: auto`` case whose method wants a GPU (pass a cached :func:`partition_gpus`)."""
    res = case.resources or {}
    cpus = int(res.get("cpus_per_task") or options.get("slurm_cpus_per_task") or 1)
    params: dict[str, Any] = {"name": f"lubench-{case.suite}", "cpus_per_task": cpus,
                              "timeout_min": task_minutes(case, options),
                              "mem_gb": task_mem_gb(case, options)}
    gpus = task_gpus(case, options, offered_gpus)
    if gpus:
        params["slurm_gpus_per_task"] = gpus
    for key in _PASS_THROUGH:
        if options.get(key) is not None:
            params[key] = options[key]
    return params
