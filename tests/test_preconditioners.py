"""The preconditioner baselines (lubench_preconditioners): jacobi, ic0, ict, ilu0, amg —
the contract checks, what each factorization is, breakdowns, and CG with each."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import scipy.sparse as sp
from lubench_operators.families import Diffusion2D, RandomSPD
from lubench_preconditioners import AMG, IC0, ICT, ILU0, Jacobi
from lubench_preconditioners.gallery import PyAMGExample

from lubench.api import FactorizationError, Operator, RunContext, has_apply
from lubench.metrics.cg import CONVERGED, PRECONDITIONER_NOT_SPD, pcg, spd_probe
from lubench.metrics.grading import grade

CTX = RunContext(seed=3)

# The contract checks of every method here run in test_common.py, with the built-ins.


def kershaw() -> Operator:
    """Kershaw's SPD 4 × 4 matrix, on which incomplete Cholesky meets a negative pivot."""
    K = np.array([[3., -2, 0, 2], [-2, 3, -2, 0], [0, -2, 3, -2], [2, 0, -2, 3]])
    return Operator("kershaw", sp.csr_array(K), symmetric=True, spd=True)


@pytest.fixture(scope="module")
def diffusion() -> Operator:
    return Diffusion2D().build(24 * 24, 0)


def test_ic0_matches_a_on_its_pattern(diffusion):
    A = diffusion.matrix
    f = IC0().factorize(diffusion, CTX)
    assert f.info["shift"] == 0.0 and f.n_params == sp.tril(A).nnz
    pattern = sp.csr_array(abs(sp.tril(A)) > 0)
    assert (sp.csr_array(abs(f.L) > 0) - pattern).count_nonzero() == 0  # L on tril(A)
    E = sp.csr_array((f.L @ f.L.T - A).multiply(abs(A) > 0))
    assert abs(E).max() <= 1e-12 * abs(A).max()


def test_ilu0_is_ic0_on_a_symmetric_m_matrix(diffusion):
    ic, ilu = IC0().factorize(diffusion, CTX), ILU0().factorize(diffusion, CTX)
    X = np.random.default_rng(0).standard_normal((diffusion.n, 3))
    assert np.allclose(ilu.solve(X), ic.solve(X), rtol=1e-10, atol=1e-12)
    assert ilu.n_params == diffusion.matrix.nnz  # strict lower L + U


def test_ict_fills_in_and_takes_fewer_iterations(diffusion):
    A = diffusion.matrix
    ic, ict = IC0().factorize(diffusion, CTX), ICT().factorize(diffusion, CTX)
    assert ict.n_params > ic.n_params
    b = np.ones(diffusion.n)
    assert pcg(A, b, ict.solve).at(1e-8).iterations < pcg(A, b, ic.solve).at(1e-8).iterations


@pytest.mark.parametrize("cls, params", [(IC0, {}), (ICT, {"fill": 0, "threshold": 0.0})])
def test_a_breakdown_is_shifted_or_failed(cls, params):
    op = kershaw()  # ilupp: NaN from ichol0, a zero pivot from icholt without fill
    f = cls(**params).factorize(op, CTX)
    assert f.info["shift"] > 0 and np.all(np.isfinite(f.L.data)) and f.L.diagonal().min() > 0
    A, D = op.matrix.toarray(), np.diag(op.matrix.diagonal())
    L = f.L.toarray()
    if cls is IC0:  # L Lᵀ matches the shifted matrix on A's pattern
        shifted = A + f.info["shift"] * D
        assert np.allclose((L @ L.T)[A != 0], shifted[A != 0])
    with pytest.raises(FactorizationError, match="breaks down"):
        cls(**params, on_breakdown="fail").factorize(op, CTX)


def test_jacobi_divides_by_the_diagonal(diffusion):
    f = Jacobi().factorize(diffusion, CTX)
    B = np.arange(2.0 * diffusion.n).reshape(diffusion.n, 2)
    assert np.array_equal(f.solve(B), B / diffusion.matrix.diagonal()[:, None])
    assert f.n_params == diffusion.n


@pytest.mark.parametrize("kind", ["sa", "rs"])
def test_amg_v_cycle_is_spd_pickles_and_converges_fast(diffusion, kind):
    f = AMG(kind=kind).factorize(diffusion, CTX)
    assert spd_probe(f.solve, diffusion.n) is None
    assert f.info["levels"] >= 2 and f.n_params > 0
    b = np.ones(diffusion.n)
    assert pcg(diffusion.matrix, b, f.solve).at(1e-8).iterations <= 15
    copy = pickle.loads(pickle.dumps(f))  # rebuilt from A and the seed: the same cycle
    assert np.array_equal(copy.solve(b), f.solve(b))
    with pytest.raises(NotImplementedError):
        f.apply(b)


def test_the_baselines_rank_as_expected_on_diffusion(diffusion):
    A, b = diffusion.matrix, np.ones(diffusion.n)
    its = {name: pcg(A, b, m.factorize(diffusion, CTX).solve if m else None)
           .at(1e-8).iterations
           for name, m in [("none", None), ("jacobi", Jacobi()), ("ic0", IC0()),
                           ("amg", AMG())]}
    assert its["amg"] < its["ic0"] < its["jacobi"] <= its["none"], its


def test_preconditioners_of_a_nonsymmetric_matrix_are_not_spd_for_cg():
    op = PyAMGExample(example="recirc_flow").build(225, 0)
    for method in (ILU0(), AMG()):
        out = pcg(op.matrix, np.ones(op.n), method.factorize(op, CTX).solve)
        assert out.status == PRECONDITIONER_NOT_SPD and "not symmetric" in out.message


def test_ilu0_with_negative_pivots_is_caught_by_cg():
    op = RandomSPD().build(2000, 0)  # IC(0) breaks down here (shift 0.064), ILU(0) goes on
    out = pcg(op.matrix, np.ones(op.n), ILU0().factorize(op, CTX).solve)
    assert out.status == PRECONDITIONER_NOT_SPD and "rᵀM⁻¹r" in out.message
    assert pcg(op.matrix, np.ones(op.n), IC0().factorize(op, CTX).solve).status == CONVERGED


def test_a_v_cycle_is_graded_without_factor_metrics(diffusion):
    """A factorization that gives only M⁻¹: its factor metrics are not measured, every solver
    metric is, CG among them."""
    fact = AMG().factorize(diffusion, CTX)
    assert not has_apply(fact) and has_apply(IC0().factorize(diffusion, CTX))
    m = grade(diffusion, fact, seed=0, exact_limit=10_000)
    assert m["factor_error"] is None and m["factor_error_2"] is None
    assert m["factor_error_kind"] is None and m["error"] == ""
    assert m["precond_converged"] and m["cg_converged"] and m["cg_iterations"] <= 15
    assert m["cg_plain_iterations"] > 5 * m["cg_iterations"]
    # above exact_limit no spectral estimate is tried either (nothing to estimate, nothing
    # left out): factor_error_2 stays not measured and not_graded empty
    above = grade(diffusion, fact, seed=0, exact_limit=10)
    assert above["factor_error_2"] is None and above["not_graded"] == ""


@pytest.mark.parametrize("method", [Jacobi(), IC0(), ICT(), ILU0()], ids=repr)
def test_apply_transpose_is_the_transpose_of_apply(method, diffusion):
    """(M)ᵀ X from the factors, so that ‖A − M‖₂ is estimated above exact_limit; ILU(0) on a
    nonsymmetric matrix, where L U is not symmetric."""
    op = diffusion
    if isinstance(method, ILU0):
        A = sp.csr_array(diffusion.matrix)
        A = sp.csr_array(A + sp.diags_array(0.3 * np.ones(op.n - 1), offsets=1))
        op = Operator("nonsymmetric", A, symmetric=False, spd=False)
    fact = method.factorize(op, CTX)
    M = fact.apply(np.eye(op.n))
    X = np.random.default_rng(0).standard_normal((op.n, 3))
    np.testing.assert_allclose(fact.apply_transpose(X), M.T @ X, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(fact.apply_transpose(X[:, 0]), M.T @ X[:, 0], rtol=1e-12,
                               atol=1e-12)
    m = grade(op, fact, seed=0, exact_limit=10)
    assert m["factor_error_2_kind"].startswith("power") and m["not_graded"] == ""
    assert m["factor_error_2"] == pytest.approx(np.linalg.norm(op.dense() - M, 2), rel=2e-2)
