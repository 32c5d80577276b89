"""Grading: the metrics of one factorization, computed by the core from ``Factorization.apply``
and ``solve``.

Every method is graded the same way; a method never grades itself. With Â = P·L·U the
product of the stored factors (``apply``) and x̂ = Â⁻¹b the factorization's ``solve``,
:func:`grade` computes every metric of the metric table marked ``graded``
(:mod:`lubench.metrics.table`, where each is defined: the relative Frobenius error
‖A − Â‖_F/‖A‖_F, exact up to ``exact_limit`` and a 32-probe estimate above, the spectral
error ‖A − Â‖₂, the solve's residual and forward error for b = A x*, the iterations and
time of GMRES preconditioned by ``solve`` and of plain GMRES, the iterations and time of CG
preconditioned by ``solve`` and of plain CG at a list of tolerances on symmetric operators,
the time of one solve) — :func:`factor_errors`, :func:`solve_errors`,
:func:`precond_iterations`, :func:`plain_gmres`, :func:`lubench.metrics.cg.cg_metrics`,
:func:`lubench.metrics.cg.plain_cg`, :func:`time_solve`. A factorization that gives only
M⁻¹ (no ``apply``) has no factor metrics ("not measured"); every solver metric is graded.

**One problem per operator.** ``grade`` takes the *operator's* seed (``case.operator_seed``):
x*, Ω, the GMRES right-hand side and the timing vector are drawn from it alone, never from
the method or its parameters, so every method on one operator is graded on the same problem,
and two configurations that produce the same factors get the same metric values. Plain GMRES
and plain CG depend on the operator alone, so they are computed once per operator.

**From the action alone.** Above ``exact_limit`` nothing of size n² is formed: A enters only
through ``op.matmat`` / ``op.rmatmat`` (an operator that is never formed grades at any n its
action allows) and the factorization only through ``apply``, ``apply_transpose`` and
``solve``. The operator's products that do not depend on the factorization — x*, the GMRES
right-hand side's z, the plain-GMRES and plain-CG keys' w and the probe block Ω — are one
``matmat`` of 35 columns (:class:`Problem`): one pass of a kernel operator's action, not four.

**A grading budget.** ``grade_limit`` (seconds; the suite's, default 10 min) bounds what the
costliest diagnostics may add: before the spectral estimate above ``exact_limit``, before
plain GMRES and before plain CG (each when no other case of the operator has cached it),
their cost is predicted from the measured time of the products they repeat (10 power steps;
500 products with A; ``cg_maxiter`` products); one that would exceed what is left is not
run, and ``not_graded`` names it with the prediction. The preconditioned GMRES and CG, the
factorization's own metrics, run and stop at the limit if they have not converged by then
(``precond_converged``/``cg_converged`` false, the iterations run counted, ``not_graded``
saying so). The spectral estimate is not tried for a factorization without ``apply``.

**Non-finite values.** A metric that cannot be computed as a finite number — its inputs (the
product of the factors, a solve) hold NaN or ±inf, or the norm overflows — is NaN, never inf
and never a count: a preconditioner that returns a non-finite vector gives
``precond_iterations`` NaN, ``precond_converged`` false and ``precond_seconds`` NaN. Such a row
is still ``ok`` (the factorization is a result); ``grade`` returns an ``error`` that names the
metrics that were not finite. Aggregates over repeats keep them (:func:`repeat_median`).
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import scipy.linalg as sla
import scipy.sparse.linalg as spla

from lubench.api import Factorization, FactorizationError, Operator, has_apply
from lubench.metrics.cache import GradingCache, fingerprint, key_vector
from lubench.metrics.cg import MAXITER as CG_MAXITER
from lubench.metrics.cg import TOLERANCES as CG_TOLERANCES
from lubench.metrics.cg import cg_metrics, plain_cg
from lubench.metrics.table import METRICS

__all__ = ["grade", "GradingCache", "Problem", "factor_errors", "spectral_estimate",
           "solve_errors", "precond_iterations", "plain_gmres", "time_solve", "repeat_median",
           "nonfinite_note", "PROBES", "POWER_BLOCK", "POWER_STEPS", "POWER_RTOL",
           "GMRES_RESTART", "GMRES_RTOL", "GMRES_MAXITER", "GRADED"]

PROBES = 32
POWER_BLOCK = 8  # vectors of the block power iteration for ‖A − PLU‖₂ above exact_limit
POWER_STEPS = 10  # at most
POWER_RTOL = 1e-2  # stop when two estimates agree to this
GMRES_RESTART = 50
GMRES_RTOL = 1e-8
GMRES_MAXITER = 500
SPECTRAL_SVD_LIMIT = 1024  # up to here the 2-norm comes from a full SVD, above from the Gram matrix
NAN = float("nan")

# The salts of the random draws, each seeded with [operator seed, salt]; 5 is the fixed
# vector of the plain-GMRES/plain-CG key (lubench.metrics.cache.KEY_SALT, not seeded by the
# operator), 6 and 7 CG's right-hand side and SPD probe (lubench.metrics.cg).
_PROBE_SALT, _SOLUTION_SALT, _GMRES_RHS_SALT, _TIMING_SALT, _POWER_SALT = 1, 2, 3, 4, 8


def _checked(out: object, shape: tuple[int, ...], what: str) -> np.ndarray:
    """The plugin's output as a float64 array of the promised shape, or FactorizationError."""
    arr = np.asarray(out)
    if arr.shape != shape:
        raise FactorizationError(f"{what} returned shape {arr.shape}, expected {shape}")
    return arr.astype(np.float64, copy=False)


def _finite(x: float) -> float:
    """x as a float, NaN when it is not finite (the non-finite rule)."""
    x = float(x)
    return x if math.isfinite(x) else NAN


def spectral_norm(E: np.ndarray) -> float:
    """‖E‖₂: the largest singular value; NaN when E holds NaN or ±inf.

    Full SVD up to ``SPECTRAL_SVD_LIMIT``; above, σ_max(F)² = λ_max(FᵀF) with F = E / max|E|
    (one Gram product and LAPACK's ``syevr`` for the top eigenvalue only: about 3 s at
    n = 4096 on 2 cores, whatever the spectrum). λ_max is computed to ε·‖FᵀF‖ = ε·σ_max²
    absolute, so σ_max to ε/2 relative: squaring loses nothing at the top of the spectrum.
    (ARPACK's Lanczos, used before, needed 3 minutes when the top singular values cluster,
    e.g. the off-diagonal part of a convection–diffusion matrix.) Scaling by max|E| keeps
    round-off- or subnormal-sized errors (an exact method) from underflowing in the product
    and large ones from overflowing."""
    if not np.all(np.isfinite(E)):
        return NAN
    scale = float(np.abs(E).max()) if E.size else 0.0
    if scale == 0.0:
        return 0.0
    F = E / scale
    if min(F.shape) <= SPECTRAL_SVD_LIMIT:
        return _finite(float(np.linalg.norm(F, 2)) * scale)
    G = F.T @ F if F.shape[1] <= F.shape[0] else F @ F.T
    top = sla.eigh(G, eigvals_only=True, subset_by_index=[G.shape[0] - 1, G.shape[0] - 1],
                   driver="evr")
    return _finite(math.sqrt(max(float(top[0]), 0.0)) * scale)


def _relative(num: np.ndarray, den: np.ndarray) -> float:
    """‖num‖ / ‖den‖ (Frobenius or 2-norm), NaN when num is not finite or the ratio is not."""
    if not np.all(np.isfinite(num)):
        return NAN
    with np.errstate(all="ignore"):
        return _finite(np.linalg.norm(num) / np.linalg.norm(den))


@dataclass
class Problem:
    """The draws of one operator's grading, each from the operator's seed, and A applied to
    them in one ``matmat``: x* (the solve's solution), z (the GMRES right-hand side b = A·z),
    w (fixed: the plain-GMRES and plain-CG memo keys) and the probe block Ω (n × 32).
    ``seconds``: the wall time of that product; ``product_seconds``: of one product with a
    single vector (the solve's residual), what plain GMRES repeats."""

    x_true: np.ndarray
    z: np.ndarray
    w: np.ndarray
    omega: np.ndarray
    A_x: np.ndarray
    A_z: np.ndarray
    A_w: np.ndarray
    A_omega: np.ndarray
    seconds: float
    product_seconds: float = NAN  # of one product A·v (set by solve_errors)

    @classmethod
    def draw(cls, op: Operator, seed: int) -> Problem:
        n = op.n
        x = np.random.default_rng([seed, _SOLUTION_SALT]).standard_normal(n)
        z = np.random.default_rng([seed, _GMRES_RHS_SALT]).standard_normal(n)
        w = key_vector(n)
        omega = np.random.default_rng([seed, _PROBE_SALT]).standard_normal((n, PROBES))
        V = np.column_stack([x, z, w, omega])
        t0 = time.perf_counter()
        AV = _checked(op.matmat(V), V.shape, f"operator '{op.name}' matmat")
        seconds = time.perf_counter() - t0
        return cls(x, z, w, omega, AV[:, 0].copy(), AV[:, 1].copy(), AV[:, 2].copy(),
                   np.ascontiguousarray(AV[:, 3:]), seconds)


def factor_errors(op: Operator, fact: Factorization, exact_limit: int, seed: int,
                  problem: Problem | None = None) -> dict[str, float | str]:
    """``factor_error`` (relative Frobenius) and its kind; ``factor_error_2`` (spectral) and
    its kind where A is formed to grade (n ≤ ``exact_limit``) — above, the spectral error is
    :func:`spectral_estimate`'s, and this leaves it NaN, kind ``""``.

    ``seed`` is the operator's seed: the probe block Ω is drawn from it (``problem``, drawn
    here when not given)."""
    n = op.n
    exact = n <= exact_limit and not getattr(fact, "expensive_apply", False)
    if exact:
        A = op.dense()
        with np.errstate(all="ignore"):
            E = A - _checked(fact.apply(np.eye(n)), (n, n), "apply(I)")
        return {
            "factor_error": _relative(E, A),
            "factor_error_kind": "exact",
            "factor_error_2": spectral_norm(E),
            "factor_error_2_kind": "exact",
        }
    problem = problem or Problem.draw(op, seed)
    with np.errstate(all="ignore"):
        E_omega = problem.A_omega - _checked(fact.apply(problem.omega), (n, PROBES),
                                             "apply(Ω)")
    return {
        "factor_error": _relative(E_omega, problem.A_omega),
        "factor_error_kind": f"probe{PROBES}",
        "factor_error_2": NAN,  # not measured here: spectral_estimate
        "factor_error_2_kind": "",
    }


def _top_singular(Y: np.ndarray) -> float:
    """σ_max(Y) (NaN when Y is not finite), Y of a few columns."""
    if not np.all(np.isfinite(Y)):
        return NAN
    return float(np.linalg.norm(Y, 2)) if Y.size else 0.0


def _has_transpose(fact: Factorization) -> bool:
    """Whether the factorization's class overrides :meth:`Factorization.apply_transpose`
    (one that does and raises NotImplementedError is found out at its first call)."""
    return getattr(type(fact), "apply_transpose", None) is not Factorization.apply_transpose


def spectral_estimate(op: Operator, fact: Factorization,
                      seed: int) -> dict[str, float | str] | None:
    """``factor_error_2`` ≈ ‖E‖₂, E = A − PLU, from products only: block power iteration on
    EᵀE. V₀ = the Q factor of a seeded Gaussian n × :data:`POWER_BLOCK` block; step k forms
    Y = E V (``op.matmat``, ``fact.apply``), takes σ_k = σ_max(Y) — a lower bound of ‖E‖₂,
    since V has orthonormal columns, that grows to it — and stops when σ_k and σ_{k−1} agree
    to :data:`POWER_RTOL`, else sets V = Q factor of Eᵀ Y (``op.rmatmat``,
    ``fact.apply_transpose``); at most :data:`POWER_STEPS` steps. Kind ``power{k}``.

    None when the factorization gives no ``apply_transpose``."""
    if not _has_transpose(fact):
        return None
    n = op.n
    rng = np.random.default_rng([seed, _POWER_SALT])
    V, _ = np.linalg.qr(rng.standard_normal((n, min(POWER_BLOCK, n))))
    previous = NAN
    sigma = NAN
    steps = 0
    with np.errstate(all="ignore"):
        for steps in range(1, POWER_STEPS + 1):
            Y = np.asarray(op.matmat(V)) - _checked(fact.apply(V), V.shape, "apply(V)")
            sigma = _top_singular(Y)
            if not math.isfinite(sigma):
                return {"factor_error_2": NAN, "factor_error_2_kind": f"power{steps}"}
            if abs(sigma - previous) <= POWER_RTOL * sigma or sigma == 0.0:
                break
            previous = sigma
            try:
                Z = np.asarray(op.rmatmat(Y)) - _checked(fact.apply_transpose(Y), Y.shape,
                                                         "apply_transpose(Y)")
            except NotImplementedError:
                return None
            if not np.all(np.isfinite(Z)):
                return {"factor_error_2": NAN, "factor_error_2_kind": f"power{steps}"}
            V, _ = np.linalg.qr(Z)
    return {"factor_error_2": _finite(sigma), "factor_error_2_kind": f"power{steps}"}


def solve_errors(op: Operator, fact: Factorization, seed: int,
                 problem: Problem | None = None) -> dict[str, float]:
    """``solve_residual`` and ``forward_error`` for b = A x*, x* ~ N(0, I) drawn from the
    operator's ``seed``; both NaN when x̂ is not finite."""
    n = op.n
    problem = problem or Problem.draw(op, seed)
    x_true, b = problem.x_true, problem.A_x
    x_hat = _checked(fact.solve(b), (n,), "solve(b)")
    if not np.all(np.isfinite(x_hat)):
        return {"solve_residual": NAN, "forward_error": NAN}
    with np.errstate(all="ignore"):
        t0 = time.perf_counter()
        r = np.asarray(op.matmat(x_hat)) - b
        problem.product_seconds = time.perf_counter() - t0
    return {"solve_residual": _relative(r, b), "forward_error": _relative(x_hat - x_true, x_true)}


def _gmres_rhs(op: Operator, seed: int, problem: Problem | None = None) -> np.ndarray:
    """The GMRES right-hand side b = A·z, z ~ N(0, I) drawn from the operator's seed."""
    return (problem or Problem.draw(op, seed)).A_z


class _OutOfTime(Exception):
    """Raised by the GMRES callback at the grading deadline."""


def _gmres(op: Operator, b: np.ndarray, solve: Callable[[np.ndarray], np.ndarray] | None,
           deadline: float | None = None) -> tuple[float, bool, float, bool]:
    """(inner iterations, converged, wall seconds, stopped) of restarted GMRES on A x = b,
    left preconditioned by ``solve`` when given. Converged means ‖A x − b‖₂ ≤ rtol·‖b‖₂
    within :data:`GMRES_MAXITER` inner iterations. A preconditioner that returns NaN/inf (or
    a non-finite iterate) gives (NaN, False, NaN, False): the iterations it ran count
    nothing. Past ``deadline`` (``time.perf_counter()``) GMRES stops after the iteration
    running: (iterations done, False, seconds, True)."""
    n = op.n
    A = op.as_linear_operator()
    nonfinite = False
    M = None
    if solve is not None:
        def precondition(v: np.ndarray) -> np.ndarray:
            nonlocal nonfinite
            out = _checked(solve(np.asarray(v).reshape(n)), (n,), "solve(v)")
            if not nonfinite and not np.all(np.isfinite(out)):
                nonfinite = True
            return out

        M = spla.LinearOperator((n, n), matvec=precondition, dtype=np.float64)
    count = 0

    def callback(pr_norm: float) -> None:
        nonlocal count
        count += 1
        # past the deadline, stop before the next iteration — unless this one converged
        if deadline is not None and time.perf_counter() > deadline and count < GMRES_MAXITER \
                and not pr_norm <= GMRES_RTOL:
            raise _OutOfTime

    t0 = time.perf_counter()
    try:
        with np.errstate(all="ignore"):
            x, info = spla.gmres(A, b, M=M, rtol=GMRES_RTOL, atol=0.0, restart=GMRES_RESTART,
                                 maxiter=GMRES_MAXITER // GMRES_RESTART, callback=callback,
                                 callback_type="pr_norm")
    except _OutOfTime:
        if nonfinite:
            return NAN, False, NAN, False
        return count, False, time.perf_counter() - t0, True
    except (ValueError, np.linalg.LinAlgError, FloatingPointError):
        return NAN, False, NAN, False
    seconds = time.perf_counter() - t0
    if nonfinite or not np.all(np.isfinite(x)):
        return NAN, False, NAN, False
    converged = bool(info == 0)  # SciPy's own test: ‖b − A x‖₂ ≤ rtol·‖b‖₂
    # A breakdown with finite values (GMRES stops early without converging) keeps its
    # count: converged=False says what it means.
    return int(min(count, GMRES_MAXITER)), converged, seconds, False


def precond_iterations(op: Operator, fact: Factorization, seed: int,
                       problem: Problem | None = None,
                       deadline: float | None = None) -> dict[str, float | bool]:
    """``precond_iterations``, ``precond_converged`` and ``precond_seconds``: GMRES (restart
    50, rtol 1e-8, ≤ 500 inner iterations) with ``solve`` as preconditioner, on the right-hand
    side drawn from the operator's ``seed``; stopped (not converged) past ``deadline``, when
    the returned dict holds ``stopped``: True."""
    its, conv, seconds, stopped = _gmres(op, _gmres_rhs(op, seed, problem), fact.solve,
                                         deadline)
    out = {"precond_iterations": its, "precond_converged": conv, "precond_seconds": seconds}
    return {**out, "stopped": True} if stopped else out


_PLAIN_CACHE: OrderedDict[tuple, dict] = OrderedDict()
_PLAIN_CACHE_SIZE = 64


def _read_plain(cache: GradingCache | None, key: tuple) -> dict | None:
    """The cached plain-GMRES result for ``key``, or None (no cache, no entry, unreadable)."""
    data = cache.get("gmres", repr(key)) if cache is not None else None
    if data is None:
        return None
    its = data.get("gmres_iterations")
    return {"gmres_iterations": float("nan") if its is None else float(its),
            "gmres_converged": bool(data.get("gmres_converged"))}


def _write_plain(cache: GradingCache | None, key: tuple, out: dict) -> None:
    """Store ``out`` for ``key``; a failure only costs the next case a recomputation."""
    if cache is None:
        return
    its = out["gmres_iterations"]
    cache.put("gmres", repr(key), {"gmres_converged": bool(out["gmres_converged"]),
                                   "gmres_iterations": float(its) if math.isfinite(its)
                                   else None})


def plain_gmres(op: Operator, seed: int, cache: GradingCache | None = None,
                problem: Problem | None = None,
                afford: Callable[[], bool] = lambda: True) -> dict[str, float | bool] | None:
    """``gmres_iterations`` and ``gmres_converged``: GMRES without preconditioner on the same
    A, b (from the operator's ``seed``), restart, tolerance and cap as
    :func:`precond_iterations`.

    A function of A and the seed only, so it is computed once per operator and reused: keyed
    on a digest of A's action (:func:`lubench.metrics.cache.fingerprint`; never on names, so
    two different matrices do not share an entry), memoized in the process and, given a
    ``cache`` (the run directory's ``cache/``), in an entry there — so the freshly forked
    worker of every later case of that operator reads it instead of running GMRES again.
    Where it has to run, ``afford()`` is asked first: False (the grading budget, see
    :func:`grade`) returns None.
    """
    problem = problem or Problem.draw(op, seed)
    b = problem.A_z
    key = (fingerprint(op, b, problem.A_w), GMRES_RESTART, GMRES_RTOL, GMRES_MAXITER)
    if key in _PLAIN_CACHE:
        _PLAIN_CACHE.move_to_end(key)
        return dict(_PLAIN_CACHE[key])
    out = _read_plain(cache, key)
    if out is None:
        if not afford():
            return None
        its, conv, _seconds, _stopped = _gmres(op, b, None)
        out = {"gmres_iterations": its, "gmres_converged": conv}
        _write_plain(cache, key, out)
    _PLAIN_CACHE[key] = out
    while len(_PLAIN_CACHE) > _PLAIN_CACHE_SIZE:
        _PLAIN_CACHE.popitem(last=False)
    return dict(out)


def time_solve(fact: Factorization, n: int, seed: int, repeats: int = 5,
               synchronize: Callable[[], None] = lambda: None) -> float:
    """Median wall time of one ``solve`` of one right-hand side, after one warm-up call."""
    b = np.random.default_rng([seed, _TIMING_SALT]).standard_normal(n)
    fact.solve(b)
    synchronize()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fact.solve(b)
        synchronize()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


#: The numbers ``grade`` returns (the metric table's ``graded`` ones), in the order an
#: ``error`` note names those that are not finite.
GRADED = [m.key for m in METRICS if m.graded and m.number]


def nonfinite_note(metrics: dict) -> str:
    """The ``error`` text of an ``ok`` row whose metrics hold non-finite values (NaN by the
    rule above), ``""`` when there are none. A ``factor_error_2`` without a kind is "not
    measured" (``not_graded`` says why), not non-finite."""
    skip = {"factor_error_2"} if not metrics.get("factor_error_2_kind") else set()
    bad = [k for k in GRADED if k in metrics and k not in skip
           and isinstance(metrics[k], (int, float)) and not math.isfinite(metrics[k])]
    return f"not finite (NaN): {', '.join(bad)}" if bad else ""


def _minutes(seconds: float) -> str:
    return f"{seconds:.1f} s" if seconds < 60 else f"{seconds / 60:.1f} min"


class _Budget:
    """What is left of ``grade_limit`` seconds since ``start``, and the notes of what it
    could not afford."""

    def __init__(self, limit: float | None, start: float):
        self.limit, self.start = limit, start
        self.notes: list[str] = []

    @property
    def deadline(self) -> float | None:
        return None if self.limit is None else self.start + self.limit

    def afford(self, metric: str, predicted: float, how: str) -> bool:
        if self.limit is None:
            return True
        left = self.limit - (time.perf_counter() - self.start)
        if predicted <= left:
            return True
        self.notes.append(f"{metric} ({how}: predicted {_minutes(predicted)} > "
                          f"{_minutes(max(left, 0.0))} left of grade_limit "
                          f"{_minutes(self.limit)})")
        return False


def grade(op: Operator, fact: Factorization, *, seed: int, exact_limit: int = 4096,
          synchronize: Callable[[], None] = lambda: None,
          cache: GradingCache | None = None, grade_limit: float | None = None,
          cg_tolerances: Sequence[float] = CG_TOLERANCES, cg_maxiter: int = CG_MAXITER) -> dict:
    """All the metrics of one factorization of ``op`` (see the module docstring): the factor
    errors, the solve's errors, preconditioned GMRES, above ``exact_limit`` the spectral
    estimate, plain GMRES, preconditioned and plain CG, the solve time; ``not_graded``: what
    was not computed and why; ``error``: :func:`nonfinite_note`, and why CG did not run
    where it did not.

    ``seed`` must be the operator's seed (``case.operator_seed``), never the method's: every
    random draw of the grading comes from it, so all methods face the same problem.
    ``cache`` keeps what depends on the operator alone (plain GMRES, plain CG) for the run's
    other cases (:func:`plain_gmres`, :func:`lubench.metrics.cg.plain_cg`). ``grade_limit``:
    seconds the grading may take (None: no limit) — the spectral estimate, plain GMRES and
    plain CG run only when their predicted cost fits what is left; the preconditioned GMRES
    and CG stop at it. A factorization without ``apply`` (M⁻¹ only,
    :func:`lubench.api.has_apply`) leaves the factor metrics "not measured" (None). CG
    (:mod:`lubench.metrics.cg`: ``cg_tolerances``, at most ``cg_maxiter`` iterations) is
    graded on symmetric operators not known to be indefinite.
    """
    n_params = fact.n_params
    if isinstance(n_params, (bool, np.bool_)) or not isinstance(n_params, (int, np.integer)) \
            or n_params < 0:
        raise FactorizationError(f"n_params must be a non-negative integer, got {n_params!r}")
    budget = _Budget(grade_limit, time.perf_counter())
    out: dict = {"n_params": int(n_params)}
    # An inexact factorization may overflow (a solve that blows up is a result, recorded as
    # NaN): no floating-point warnings on the worker's stderr for it.
    with np.errstate(all="ignore"):
        problem = Problem.draw(op, seed)
        t0 = time.perf_counter()
        if has_apply(fact):
            out.update(factor_errors(op, fact, exact_limit, seed, problem))
        else:  # M⁻¹ only: no product of factors to compare with A
            out.update(factor_error=None, factor_error_kind=None, factor_error_2=None,
                       factor_error_2_kind=None)
        apply_seconds = time.perf_counter() - t0
        out.update(solve_errors(op, fact, seed, problem))
        product = problem.product_seconds  # one product with A, one vector
        if not math.isfinite(product):  # (x̂ was not finite: the 35-column pass bounds it)
            product = problem.seconds
        pre = precond_iterations(op, fact, seed, problem, deadline=budget.deadline)
        if pre.pop("stopped", False):
            budget.notes.append(f"precond_iterations (GMRES stopped after "
                                f"{pre['precond_iterations']} iterations, not converged, at "
                                f"grade_limit {_minutes(budget.limit)})")
        out.update(pre)
        if has_apply(fact) and not out["factor_error_2_kind"]:
            # per step two products with A of POWER_BLOCK columns (each at most the
            # 35-column pass) and two with the factors (at most the 32-column apply)
            step = 2 * (problem.seconds + apply_seconds)
            no_transpose = "factor_error_2 (the factorization gives no apply_transpose)"
            if not _has_transpose(fact):
                budget.notes.append(no_transpose)
            elif budget.afford("factor_error_2", POWER_STEPS * step,
                               f"{POWER_STEPS} power steps of {_minutes(step)}"):
                estimate = spectral_estimate(op, fact, seed)
                if estimate is None:
                    budget.notes.append(no_transpose)
                else:
                    out.update(estimate)
        plain = plain_gmres(op, seed, cache, problem, afford=lambda: budget.afford(
            "gmres_iterations", GMRES_MAXITER * product,
            f"plain GMRES, {GMRES_MAXITER} products with A of {_minutes(product)}"))
        out.update(plain if plain is not None else
                   {"gmres_iterations": NAN, "gmres_converged": None})
        cg = cg_metrics(op, fact, seed, cg_tolerances, cg_maxiter, deadline=budget.deadline)
        if cg.pop("cg_stopped", False):
            budget.notes.append(f"cg_iterations (CG stopped after {cg['cg_iterations']:.0f} "
                                f"iterations, not converged, at grade_limit "
                                f"{_minutes(budget.limit)})")
        out.update({k: v for k, v in cg.items() if k != "cg_note"})
        out.update(plain_cg(op, seed, cg_tolerances, cg_maxiter, cache, afford=lambda:
                            budget.afford("cg_plain_iterations", cg_maxiter * product,
                                          f"plain CG, {cg_maxiter} products with A of "
                                          f"{_minutes(product)}"),
                            A_w=problem.A_w))
        out["solve_seconds"] = _finite(time_solve(fact, op.n, seed, synchronize=synchronize))
    out["not_graded"] = "; ".join(budget.notes)
    bad = nonfinite_note({k: v for k, v in out.items()
                          if not (plain is None and k == "gmres_iterations")})
    out["error"] = "; ".join(e for e in (bad, cg.get("cg_note", "")) if e)
    return out


def repeat_median(values: Iterable[float | None]) -> float:
    """The median over repeats of one metric, which does not drop a non-finite value: NaN
    when any repeat is NaN/inf (or there is none), else the median. ``None`` (not measured)
    is skipped."""
    vals = [float(v) for v in values if v is not None]
    if not vals or not all(math.isfinite(v) for v in vals):
        return NAN
    return float(np.median(vals))
