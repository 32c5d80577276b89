"""The built-in ``ilu`` method (SciPy's spilu): its apply is the permuted product of its
factors, exact with no dropping, the matrix its solve inverts, and it keeps the plugin
contract."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from lubench_classical import ILU
from lubench_operators import ConvDiff2D, Laplacian2D

from lubench.api import InvalidParameter, RunContext
from lubench.metrics.grading import grade
from lubench.testing import check_method, tiny_operator

CTX = RunContext()
OPS = {"laplacian_2d": Laplacian2D().build(64, seed=0),
       "convdiff_2d": ConvDiff2D().build(64, seed=0),
       "needs_pivoting": tiny_operator("needs_pivoting", 24)}


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


@pytest.mark.parametrize("name", list(OPS))
def test_apply_is_the_permuted_product_of_the_factors(name):
    op = OPS[name]
    fact = ILU(drop_tol=1e-2, fill_factor=2).factorize(op, CTX)
    n = op.n
    # SciPy's SuperLU convention: Pr·A·Pc ≈ L·U with Pr[perm_r[i], i] = 1, Pc[i, perm_c[i]] = 1
    Pr = sp.csc_array((np.ones(n), (fact.perm_r, np.arange(n))), shape=(n, n)).toarray()
    Pc = sp.csc_array((np.ones(n), (np.arange(n), fact.perm_c)), shape=(n, n)).toarray()
    A_hat = Pr.T @ fact.L.toarray() @ fact.U.toarray() @ Pc.T
    assert _rel(fact.apply(np.eye(n)), A_hat) < 1e-14
    x = np.random.default_rng(0).standard_normal(n)
    assert _rel(fact.apply(x), A_hat @ x) < 1e-14
    assert fact.n_params == fact.L.nnz + fact.U.nnz


@pytest.mark.parametrize("name", list(OPS))
def test_without_dropping_it_is_exact(name):
    op = OPS[name]
    m = grade(op, ILU(drop_tol=0.0, fill_factor=1e4).factorize(op, CTX), seed=0)
    # round-off: backward error c·n·u times the element growth of elimination without
    # pivoting (the default diag_pivot_thresh = 0), far below any dropped entry
    assert m["factor_error"] < 1e-12 and m["solve_residual"] < 1e-12
    assert m["precond_iterations"] == 1 and m["precond_converged"]


@pytest.mark.parametrize("name", list(OPS))
def test_solve_inverts_the_product_it_applies(name):
    op = OPS[name]
    fact = ILU(drop_tol=1e-1, fill_factor=1).factorize(op, CTX)
    assert _rel(fact.apply(np.eye(op.n)), op.dense()) > 1e-3  # an approximation here
    X = np.random.default_rng(1).standard_normal((op.n, 3))
    assert _rel(fact.solve(fact.apply(X)), X) < 1e-10


def test_less_fill_stores_fewer_numbers_and_approximates_worse():
    op = Laplacian2D().build(256, seed=0)
    nnz_A = op.sparse().nnz
    rows = []
    for fill in (1e4, 3, 1):
        m = grade(op, ILU(drop_tol=0.0, fill_factor=fill).factorize(op, CTX), seed=0)
        rows.append((m["n_params"], m["factor_error"], m["precond_iterations"]))
    (n_exact, e_exact, it_exact), (n_3, e_3, _), (n_1, e_1, it_1) = rows
    assert n_exact > n_3 > n_1 and n_1 <= 2 * nnz_A
    assert e_exact < 1e-14 < e_3 and e_1 > e_3 * 0.999
    assert it_exact == 1 < it_1


def test_as_a_preconditioner_it_saves_gmres_iterations():
    op = Laplacian2D().build(1024, seed=0)
    m = grade(op, ILU().factorize(op, CTX), seed=0)
    assert m["gmres_converged"] is False or m["gmres_iterations"] > 50
    assert m["precond_converged"] and m["precond_iterations"] < m["gmres_iterations"]
    assert m["n_params"] < op.n ** 2 // 10  # sparse: far below a dense LU


def test_parameters_are_checked():
    op = OPS["laplacian_2d"]
    with pytest.raises(InvalidParameter, match=r"ilu: drop_tol must lie in \[0, 1\], got 2"):
        ILU(drop_tol=2.0).factorize(op, CTX)
    with pytest.raises(InvalidParameter, match="ilu: fill_factor must be a number >= 1"):
        ILU(fill_factor=0.5).factorize(op, CTX)
    with pytest.raises(InvalidParameter, match="ilu: permc_spec must be one of"):
        ILU(permc_spec="AMD").factorize(op, CTX)
    for params, param in (({"drop_tol": -1.0}, "drop_tol"), ({"fill_factor": 0.0}, "fill_factor"),
                          ({"diag_pivot_thresh": 2.0}, "diag_pivot_thresh")):
        with pytest.raises(InvalidParameter) as info:  # at load: the suite's error, once
            ILU.check_params(params)
        assert info.value.param == param


@pytest.mark.parametrize("params", [{}, {"drop_tol": 1e-2, "fill_factor": 2.0},
                                    {"drop_tol": 0.0, "fill_factor": 100.0}], ids=repr)
def test_keeps_the_plugin_contract(params):
    status = {r.check: r.status for r in check_method(ILU, **params)}  # raises on a failure
    assert status["check_exact_residual"] == "skip"  # incomplete: exact = False
    assert status["check_factorize_tiny"] == status["check_pickle"] == "pass"
    assert status["check_runner_records"] == "pass"


def test_registered_as_a_built_in(registry):
    assert registry.method("ilu") is ILU
    assert registry.provider[("method", "ilu")] == "classical"
    assert ILU.family == "classical" and ILU.exact is False  # incomplete: not held to 1e-10


def test_a_fill_factor_grid_in_a_suite(registry):
    from lubench.execution.plan import RunPlan
    from lubench.execution.worker import run_case
    from lubench.suite.load import build_suite

    suite = build_suite({"name": "g", "operators": [{"name": "laplacian_2d", "sizes": [64]}],
                         "methods": [{"name": "ilu", "params": {"fill_factor": [1, 2, 5]}}]},
                        registry)
    recs = [run_case(c, 0, plan=RunPlan(registry=registry)) for c in suite.cases]
    assert [r["status"] for r in recs] == ["ok"] * 3
    assert len({r["gmres_iterations"] for r in recs}) == 1  # one operator, one plain GMRES
    assert recs[0]["n_params"] <= recs[1]["n_params"] <= recs[2]["n_params"]
