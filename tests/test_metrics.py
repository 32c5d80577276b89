"""The core's metrics on exact and deliberately inexact factorizations."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg as sla

from lubench.api import Factorization, FactorizationError, MatrixFreeOperator, Operator
from lubench.metrics.grading import factor_errors, grade, precond_iterations, solve_errors


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

    def apply_transpose(self, X):
        return self.A_hat.T @ X


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


def test_spectral_norm_from_the_gram_matrix_above_svd_limit():
    op = laplacian(1100)
    A = op.dense()
    E = np.zeros_like(A)
    E[0, 0], E[5, 9] = 2e-3, 1e-3
    m = factor_errors(op, Explicit(A + E), exact_limit=2000, seed=0)
    assert m["factor_error_2"] == pytest.approx(2e-3, rel=1e-6)


def test_spectral_norm_above_svd_limit_matches_the_svd_when_top_values_cluster():
    # the off-diagonal part of a 1D convection–diffusion matrix: σ₁ ≈ σ₂ ≈ … ≈ 1, where
    # Lanczos (ARPACK) took minutes at n = 4096; here n = 1100 keeps the SVD affordable
    from lubench.metrics.grading import SPECTRAL_SVD_LIMIT, spectral_norm

    n = 1100
    assert n > SPECTRAL_SVD_LIMIT
    E = np.diag(np.full(n - 1, -0.55), 1) + np.diag(np.full(n - 1, -0.45), -1)
    assert spectral_norm(E) == pytest.approx(np.linalg.norm(E, 2), rel=1e-12)
    assert spectral_norm(1e300 * E) == pytest.approx(1e300 * np.linalg.norm(E, 2), rel=1e-12)


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
    # n = 4096) leaves an error of subnormal numbers: their squares underflow to zero unless
    # the Gram matrix is formed from E / max|E|.
    from lubench.metrics.grading import spectral_norm

    E = np.zeros((1100, 1100))
    E[3, 1000], E[700, 2] = 5e-324, 1e-320
    assert spectral_norm(E) == pytest.approx(1e-320, rel=1e-3)


# --------------------------------------------------------------------------------------------
# Non-finite values: one rule (NaN, named in `error`, precond_converged false)
# --------------------------------------------------------------------------------------------
class Blowing(Explicit):
    """Factors whose product and solve hold ``value`` (inf or NaN) in one entry."""

    def __init__(self, A_hat: np.ndarray, value: float):
        super().__init__(A_hat)
        self.value = value

    def solve(self, B):
        X = np.array(super().solve(B), dtype=float)
        X[0] = self.value
        return X

    def apply(self, X):
        Y = np.array(super().apply(X), dtype=float)
        Y[0] = self.value
        return Y


@pytest.mark.parametrize("value", [np.inf, np.nan], ids=["inf", "nan"])
@pytest.mark.parametrize("exact_limit", [100, 10], ids=["exact", "probe"])
def test_non_finite_inputs_give_nan_metrics_named_in_error(value, exact_limit):
    op = laplacian(40)
    m = grade(op, Blowing(op.dense(), value), seed=0, exact_limit=exact_limit)
    for key in ("factor_error", "factor_error_2", "solve_residual", "forward_error",
                "precond_iterations", "precond_seconds", "cg_iterations", "cg_seconds"):
        assert np.isnan(m[key]), key  # never inf, never a count of 500
    assert m["precond_converged"] is False and m["cg_converged"] is False
    # the plain GMRES does not use the factors: still a count
    assert m["gmres_iterations"] > 1 and m["gmres_converged"] is True
    named = m["error"].split(": ", 1)[1].split(", ")
    # factor_error_2 too: exact, or estimated from products with the factors, which overflow
    assert named == ["factor_error", "factor_error_2", "solve_residual", "forward_error",
                     "precond_iterations", "precond_seconds", "cg_iterations", "cg_seconds"]


def test_a_nan_preconditioner_is_not_500_iterations():
    # GMRES runs all its iterations on NaN (no comparison with NaN stops it): the count
    # would read 500 "not converged", which is not what happened
    op = laplacian(30)

    class NaNSolve(Explicit):
        def solve(self, B):
            return np.full_like(np.asarray(B, dtype=float), np.nan)

    out = precond_iterations(op, NaNSolve(op.dense()), seed=0)
    assert np.isnan(out["precond_iterations"]) and out["precond_converged"] is False
    assert np.isnan(out["precond_seconds"])


def test_an_overflowing_norm_is_nan_too():
    # x̂ finite but huge: ‖A x̂ − b‖ overflows to inf, which the rule records as NaN
    op = laplacian(20)

    class Huge(Explicit):
        def solve(self, B):
            return np.full_like(np.asarray(B, dtype=float), 1e308)

    m = solve_errors(op, Huge(op.dense()), seed=0)
    assert np.isnan(m["solve_residual"]) and np.isnan(m["forward_error"])


def test_finite_metrics_leave_error_empty():
    op = laplacian(30)
    m = grade(op, Explicit(op.dense() + 0.01 * np.eye(30)), seed=0)
    assert m["error"] == ""
    assert all(np.isfinite(m[k]) for k in ("factor_error", "factor_error_2", "solve_residual",
                                           "precond_iterations", "precond_seconds"))


def test_repeat_median_keeps_non_finite_values():
    from lubench.metrics.grading import repeat_median

    assert repeat_median([1.0, 3.0, 2.0]) == 2.0
    assert np.isnan(repeat_median([1.0, np.nan, 2.0]))
    assert np.isnan(repeat_median([1.0, np.inf, 2.0]))
    assert np.isnan(repeat_median([]))
    assert repeat_median([None, 4.0]) == 4.0  # None: not measured


# --------------------------------------------------------------------------------------------
# Plain GMRES: same A, b, restart, tolerance and cap; once per operator
# --------------------------------------------------------------------------------------------
def test_plain_gmres_is_gmres_with_the_identity_preconditioner():
    from lubench.metrics.grading import plain_gmres

    op = laplacian(200)

    class Identity(Explicit):
        def solve(self, B):
            return np.array(B, dtype=float)

    plain = plain_gmres(op, seed=5)
    with_identity = precond_iterations(op, Identity(np.eye(200)), seed=5)
    assert plain["gmres_iterations"] == with_identity["precond_iterations"]
    assert plain["gmres_converged"] == with_identity["precond_converged"]
    # the 1-D Laplacian needs far more than one iteration; an exact preconditioner one
    assert plain["gmres_iterations"] > 50
    assert precond_iterations(op, Explicit(op.dense()), seed=5)["precond_iterations"] == 1


def test_plain_gmres_reports_non_convergence_at_the_cap():
    from lubench.metrics.grading import GMRES_MAXITER, plain_gmres

    n = 2000  # 1-D Laplacian, κ ~ 1.6e6: restarted GMRES(50) stalls
    m = plain_gmres(laplacian(n), seed=0)
    assert m == {"gmres_iterations": GMRES_MAXITER, "gmres_converged": False}


def test_plain_gmres_is_computed_once_per_operator_content(monkeypatch):
    import lubench.metrics.grading as metrics

    calls = []
    real = metrics._gmres

    def counting(op, b, solve, deadline=None):
        calls.append(solve is None)
        return real(op, b, solve, deadline)

    monkeypatch.setattr(metrics, "_gmres", counting)
    monkeypatch.setattr(metrics, "_PLAIN_CACHE", type(metrics._PLAIN_CACHE)())
    op = laplacian(60)
    first = grade(op, Explicit(op.dense()), seed=7)
    second = grade(op, Explicit(op.dense() + 1e-3 * np.eye(60)), seed=7)
    assert calls.count(True) == 1  # two methods, one plain GMRES
    assert first["gmres_iterations"] == second["gmres_iterations"]
    # the same name and size with other values is another operator: computed again
    other = Operator("lap", 3 * op.dense(), symmetric=True, spd=True)
    grade(other, Explicit(other.dense()), seed=7)
    # and so is the same matrix under another seed (another right-hand side)
    grade(op, Explicit(op.dense()), seed=8)
    assert calls.count(True) == 3


def test_plain_gmres_is_read_back_from_the_run_directory_cache(monkeypatch, tmp_path):
    """A fresh process (an empty memo) finds the result another worker left in the cache."""
    import lubench.metrics.grading as metrics
    from lubench.rundir.cache import FolderCache

    cache = FolderCache(tmp_path / "cache")
    monkeypatch.setattr(metrics, "_PLAIN_CACHE", type(metrics._PLAIN_CACHE)())
    op = laplacian(60)
    first = metrics.plain_gmres(op, seed=3, cache=cache)
    assert len(list((tmp_path / "cache").glob("gmres-*.json"))) == 1

    def no_gmres(op, b, solve, deadline=None):
        raise AssertionError("plain GMRES ran again")

    monkeypatch.setattr(metrics, "_gmres", no_gmres)
    monkeypatch.setattr(metrics, "_PLAIN_CACHE", type(metrics._PLAIN_CACHE)())
    assert metrics.plain_gmres(op, seed=3, cache=cache) == first
    monkeypatch.setattr(metrics, "_PLAIN_CACHE", type(metrics._PLAIN_CACHE)())
    with pytest.raises(AssertionError, match="ran again"):  # another seed: not the same entry
        metrics.plain_gmres(op, seed=4, cache=cache)


def test_grade_computes_exactly_the_graded_metrics_of_the_table():
    """The metric table says which metrics grading computes; grade returns those (and the
    non-finite note), no fewer and no more."""
    from lubench.metrics.table import METRICS

    op = laplacian(40)
    out = grade(op, Explicit(op.dense()), seed=1)
    assert set(out) - {"error"} == {m.key for m in METRICS if m.graded}


def test_precond_seconds_is_the_wall_time_of_the_preconditioned_solve():
    op = laplacian(100)
    out = precond_iterations(op, Explicit(op.dense() + 0.3 * np.eye(100)), seed=0)
    assert out["precond_converged"] and 0 < out["precond_seconds"] < 60


# --------------------------------------------------------------------------------------------
# One problem per operator
# --------------------------------------------------------------------------------------------
TIMES = ("solve_seconds", "precond_seconds", "cg_seconds", "cg_curve")  # cg_curve: seconds


def test_the_same_factors_get_the_same_metrics():
    op = laplacian(80)
    A_hat = op.dense() + 0.05 * np.diag(np.linspace(0, 1, 80))
    a = grade(op, Explicit(A_hat), seed=11)
    b = grade(op, Explicit(A_hat.copy()), seed=11)
    for key in a:
        if key not in TIMES:
            assert a[key] == b[key] or (np.isnan(a[key]) and np.isnan(b[key])), key


def test_twin_configurations_in_a_suite_are_graded_on_one_problem(registry):
    """plu with check_finite true and false produce the same factors: their rows hold the
    same metric values because grading draws from the operator's seed, not the case's."""
    from lubench.execution.plan import RunPlan
    from lubench.execution.worker import run_case
    from lubench.suite.load import build_suite

    suite = build_suite({
        "name": "twins",
        "operators": [{"name": "convdiff_2d", "sizes": [64]}],
        "methods": [{"name": "plu", "params": {"check_finite": [True, False]}},
                    {"name": "sparse_lu"}],
    }, registry)
    cases = suite.cases
    assert len({c.seed for c in cases}) == 3 and len({c.operator_seed for c in cases}) == 1
    recs = [run_case(c, 0, plan=RunPlan(registry=registry)) for c in cases]
    assert all(r["status"] == "ok" and r["error"] == "" for r in recs)
    plu_true, plu_false, slu = recs
    for key in ("factor_error", "factor_error_2", "solve_residual", "forward_error",
                "precond_iterations", "precond_converged", "gmres_iterations",
                "gmres_converged", "n_params"):
        assert plu_true[key] == plu_false[key], key
    # every row of the operator carries the same plain GMRES
    assert plu_true["gmres_iterations"] == slu["gmres_iterations"] > 1


def test_the_comparable_suite_at_small_sizes(tmp_path):
    """suites/comparable.yaml (sizes cut to 64, the learned budget to 20 steps) through the
    installed command: the twins' rows are identical, every row holds the plain GMRES."""
    import pandas as pd
    import yaml
    from conftest import REPO
    from test_cli import lubench

    suite = yaml.safe_load((REPO / "suites" / "comparable.yaml").read_text())
    for entry in suite["operators"]:
        entry["sizes"] = [64]
    for entry in suite["methods"]:
        if "budget" in entry:
            entry["budget"] = {"max_steps": 20}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(suite))
    out = lubench("run", tmp_path / "s.yaml", "-o", tmp_path / "run", "--no-report")
    assert out.returncode == 0, out.stderr
    df = pd.read_parquet(tmp_path / "run" / "results.parquet")
    assert (df["status"] == "ok").all(), df.loc[df.status != "ok", "error"]
    assert (df.loc[df.method == "ilu", "operator"].value_counts() == 3).all()
    graded = ["factor_error", "factor_error_2", "solve_residual", "forward_error",
              "precond_iterations", "precond_converged", "gmres_iterations", "n_params"]
    for (_op, method), g in df.groupby(["operator", "method"]):
        if method in ("plu", "sparse_lu"):  # the twins
            assert len(g) == 2 and (g[graded].nunique(dropna=False) == 1).all(), method
    assert df["gmres_iterations"].notna().all()
    assert (df.groupby("operator")["gmres_iterations"].nunique() == 1).all()
    # computed once per operator: one cached result per operator in the run directory,
    # which the forked worker of every later case of that operator read
    cached = list((tmp_path / "run" / "cache").glob("gmres-*.json"))
    assert len(cached) == df["operator"].nunique()


# --------------------------------------------------------------------------------------------
# Above exact_limit: from the operator's action and the factors' products alone
# --------------------------------------------------------------------------------------------
class NoTranspose(Explicit):
    def apply_transpose(self, X):
        raise NotImplementedError


def test_the_spectral_error_is_estimated_by_power_iteration_above_the_exact_limit():
    """E = A − Â with a known, separated top singular value: the estimate (probes only)
    matches the exact ‖E‖₂ to the power iteration's tolerance, and says how it was made."""
    n = 120
    op = laplacian(n)
    rng = np.random.default_rng(0)
    E = 1e-3 * rng.standard_normal((n, n)) / np.sqrt(n)
    u, v = rng.standard_normal(n), rng.standard_normal(n)
    E += 0.05 * np.outer(u / np.linalg.norm(u), v / np.linalg.norm(v))
    exact = np.linalg.norm(E, 2)
    m = grade(op, Explicit(op.dense() - E), seed=3, exact_limit=10)
    assert m["factor_error_kind"] == "probe32" and m["factor_error_2_kind"].startswith("power")
    assert 1 <= int(m["factor_error_2_kind"][5:]) <= 10
    assert m["factor_error_2"] <= exact * (1 + 1e-12)   # a lower bound ...
    assert m["factor_error_2"] >= exact * (1 - 2e-2)    # ... to the iteration's 1 %
    # everything graded; Â is not symmetric, so CG on the (symmetric) Laplacian says so
    assert m["not_graded"] == "" and m["error"] == "CG not run: preconditioner not symmetric"
    below = grade(op, Explicit(op.dense() - E), seed=3, exact_limit=n)
    assert below["factor_error_2_kind"] == "exact"
    assert below["factor_error_2"] == pytest.approx(exact, rel=1e-12)


def test_without_apply_transpose_the_spectral_error_is_not_graded_and_says_why():
    op = laplacian(50)
    m = grade(op, NoTranspose(op.dense() + 1e-3 * np.eye(50)), seed=0, exact_limit=10)
    assert np.isnan(m["factor_error_2"]) and m["factor_error_2_kind"] == ""
    assert m["not_graded"] == "factor_error_2 (the factorization gives no apply_transpose)"
    assert m["error"] == ""  # not measured is not "not finite"


class SlowLaplacian(MatrixFreeOperator):
    """tridiag(−1, 2, −1) whose every product takes at least 20 ms."""

    def __init__(self, n):
        super().__init__("slow", n, symmetric=True, spd=True)

    def matmat(self, X):
        import time

        time.sleep(0.02)
        X = np.asarray(X, dtype=float)
        Y = 2.0 * X
        Y[1:] -= X[:-1]
        Y[:-1] -= X[1:]
        return Y


def test_what_the_grade_limit_cannot_afford_is_not_graded_and_said(monkeypatch):
    """Products of ≥ 20 ms: plain GMRES (500 of them, ≥ 10 s), plain CG (10 000 of them) and
    ten power steps (≥ 0.4 s) do not fit a 0.3 s grade limit: all three are left out, each
    named with its prediction; the preconditioned GMRES and CG and everything else is
    graded."""
    import lubench.metrics.cg as cg
    import lubench.metrics.grading as metrics

    monkeypatch.setattr(metrics, "_PLAIN_CACHE", type(metrics._PLAIN_CACHE)())
    monkeypatch.setattr(cg, "_PLAIN", type(cg._PLAIN)())
    op = SlowLaplacian(30)
    fact = Explicit(laplacian(30).dense())
    m = grade(op, fact, seed=0, exact_limit=10, grade_limit=0.3)
    assert np.isnan(m["factor_error_2"]) and np.isnan(m["gmres_iterations"])
    assert m["gmres_converged"] is None and "cg_plain_iterations" not in m
    assert m["cg_converged"] is True and m["cg_iterations"] == 1
    notes = m["not_graded"].split("; ")
    assert [note.split(" (")[0] for note in notes] == ["factor_error_2", "gmres_iterations",
                                                       "cg_plain_iterations"]
    assert notes[0].startswith("factor_error_2 (10 power steps of ")
    assert "plain GMRES, 500 products with A of " in notes[1]
    assert "plain CG, 10000 products with A of " in notes[2]
    assert all("left of grade_limit 0.3 s)" in note for note in notes)
    assert m["precond_converged"] and m["solve_residual"] < 1e-12 and m["error"] == ""
    free = grade(op, fact, seed=0, exact_limit=10, grade_limit=None)
    assert free["not_graded"] == "" and free["gmres_converged"] is True
    assert free["cg_plain_converged"] is True


def test_an_operator_that_is_never_formed_is_graded_from_its_action_at_large_n():
    """The exponential kernel at n = 20 000 (its dense A: 3.2 GB) with factors that act and
    solve exactly in O(n) (A⁻¹ is tridiagonal): every metric, no n² array — the NumPy memory
    of the whole grading stays under 100 MB."""
    import tracemalloc

    import scipy.sparse as sp
    import scipy.sparse.linalg as spla
    from lubench_operators import ExponentialKernel

    n, rho = 20_000, 0.5
    op = ExponentialKernel(rho=rho).build(n, seed=0)
    off = -rho * np.ones(n - 1)
    diag = np.full(n, 1 + rho**2)
    diag[[0, -1]] = 1.0
    inverse = sp.diags([off, diag, off], [-1, 0, 1], format="csc") / (1 - rho**2)

    class Closed(Factorization):
        n_params = 3 * n

        def solve(self, B):
            return inverse @ B

        def apply(self, X):
            return op.matmat(X)

        def apply_transpose(self, X):
            return op.matmat(X)

    spla.norm(inverse)  # (imports done before measuring)
    tracemalloc.start()
    try:
        m = grade(op, Closed(), seed=0, exact_limit=4096)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 100e6
    assert m["factor_error_kind"] == "probe32" and m["factor_error"] == 0.0
    assert m["factor_error_2"] == 0.0 and m["factor_error_2_kind"] == "power1"
    assert m["solve_residual"] < 1e-14 and m["forward_error"] < 1e-14
    assert m["precond_iterations"] == 1 and m["gmres_converged"]
    assert m["not_graded"] == "" and m["error"] == ""


class Useless(Explicit):
    """A preconditioner that does nothing (solve = identity): GMRES as plain, slowly."""

    def solve(self, B):
        return np.array(B, dtype=float)


def test_a_preconditioned_gmres_that_runs_past_the_grade_limit_stops_and_says_so():
    op = SlowLaplacian(200)  # ≥ 20 ms a product: 500 iterations ≥ 10 s
    m = grade(op, Useless(laplacian(200).dense()), seed=0, exact_limit=10, grade_limit=0.5)
    assert m["precond_converged"] is False and 1 <= m["precond_iterations"] < 500
    note = m["not_graded"].split("; ")[0]
    assert note == (f"precond_iterations (GMRES stopped after {m['precond_iterations']} "
                    "iterations, not converged, at grade_limit 0.5 s)")
    # CG, after it, meets the deadline passed: one iteration, stopped, said the same way
    assert m["cg_converged"] is False and m["cg_iterations"] >= 1
    assert (f"cg_iterations (CG stopped after {m['cg_iterations']:.0f} iterations, not "
            "converged, at grade_limit 0.5 s)") in m["not_graded"].split("; ")
