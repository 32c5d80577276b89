"""The core's metrics on exact and deliberately inexact factorizations."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg as sla

from lubench.api import Factorization, FactorizationError, Operator
from lubench.metrics import factor_errors, grade, precond_iterations, solve_errors


def laplacian(n: int) -> Operator:
    A = 2 * np.eye(n) - np.eye(n, k=1) - np.eye(n, k=-1)
    return Operator("lap", A, symmetric=True, spd=True)


class Explicit(Factorization):
    """Â given as a dense matrix (solve by LAPACK on Â)."""

    def __init__(self, A_hat: np.ndarray):
        super().__init__()
        self.A_hat = A_hat
        self.lu = sla.lu_factor(A_hat)
        self.n_params = A_hat.size

    def solve(self, B):
        return sla.lu_solve(self.lu, B)

    def apply(self, X):
        return self.A_hat @ X


def test_exact_factorization_is_graded_exact():
    op = laplacian(64)
    m = grade(op, Explicit(op.dense()), seed=0)
    assert m["factor_error"] == 0.0 and m["factor_error_2"] == 0.0
    assert m["factor_error_kind"] == "exact"
    assert m["solve_residual"] < 1e-13
    assert m["forward_error"] < 1e-10  # cond(A) ~ 1.7e3
    assert m["precond_iterations"] == 1 and m["precond_converged"]
    assert m["n_params"] == 64 * 64 and m["solve_seconds"] > 0


def test_known_perturbation_gives_known_errors():
    op = laplacian(50)
    A = op.dense()
    E = np.zeros_like(A)
    E[3, 7] = 1e-3
    m = factor_errors(op, Explicit(A + E), exact_limit=100, seed=0)
    assert m["factor_error"] == pytest.approx(1e-3 / np.linalg.norm(A), rel=1e-12)
    assert m["factor_error_2"] == pytest.approx(1e-3, rel=1e-12)


def test_probe_estimate_tracks_exact_error():
    op = laplacian(300)
    A = op.dense()
    rng = np.random.default_rng(1)
    fact = Explicit(A + 1e-4 * rng.standard_normal(A.shape))
    exact = factor_errors(op, fact, exact_limit=1000, seed=0)["factor_error"]
    probe = factor_errors(op, fact, exact_limit=10, seed=0)
    assert probe["factor_error_kind"] == "probe32"
    assert np.isnan(probe["factor_error_2"])
    assert probe["factor_error"] == pytest.approx(exact, rel=0.5)  # a 32-probe estimate


def test_spectral_norm_by_lanczos_above_svd_limit():
    op = laplacian(1100)
    A = op.dense()
    E = np.zeros_like(A)
    E[0, 0], E[5, 9] = 2e-3, 1e-3
    m = factor_errors(op, Explicit(A + E), exact_limit=2000, seed=0)
    assert m["factor_error_2"] == pytest.approx(2e-3, rel=1e-6)


def test_solve_uses_the_true_operator():
    op = laplacian(40)
    A = op.dense()
    fact = Explicit(A + 0.05 * np.eye(40))
    m = solve_errors(op, fact, seed=3)
    # x̂ = Â⁻¹ A x*: the residual against A is far from round-off
    assert m["solve_residual"] > 1e-4 and m["forward_error"] > 1e-3


def test_an_inexact_preconditioner_needs_more_gmres_iterations():
    op = laplacian(200)
    good = precond_iterations(op, Explicit(op.dense()), seed=0)
    rough = precond_iterations(op, Explicit(op.dense() + 0.5 * np.eye(200)), seed=0)
    assert good["precond_iterations"] == 1
    assert rough["precond_converged"] and rough["precond_iterations"] > 1


def test_contract_violations_are_reported():
    op = laplacian(10)

    class WrongShape(Explicit):
        def solve(self, B):
            return np.zeros(3)

    expected = r"solve\(b\) returned shape \(3,\), expected \(10,\)"
    with pytest.raises(FactorizationError, match=expected):
        grade(op, WrongShape(op.dense()), seed=0)

    class NoCount(Explicit):
        n_params = "many"

    bad = NoCount(op.dense())
    bad.n_params = "many"
    with pytest.raises(FactorizationError, match="n_params must be a non-negative integer"):
        grade(op, bad, seed=0)


def test_a_preconditioner_that_overflows_is_a_breakdown_not_one_iteration():
    op = laplacian(30)

    class Overflowing(Explicit):
        def solve(self, B):
            return np.full_like(np.asarray(B, dtype=float), np.inf)

    out = precond_iterations(op, Overflowing(op.dense()), seed=0)
    assert np.isnan(out["precond_iterations"]) and out["precond_converged"] is False


def test_spectral_norm_of_round_off_sized_errors_above_svd_limit():
    # An exact method on a matrix with underflowing entries (the exponential kernel at
    # n = 4096) leaves an error of subnormal numbers; ARPACK lost its starting vector on it.
    from lubench.metrics import spectral_norm

    E = np.zeros((1100, 1100))
    E[3, 1000], E[700, 2] = 5e-324, 1e-320
    assert spectral_norm(E) == pytest.approx(1e-320, rel=1e-3)
