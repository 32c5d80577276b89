"""The structured GFMM solve (GFMMArrays.solve) against dense LAPACK, side by side.

Not part of ``pytest`` (``--benchmark-skip`` in pyproject.toml); run with::

    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 pytest benchmarks/test_bench_solve.py \
        --benchmark-only --benchmark-group-by=group --benchmark-columns=min,median,rounds

Each group ``solve-n{n}`` holds the structured solve with a pair of GFMM factors (L then U,
P = 32, M = n/32, as ``gfmm_compressed`` and ``gfmm_lu`` solve) and ``scipy.linalg.lu_solve``
on dense n×n factors, one right-hand side, in one process: compare within a group.
Targets (issue 14): the structured solve faster than dense from n = 1024 on, ≥ 20× faster at
n = 16384. The structured solve is compiled by Numba (compiled before timing).
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg as sla
from lubench_structured.gfmm.arrays import GFMMArrays
from lubench_structured.gfmm.substitution import warm_up

P = 32
SIZES = [1024, 2048, 4096, 16384]


def random_factor(M: int, P: int, lower: bool, seed: int = 0) -> GFMMArrays:
    """Random GFMM factor, well conditioned (diagonal blocks I + small, edges ~ 1/√P)."""
    rng = np.random.default_rng([seed, int(lower)])
    K = M.bit_length() - 1
    s = 0.5 / np.sqrt(P)

    def r(*shape):
        return rng.uniform(-s, s, shape)

    return GFMMArrays.from_tensors(
        M, P, lower, [r(M >> (i + 1), P, 2 * P) for i in range(K)],
        [r(M >> (i + 1), 2 * P, P) for i in range(K)], np.eye(P) + r(M, P, P),
        r(M - 1, P, P), [r((M >> i) - 1, P, P) for i in range(1, K)])


def _pair_solve(L: GFMMArrays, U: GFMMArrays, b: np.ndarray) -> np.ndarray:
    return U.solve(L.solve(b))


@pytest.mark.parametrize("n", SIZES)
def test_solve_structured(benchmark, n):
    """L⁻¹ then U⁻¹ through the structured solve (plans formed and the
    substitution compiled before timing)."""
    L, U = random_factor(n // P, P, True), random_factor(n // P, P, False)
    b = np.random.default_rng(1).standard_normal(n)
    x = _pair_solve(L, U, b)                        # setup: factor the maps once
    assert np.linalg.norm(L.apply(U.apply(x)) - b) <= 1e-10 * np.linalg.norm(b)
    benchmark.group = f"solve-n{n}"
    benchmark.extra_info.update(n=n, M=n // P, P=P, rhs=1)
    benchmark(_pair_solve, L, U, b)


@pytest.mark.parametrize("n", SIZES)
def test_solve_dense_lu_solve(benchmark, n):
    """scipy.linalg.lu_solve on dense factors (Fortran order, as lu_factor returns them; the
    cost does not depend on the values). 2 GiB at n = 16384."""
    rng = np.random.default_rng(0)
    lu = np.asfortranarray(rng.random((n, n)) / n)
    lu[np.diag_indices(n)] = 1.0
    piv = np.arange(n, dtype=np.int32)
    b = rng.standard_normal(n)
    sla.lu_solve((lu, piv), b, check_finite=False)
    benchmark.group = f"solve-n{n}"
    benchmark.extra_info.update(n=n, rhs=1)
    benchmark(sla.lu_solve, (lu, piv), b, check_finite=False)


@pytest.mark.parametrize("n", [4096])
def test_solve_structured_setup(benchmark, n):
    """Forming the plans of L and U once (what the first solve pays, the substitution
    already compiled)."""
    def setup():
        L, U = random_factor(n // P, P, True), random_factor(n // P, P, False)
        return (L, U, np.ones(n)), {}

    warm_up()
    benchmark.group = "setup"
    benchmark.extra_info.update(n=n, M=n // P, P=P)
    benchmark.pedantic(_pair_solve, setup=setup, rounds=5)


@pytest.mark.parametrize("rhs", [1, 16])
def test_solve_structured_columns(benchmark, rhs):
    """Several right-hand sides in one call, n = 4096: time per call (not per column)."""
    n = 4096
    L, U = random_factor(n // P, P, True), random_factor(n // P, P, False)
    B = np.random.default_rng(2).standard_normal((n, rhs))
    _pair_solve(L, U, B)
    benchmark.group = "columns-n4096"
    benchmark.extra_info.update(n=n, rhs=rhs)
    benchmark(_pair_solve, L, U, B)
