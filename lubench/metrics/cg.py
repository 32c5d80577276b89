"""Preconditioned conjugate gradients, graded at a list of tolerances.

The solver the learned-preconditioner papers grade with (NeuralIF, PreCorrector, GNN-SPAI),
written once so that every method — classical, algebraic multigrid, learned — meets the same
harness. It is a pure function of A, b and the preconditioner (no state, no files):
grading calls it (:mod:`lubench.metrics.grading`: ``cg_iterations``, ``cg_converged``,
``cg_seconds``, the whole curve in the record), and so can anyone's script.

For SPD A and an SPD preconditioner M⁻¹ ≈ A⁻¹, with x₀ = 0 (Saad, *Iterative Methods for
Sparse Linear Systems*, 2nd ed., Algorithm 9.1):

    r₀ = b,  z₀ = M⁻¹r₀,  p₀ = z₀,  ρ₀ = r₀ᵀz₀
    for k = 0, 1, …:
        1. q = A p_k
        2. α = ρ_k / (p_kᵀ q)                         (p_kᵀAp_k ≤ 0: A is not SPD, stop)
        3. x_{k+1} = x_k + α p_k
        4. r_{k+1} = r_k − α q
        5. every pending tolerance τ with ‖r_{k+1}‖₂ ≤ τ·‖b‖₂ is checked on the true
           residual b − A x_{k+1}: reached if that also holds, else r_{k+1} is replaced by
           the true residual and the iteration goes on (residual replacement)
        6. z_{k+1} = M⁻¹ r_{k+1},  ρ_{k+1} = r_{k+1}ᵀ z_{k+1}
                                                      (ρ_{k+1} ≤ 0: M⁻¹ is not SPD, stop)
        7. p_{k+1} = z_{k+1} + (ρ_{k+1}/ρ_k) p_k

**Stopping.** Tolerance τ is *reached* at the first iteration k with
‖b − A x_k‖₂ ≤ τ·‖b‖₂ — the true residual, relative to b, in the 2-norm (step 5), so an
iterate is never counted on a recurrence residual that drifted below the true one. The
iteration stops when the smallest tolerance is reached, after ``maxiter`` iterations, when
it cannot go on (below), or at a ``deadline`` (grading's ``grade_limit``). It also stops,
``stagnated``, when the true residual has stalled: after residual replacement the recurrence
runs below τ again and again while b − A x_k stays where float64 leaves it (about ε·κ(A) for
an exact preconditioner of an ill-conditioned A) — :data:`STAGNATION_CHECKS` checks in a row
that neither reach a tolerance nor halve the smallest true residual seen end it, where
running on to ``maxiter`` would only spend grading time. Note that
NeuralIF's own harness stops on ‖r‖₂²/‖b‖₂² < rtol, the *square*: its "rtol 1e-8" is
τ = 1e-4 here.

**A preconditioner that is not SPD is reported, never run silently.** CG assumes M⁻¹
symmetric positive definite. Before the iteration, :func:`spd_probe` applies M⁻¹ to two
Gaussian vectors u, v and asks

    |uᵀM⁻¹v − vᵀM⁻¹u| ≤ 1e-6 · √(uᵀM⁻¹u · vᵀM⁻¹v)   and   uᵀM⁻¹u > 0, vᵀM⁻¹v > 0

(for SPD M⁻¹ the right-hand side bounds |uᵀM⁻¹v| by Cauchy–Schwarz, so the symmetry test is
scale-free; round-off in triangular solves or a V-cycle stays orders of magnitude below
1e-6). A non-symmetric M⁻¹ (an ILU of a non-symmetric matrix, a V-cycle with unsymmetric
smoothing) or a non-positive one fails it with certainty for generic u, v, and CG does not
run: the result says ``preconditioner_not_spd`` and why. An indefinite M⁻¹ that passes the
probe is caught during the iteration by ρ_k ≤ 0 (step 6), which an SPD M⁻¹ never gives;
only an indefinite M⁻¹ whose negative directions CG never meets goes unnoticed — and then
CG converged on its own terms.

Every number is float64; a preconditioner that returns NaN or ±inf ends the iteration with
``nonfinite`` (the core's non-finite rule: its counts are NaN, not a count).

Example — the 1D Laplacian, n = 8, unpreconditioned (CG solves it in at most n steps):

>>> import numpy as np, scipy.sparse as sp
>>> A = sp.diags_array([-np.ones(7), 2 * np.ones(8), -np.ones(7)], offsets=[-1, 0, 1])
>>> out = pcg(A, np.ones(8), tolerances=(1e-3, 1e-12))
>>> out.status, [t.iterations for t in out.tolerances]
('converged', [4, 4])
"""

from __future__ import annotations

import json
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from lubench.api import Factorization, Operator
    from lubench.metrics.cache import GradingCache

__all__ = ["pcg", "spd_probe", "CGResult", "ToleranceReached", "TOLERANCES", "MAXITER",
           "COLUMN_TOL", "graded_tolerances", "cg_applies", "cg_rhs", "cg_metrics", "plain_cg",
           "SYMMETRY_RTOL",
           "CONVERGED", "MAXITER_REACHED", "PRECONDITIONER_NOT_SPD", "OPERATOR_NOT_SPD",
           "NONFINITE", "DEADLINE", "STAGNATED", "STAGNATION_CHECKS", "STATUSES"]

#: The tolerances a suite grades at unless it lists its own (relative residual, 2-norm).
TOLERANCES: tuple[float, ...] = (1e-3, 1e-6, 1e-8, 1e-12)
#: The iteration cap unless a suite sets one.
MAXITER = 10_000
#: The tolerance of the columns ``cg_iterations``, ``cg_converged``, ``cg_seconds`` (the
#: tolerances a suite lists are recorded in ``cg_curve``; this one is always among them).
COLUMN_TOL = 1e-8
#: The symmetry test of :func:`spd_probe` (relative, in the M⁻¹ inner product).
SYMMETRY_RTOL = 1e-6

# What ended the iteration.
CONVERGED = "converged"                    # the smallest tolerance was reached
MAXITER_REACHED = "maxiter"                # ran maxiter iterations first
PRECONDITIONER_NOT_SPD = "preconditioner_not_spd"  # the probe failed, or ρ_k ≤ 0
OPERATOR_NOT_SPD = "operator_not_spd"      # p_kᵀ A p_k ≤ 0
NONFINITE = "nonfinite"                    # NaN or ±inf in A p, M⁻¹ r or the iterate
DEADLINE = "deadline"                      # the deadline passed first (grading's grade_limit)
STAGNATED = "stagnated"                    # the true residual stalled above a tolerance
STATUSES = (CONVERGED, MAXITER_REACHED, PRECONDITIONER_NOT_SPD, OPERATOR_NOT_SPD, NONFINITE,
            DEADLINE, STAGNATED)

#: True-residual checks in a row that neither reach a tolerance nor halve the smallest true
#: residual so far before CG stops as ``stagnated``.
STAGNATION_CHECKS = 3

Apply = Callable[[np.ndarray], np.ndarray]


@dataclass
class ToleranceReached:
    """CG at one tolerance τ.

    Attributes
    ----------
    tol : float
        τ, relative to ‖b‖₂.
    iterations : int or None
        The first k with ‖b − A x_k‖₂ ≤ τ‖b‖₂; None when not reached.
    seconds : float or None
        Wall time from the start of the iteration to that iterate (A and M⁻¹ applications
        included, the SPD probe not); None when not reached.
    residual : float or None
        ‖b − A x_k‖₂ / ‖b‖₂ at that iterate; None when not reached.
    """

    tol: float
    iterations: int | None = None
    seconds: float | None = None
    residual: float | None = None

    @property
    def converged(self) -> bool:
        return self.iterations is not None


@dataclass
class CGResult:
    """What :func:`pcg` returns.

    Attributes
    ----------
    status : str
        One of :data:`STATUSES`.
    message : str
        Why the iteration ended, in words (with the value for a breakdown).
    iterations : int
        Iterations run (products with A).
    seconds : float
        Wall time of the iteration.
    residual : float
        ‖b − A x‖₂/‖b‖₂ of the last iterate (NaN when it is not finite).
    tolerances : list of ToleranceReached
        One per tolerance asked, in the order asked.
    x : numpy.ndarray
        The last iterate.
    """

    status: str
    message: str
    iterations: int
    seconds: float
    residual: float
    tolerances: list[ToleranceReached] = field(default_factory=list)
    x: np.ndarray | None = field(default=None, repr=False)

    def at(self, tol: float) -> ToleranceReached:
        """The entry of tolerance ``tol`` (KeyError if it was not asked)."""
        for t in self.tolerances:
            if t.tol == tol:
                return t
        raise KeyError(f"tolerance {tol:g} was not asked; asked {[t.tol for t in self.tolerances]}")

    def curve(self) -> list[dict]:
        """The per-tolerance rows as plain dicts (``tol``, ``iterations``, ``seconds``,
        ``residual``, ``converged``), for a record."""
        return [{**asdict(t), "converged": t.converged} for t in self.tolerances]


def _as_apply(A: object) -> Apply:
    """A callable x ↦ A x from a callable, a matrix or a LinearOperator."""
    if callable(A) and not hasattr(A, "shape"):
        return A  # type: ignore[return-value]
    return lambda x: A @ x  # type: ignore[operator]


def spd_probe(M: Apply, n: int, seed: int = 0) -> tuple[str, str] | None:
    """``None`` when M⁻¹ looks symmetric positive definite on two Gaussian vectors, else
    (status, reason): :data:`NONFINITE` when M⁻¹ returned NaN or inf,
    :data:`PRECONDITIONER_NOT_SPD` when it is not symmetric or not positive (the test is in
    the module docstring).

    Parameters
    ----------
    M : callable
        r ↦ M⁻¹ r for r of shape (n,).
    n : int
        The size.
    seed : int
        Seeds u and v.
    """
    rng = np.random.default_rng([seed, 7])
    u, v = rng.standard_normal(n), rng.standard_normal(n)
    with np.errstate(all="ignore"):
        Mu, Mv = np.asarray(M(u), dtype=np.float64), np.asarray(M(v), dtype=np.float64)
        if Mu.shape != (n,) or Mv.shape != (n,):
            raise ValueError(f"the preconditioner returned shape {Mu.shape}, expected ({n},)")
        if not (np.all(np.isfinite(Mu)) and np.all(np.isfinite(Mv))):
            return NONFINITE, "the preconditioner returned NaN or inf"
        uMu, vMv = float(u @ Mu), float(v @ Mv)
        if uMu <= 0 or vMv <= 0:
            return PRECONDITIONER_NOT_SPD, (f"preconditioner not positive definite: "
                                            f"uᵀM⁻¹u = {min(uMu, vMv):.3g} ≤ 0")
        asym = abs(float(v @ Mu) - float(u @ Mv)) / math.sqrt(uMu * vMv)
    if not asym <= SYMMETRY_RTOL:
        return PRECONDITIONER_NOT_SPD, (f"preconditioner not symmetric: |uᵀM⁻¹v − vᵀM⁻¹u| / "
                                        f"√(uᵀM⁻¹u·vᵀM⁻¹v) = {asym:.2g} > {SYMMETRY_RTOL:g}")
    return None


def pcg(A: object, b: np.ndarray, M: object | None = None, *,
        tolerances: Sequence[float] = TOLERANCES, maxiter: int = MAXITER,
        check_spd: bool = True, seed: int = 0, deadline: float | None = None) -> CGResult:
    """Preconditioned CG on A x = b from x₀ = 0, with the iterations and wall time at which
    each tolerance is reached (module docstring: the algorithm, the stopping rule, and how a
    preconditioner that is not SPD is reported).

    Parameters
    ----------
    A : callable, matrix or LinearOperator
        x ↦ A x for x of shape (n,); A symmetric positive definite.
    b : numpy.ndarray
        The right-hand side, shape (n,).
    M : callable, matrix, LinearOperator or None
        r ↦ M⁻¹ r (the preconditioner's *inverse* action, e.g. a factorization's
        ``solve``); None for plain CG.
    tolerances : sequence of float
        Relative residuals τ in (0, 1) to record, any order.
    maxiter : int
        The most iterations.
    check_spd : bool
        Run :func:`spd_probe` on M first (skipped for plain CG).
    seed : int
        Seeds the probe.
    deadline : float or None
        A :func:`time.perf_counter` value: the iteration stops with :data:`DEADLINE` at the
        first iteration that ends after it (None: no deadline).

    Returns
    -------
    CGResult
    """
    taus = [float(t) for t in tolerances]
    if not taus or not all(0.0 < t < 1.0 for t in taus):
        raise ValueError(f"tolerances must lie in (0, 1), got {list(tolerances)}")
    if maxiter < 1:
        raise ValueError(f"maxiter must be a positive integer, got {maxiter}")
    b = np.asarray(b, dtype=np.float64)
    n = b.shape[0]
    apply_A = _as_apply(A)
    apply_M: Apply = _as_apply(M) if M is not None else (lambda r: r)
    reached = [ToleranceReached(t) for t in taus]
    x = np.zeros(n)
    bnorm = float(np.linalg.norm(b))

    def result(status: str, message: str, k: int, seconds: float) -> CGResult:
        with np.errstate(all="ignore"):
            res = float(np.linalg.norm(b - apply_A(x))) / bnorm if bnorm > 0 else 0.0
        return CGResult(status, message, k, seconds, res if math.isfinite(res) else math.nan,
                        reached, x)

    if bnorm == 0.0:  # x = 0 solves it: every tolerance at iteration 0
        for t in reached:
            t.iterations, t.seconds, t.residual = 0, 0.0, 0.0
        return result(CONVERGED, "b = 0", 0, 0.0)
    if M is not None and check_spd:
        found = spd_probe(apply_M, n, seed)
        if found is not None:
            return result(*found, 0, 0.0)

    pending = sorted(range(len(taus)), key=lambda i: -taus[i])  # largest τ first
    best_true, stalled = math.inf, 0
    t0 = time.perf_counter()
    with np.errstate(all="ignore"):
        r = b.copy()
        z = np.asarray(apply_M(r), dtype=np.float64)
        rho = float(r @ z)
        if not math.isfinite(rho):
            return result(NONFINITE, "the preconditioner returned NaN or inf", 0,
                          time.perf_counter() - t0)
        if rho <= 0:
            return result(PRECONDITIONER_NOT_SPD, f"preconditioner not positive definite: "
                          f"r₀ᵀM⁻¹r₀ = {rho:.3g} ≤ 0", 0, time.perf_counter() - t0)
        p = z.copy()
        for k in range(maxiter):
            q = np.asarray(apply_A(p), dtype=np.float64)          # 1
            pq = float(p @ q)
            if not math.isfinite(pq):
                return result(NONFINITE, f"A p is not finite at iteration {k + 1}", k,
                              time.perf_counter() - t0)
            if pq <= 0:
                return result(OPERATOR_NOT_SPD, f"operator not positive definite: "
                              f"pᵀAp = {pq:.3g} ≤ 0 at iteration {k + 1}", k,
                              time.perf_counter() - t0)
            alpha = rho / pq                                        # 2
            x += alpha * p                                          # 3
            r -= alpha * q                                          # 4
            rnorm = float(np.linalg.norm(r))
            if pending and rnorm <= taus[pending[0]] * bnorm:      # 5
                r_true = b - np.asarray(apply_A(x), dtype=np.float64)
                true_rel = float(np.linalg.norm(r_true)) / bnorm
                now = time.perf_counter() - t0
                before = len(pending)
                while pending and true_rel <= taus[pending[0]]:
                    hit = reached[pending.pop(0)]
                    hit.iterations, hit.seconds, hit.residual = k + 1, now, true_rel
                if not pending:
                    return result(CONVERGED, f"reached {min(taus):g} in {k + 1} iterations",
                                  k + 1, now)
                stalled = 0 if len(pending) < before or true_rel <= 0.5 * best_true \
                    else stalled + 1
                best_true = min(best_true, true_rel)
                if stalled >= STAGNATION_CHECKS:
                    return result(STAGNATED, f"the true residual stalls at {best_true:.3g} "
                                  f"above {taus[pending[0]]:g} (float64's floor for this "
                                  f"operator and preconditioner) after {k + 1} iterations",
                                  k + 1, now)
                r = r_true  # residual replacement: go on from the true residual
            z = np.asarray(apply_M(r), dtype=np.float64)            # 6
            rho_next = float(r @ z)
            if not math.isfinite(rho_next) or not np.all(np.isfinite(x)):
                return result(NONFINITE, f"NaN or inf at iteration {k + 1}", k + 1,
                              time.perf_counter() - t0)
            if rho_next <= 0:
                return result(PRECONDITIONER_NOT_SPD, f"preconditioner not positive "
                              f"definite: rᵀM⁻¹r = {rho_next:.3g} ≤ 0 at iteration {k + 1}",
                              k + 1, time.perf_counter() - t0)
            p = z + (rho_next / rho) * p                            # 7
            rho = rho_next
            if deadline is not None and time.perf_counter() > deadline:
                return result(DEADLINE, f"stopped at the deadline after {k + 1} iterations "
                              f"without reaching {min(taus):g}", k + 1,
                              time.perf_counter() - t0)
    return result(MAXITER_REACHED, f"{maxiter} iterations without reaching {min(taus):g}",
                  maxiter, time.perf_counter() - t0)


# --------------------------------------------------------------------------------------------
# Grading with CG (called by lubench.metrics.grading.grade)
# --------------------------------------------------------------------------------------------
_CG_RHS_SALT = 6  # grading's other salts: lubench.metrics.grading


def cg_applies(op: Operator) -> bool:
    """CG is graded on an operator that is symmetric and not known to be indefinite."""
    return bool(op.symmetric) and op.spd is not False


def cg_rhs(op: Operator, seed: int) -> np.ndarray:
    """CG's right-hand side: b uniform on [0, 1)ⁿ drawn from the operator's seed (NeuralIF's
    choice, so that iteration counts compare with the papers'; its mean is a smooth
    component, the slowest for a local preconditioner)."""
    return np.random.default_rng([seed, _CG_RHS_SALT]).uniform(0.0, 1.0, op.n)


def graded_tolerances(tolerances: Sequence[float]) -> list[float]:
    """The tolerances CG is graded at: those given and :data:`COLUMN_TOL`, largest first,
    each once."""
    return sorted({*map(float, tolerances), COLUMN_TOL}, reverse=True)


def _curve(out: CGResult) -> str:
    return json.dumps({"status": out.status, "message": out.message,
                       "iterations": out.iterations, "tolerances": out.curve()})


def _column(out: CGResult) -> tuple[float | None, bool, float | None]:
    """(iterations, converged, seconds) at :data:`COLUMN_TOL`, by the core's rules: the count
    and time where it converged; the iterations run and their time where it stopped at the
    cap; NaN where NaN or inf came up (the non-finite rule); None (not measured) where CG was
    not run because an operand is not SPD."""
    at = out.at(COLUMN_TOL)
    if at.converged:
        return float(at.iterations), True, float(at.seconds)
    if out.status == NONFINITE:
        return math.nan, False, math.nan
    if out.status in (PRECONDITIONER_NOT_SPD, OPERATOR_NOT_SPD):
        return None, False, None
    return float(out.iterations), False, float(out.seconds)


def cg_metrics(op: Operator, fact: Factorization, seed: int,
               tolerances: Sequence[float] = TOLERANCES, maxiter: int = MAXITER,
               deadline: float | None = None) -> dict:
    """``cg_iterations``, ``cg_converged``, ``cg_seconds`` (at :data:`COLUMN_TOL`) and
    ``cg_curve`` (JSON: the status, its message and every tolerance's iterations, seconds and
    true residual) of CG preconditioned by ``fact.solve`` on A x = :func:`cg_rhs`, and
    ``cg_note``: why CG did not run with this preconditioner ("" when it did), and
    ``cg_stopped``: whether it stopped at ``deadline`` (:func:`pcg`; the iterations it ran
    counted, not converged). Empty where CG does not apply (:func:`cg_applies`): the columns
    stay "not measured"."""
    if not cg_applies(op):
        return {}
    n = op.n

    def precondition(r: np.ndarray) -> np.ndarray:
        out = np.asarray(fact.solve(r))
        if out.shape != (n,):
            from lubench.api import FactorizationError

            raise FactorizationError(f"solve(r) returned shape {out.shape}, expected ({n},)")
        return out

    out = pcg(op.matmat, cg_rhs(op, seed), precondition, tolerances=graded_tolerances(tolerances),
              maxiter=maxiter, seed=seed, deadline=deadline)
    its, conv, seconds = _column(out)
    # the row's error says what (one wording per kind, so that tables group the rows); the
    # value that decided it is in cg_curve's message
    note = f"CG not run: {out.message.split(':')[0]}" if out.status in (
        PRECONDITIONER_NOT_SPD, OPERATOR_NOT_SPD) else ""
    return {"cg_iterations": its, "cg_converged": conv, "cg_seconds": seconds,
            "cg_curve": _curve(out), "cg_note": note, "cg_stopped": out.status == DEADLINE}


_PLAIN: OrderedDict[tuple, dict] = OrderedDict()
_PLAIN_SIZE = 64


def plain_cg(op: Operator, seed: int, tolerances: Sequence[float] = TOLERANCES,
             maxiter: int = MAXITER, cache: GradingCache | None = None,
             afford: Callable[[], bool] = lambda: True,
             A_w: np.ndarray | None = None) -> dict:
    """``cg_plain_iterations``, ``cg_plain_converged`` and ``cg_plain_curve``: the same CG
    (A, b, tolerances, cap) without a preconditioner — what a preconditioner saves. A
    function of the operator alone, so computed once per operator, as plain GMRES is:
    memoized in the process and kept in ``cache`` under a digest of A's action
    (:func:`lubench.metrics.cache.fingerprint`). Where it has to run, ``afford()`` is asked
    first: False (grading's budget, :func:`lubench.metrics.grading.grade`) leaves it out.
    ``A_w``: A·w of the key (:func:`lubench.metrics.cache.fingerprint`) when the caller has
    it already — grading's one 35-column product does, which saves a product with A per case.
    Empty where CG does not apply or was not afforded."""
    if not cg_applies(op):
        return {}
    from lubench.metrics.cache import fingerprint

    b = cg_rhs(op, seed)
    taus = graded_tolerances(tolerances)
    key = repr((fingerprint(op, b, A_w), taus, int(maxiter)))
    if key in _PLAIN:
        _PLAIN.move_to_end(key)
        return dict(_PLAIN[key])
    found = cache.get("cg", key) if cache is not None else None
    if found is not None and {"iterations", "converged", "curve"} <= set(found):
        its = found["iterations"]
        out = {"cg_plain_iterations": math.nan if its is None else float(its),
               "cg_plain_converged": bool(found["converged"]),
               "cg_plain_curve": str(found["curve"])}
    else:
        if not afford():
            return {}
        run = pcg(op.matmat, b, None, tolerances=taus, maxiter=maxiter)
        its, conv, _ = _column(run)
        out = {"cg_plain_iterations": its, "cg_plain_converged": conv,
               "cg_plain_curve": _curve(run)}
        if cache is not None:
            cache.put("cg", key, {"iterations": its if its is None or math.isfinite(its)
                                  else None, "converged": conv, "curve": out["cg_plain_curve"]})
    _PLAIN[key] = out
    while len(_PLAIN) > _PLAIN_SIZE:
        _PLAIN.popitem(last=False)
    return dict(out)
