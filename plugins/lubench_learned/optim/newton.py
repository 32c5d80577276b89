"""Newton for A = L·U, retracted onto a learned LU's weights (``optimizer: newton``).

For dense triangular factors the Newton step of F(L, U) = LU − A is explicit: with
R = LU − A and X = −L⁻¹ R U⁻¹ (two triangular solves),

    ΔL = L · strict_lower(X),   ΔU = upper(X) · U,    then ΔL·U + L·ΔU = −R exactly,

and the residual after a full step is ΔL·ΔU: quadratic convergence near a factorization
(the classical Newton iteration for LU). Along the step f = ‖LU − A‖²_F has the
directional derivative −2‖R‖²_F, so a short enough step always lowers it.

One step takes L + αΔL, U + αΔU (dense, unit lower / upper triangular) back onto the
model's weights by its ``retract(L, U)``:

* a GFMM product (:meth:`~lubench_learned.gfmm.GFMMProduct.retract`): near field (diagonal
  blocks, leaf bridge) copied exactly, far field compressed into the tree's nested bases by
  truncated SVDs — the map ``gfmm_compressed`` applies to A's factors
  (``compress_factors``), applied here to the iterate, never to a factorization of A. Where
  A's factors fit the pattern (banded operators with bandwidth ≤ P, kernels whose far field
  has rank ≤ P) it loses nothing near the solution and the iteration converges like dense
  Newton;
* masked dense factors (:meth:`~lubench_learned.dense_masked_net.MaskedDenseLUNet.retract`):
  the triangles as they are — the iteration is dense Newton itself.

α = 1, ½, … 2^−BACKTRACK, the first that lowers f (by at least 1e-4·α·f) is kept. Both
retractions keep the parametrization's guarantees: L's diagonal is 1 and floored pivots
keep |U_ii| ≥ δ (a retracted pivot of magnitude ≤ δ is raised to 2δ; its sign is the
iterate's).

When no α lowers f (a retraction that drops what the step needs, or factors far from any
factorization), the weights and buffers are restored exactly and the step is one step of
the ``fallback`` (Levenberg–Marquardt on ‖LU − A‖² over the weights,
:class:`~lubench_learned.optim.lm.LevenbergMarquardt`); after k failed trials in a row the next
one waits min(2ᵏ, ``MAX_SKIP``) such steps. Every step is one of the two. A trial that
fails within ``ROUND_OFF`` units of roundoff of ‖A‖_F (relative error ≤ 512ε) sets
``converged``: the trainer stops there (``stopped_because: converged``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import torch

from .lm import LevenbergMarquardt

__all__ = ["ProjectedNewton", "BACKTRACK", "MAX_SKIP", "ROUND_OFF"]

# Halvings of a Newton step whose full length does not lower the loss (down to 2⁻⁶)
BACKTRACK = 6
# After k failed Newton trials in a row, min(2ᵏ, MAX_SKIP) Levenberg–Marquardt steps (the
# first at once) before the next trial
MAX_SKIP = 16
# A failed trial at ‖LU − A‖_F ≤ ROUND_OFF·ε·‖A‖_F (ε the unit roundoff of the training
# dtype) ends training: what is left is the rounding of forming LU, which no step resolves
# (measured: the RBF kernel at n = 256 reached 4.6e-14 in 40 steps, 1.8 s, then 40 LM
# steps, 60 s, took it to 3.0e-15)
ROUND_OFF = 512


class ProjectedNewton:
    """Retracted Newton steps for a model with ``factors()`` (dense L, U tensors) and
    ``retract(L, U)`` (weights set from dense triangular factors) on a dense target ``A``
    (N×N, the model's dtype). ``step(residual)`` has the interface of
    :class:`~lubench_learned.optim.lm.LevenbergMarquardt` (``residual`` serves the ``fallback``;
    a Newton trial forms L, U and LU − A itself)."""

    def __init__(self, model: Any, A: torch.Tensor, fallback: LevenbergMarquardt):
        if getattr(model, "diag_kind", "triangular") != "triangular":
            raise ValueError("projected Newton needs a GFMM product with triangular "
                             "diagonal blocks (L unit lower, U upper triangular)")
        self.model, self.A, self.lm = model, A, fallback
        self.a_norm = float(torch.linalg.norm(A))
        self.fails = 0  # Newton trials failed in a row
        self.skip = 0   # fallback steps to take before the next Newton trial
        self.converged = False  # a trial failed at round-off: the trainer stops
        self.round_off = ROUND_OFF * float(torch.finfo(A.dtype).eps)
        self.last: dict[str, Any] = {}
        # L, U, LU − A of the weights an accepted trial left; None after any other return
        # of a trial, so a fallback step never runs while it is set
        self._here: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
        self.param_groups: list[dict] = [{"lr": 1.0}]  # set_lr is a no-op

    @property
    def deadline(self) -> float | None:
        """``time.perf_counter()`` after which no further trial α is tried (the weights are
        restored, the step is none) and the fallback's CG is cut short."""
        return self.lm.deadline

    @deadline.setter
    def deadline(self, value: float | None) -> None:
        self.lm.deadline = value

    def _late(self) -> bool:
        return self.deadline is not None and time.perf_counter() >= self.deadline

    def _loss(self) -> float:
        """‖LU − A‖²_F at the current weights; L, U and R = LU − A are kept in ``_here``
        for the next trial (an accepted trial's are where that one starts: one product
        L·U of the ~5 dense N³ products of a step saved, and forming the factors)."""
        with torch.no_grad():
            L, U = self.model.factors()
            R = L @ U - self.A
            self._here = (L, U, R)
            return float((R * R).sum())

    def step(self, residual: Callable[[], tuple[torch.Tensor, Any]]) -> tuple[float, Any]:
        """One step: a Newton trial, or (while the last trials failed) a fallback step."""
        if self.skip > 0:
            self.skip -= 1
            return self.lm.step(residual)
        f0, rel, accepted = self._newton()
        if accepted or not math.isfinite(f0) or f0 == 0.0:
            self.fails = 0
            return f0, rel
        if float(rel) <= self.round_off:
            self.converged = True
            return f0, rel
        if self._late():  # out of time: no fallback step, the trainer stops
            return f0, rel
        self.fails += 1
        self.skip = min(2 ** self.fails, MAX_SKIP) - 1
        return self.lm.step(residual)

    def _newton(self) -> tuple[float, torch.Tensor, bool]:
        """A Newton trial: the loss before it, the relative error, and whether it was
        accepted (else the weights are exactly as they were)."""
        model = self.model
        here, self._here = self._here, None
        with torch.no_grad():
            if here is None:
                Ld, Ud = model.factors()
                R = Ld @ Ud - self.A
            else:  # the weights are the last accepted trial's: its factors and residual
                Ld, Ud, R = here
            f0 = float((R * R).sum())
            rel = torch.tensor(math.sqrt(max(f0, 0.0)) / self.a_norm)
            if not math.isfinite(f0) or f0 == 0.0:
                return f0, rel, False
            # X = −L⁻¹ R U⁻¹, ΔL = L·strict_lower(X), ΔU = upper(X)·U
            X = torch.linalg.solve_triangular(Ld, -R, upper=False, unitriangular=True)
            X = torch.linalg.solve_triangular(Ud, X, upper=True, left=False)
            if not bool(torch.isfinite(X).all()):
                return f0, rel, False
            dL, dU = Ld @ torch.tril(X, -1), torch.triu(X) @ Ud
            saved = {k: v.clone() for k, v in model.state_dict().items()}
            alpha = 1.0
            for _ in range(BACKTRACK + 1):
                model.retract(Ld + alpha * dL, Ud + alpha * dU)
                f1 = self._loss()
                if math.isfinite(f1) and f1 < f0 * (1.0 - 1e-4 * alpha):
                    self.last = {"alpha": alpha, "f1": f1}
                    return f0, rel, True
                alpha *= 0.5
                if self._late():
                    break
            model.load_state_dict(saved)
            self._here = None  # (the rejected trial's)
            self.last = {"alpha": 0.0, "f1": f1}
            return f0, rel, False
