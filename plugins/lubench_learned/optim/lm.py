"""Matrix-free Levenberg–Marquardt for the learned LU losses (a zero-residual least-squares
problem when A = LU is representable, where Gauss–Newton converges fast near a solution)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any, Protocol

import torch

__all__ = ["LevenbergMarquardt", "Preconditioner", "conjugate_gradients", "gauss_newton",
           "trial_step", "vjp"]


class Preconditioner(Protocol):
    """A symmetric positive definite approximation of (JᵀJ + λI)⁻¹, fixed during a step."""

    def update(self) -> None:
        """Rebuild at the current weights (called once per step, before the CG)."""

    def apply(self, xs: list[torch.Tensor], lam: float) -> list[torch.Tensor]:
        """(JᵀJ + λI)⁻¹ x, approximately, for x given per parameter."""


Vectors = list[torch.Tensor]


def _dot(a: Vectors, b: Vectors) -> float:
    return float(sum((x * y).sum() for x, y in zip(a, b)))


def conjugate_gradients(op: Callable[[Vectors], Vectors], g: Vectors,
                        precond: Callable[[Vectors], Vectors] | None, iters: int,
                        tol: float, deadline: float | None = None) -> tuple[Vectors, int]:
    """d ≈ −op⁻¹ g for a symmetric positive (semi)definite ``op`` by (preconditioned)
    conjugate gradients from d = 0, vectors given per parameter; ``precond`` ≈ op⁻¹
    (symmetric positive definite, fixed). Stops after ``iters`` products, at
    ‖op d + g‖ ≤ tol·‖g‖, when pᵀ op p ≤ 0, or after the first product once
    ``time.perf_counter()`` has passed ``deadline``: every CG iterate from d = 0 lowers the
    quadratic model, so a truncated d is still a descent step. Returns d and the number of
    products (0: g = 0)."""
    g2 = _dot(g, g)
    d = [torch.zeros_like(x) for x in g]
    if g2 == 0.0:
        return d, 0
    res = [-x for x in g]
    z = precond(res) if precond is not None else res
    pdir = [x.clone() for x in z]
    rz = _dot(res, z)
    k = 0
    while k < iters:
        k += 1
        Ap = op(pdir)
        pAp = _dot(pdir, Ap)
        if pAp <= 0:
            break
        alpha = rz / pAp
        d = [x + alpha * y for x, y in zip(d, pdir)]
        res = [x - alpha * y for x, y in zip(res, Ap)]
        if _dot(res, res) <= tol ** 2 * g2:
            break
        if deadline is not None and time.perf_counter() >= deadline:
            break
        z = precond(res) if precond is not None else res
        rz_new = _dot(res, z)
        pdir = [x + (rz_new / rz) * y for x, y in zip(z, pdir)]
        rz = rz_new
    return d, k


def vjp(out: torch.Tensor, inputs: list[torch.Tensor], v: torch.Tensor,
        **kw: Any) -> Vectors:
    """(∂out/∂inputs)ᵀ v per input (zeros for an input ``out`` does not depend on)."""
    gs = torch.autograd.grad(out, inputs, grad_outputs=v, allow_unused=True, **kw)
    return [torch.zeros_like(p) if g is None else g for g, p in zip(gs, inputs)]


def gauss_newton(r: torch.Tensor, params: list[torch.Tensor]
                 ) -> tuple[Vectors, Callable[[Vectors], torch.Tensor]]:
    """For a residual r(θ) (built with autograd): g = Jᵀr and v ↦ Jv, the latter by the
    double-backward trick (Jv is the gradient of u ↦ ⟨Jᵀu, v⟩ with respect to u). JᵀJv is
    then ``vjp(r, params, jv(v), retain_graph=True)``."""
    rd = r.detach()
    g = vjp(r, params, rd, retain_graph=True)
    u = torch.zeros_like(rd, requires_grad=True)
    jtu = vjp(r, params, u, create_graph=True, retain_graph=True)
    live = [i for i, t in enumerate(jtu) if t.requires_grad]

    def jv(v: Vectors) -> torch.Tensor:
        (out,) = torch.autograd.grad([jtu[i] for i in live], u,
                                     grad_outputs=[v[i] for i in live], retain_graph=True)
        return out

    return g, jv


def trial_step(params: list[torch.Tensor], d: Vectors, loss: Callable[[], float], f0: float,
               pred: float, lam: float) -> tuple[bool, float, dict]:
    """Try θ + d against the predicted decrease ``pred``: kept when ρ = (f0 − f(θ + d)) /
    pred > 1e-4, else θ is restored exactly (θ + d − d is θ only up to rounding). Returns
    (kept, the next λ — ÷3 for ρ > 0.75, ×2 for ρ < 0.25, ×4 when rejected — and the
    trial's diagnostics {rho, pred, f1})."""
    with torch.no_grad():
        saved = [p.detach().clone() for p in params]
        for p, x in zip(params, d):
            p.add_(x)
        f1 = loss()
    rho = (f0 - f1) / pred if pred > 0 else -1.0
    last = {"rho": rho, "pred": pred, "f1": f1}
    if math.isfinite(f1) and rho > 1e-4:
        if rho > 0.75:
            return True, max(lam / 3.0, 1e-12), last
        return True, (lam * 2.0 if rho < 0.25 else lam), last
    with torch.no_grad():
        for p, x in zip(params, saved):
            p.copy_(x)
    return False, min(lam * 4.0, 1e12), last


class LevenbergMarquardt:
    """Matrix-free Levenberg–Marquardt on a least-squares loss f(θ) = ‖r(θ)‖².

    One step: g = Jᵀr (a backward pass); d from conjugate gradients on (JᵀJ + λI) d = −g,
    each product JᵀJv by two backward passes (Jv by the double-backward trick: the gradient
    of u ↦ Jᵀu with respect to u); the trial θ + d is accepted when the actual decrease is
    a positive share of the predicted one, ρ = (f(θ) − f(θ + d)) / (−2gᵀd − ‖Jd‖²) > 1e-4;
    λ shrinks (÷3) for ρ > 0.75 and grows (×2) for ρ < 0.25; a rejected trial leaves θ
    unchanged and multiplies λ by 4 (the step counts). Frozen edges
    (``mask``) are kept out of d. For zero-residual problems such as A = LU exactly, close to
    a solution this converges much faster than first-order methods.

    ``deadline`` (a ``time.perf_counter()`` value, set by the trainer from the budget's
    ``max_seconds``) truncates the CG: one JᵀJ product of the whole-matrix loss at
    n = 4096 takes about a second, so 200 of them would overrun a budget by minutes.
    """

    def __init__(self, params: list[torch.nn.Parameter], cg_iters: int = 40,
                 cg_tol: float = 1e-2, lam: float = 1e-3,
                 mask: Callable[[list[torch.Tensor]], None] | None = None,
                 preconditioner: Preconditioner | None = None):
        self.params, self.cg_iters, self.cg_tol, self.lam = params, cg_iters, cg_tol, lam
        self.mask = mask or (lambda ts: None)
        self.preconditioner = preconditioner
        self.cg_steps = 0  # conjugate-gradient products of the last step
        self.deadline: float | None = None  # time.perf_counter() at which CG is cut short
        self.param_groups: list[dict] = [{"lr": 1.0}]  # set_lr is a no-op

    def step(self, residual: Callable[[], tuple[torch.Tensor, Any]]) -> tuple[float, Any]:
        params = self.params
        r, rel = residual()
        f0 = float((r.detach() ** 2).sum())
        if not math.isfinite(f0):
            return f0, rel
        g, jvp = gauss_newton(r, params)
        self.mask(g)

        def jtj(v: list[torch.Tensor]) -> list[torch.Tensor]:
            out = vjp(r, params, jvp(v), retain_graph=True)
            self.mask(out)
            return out

        lam = self.lam
        pre = self.preconditioner
        if pre is not None:
            pre.update()

        def precond(v: list[torch.Tensor]) -> list[torch.Tensor]:
            z = pre.apply(v, lam)
            self.mask(z)
            return z

        d, self.cg_steps = conjugate_gradients(
            lambda v: [a + lam * b for a, b in zip(jtj(v), v)], g,
            precond if pre is not None else None, self.cg_iters, self.cg_tol, self.deadline)
        if self.cg_steps == 0:
            return f0, rel
        jd = jvp(d)
        pred = -2.0 * _dot(g, d) - float((jd * jd).sum())
        _, self.lam, self.last = trial_step(
            params, d, lambda: float((residual()[0] ** 2).sum()), f0, pred, lam)
        return f0, rel
