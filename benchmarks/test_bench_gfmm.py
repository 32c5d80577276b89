"""Speed of gfmm_lu: one training step, one structured solve, against dense LAPACK.

Not part of ``pytest`` (``--benchmark-skip`` in pyproject.toml); run with::

    pytest benchmarks --benchmark-only

Targets on the project's 2-core CPU (see README.md here): a step at n = 256 (M = 8, P = 32,
identity inputs, transpose loss) ≤ 5 ms; at n = 2048 with the full identity batch ≤ 0.5 s;
the probe-loss step (k = 64) about linear in n (n = 65536 ≤ ~80× n = 1024); the structured
solve faster than ``scipy.linalg.lu_solve`` on dense factors at n = 16384.
"""

from __future__ import annotations

import resource

import numpy as np
import pytest
import scipy.linalg as sla
import scipy.sparse as sp
import torch
from lubench_learned.gfmm import GFMMProduct
from lubench_learned.gfmm_lu import GfmmFactorization
from lubench_learned.training import (
    LossSpec,
    Schedule,
    Target,
    Trainer,
    training_environment,
)

from lubench.api import Operator

P = 32


def _laplacian(n: int) -> Operator:
    A = sp.diags([-np.ones(n - 1), 2 * np.ones(n), -np.ones(n - 1)], [-1, 0, 1], format="csr")
    return Operator("laplacian_1d", A, symmetric=True, spd=True)


def _trainer(n: int, spec: LossSpec) -> Trainer:
    net = GFMMProduct(n // P, P, generator=torch.Generator().manual_seed(0))
    target = Target(_laplacian(n), n, torch.float32, "cpu", dense=spec.kind == "identity")
    return Trainer(net, target, spec, Schedule(), seed=0, edge_groups=net.edge_views(),
                   block_size=P)


def _time_steps(benchmark, tr: Trainer, rounds: int | None = None) -> None:
    """Time ``tr.step`` as ``train`` runs it (its thread and subnormal settings)."""
    with training_environment(tr.spec, tr.target, tr.block_size):
        tr.start_block(0 if tr.spec.blockwise else None)
        tr.step()  # warm-up
        if rounds is None:
            benchmark(tr.step)
        else:
            benchmark.pedantic(tr.step, rounds=rounds, iterations=1)


@pytest.mark.parametrize("n, blockwise", [(256, True), (256, False), (2048, False),
                                          (2048, True)],
                         ids=["n256-blockwise", "n256-full", "n2048-full", "n2048-blockwise"])
def test_step_identity(benchmark, n, blockwise):
    """One Adam step, identity inputs, transpose loss: block-wise (2P inputs) or the full
    identity batch (n inputs, one product)."""
    tr = _trainer(n, LossSpec("identity", transpose=True, blockwise=blockwise))
    benchmark.extra_info.update(n=n, M=n // P, P=P, blockwise=blockwise)
    _time_steps(benchmark, tr)


@pytest.mark.parametrize("n", [1024, 4096, 16384, 65536])
def test_step_probes(benchmark, n):
    """One Adam step of the probe loss, k = 64, transpose loss on, whole matrix."""
    tr = _trainer(n, LossSpec("probes", probes=64, transpose=True, blockwise=False))
    benchmark.extra_info.update(n=n, M=n // P, P=P, k=64)
    _time_steps(benchmark, tr, rounds=3 if n >= 16384 else 10)
    benchmark.extra_info["peak_rss_gib"] = \
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


@pytest.mark.parametrize("n", [1024, 4096, 16384, 65536])
def test_solve_gfmm(benchmark, n):
    """One right-hand side through block forward and back substitution (no dense L, U)."""
    net = GFMMProduct(n // P, P, init_scale=0.01, identity_diag=True,
                 generator=torch.Generator().manual_seed(0))
    fact = GfmmFactorization(net, n)
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
