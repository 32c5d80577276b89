"""The metrics, computed by the core from ``Factorization.apply`` and ``solve``.

Every method is graded the same way; a method never grades itself. With Â = P·L·U the
product of the stored factors (``apply``) and x̂ = Â⁻¹b the factorization's ``solve``:

* ``factor_error``   ‖A − Â‖_F / ‖A‖_F, exact when n ≤ ``exact_limit`` (and ``apply`` is
  cheap), else estimated with a seeded Gaussian probe block Ω (n × 32):
  ‖(A − Â)Ω‖_F / ‖AΩ‖_F. ``factor_error_kind`` says ``exact`` or ``probe32``.
* ``factor_error_2`` ‖A − Â‖₂, spectral and absolute (the Learn LU post's figure); only when
  the error is exact (NaN otherwise).
* ``solve_residual`` ‖A x̂ − b‖₂ / ‖b‖₂ with b = A x*, x* ~ N(0, I) seeded — always the true
  A, never Â.
* ``forward_error``  ‖x̂ − x*‖₂ / ‖x*‖₂.
* ``precond_iterations`` inner GMRES iterations (restart 50, rtol 1e-8, at most 500) to solve
  A x = b with ``solve`` as preconditioner; 1 for an exact factorization; NaN when the
  preconditioner overflows (GMRES breaks down). ``precond_converged`` says whether GMRES
  reached the tolerance within 500.
* ``solve_seconds`` median wall time of one ``solve`` of one right-hand side, after a warm-up.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import scipy.sparse.linalg as spla

from lubench.api import Factorization, FactorizationError, Operator

__all__ = ["grade", "factor_errors", "solve_errors", "precond_iterations", "time_solve",
           "PROBES", "GMRES_RESTART", "GMRES_RTOL", "GMRES_MAXITER"]

PROBES = 32
GMRES_RESTART = 50
GMRES_RTOL = 1e-8
GMRES_MAXITER = 500
SPECTRAL_SVD_LIMIT = 1024  # up to here the 2-norm comes from a full SVD, above from ARPACK


def _checked(out: object, shape: tuple[int, ...], what: str) -> np.ndarray:
    """The plugin's output as a float64 array of the promised shape, or FactorizationError."""
    arr = np.asarray(out)
    if arr.shape != shape:
        raise FactorizationError(f"{what} returned shape {arr.shape}, expected {shape}")
    return arr.astype(np.float64, copy=False)


def spectral_norm(E: np.ndarray, seed: int = 0) -> float:
    """‖E‖₂: the largest singular value (full SVD when small, ARPACK Lanczos otherwise)."""
    if not np.any(E):
        return 0.0
    if not np.all(np.isfinite(E)):
        return float("inf")
    if E.shape[0] <= SPECTRAL_SVD_LIMIT:
        return float(np.linalg.norm(E, 2))
    # Round-off-sized entries (an exact method: |E| ~ 1e-17) can make ARPACK's first Lanczos
    # vector vanish ("starting vector is zero"): work on E / max|E| and scale back.
    scale = float(np.abs(E).max())
    v0 = np.random.default_rng(seed).standard_normal(E.shape[0])
    try:
        s = spla.svds(E / scale, k=1, return_singular_vectors=False, v0=v0, tol=1e-6)
        return float(s[0]) * scale
    except (spla.ArpackError, spla.ArpackNoConvergence):
        return float(np.linalg.norm(E / scale, 2)) * scale  # full SVD: slow, but sure


def factor_errors(op: Operator, fact: Factorization, exact_limit: int,
                  seed: int) -> dict[str, float | str]:
    """``factor_error`` (relative Frobenius), its kind, and ``factor_error_2`` (spectral)."""
    n = op.n
    exact = n <= exact_limit and not getattr(fact, "expensive_apply", False)
    if exact:
        A = op.dense()
        E = A - _checked(fact.apply(np.eye(n)), (n, n), "apply(I)")
        return {
            "factor_error": float(np.linalg.norm(E) / np.linalg.norm(A)),
            "factor_error_kind": "exact",
            "factor_error_2": spectral_norm(E, seed),
        }
    omega = np.random.default_rng([seed, 1]).standard_normal((n, PROBES))
    A_omega = np.asarray(op.matmul(omega))
    E_omega = A_omega - _checked(fact.apply(omega), (n, PROBES), "apply(Ω)")
    return {
        "factor_error": float(np.linalg.norm(E_omega) / np.linalg.norm(A_omega)),
        "factor_error_kind": f"probe{PROBES}",
        "factor_error_2": float("nan"),
    }


def solve_errors(op: Operator, fact: Factorization, seed: int) -> dict[str, float]:
    """``solve_residual`` and ``forward_error`` for b = A x*, x* ~ N(0, I)."""
    n = op.n
    x_true = np.random.default_rng([seed, 2]).standard_normal(n)
    b = np.asarray(op.matmul(x_true))
    x_hat = _checked(fact.solve(b), (n,), "solve(b)")
    with np.errstate(all="ignore"):
        res = np.linalg.norm(op.matmul(x_hat) - b) / np.linalg.norm(b)
        fwd = np.linalg.norm(x_hat - x_true) / np.linalg.norm(x_true)
    return {"solve_residual": float(res), "forward_error": float(fwd)}


def precond_iterations(op: Operator, fact: Factorization, seed: int) -> dict[str, float | bool]:
    """Inner GMRES iterations with ``solve`` as preconditioner (restart 50, rtol 1e-8, ≤ 500)."""
    n = op.n
    b = np.asarray(op.matmul(np.random.default_rng([seed, 3]).standard_normal(n)))
    A = spla.aslinearoperator(op.matrix)

    def precondition(v: np.ndarray) -> np.ndarray:
        return _checked(fact.solve(np.asarray(v).reshape(n)), (n,), "solve(v)")

    M = spla.LinearOperator((n, n), matvec=precondition, dtype=np.float64)
    count = 0

    def callback(_pr_norm: float) -> None:
        nonlocal count
        count += 1

    try:
        with np.errstate(all="ignore"):
            x, info = spla.gmres(A, b, M=M, rtol=GMRES_RTOL, atol=0.0, restart=GMRES_RESTART,
                                 maxiter=GMRES_MAXITER // GMRES_RESTART, callback=callback,
                                 callback_type="pr_norm")
    except (ValueError, np.linalg.LinAlgError, FloatingPointError):
        return {"precond_iterations": float("nan"), "precond_converged": False}
    residual = np.linalg.norm(op.matmul(x) - b) / np.linalg.norm(b)
    converged = bool(info == 0 and np.isfinite(residual))
    if not converged and count < GMRES_MAXITER:
        # stopped early without converging: the preconditioner overflowed and GMRES broke
        # down (the iterations it did are not a count of anything)
        return {"precond_iterations": float("nan"), "precond_converged": False}
    return {"precond_iterations": int(min(count, GMRES_MAXITER)),
            "precond_converged": converged}


def time_solve(fact: Factorization, n: int, seed: int, repeats: int = 5,
               synchronize: Callable[[], None] = lambda: None) -> float:
    """Median wall time of one ``solve`` of one right-hand side, after one warm-up call."""
    b = np.random.default_rng([seed, 4]).standard_normal(n)
    fact.solve(b)
    synchronize()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fact.solve(b)
        synchronize()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def grade(op: Operator, fact: Factorization, *, seed: int, exact_limit: int = 4096,
          synchronize: Callable[[], None] = lambda: None) -> dict:
    """All the metrics of one factorization of ``op`` (see the module docstring)."""
    n_params = fact.n_params
    if isinstance(n_params, (bool, np.bool_)) or not isinstance(n_params, (int, np.integer)) \
            or n_params < 0:
        raise FactorizationError(f"n_params must be a non-negative integer, got {n_params!r}")
    out: dict = {"n_params": int(n_params)}
    # An inexact factorization may overflow (a solve that blows up is a result, recorded as
    # inf/NaN errors): no floating-point warnings on the worker's stderr for it.
    with np.errstate(all="ignore"):
        out.update(factor_errors(op, fact, exact_limit, seed))
        out.update(solve_errors(op, fact, seed))
        out.update(precond_iterations(op, fact, seed))
        out["solve_seconds"] = time_solve(fact, op.n, seed, synchronize=synchronize)
    return out
