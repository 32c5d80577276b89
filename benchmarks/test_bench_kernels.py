"""The action of the kernel operators that are never formed (plugins/lubench_operators).

Not part of ``pytest`` (``--benchmark-skip`` in pyproject.toml); run with::

    NUMBA_NUM_THREADS=2 OMP_NUM_THREADS=2 pytest benchmarks/test_bench_kernels.py \
        --benchmark-only --benchmark-group-by=group --benchmark-columns=min,median,rounds

Group ``kernel-matmat``: ``rbf_kernel`` dim 2 (the default ℓ = 0.2, nugget 1e-4), one
``matmat`` of k columns — one compiled pass over the n² kernel values whatever k. Target
(issue 26): n = 65 536, k = 32 in ≤ 20 s on the 2-core project machine. ``extra_info``
holds the process's CPU seconds per call (all threads), which a shared machine inflates
less than the wall time, and the nanoseconds of wall time per kernel value.

Group ``chain-matmat``: the exact O(n·k) action of the exponential kernel on sorted 1D
points (``exponential_kernel`` on the grid, ``matern_kernel`` ν = 1/2 on random points),
n = 2²⁰ — what grading at that size costs per product.
"""

from __future__ import annotations

import time

import numba
import numpy as np
import pytest
from lubench_operators import ExponentialKernel, MaternKernel, RBFKernel


def _timed(op, X, info):
    """One matmat; CPU seconds of the process added to ``info['cpu_seconds']``."""
    c0 = time.process_time()
    op.matmat(X)
    info.setdefault("cpu_seconds", []).append(round(time.process_time() - c0, 3))


@pytest.mark.parametrize("n, k", [(16384, 1), (16384, 32), (65536, 1), (65536, 32)],
                         ids=lambda v: str(v))
def test_rbf_dim2_matmat(benchmark, n, k):
    op = RBFKernel(dim=2).build(n, seed=0)           # compiles (or loads) the action too
    X = np.random.default_rng(1).standard_normal((n, k))
    benchmark.group = "kernel-matmat"
    benchmark.extra_info.update(n=n, k=k, dim=2, threads=numba.get_num_threads())
    rounds = 3 if n <= 16384 else 2
    benchmark.pedantic(_timed, args=(op, X, benchmark.extra_info), rounds=rounds,
                       iterations=1, warmup_rounds=0)
    benchmark.extra_info["ns_per_value"] = round(benchmark.stats["min"] / n**2 * 1e9, 3)


@pytest.mark.parametrize("gen", [ExponentialKernel(), MaternKernel(nu=0.5)],
                         ids=["exponential_grid", "matern12_random"])
@pytest.mark.parametrize("k", [1, 32])
def test_chain_matmat(benchmark, gen, k):
    n = 2**20
    op = gen.build(n, seed=0)
    assert op.chain
    X = np.random.default_rng(1).standard_normal((n, k))
    op.matmat(X)                                      # the factors, once per operator
    benchmark.group = "chain-matmat"
    benchmark.extra_info.update(n=n, k=k)
    benchmark.pedantic(_timed, args=(op, X, benchmark.extra_info), rounds=5, iterations=1,
                       warmup_rounds=0)
