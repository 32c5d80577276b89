"""Preconditioned CG at a list of tolerances (lubench.metrics.cg), against SciPy's CG
and on preconditioners that are not SPD."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg as sla
import scipy.sparse as sp
import scipy.sparse.linalg as spla
from lubench_operators.families import Diffusion2D

from lubench.metrics.cg import (
    CONVERGED,
    MAXITER_REACHED,
    NONFINITE,
    OPERATOR_NOT_SPD,
    PRECONDITIONER_NOT_SPD,
    STAGNATED,
    TOLERANCES,
    pcg,
    spd_probe,
)


def laplacian_1d(n: int) -> sp.csr_array:
    e = np.ones(n)
    return sp.csr_array(sp.diags_array([-e[1:], 2 * e, -e[1:]], offsets=[-1, 0, 1]))


def rhs(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(n)


def test_each_tolerance_is_met_by_the_true_residual_in_order():
    A = Diffusion2D(variance=4.0).build(32 * 32, 0).matrix  # κ ≈ 1e5: residuals drift
    b = rhs(A.shape[0])
    out = pcg(A, b)
    assert out.status == CONVERGED
    assert [t.tol for t in out.tolerances] == list(TOLERANCES)
    its = [t.iterations for t in out.tolerances]
    secs = [t.seconds for t in out.tolerances]
    assert its == sorted(its) and secs == sorted(secs) and its[0] >= 1
    assert all(t.residual <= t.tol for t in out.tolerances)
    assert out.iterations == its[-1]
    assert np.linalg.norm(b - A @ out.x) / np.linalg.norm(b) <= min(TOLERANCES)


@pytest.mark.parametrize("tol", [1e-6, 1e-10])
def test_iterations_agree_with_scipy_cg(tol):
    A = Diffusion2D().build(24 * 24, 1).matrix
    b = rhs(A.shape[0], 1)
    d = A.diagonal()
    count = 0

    def callback(_x):
        nonlocal count
        count += 1

    spla.cg(A, b, rtol=tol, atol=0.0, M=sp.diags_array(1 / d), maxiter=5000, callback=callback)
    ours = pcg(A, b, lambda r: r / d, tolerances=(tol,)).at(tol).iterations
    assert abs(ours - count) <= 1  # SciPy stops on the recurrence residual, we on the true one


def test_the_exact_inverse_takes_one_iteration():
    A = laplacian_1d(50)
    c = sla.cho_factor(A.toarray())
    out = pcg(A, rhs(50), lambda r: sla.cho_solve(c, r))
    assert out.status == CONVERGED and [t.iterations for t in out.tolerances] == [1, 1, 1, 1]


def test_plain_cg_solves_the_laplacian_in_n_steps_at_most():
    out = pcg(laplacian_1d(30), rhs(30), tolerances=(1e-10,))
    assert out.status == CONVERGED and out.at(1e-10).iterations <= 30


def test_a_nonsymmetric_preconditioner_is_reported_and_not_run():
    A = laplacian_1d(40)
    N = sp.eye_array(40) + 0.3 * sp.eye_array(40, k=1)
    calls = 0

    def M(r):
        nonlocal calls
        calls += 1
        return N @ r

    out = pcg(A, rhs(40), M)
    assert out.status == PRECONDITIONER_NOT_SPD and "not symmetric" in out.message
    assert out.iterations == 0 and not any(t.converged for t in out.tolerances)
    assert calls == 2  # the probe's two products, no iteration


def test_a_negative_preconditioner_is_reported():
    out = pcg(laplacian_1d(20), rhs(20), lambda r: -r)
    assert out.status == PRECONDITIONER_NOT_SPD and "positive definite" in out.message


def test_an_indefinite_preconditioner_that_passes_the_probe_is_caught_in_the_iteration():
    n = 50
    d = np.ones(n)
    d[-1] = -1.0  # symmetric, and uᵀM⁻¹u > 0 for nearly every u: the probe passes
    A = sp.diags_array(np.arange(1.0, n + 1))
    assert spd_probe(lambda r: d * r, n) is None
    b = np.ones(n)
    b[-1] = 10.0  # r₀ᵀM⁻¹r₀ = 49 − 100 < 0
    out = pcg(A, b, lambda r: d * r)
    assert out.status == PRECONDITIONER_NOT_SPD and "r₀ᵀM⁻¹r₀" in out.message


def test_an_indefinite_operator_is_reported():
    A = sp.diags_array(np.r_[np.ones(10), -np.ones(10)])
    b = np.r_[np.zeros(10), np.ones(10)]
    out = pcg(A, b)
    assert out.status == OPERATOR_NOT_SPD and "pᵀAp" in out.message


def test_a_nan_preconditioner_is_nonfinite():
    out = pcg(laplacian_1d(10), rhs(10), lambda r: np.full_like(r, np.nan))
    assert out.status == NONFINITE and not any(t.converged for t in out.tolerances)


def test_maxiter_leaves_the_tolerances_unreached():
    out = pcg(laplacian_1d(200), rhs(200), maxiter=5)
    assert out.status == MAXITER_REACHED and out.iterations == 5
    assert not any(t.converged for t in out.tolerances)
    assert out.curve()[0] == {"tol": 1e-3, "iterations": None, "seconds": None,
                              "residual": None, "converged": False}


def test_a_tolerance_below_the_floor_stops_as_stagnated_not_at_maxiter():
    """An exact preconditioner of an ill-conditioned A (κ ≈ 1.7e9 at n = 2¹⁶): the true
    residual cannot go much below ε·κ, so the recurrence keeps claiming 1e-12 and the
    true residual keeps refusing it — CG stops after a few such checks (it ran all 10 000
    iterations, 5 minutes of grading, before)."""
    n = 1 << 16
    A = sp.csc_array(laplacian_1d(n))
    lu = spla.splu(A)
    out = pcg(A, np.random.default_rng(0).uniform(size=n), lu.solve)
    assert out.status == STAGNATED and out.iterations < 500
    assert out.at(1e-3).iterations == 1 and not out.at(1e-12).converged
    assert "stalls" in out.message


def test_zero_rhs_is_solved_at_iteration_zero():
    out = pcg(laplacian_1d(5), np.zeros(5))
    assert out.status == CONVERGED and all(t.iterations == 0 for t in out.tolerances)


@pytest.mark.parametrize("tols", [(), (0.0,), (1.0,), (1e-3, -1.0)])
def test_bad_tolerances_are_refused(tols):
    with pytest.raises(ValueError, match="tolerances"):
        pcg(laplacian_1d(5), np.ones(5), tolerances=tols)
