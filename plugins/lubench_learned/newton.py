"""Newton for A = L·U on a GFMM product, retracted onto the GFMM pattern (``optimizer: newton``).

For dense triangular factors the Newton step of F(L, U) = LU − A is explicit: with
R = LU − A and X = −L⁻¹ R U⁻¹ (two triangular solves),

    ΔL = L · strict_lower(X),   ΔU = upper(X) · U,    then ΔL·U + L·ΔU = −R exactly,

and the residual after a full step is ΔL·ΔU: quadratic convergence near a factorization
(the classical Newton iteration for LU). Along the step f = ‖LU − A‖²_F has the
directional derivative −2‖R‖²_F, so a short enough step always lowers it.

One step here takes L + αΔL, U + αΔU (dense, unit lower / upper triangular) back onto the
GFMM weights by a retraction: the near field (diagonal blocks, leaf bridge) copied exactly,
the far field compressed into the tree's nested bases by truncated SVDs (ranks ≤ P,
singular values ≤ 1e-16‖·‖_F dropped) — :func:`lubench_compressed.gfmm_compressed.
compress_lower`, the map ``gfmm_compressed`` applies to A's factors, applied here to the
iterate, never to a factorization of A. α = 1, ½, … 2^−BACKTRACK, the first that lowers f
(by at least 1e-4·α·f) is kept. Where A's factors fit the pattern (banded operators with
bandwidth ≤ P, kernels whose far field has rank ≤ P) the retraction loses nothing near the
solution and the iteration converges like dense Newton.

The retraction only reaches what the pattern holds: when no α lowers f (the compressed far
field drops what the step needs), the weights are restored exactly and the step is a
Kronecker-preconditioned Levenberg–Marquardt step on ‖LU − A‖² over the weights
(:class:`~lubench_learned.lm.LevenbergMarquardt` with
:class:`~lubench_learned.kronecker.KroneckerPreconditioner`); after k failed trials in a
row the next one waits min(2ᵏ, ``MAX_SKIP``) such steps. Every step is one of the two.

The pivots keep the parametrization's guarantees: L's diagonal blocks stay unit lower
triangular and U's pivots s·(δ + softplus θ) keep |U_ii| ≥ δ (a retracted pivot of
magnitude ≤ δ is raised to the floor; its sign s is the iterate's,
:meth:`~lubench_learned.gfmm.GFMMFactor.load_arrays`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from lubench_compressed.gfmm_compressed import _transposed, compress_lower
from threadpoolctl import threadpool_limits

from .gfmm import GFMMProduct
from .kronecker import KroneckerPreconditioner
from .lm import LevenbergMarquardt

__all__ = ["ProjectedNewton", "BACKTRACK", "MAX_SKIP"]

# Halvings of a Newton step whose full length does not lower the loss (down to 2⁻⁶)
BACKTRACK = 6
# After k failed Newton trials in a row, min(2ᵏ, MAX_SKIP) Levenberg–Marquardt steps (the
# first at once) before the next trial
MAX_SKIP = 16


class ProjectedNewton:
    """Retracted Newton steps for a :class:`~lubench_learned.gfmm.GFMMProduct` with
    triangular diagonal blocks on a dense target ``A`` (N×N, the model's dtype).
    ``step(residual)`` has the interface of :class:`~lubench_learned.lm.LevenbergMarquardt`
    (``residual`` serves the Levenberg–Marquardt fallback; a Newton trial forms L, U and
    LU − A itself)."""

    def __init__(self, model: GFMMProduct, A: torch.Tensor, params: list[torch.nn.Parameter],
                 cg_iters: int = 200):
        if getattr(model, "diag_kind", None) != "triangular":
            raise ValueError("projected Newton needs a GFMM product with triangular "
                             "diagonal blocks (L unit lower, U upper triangular)")
        self.model, self.A, self.params = model, A, params
        self.a_norm = float(torch.linalg.norm(A))
        # the fallback: Kronecker-preconditioned Levenberg–Marquardt on ‖LU − A‖²
        self.lm = LevenbergMarquardt(params, cg_iters=cg_iters,
                                     preconditioner=KroneckerPreconditioner(model, params))
        self.fails = 0  # Newton trials failed in a row
        self.skip = 0   # LM steps to take before the next Newton trial
        self.last: dict[str, Any] = {}
        self.param_groups: list[dict] = [{"lr": 1.0}]  # set_lr is a no-op

    def _loss(self) -> float:
        """‖LU − A‖²_F at the current weights."""
        with torch.no_grad():
            R = self.model.L.as_dense() @ self.model.U.as_dense() - self.A
            return float((R * R).sum())

    def step(self, residual: Callable[[], tuple[torch.Tensor, Any]]) -> tuple[float, Any]:
        """One step: a Newton trial, or (while the last trials failed) an LM step."""
        if self.skip > 0:
            self.skip -= 1
            return self.lm.step(residual)
        f0, rel, accepted = self._newton()
        if accepted or not math.isfinite(f0) or f0 == 0.0:
            self.fails = 0
            return f0, rel
        self.fails += 1
        self.skip = min(2 ** self.fails, MAX_SKIP) - 1
        return self.lm.step(residual)

    def _retract(self, L: torch.Tensor, U: torch.Tensor) -> None:
        """Set the weights to the GFMM compression of dense triangular L and U."""
        M, P = self.model.M, self.model.P
        with threadpool_limits(1):  # many small SVDs: one thread is fastest
            Lc, _ = compress_lower(L.detach().cpu().double().numpy(), M, P)
            Ut, _ = compress_lower(np.ascontiguousarray(U.detach().cpu().double().numpy().T),
                                   M, P)
        Uc = _transposed(Ut)
        self.model.L.load_arrays(Lc.enc, Lc.dec, Lc.diag, Lc.off, Lc.bridge)
        self.model.U.load_arrays(Uc.enc, Uc.dec, Uc.diag, Uc.off, Uc.bridge)

    def _newton(self) -> tuple[float, torch.Tensor, bool]:
        """A Newton trial: the loss before it, the relative error, and whether it was
        accepted (else the weights are exactly as they were)."""
        model = self.model
        with torch.no_grad():
            Ld, Ud = model.L.as_dense(), model.U.as_dense()
            R = Ld @ Ud - self.A
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
            saved = [p.detach().clone() for p in self.params]
            signs = [f.pivot_sign.clone() for f in (model.L, model.U)]
            alpha = 1.0
            for _ in range(BACKTRACK + 1):
                self._retract(Ld + alpha * dL, Ud + alpha * dU)
                f1 = self._loss()
                if math.isfinite(f1) and f1 < f0 * (1.0 - 1e-4 * alpha):
                    self.last = {"alpha": alpha, "f1": f1}
                    return f0, rel, True
                alpha *= 0.5
            for p, x in zip(self.params, saved):
                p.copy_(x)
            for f, s in zip((model.L, model.U), signs):
                f.pivot_sign.copy_(s)
            self.last = {"alpha": 0.0, "f1": f1}
            return f0, rel, False
