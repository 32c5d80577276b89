"""Speed of gfmm_lu: one training step, one structured solve, against dense LAPACK.

Not part of ``pytest`` (``--benchmark-skip`` in pyproject.toml); run with::

    pytest benchmarks --benchmark-only

Targets on the project's 2-core CPU (issue 14, see README.md here): a step at n = 256 (M = 8,
P = 32, full identity batch, transpose loss, Adam) ≤ 1.5 ms; at n = 2048 ≤ 0.1 s; each
measured against a square GEMM of the step's FLOP count in the same run (group
``step-n{n}``); the probe-loss step (k = 64) about linear in n up to n = 262144; the
structured solve faster than ``scipy.linalg.lu_solve`` on dense factors at n = 16384.

Every step benchmark has a ``cuda`` parameter, run when PyTorch sees a CUDA device (asked in
a child process, so that this one may still fork) and skipped elsewhere; a CUDA step is
timed to its end (``torch.cuda.synchronize``).
"""

from __future__ import annotations

import resource

import numpy as np
import pytest
import scipy.linalg as sla
import scipy.sparse as sp
import torch
from lubench_learned.gfmm import GFMMProduct
from lubench_learned.gfmm_lu import TrainedGFMMFactorization
from lubench_learned.training import (
    LossSpec,
    Schedule,
    Target,
    Trainer,
    training_environment,
)

from lubench.api import Operator
from lubench.execution.devices import cuda_device_count

P = 32
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    cuda_device_count() == 0, reason="no CUDA device here"))]


def _laplacian(n: int) -> Operator:
    A = sp.diags([-np.ones(n - 1), 2 * np.ones(n), -np.ones(n - 1)], [-1, 0, 1], format="csr")
    return Operator("laplacian_1d", A, symmetric=True, spd=True)


def _trainer(n: int, spec: LossSpec, device: str = "cpu") -> Trainer:
    net = GFMMProduct(n // P, P, generator=torch.Generator().manual_seed(0)).to(device)
    target = Target(_laplacian(n), n, torch.float32, device, dense=spec.kind == "identity")
    return Trainer(net, target, spec, Schedule(), seed=0, edge_groups=net.edge_views(),
                   block_size=P)


def _time_steps(benchmark, tr: Trainer, rounds: int | None = None) -> None:
    """Time ``tr.step`` as ``train`` runs it (its thread and subnormal settings), to the end
    of the device's work."""
    sync = torch.cuda.synchronize if tr.device.startswith("cuda") else (lambda: None)

    def step() -> None:
        tr.step()
        sync()

    with training_environment(tr.spec, tr.target, tr.block_size):
        tr.start_block(0 if tr.spec.blockwise else None)
        step()  # warm-up
        if rounds is None:
            benchmark(step)
        else:
            benchmark.pedantic(step, rounds=rounds, iterations=1)


def sweep_flops(M: int, P: int, c: int) -> int:
    """Multiply-adds ×2 of one GFMM factor applied to c columns (its batched products)."""
    K = M.bit_length() - 1
    flops = 2 * M * P * P * c  # leaf diagonal blocks
    for i in range(K - 1):  # encoders below the root's children
        flops += 2 * (M >> (i + 1)) * P * 2 * P * c
    for i in range(K):  # bands, and decoders below the root's children
        flops += 2 * ((M >> i) - 1) * P * P * c
        if i < K - 1:
            flops += 2 * (M >> (i + 1)) * 2 * P * P * c
    return flops


def step_flops(n: int) -> int:
    """One full-batch identity step as dense products: L(U(I)) forward (2F), backward through
    L (values and weights, 2F) and U (weights only, I needs no gradient: F),
    F = ``sweep_flops(M, P, n)``. (The step skips I's zero blocks — ``GFMMFactor.as_dense`` —
    and so does about 0.78 of this; the GEMM reference keeps the dense count.)"""
    return 5 * sweep_flops(n // P, P, n)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("n, blockwise", [(256, True), (256, False), (2048, False),
                                          (2048, True)],
                         ids=["n256-blockwise", "n256-full", "n2048-full", "n2048-blockwise"])
def test_step_identity(benchmark, n, blockwise, device):
    """One Adam step, identity inputs, transpose loss: block-wise (2P inputs) or the full
    identity batch (n inputs, one product)."""
    tr = _trainer(n, LossSpec("identity", transpose=True, blockwise=blockwise), device)
    if not blockwise:
        benchmark.group = f"step-n{n}-{device}"
        benchmark.extra_info["gflop"] = step_flops(n) / 1e9
    benchmark.extra_info.update(n=n, M=n // P, P=P, blockwise=blockwise, device=device)
    _time_steps(benchmark, tr)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("n", [256, 2048])
def test_gemm_same_flops(benchmark, n, device):
    """A square float32 GEMM of the full-batch step's FLOP count (its bound: the step's
    products at the machine's best matrix-multiply rate), beside the step (group
    ``step-n{n}``); the one-thread setting the step trains with at n = 256."""
    m = round((step_flops(n) / 2) ** (1 / 3))
    a = torch.randn(m, m, device=device)
    b = torch.randn(m, m, device=device)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

    def gemm() -> None:
        a @ b
        sync()

    tr = _trainer(n, LossSpec("identity", transpose=True), device)
    with training_environment(tr.spec, tr.target, None):
        gemm()
        benchmark.group = f"step-n{n}-{device}"
        benchmark.extra_info.update(n=n, m=m, gflop=2 * m**3 / 1e9, device=device)
        benchmark(gemm)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("n", [1024, 4096, 16384, 65536, 262144])
def test_step_probes(benchmark, n, device):
    """One Adam step of the probe loss, k = 64, transpose loss on, whole matrix."""
    tr = _trainer(n, LossSpec("probes", probes=64, transpose=True, blockwise=False), device)
    benchmark.group = f"probes-{device}"
    benchmark.extra_info.update(n=n, M=n // P, P=P, k=64, device=device)
    _time_steps(benchmark, tr, rounds=2 if n >= 262144 else 3 if n >= 16384 else 10)
    benchmark.extra_info["peak_rss_gib"] = \
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


@pytest.mark.parametrize("n", [1024, 4096, 16384, 65536])
def test_solve_gfmm(benchmark, n):
    """One right-hand side through block forward and back substitution (no dense L, U)."""
    net = GFMMProduct(n // P, P, init_scale=0.01, identity_diag=True,
                      generator=torch.Generator().manual_seed(0))
    L, U = net.float64_factors()
    fact = TrainedGFMMFactorization(np.arange(n), L, U, n, net.n_trainable())
    b = np.random.default_rng(0).standard_normal(n)
    fact.solve(b)
    benchmark.extra_info.update(n=n, M=n // P, P=P)
    benchmark(fact.solve, b)


@pytest.mark.parametrize("n", [1024, 4096, 16384])
def test_solve_dense_lu(benchmark, n):
    """scipy.linalg.lu_solve on dense n×n factors (synthetic, well scaled: the cost does not
    depend on the values); 2 GiB at n = 16384, beyond that it does not fit."""
    rng = np.random.default_rng(0)
    lu = np.asfortranarray(rng.random((n, n)) / n)  # Fortran order, as lu_factor returns it
    lu[np.diag_indices(n)] = 1.0
    piv = np.arange(n, dtype=np.int32)
    b = rng.standard_normal(n)
    sla.lu_solve((lu, piv), b, check_finite=False)
    benchmark.extra_info.update(n=n)
    benchmark(sla.lu_solve, (lu, piv), b, check_finite=False)
