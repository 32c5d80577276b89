"""hodlr_lu: factorization and one solve, on kernels that are never formed.

Not part of ``pytest`` (``--benchmark-skip`` in pyproject.toml); run with::

    OMP_NUM_THREADS=1 pytest benchmarks/test_bench_hodlr.py --benchmark-only \\
        --benchmark-group-by=group --benchmark-columns=min,median,rounds

Groups ``hodlr-factor-<operator>`` and ``hodlr-solve-<operator>``: the exponential kernel
(ρ = 0.5, its off-diagonal blocks of rank 1) and Matérn ν = 1/2 on random 1D points at
n = 2^16 and 2^18, rbf_kernel dim 1 (ranks ~10 at tol 1e-10) at 2^16, all at tol 1e-10,
leaf_size 64. The scaling to 2^20 with memory and fitted slopes is
``benchmarks/hodlr_scaling.py``. Needs the kernel operators that are never formed (issue 26):
skipped where a generator would form A.
"""

from __future__ import annotations

import numpy as np
import pytest
from lubench_compressed.hodlr_lu import HodlrLU

from lubench.api import Budget, RunContext
from lubench.registry import load_registry

CASES = [("exponential_kernel", {"rho": 0.5}, 2**16), ("exponential_kernel", {"rho": 0.5}, 2**18),
         ("matern_kernel", {"nu": 0.5, "dim": 1, "length_scale": 0.2, "nugget": 1e-4}, 2**16),
         ("matern_kernel", {"nu": 0.5, "dim": 1, "length_scale": 0.2, "nugget": 1e-4}, 2**18),
         ("rbf_kernel", {"dim": 1, "length_scale": 0.2, "nugget": 1e-4}, 2**16)]


def _operator(name: str, params: dict, n: int):
    reg = load_registry(entry_points=True)
    if name not in reg.operators:
        pytest.skip(f"no operator {name} here (issue 26's kernels at scale)")
    gen = reg.operator(name)(**params)
    if gen.build(64, 0).formed:
        pytest.skip(f"{name} is formed here: {8 * n * n / 2**30:.0f} GiB at n = {n}")
    return gen.build(n, 0)


def _ctx() -> RunContext:
    return RunContext(device="cpu", seed=0, budget=Budget())


@pytest.mark.parametrize("name, params, n", CASES,
                         ids=[f"{c[0]}-{c[2]}" for c in CASES])
def test_factor(benchmark, name, params, n):
    op = _operator(name, params, n)
    method = HodlrLU(tol=1e-10)
    method.prepare(_ctx())
    benchmark.group = f"hodlr-factor-{name}"
    benchmark.extra_info.update(n=n, tol=1e-10, leaf_size=64)
    fact = benchmark.pedantic(method.factorize, args=(op, _ctx()), rounds=1, iterations=1)
    omega = np.random.default_rng(1).standard_normal((n, 4))
    A_omega = op.matmat(omega)
    err = np.linalg.norm(A_omega - fact.apply(omega)) / np.linalg.norm(A_omega)
    benchmark.extra_info.update(probe_error=float(err), n_params=fact.n_params,
                                ranks_L=fact.info["ranks_L"])
    assert err <= 1e-8


@pytest.mark.parametrize("name, params, n", CASES,
                         ids=[f"{c[0]}-{c[2]}" for c in CASES])
def test_solve(benchmark, name, params, n):
    op = _operator(name, params, n)
    fact = HodlrLU(tol=1e-10).factorize(op, _ctx())
    b = op.matmat(np.ones(n))
    fact.solve(b)                          # the compiled sweeps loaded before timing
    benchmark.group = f"hodlr-solve-{name}"
    benchmark.extra_info.update(n=n, rhs=1)
    benchmark(fact.solve, b)
