"""Projected Newton for A = L·U on a GFMM product (``optimizer: newton``).

For dense triangular factors the Newton step of F(L, U) = LU − A is explicit: with
R = LU − A and X = −L⁻¹ R U⁻¹ (two triangular solves),

    ΔL = L · strict_lower(X),   ΔU = upper(X) · U,    then ΔL·U + L·ΔU = −R exactly,

and it converges quadratically near a factorization (the classical Newton iteration for LU).
The GFMM weights θ reach L and U through a graph, so one step here takes that dense step
and projects it onto the graph's tangent: the weight change d minimizes

    ‖J_L d_L − ΔL‖²_F + ‖J_U d_U − ΔU‖²_F + λ‖d‖²

(J_L, J_U: the Jacobians of θ ↦ L(θ), U(θ) — each factor alone, on identity inputs), solved
by conjugate gradients with the per-edge Kronecker preconditioner of
:mod:`lubench_learned.kronecker` (for the near field — diagonal blocks and leaf bridge — the
fit is block diagonal and that preconditioner exact). The products J_FᵀJ_F v are two
backward passes of F(θ) on I (the double-backward trick, as in
:class:`~lubench_learned.lm.LevenbergMarquardt`). Where A's factors lie in the GFMM pattern
the projection loses nothing near the solution, and the steps inherit Newton's fast local
convergence without the ill-conditioned normal equations of ‖LU − A‖² (whose blocks carry
κ(U)² for L's weights and κ(L)² for U's).

Acceptance is Levenberg–Marquardt's on the true loss f = ‖LU − A‖²_F: ρ = (f(θ) −
f(θ + d)) / (f(θ) − ‖R + J_L d_L·U + L·J_U d_U‖²) > 1e-4 accepts; λ ÷3 for ρ > 0.75,
×2 for ρ < 0.25, ×4 on a rejection (θ unchanged). Far from a factorization (an identity
start on a nonsymmetric operator) the dense step can be far outside what the graph's tangent
holds and trials fail; a rejected trial is followed at once by a Kronecker-preconditioned
Levenberg–Marquardt step on ‖LU − A‖² (:class:`~lubench_learned.lm.LevenbergMarquardt`
with :class:`~lubench_learned.kronecker.KroneckerPreconditioner`), and after k rejections in
a row the next trial waits min(2ᵏ, ``MAX_SKIP``) such steps. Every step is one of the two.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from .gfmm import GFMMProduct
from .kronecker import KroneckerPreconditioner, fit_factors
from .lm import LevenbergMarquardt, conjugate_gradients, gauss_newton, trial_step, vjp

__all__ = ["ProjectedNewton", "CG_TOL"]

# The projection's CG stops at ‖residual‖ ≤ CG_TOL·‖Jᵀ(target − F)‖. Measured at n = 256
# (laplacian_1d P = 32, exponential_kernel ρ = 0.5 P = 16; factor error 1e-6): 0.1 reaches
# it in 3–6 s, 1e-2 in 8–20 s, 1e-3 in 8–25 s (inexact Newton: rough projections, more steps)
CG_TOL = 0.1
# After k rejected Newton trials in a row, min(2ᵏ, MAX_SKIP) Levenberg–Marquardt steps
# (the first at once) before the next trial
MAX_SKIP = 16


class ProjectedNewton:
    """Projected Newton steps for a :class:`~lubench_learned.gfmm.GFMMProduct` with
    triangular diagonal blocks on a dense target ``A`` (N×N, the model's dtype).
    ``step(residual)`` has the interface of :class:`~lubench_learned.lm.LevenbergMarquardt`
    (``residual`` serves the Levenberg–Marquardt fallback; a Newton trial forms L, U and
    LU − A itself)."""

    def __init__(self, model: GFMMProduct, A: torch.Tensor, params: list[torch.nn.Parameter],
                 cg_iters: int = 200, cg_tol: float = CG_TOL, lam: float = 1e-3):
        if getattr(model, "diag_kind", None) != "triangular":
            raise ValueError("projected Newton needs a GFMM product with triangular "
                             "diagonal blocks (L unit lower, U upper triangular)")
        self.model, self.A, self.params = model, A, params
        self.cg_iters, self.cg_tol, self.lam = cg_iters, cg_tol, lam
        self.a_norm = float(torch.linalg.norm(A))
        self.pre = KroneckerPreconditioner(model, params, fit_factors)
        # the fallback: Kronecker-preconditioned Levenberg–Marquardt on ‖LU − A‖²
        self.lm = LevenbergMarquardt(params, cg_iters=cg_iters,
                                     preconditioner=KroneckerPreconditioner(model, params))
        self.fails = 0  # Newton trials rejected in a row
        self.skip = 0   # LM steps to take before the next Newton trial
        self.cg_steps = 0
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

    def _newton(self) -> tuple[float, torch.Tensor, bool]:
        """A projected Newton trial: the loss before it, the relative error, and whether it
        was accepted (else the weights are as they were)."""
        model, params = self.model, self.params
        # the dense factors with their graph (the projection differentiates them) and
        # without (the Newton step and the loss)
        Lt, Ut = model.L.as_dense(), model.U.as_dense()
        Ld, Ud = Lt.detach(), Ut.detach()
        R = Ld @ Ud - self.A
        f0 = float((R * R).sum())
        rel = torch.tensor(math.sqrt(max(f0, 0.0)) / self.a_norm)
        if not math.isfinite(f0) or f0 == 0.0:
            return f0, rel, False
        # the dense Newton step: X = −L⁻¹ R U⁻¹, ΔL = L·strict_lower(X), ΔU = upper(X)·U
        X = torch.linalg.solve_triangular(Ld, -R, upper=False, unitriangular=True)
        X = torch.linalg.solve_triangular(Ud, X, upper=True, left=False)
        if not bool(torch.isfinite(X).all()):
            return f0, rel, False
        tL, tU = Ld + Ld @ torch.tril(X, -1), Ud + torch.triu(X) @ Ud
        # project onto the graph's tangent: CG on (JᵀJ + λI) d = Jᵀ(target − F(θ))
        r = torch.cat([(Lt - tL).reshape(-1), (Ut - tU).reshape(-1)])
        g, jvp = gauss_newton(r, params)

        lam = self.lam
        self.pre.update()
        d, self.cg_steps = conjugate_gradients(
            lambda v: [a + lam * b for a, b in zip(vjp(r, params, jvp(v), retain_graph=True),
                                                   v)],
            g, lambda v: self.pre.apply(v, lam), self.cg_iters, self.cg_tol)
        if self.cg_steps == 0:
            return f0, rel, False
        N = Ld.shape[0]
        jd = jvp(d).detach()
        dL, dU = jd[:N * N].reshape(N, N), jd[N * N:].reshape(N, N)
        lin = R + dL @ Ud + Ld @ dU
        pred = f0 - float((lin * lin).sum())
        accepted, self.lam, self.last = trial_step(
            params, d, self._loss, f0, pred, lam)
        return f0, rel, accepted
