"""The watch of a training run: what the loss ‖LU − A‖ does not see, checked on the factors.

Every ``eval_every`` steps and at the end the factors are taken out in float64 and measured:
the solve residual ‖A x̂ − b‖_F/‖b‖_F on ``HELD_OUT`` held-out probes (b = A x for Gaussian
x, x̂ = U⁻¹L⁻¹b by the structured solve), Hager–Higham estimates of ‖L⁻¹‖₁, ‖U⁻¹‖₁ and
``cond_est`` = ‖A‖₁·‖(LU)⁻¹‖₁, and (N ≤ ``GROWTH_LIMIT``) the growth ‖|L||U|‖_∞/‖A‖_∞.
:class:`Watch` keeps the weights of the best held-out residual (not of the smallest loss).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse.linalg as spla
import torch

if TYPE_CHECKING:
    from .target import Target

__all__ = ["Watch", "inv_norm1", "solve_lu", "HELD_OUT", "GROWTH_LIMIT"]

HELD_OUT = 4         # held-out probe columns of the watch
GROWTH_LIMIT = 1024  # the watch forms |L| and |U| densely up to this size


def inv_norm1(solve: Callable[[np.ndarray, bool], np.ndarray], n: int) -> float:
    """‖F⁻¹‖₁ estimated by Hager–Higham (``scipy.sparse.linalg.onenormest``, as
    ``lubench_structured.gfmm.arrays.inv_norm1_estimate``) from solves with F and Fᵀ
    (``solve(B, transpose)``): a lower bound, usually within a factor 3; inf when a solve is
    not finite."""
    with np.errstate(all="ignore"):
        if n <= 4:
            X = solve(np.eye(n), False)
            return float(np.abs(X).sum(axis=0).max()) if np.all(np.isfinite(X)) else math.inf
        op = spla.LinearOperator(
            (n, n), dtype=np.float64, matvec=lambda x: solve(x.reshape(n, -1), False),
            rmatvec=lambda x: solve(x.reshape(n, -1), True),
            matmat=lambda X: solve(X, False), rmatmat=lambda X: solve(X, True))
        est = float(spla.onenormest(op))
    return est if math.isfinite(est) else math.inf


def _norm1_estimate(apply: Callable[[np.ndarray, bool], np.ndarray], n: int) -> float:
    """‖A‖₁ by Hager–Higham from products with A and Aᵀ (``apply(X, transpose)``)."""
    if n <= 4:
        return float(np.abs(apply(np.eye(n), False)).sum(axis=0).max())
    op = spla.LinearOperator(
        (n, n), dtype=np.float64, matvec=lambda x: apply(x.reshape(n, -1), False),
        rmatvec=lambda x: apply(x.reshape(n, -1), True),
        matmat=lambda X: apply(X, False), rmatmat=lambda X: apply(X, True))
    return float(spla.onenormest(op))


def solve_lu(L: Any, U: Any, B: np.ndarray, transpose: bool = False) -> np.ndarray:
    """x with L U x = B (or (LU)ᵀ x = B) for float64 factors with ``solve(B, transpose)``."""
    if transpose:
        return L.solve(U.solve(B, True), True)
    return U.solve(L.solve(B))


class Watch:
    """What the loss does not see, checked on the float64 factors (see the module docstring).

    ``check(model, step)`` returns the row fields ``heldout_residual``, ``inv_norm1_L``,
    ``inv_norm1_U``, ``cond_est`` and ``growth`` (NaN above ``GROWTH_LIMIT``), and keeps the
    weights of the best held-out residual when ``keep == "best"``. The model provides
    ``float64_factors() -> (L, U)``, each with ``solve(B, transpose)``, ``apply(X,
    transpose)`` and ``n``; a factor that cannot be taken out (a singular block) counts as
    an infinite residual.
    """

    def __init__(self, target: Target, *, seed: int, keep: str = "best", patience: int = 0):
        self._estimate = inv_norm1
        self.A = target.A64
        self.N = target.N
        self.keep, self.patience = keep, patience
        x = np.random.default_rng([int(seed), 7]).standard_normal((self.N, HELD_OUT))
        self.b = np.asarray(self.A @ x)
        self.b_norm = float(np.linalg.norm(self.b))
        if getattr(target, "is_action", False):  # A only as an action: Hager–Higham
            A = self.A
            self.a_norm1 = _norm1_estimate(lambda X, t: (A.T if t else A) @ X, self.N)
            self.a_norm_inf = self.a_norm1 if target.op.symmetric else \
                _norm1_estimate(lambda X, t: (A if t else A.T) @ X, self.N)
        else:
            absA = abs(self.A)
            self.a_norm1 = float(np.max(np.asarray(absA.sum(axis=0)).ravel()))
            self.a_norm_inf = float(np.max(np.asarray(absA.sum(axis=1)).ravel()))
        self.best: dict[str, Any] | None = None
        self.best_state: dict[str, torch.Tensor] | None = None
        self.worse = 0
        self.last: dict[str, Any] = {}

    def measure(self, model: Any) -> dict[str, float]:
        """The check's figures; all infinite (growth NaN) when the factors cannot be taken
        out or a solve with them breaks down (a diagonal block LAPACK finds singular) —
        whichever solve it is: the residual's, or one of the estimates' (transposed) ones."""
        from lubench.api import FactorizationError

        try:
            return self._measure(model)
        except FactorizationError:
            return {"heldout_residual": math.inf, "inv_norm1_L": math.inf,
                    "inv_norm1_U": math.inf, "cond_est": math.inf, "growth": float("nan")}

    def _measure(self, model: Any) -> dict[str, float]:
        L, U = model.float64_factors()
        with np.errstate(all="ignore"):
            x = solve_lu(L, U, self.b)
            res = float(np.linalg.norm(self.A @ x - self.b)) / self.b_norm
            res = res if math.isfinite(res) else math.inf
            inv_L = self._estimate(L.solve, self.N)
            inv_U = self._estimate(U.solve, self.N)
            inv_LU = self._estimate(lambda B, t: solve_lu(L, U, B, t), self.N)
            growth = float("nan")
            if self.N <= GROWTH_LIMIT:
                eye = np.eye(self.N)
                row_sums = np.abs(L.apply(eye)) @ (np.abs(U.apply(eye)) @ np.ones(self.N))
                growth = float(row_sums.max()) / self.a_norm_inf
        return {"heldout_residual": res, "inv_norm1_L": inv_L, "inv_norm1_U": inv_U,
                "cond_est": self.a_norm1 * inv_LU, "growth": growth}

    def check(self, model: Any, step: int) -> tuple[dict[str, float], bool]:
        """Measure, keep the best weights; True when the residual has been worse than twice
        the best for ``patience`` checks in a row."""
        m = self.measure(model)
        self.last = {**m, "step": step}
        res = m["heldout_residual"]
        if self.best is None or res < self.best["heldout_residual"]:
            self.best = dict(self.last)
            if self.keep == "best":
                self.best_state = {k: v.detach().clone()
                                   for k, v in model.state_dict().items()}
        if not res <= 2.0 * self.best["heldout_residual"]:
            self.worse += 1
        else:
            self.worse = 0
        return m, bool(self.patience) and self.worse >= self.patience

    def restore(self, model: Any) -> bool:
        """Load the best weights (``keep == "best"``); whether there were any."""
        if self.keep != "best" or self.best_state is None:
            return False
        model.load_state_dict(self.best_state)
        return True

    def summary(self) -> dict[str, Any]:
        """What goes into ``info``: the kept check's figures and its step."""
        kept = self.best if self.keep == "best" else self.last
        if not kept:
            return {}
        out = {k: kept[k] for k in ("heldout_residual", "inv_norm1_L", "inv_norm1_U",
                                    "cond_est", "growth")}
        out["kept_step"] = kept["step"]
        out["kept"] = self.keep
        return out
