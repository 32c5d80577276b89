"""The GPU path, read as one would run it: the parent of ``lubench run`` never touches CUDA,
``device: auto`` is resolved once before any case and every row names the real device, and a
learned case runs through the forked local executor on each device this machine has.

CUDA is probed in a child process (:func:`lubench.execution.devices.cuda_device_count`), so that the
probe does not poison the ``fork`` of the workers these tests start; the ``cuda`` parameters
run where a CUDA device is present and are skipped elsewhere.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from test_cli import lubench_exe

from lubench.execution.devices import auto_device, cuda_device_count, resolve_auto

HAS_CUDA = cuda_device_count() > 0
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not HAS_CUDA, reason="no CUDA device here"))]

# Loaded by the `lubench run` process under test (PYTHONPATH): imports PyTorch first (the
# worst case, as if a plugin had loaded it), records every call of the torch.cuda functions
# that start or query CUDA made by *that* process (not by its forked workers), and at exit
# writes them with torch.cuda.is_initialized().
SITECUSTOMIZE = '''
import atexit, json, os
import torch
_PARENT, _OUT, _CALLS = os.getpid(), os.environ["LUBENCH_CUDA_LOG"], []
def _wrap(name):
    real = getattr(torch.cuda, name)
    def wrapper(*args, **kwargs):
        if os.getpid() == _PARENT:
            _CALLS.append(name)
        return real(*args, **kwargs)
    setattr(torch.cuda, name, wrapper)
for _name in ("init", "_lazy_init", "is_available", "device_count", "get_device_name",
              "get_device_properties", "current_device", "synchronize", "mem_get_info",
              "max_memory_allocated", "reset_peak_memory_stats"):
    _wrap(_name)
@atexit.register
def _report():
    if os.getpid() == _PARENT:
        with open(_OUT, "w") as fh:
            json.dump({"calls": _CALLS, "initialized": torch.cuda.is_initialized()}, fh)
'''


def _suite(tmp_path: Path, device: str, timeout: float = 120) -> Path:
    data = {
        "name": "gpu_path", "seed": 0, "timeout": timeout, "device": device,
        "operators": [{"name": "laplacian_1d", "sizes": [64]}],
        "methods": [{"name": "plu"},
                    {"name": "gfmm_lu", "params": {"P": 8},
                     "budget": {"max_steps": 20, "max_seconds": 20}}],
    }
    path = tmp_path / "gpu_path.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _run(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess, dict]:
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(SITECUSTOMIZE)
    log = tmp_path / "cuda_log.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "LUBENCH_CUDA_LOG": str(log),
           "PYTHONPATH": os.pathsep.join([str(hook), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([lubench_exe(), *args], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=600)
    assert log.exists(), proc.stderr  # the hook ran in the parent
    return proc, json.loads(log.read_text())


@pytest.mark.parametrize("device", ["auto", *DEVICES])
def test_parent_never_initialises_cuda(tmp_path, device):
    """`lubench run` of a suite with a learned case, through the forked local executor: the
    parent calls none of torch.cuda's start or query functions and ends with CUDA
    uninitialised (its workers may use it), and every row names the device it ran on."""
    suite = _suite(tmp_path, device)
    proc, log = _run(tmp_path, "run", str(suite), "-o", str(tmp_path / "run"), "--no-report")
    assert proc.returncode == 0, proc.stderr
    assert log == {"calls": [], "initialized": False}
    df = pd.read_parquet(tmp_path / "run" / "results.parquet")
    expected = auto_device() if device == "auto" else device
    learned = df[df.family == "learned"]
    assert list(learned["status"]) == ["ok"], learned["error"].tolist()
    assert list(learned["device"]) == [expected]
    assert list(df.loc[df.family == "classical", "device"]) == ["cpu"]
    meta = json.loads((tmp_path / "run" / "meta.json").read_text())
    assert isinstance(meta["gpu"], list)


def test_synthetic_rows_name_the_resolved_device(tmp_path):
    """A case killed at its timeout (a row its worker could not write) names the device
    ``auto`` resolved to, not ``auto``."""
    suite = _suite(tmp_path, "auto", timeout=0.5)
    data = yaml.safe_load(suite.read_text())
    data["methods"][1]["budget"] = {"max_steps": 10**9, "max_seconds": 600}
    data["methods"] = data["methods"][1:]
    suite.write_text(yaml.safe_dump(data, sort_keys=False))
    proc, log = _run(tmp_path, "run", str(suite), "-o", str(tmp_path / "run"), "--no-report")
    assert proc.returncode == 0, proc.stderr
    assert log["initialized"] is False and log["calls"] == []
    df = pd.read_parquet(tmp_path / "run" / "results.parquet")
    assert list(df["status"]) == ["timeout"]
    assert list(df["device"]) == [auto_device()]


def test_resolve_auto_replaces_auto_only():
    from lubench.suite.cases import Case

    base = dict(suite="s", operator="o", operator_params={}, n=8, method="m",
                method_params={}, suite_seed=0, seed=0, operator_seed=0)
    cases = [Case(family="learned", device="auto", **base),
             Case(family="classical", device="auto", **base),
             Case(family="learned", device="cpu", **base)]
    out = resolve_auto(cases)
    assert [c.device for c in out] == [auto_device(), "cpu", "cpu"]
    assert [c.case_id for c in out] == [c.case_id for c in cases]  # resume is unaffected
    assert auto_device() == ("cuda" if HAS_CUDA else "cpu")


def test_environment_does_not_import_or_ask_pytorch():
    """environment() names GPUs without PyTorch: in a fresh interpreter it imports none."""
    code = ("import sys, lubench.rundir.environment as e; g = e.environment()['gpu']; "
            "assert isinstance(g, list); print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("device", DEVICES)
def test_training_on_each_device(device):
    """The training loop on the device: the losses read every few steps (the GPU setting)
    give the same history and weights as reading every step (the CPU setting)."""
    import torch
    from lubench_learned.gfmm import GFMMProduct
    from lubench_learned.training import LossSpec, Schedule, Target, train

    from lubench.api import Budget

    runs = []
    for read_every in (1, 7):
        torch.manual_seed(0)
        net = GFMMProduct(8, 8, generator=torch.Generator().manual_seed(0)).to(device)
        target = Target(_laplacian(64), 64, torch.float32, device, dense=True)
        res = train(net, target, LossSpec("identity", transpose=True),
                    Schedule(check_interval=5), Budget(max_steps=40), seed=0, log_every=10,
                    eval_every=20, read_every=read_every)
        runs.append((res, {k: v.detach().cpu() for k, v in net.state_dict().items()}))
    (a, wa), (b, wb) = runs
    assert a.iterations == b.iterations == 40
    assert [r["loss"] for r in a.history] == [r["loss"] for r in b.history]
    assert [r["step"] for r in a.history] == [r["step"] for r in b.history]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def _laplacian(n: int):
    import numpy as np
    import scipy.sparse as sp

    from lubench.api import Operator

    A = sp.diags([-np.ones(n - 1), 2 * np.ones(n), -np.ones(n - 1)], [-1, 0, 1], format="csr")
    return Operator("laplacian_1d", A, symmetric=True, spd=True)
