"""Speed of gfmm_lu's sketch optimizer (issue 27): one step against n, and one near-field
Newton direction.

Not part of ``pytest`` (``--benchmark-skip`` in pyproject.toml); run with::

    pytest benchmarks/test_bench_sketch.py --benchmark-only --benchmark-group-by=group

Target (2-core CPU): the step about linear in n — a least-squares slope of log(step) on
log(n) ≤ 1.15 from 4096 to 262 144 (``benchmarks/sketch_scaling.py`` fits it, each size in a
process of its own). ``extra_info`` holds the process's peak RSS so far and ``gfmm_lu``'s
memory estimate. The ``cuda`` parameters run where PyTorch sees a device (n up to 2²⁰ there).
"""

from __future__ import annotations

import resource

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from lubench_learned import GfmmLU
from lubench_learned.optim.sketch import (
    Factor,
    SketchOptimizer,
    near_newton_direction,
    near_residual,
)
from lubench_learned.training.target import Target

from lubench.api import Operator
from lubench.execution.devices import cuda_device_count

P, K = 32, 128
HAS_CUDA = cuda_device_count() > 0
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not HAS_CUDA, reason="no CUDA device here"))]
SIZES = [4096, 16384, 65536, 262144,
         pytest.param(2**20, marks=pytest.mark.skipif(not HAS_CUDA, reason="GPU only"))]


def _laplacian(n: int) -> Operator:
    A = sp.diags([-np.ones(n - 1), 2 * np.ones(n), -np.ones(n - 1)], [-1, 0, 1], format="csr")
    return Operator("laplacian_1d", A, symmetric=True, spd=True)


def _optimizer(n: int, device: str, far: bool) -> tuple[SketchOptimizer, GfmmLU, Operator]:
    op = _laplacian(n)
    method = GfmmLU(P=P, optimizer="sketch", probes=K)
    net = method.build_model(op, method.resolved(n), seed=0).to(device)
    if far:  # every bridge ~1e-3: no near-field phase, all four proposals run
        g = torch.Generator().manual_seed(0)
        with torch.no_grad():
            for f in (net.L, net.U):
                for b in f.bridge:
                    b.copy_(1e-3 * torch.randn(b.shape, generator=g, dtype=b.dtype))
    target = Target(op, n, torch.float64, device, dense=False)
    om = torch.randn(n, 16, generator=torch.Generator().manual_seed(1),
                     dtype=torch.float64).to(device)
    near = None if far else target.near_field(P)
    return SketchOptimizer(net, target.mm, lambda Y: target.mm(Y, True), probes=K, omega=om,
                           a_omega=target.mm(om), near=near, seed=0), method, op


def _sync(device: str):
    return torch.cuda.synchronize if device == "cuda" else (lambda: None)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("n", SIZES)
def test_sketch_step(benchmark, n, device):
    """One step of block least squares on sketches (far field on), P = 32, k = 128."""
    opt, method, op = _optimizer(n, device, far=True)
    sync = _sync(device)

    def step() -> None:
        opt.step()
        sync()

    step()  # warm-up
    benchmark.group = f"sketch-step-{device}"
    benchmark.extra_info.update(n=n, P=P, k=K, device=device,
                                estimate_gib=method.memory_estimate(op) / 2**30)
    benchmark.pedantic(step, rounds=2 if n >= 262144 else 3, iterations=1)
    benchmark.extra_info["peak_rss_gib"] = \
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("n", [4096, 65536])
def test_near_newton_direction(benchmark, n, device):
    """One near-field Newton direction (the leaf sweep) from the identity start, P = 32."""
    op = _laplacian(n)
    method = GfmmLU(P=P)
    net = method.build_model(op, method.resolved(n), seed=0).to(device)
    L, U = Factor.of(net.L), Factor.of(net.U)
    near = Target(op, n, torch.float64, device, dense=False).near_field(P)
    R = near_residual(L, U, *near)
    sync = _sync(device)

    def direction() -> None:
        near_newton_direction(L, U, *R)
        sync()

    direction()
    benchmark.group = f"near-newton-{device}"
    benchmark.extra_info.update(n=n, P=P, device=device)
    benchmark.pedantic(direction, rounds=3, iterations=1)
