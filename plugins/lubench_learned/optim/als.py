"""Alternating least squares for a triangular GFMM product A ≈ L·U (``optimizer: als``).

The loss ‖LU − A‖²_F is linear in L for fixed U and in U for fixed L; within one GFMM factor
every parameter tensor enters linearly when the others are fixed. One ALS step:

1. **L's rows, exactly.** Write L = N_L + D₀·G·E₀ with N_L the near field (unit lower
   triangular diagonal blocks D_a, leaf bridge O_a on block (a, a−1)), D₀ the leaf decoders
   (block-diagonal, D₀_a a P×P block), E₀ the leaf encoders and G the rest of the graph. Row g
   = aP + i of LU is then

       (LU)_g = U_g + D_a[i, :i]·U_{aP:aP+i} + O_a[i]·U_{block a−1} + D₀_a[i]·W_{block a},

   with W = (G·E₀ lifted to the leaves)·U: linear in the ≤ 3P unknowns of row g only, so
   each row is an independent least-squares problem min ‖x·B_g − (A_g − U_g)‖₂ against the
   ≤ 3P rows B_g of U and W — solved directly (LAPACK ``gelsd``, minimum norm when B_g is
   rank-deficient). L's diagonal stays exactly 1.
2. **U's columns, exactly.** Mirrored: U = N_U + D₀ᵁ·Gᵁ·E₀ᵁ, column c = bP + j of LU is
   L·(D_b[:j+1, j], O_{b−1}[:, j]) + V_{block b}·E₀ᵁ_b[:, j] with V = L·(D₀ᵁ·Gᵁ lifted to
   the leaves): one least-squares problem per column. The pivot U_cc keeps the sign s of
   its parametrization and |U_cc| ≥ δ: when the free solution falls below the floor, the
   pivot is set to s·δ·(1 + 2⁻²⁰) — so that softplus⁻¹ stays finite — and the column's other
   unknowns are solved again with it fixed.
3. **The inner far field** (L's leaf encoders, U's leaf decoders, every level above the
   leaves), which enters both sides of the product, takes one Levenberg–Marquardt step with
   the tensors of 1 and 2 frozen (:class:`~lubench_learned.optim.lm.LevenbergMarquardt`).
4. **Extrapolation** along the whole step Δ (θ_old + ωΔ, ω = 2, 4, … up to 2¹⁰ while the
   loss falls; the line search of ALS for tensor fits, against its slow "swamps").

Steps 1 and 2 each minimise the loss exactly over their unknowns, so neither raises it; nor
do 3 (LM rejects a worse trial) and 4. The loss reported for a step is the one before its
Levenberg–Marquardt part. Cost per step at
n = N: two dense products N³, N least-squares problems N × ≤ 3P each, and one LM step.
Needs ``diag: triangular`` (full blocks carry a gauge that makes each sub-problem singular)
and the whole loss (not block-wise).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from ..gfmm import GFMMFactor, GFMMProduct
from ..parametrization import softplus_inverse

__all__ = ["AlternatingLeastSquares"]

# |U_cc| is raised to δ·(1 + FLOOR_MARGIN) when the free solution falls below δ
FLOOR_MARGIN = 2.0 ** -20


def _lstsq(B: np.ndarray, t: np.ndarray) -> np.ndarray:
    """x minimising ‖B x − t‖₂ (minimum norm); B is m × k with k possibly 0."""
    if B.shape[1] == 0:
        return np.zeros((0,) + t.shape[1:])
    return np.linalg.lstsq(B, t, rcond=None)[0]


class AlternatingLeastSquares:
    """ALS on a :class:`~lubench_learned.gfmm.GFMMProduct` with triangular diagonal blocks
    (see the module docstring). ``step(residual)`` has the interface of
    :class:`~lubench_learned.optim.lm.LevenbergMarquardt`: ``residual()`` returns (r, rel)
    with ‖r‖² the loss, and the step returns the loss before its LM part and ``rel``."""

    def __init__(self, model: GFMMProduct, A: np.ndarray, params: list[torch.nn.Parameter],
                 make_lm: Callable[[Callable[[list[torch.Tensor]], None]], Any]):
        if getattr(model, "diag_kind", None) != "triangular":
            raise ValueError("alternating least squares needs a GFMM product with "
                             "triangular diagonal blocks")
        self.model = model
        self.A = np.asarray(A, dtype=np.float64)
        L, U = model.L, model.U
        # the tensors that steps 1 and 2 solve exactly; LM moves the others
        exact = {id(L.diag), id(L.off), id(U.diag), id(U.off)}
        if L.K:
            exact |= {id(L.dec[0]), id(U.enc[0])}
        keep = [id(p) not in exact for p in params]

        def mask(ts: list[torch.Tensor]) -> None:
            for t, k in zip(ts, keep):
                if not k:
                    t.zero_()

        self.inner = any(keep)
        self.lm = make_lm(mask)
        self.param_groups: list[dict] = [{"lr": 1.0}]  # set_lr is a no-op

    # ----------------------------------------------------------------------------------------
    @staticmethod
    def _dense(F: GFMMFactor) -> np.ndarray:
        eye = torch.eye(F.n, dtype=F.diag.dtype, device=F.diag.device)
        return F(eye).to("cpu", torch.float64).numpy()

    @classmethod
    def _far(cls, F: GFMMFactor, lift: str) -> np.ndarray:
        """The far field of F with its leaf decoders (``lift='dec'``) or leaf encoders
        (``'enc'``) replaced by identities: F(I) − (F with leaf decoders 0)(I), every
        far-field path passing through a leaf decoder."""
        P = F.P
        saved = F.dec[0].detach().clone(), F.enc[0].detach().clone()
        eye = torch.eye(P, dtype=F.diag.dtype, device=F.diag.device)
        try:
            if lift == "dec":
                F.dec[0].copy_(torch.cat([eye, eye], 0).expand_as(F.dec[0]))
            else:
                F.enc[0].copy_(torch.cat([eye, eye], 1).expand_as(F.enc[0]))
            full = cls._dense(F)
            F.dec[0].zero_()
            near = cls._dense(F)
        finally:
            F.dec[0].copy_(saved[0])
            F.enc[0].copy_(saved[1])
        return full - near

    def _solve_L(self) -> None:
        L, U = self.model.L, self.model.U
        M, P, N = L.M, L.P, L.n
        Ud = self._dense(U)
        W = self._far(L, "dec") @ Ud if L.K else np.zeros((N, N))
        A = self.A
        dev, dt = L.diag.device, L.diag.dtype
        diag = L.diag.detach().to("cpu", torch.float64).numpy().copy()
        off = L.off.detach().to("cpu", torch.float64).numpy().copy()
        dec0 = L.dec[0].detach().to("cpu", torch.float64).numpy().copy() if L.K else None
        for a in range(M):
            s = slice(a * P, (a + 1) * P)
            prev = Ud[(a - 1) * P: a * P] if a else np.zeros((0, N))
            far = W[s] if L.K else np.zeros((0, N))
            for i in range(P):
                g = a * P + i
                B = np.concatenate([Ud[a * P: g], prev, far]).T  # N × k
                x = _lstsq(B, A[g] - Ud[g])
                diag[a, i, :i] = x[:i]
                k = i
                if a:
                    off[a - 1, i] = x[k: k + P]
                    k += P
                if L.K:
                    dec0[a >> 1, (a & 1) * P + i] = x[k: k + P]
        L.diag.copy_(torch.as_tensor(diag, dtype=dt, device=dev))
        L.off.copy_(torch.as_tensor(off, dtype=dt, device=dev))
        if L.K:
            L.dec[0].copy_(torch.as_tensor(dec0, dtype=dt, device=dev))

    def _solve_U(self) -> None:
        L, U = self.model.L, self.model.U
        M, P, N = U.M, U.P, U.n
        Ld = self._dense(L)
        V = Ld @ self._far(U, "enc") if U.K else np.zeros((N, N))
        A = self.A
        dev, dt = U.diag.device, U.diag.dtype
        theta = U.diag.detach().to("cpu", torch.float64).numpy().copy()
        off = U.off.detach().to("cpu", torch.float64).numpy().copy()
        enc0 = U.enc[0].detach().to("cpu", torch.float64).numpy().copy() if U.K else None
        sign = U.pivot_sign.detach().to("cpu", torch.float64).numpy()
        floor = float(U.pivot_floor)
        low = max(floor * (1.0 + FLOOR_MARGIN), 1e-300)
        for b in range(M):
            prev = Ld[:, (b - 1) * P: b * P] if b else np.zeros((N, 0))
            far = V[:, b * P: (b + 1) * P] if U.K else np.zeros((N, 0))
            for j in range(P):
                c = b * P + j
                B = np.concatenate([Ld[:, b * P: c + 1], prev, far], axis=1)
                x = _lstsq(B, A[:, c])
                piv = x[j] * sign[b, j]
                if not piv >= low:  # the floor binds: fix the pivot, solve the rest again
                    piv = low
                    rest = np.delete(B, j, axis=1)
                    y = _lstsq(rest, A[:, c] - sign[b, j] * piv * Ld[:, c])
                    x = np.insert(y, j, sign[b, j] * piv)
                theta[b, :j, j] = x[:j]
                theta[b, j, j] = softplus_inverse(max(piv - floor, 1e-300))
                k = j + 1
                if b:
                    off[b - 1, :, j] = x[k: k + P]
                    k += P
                if U.K:
                    enc0[b >> 1, :, (b & 1) * P + j] = x[k: k + P]
        U.diag.copy_(torch.as_tensor(theta, dtype=dt, device=dev))
        U.off.copy_(torch.as_tensor(off, dtype=dt, device=dev))
        if U.K:
            U.enc[0].copy_(torch.as_tensor(enc0, dtype=dt, device=dev))

    @property
    def deadline(self) -> float | None:
        """Cuts the inner Levenberg–Marquardt step's CG short (see there)."""
        return self.lm.deadline

    @deadline.setter
    def deadline(self, value: float | None) -> None:
        self.lm.deadline = value

    def step(self, residual: Callable[[], tuple[torch.Tensor, Any]]) -> tuple[float, Any]:
        params = self.lm.params
        with torch.no_grad():
            old = [p.detach().clone() for p in params]
            self._solve_L()
            self._solve_U()
        if self.inner:
            f, rel = self.lm.step(residual)
        else:
            r, rel = residual()
            f = float((r.detach() ** 2).sum())
        self._extrapolate(old, residual)
        return (f if math.isfinite(f) else math.inf), rel

    def _extrapolate(self, old: list[torch.Tensor],
                     residual: Callable[[], tuple[torch.Tensor, Any]]) -> None:
        """Line extrapolation along the step Δ = θ − θ_old (ALS's swamps): θ_old + ωΔ for
        ω = 2, 4, 8, … while the loss keeps falling; the best ω (≥ 1) is kept."""
        params = self.lm.params
        with torch.no_grad():
            new = [p.detach().clone() for p in params]

            def loss_at(w: float) -> float:
                for p, o, x in zip(params, old, new):
                    p.copy_(o + w * (x - o))
                f = float((residual()[0] ** 2).sum())
                return f if math.isfinite(f) else math.inf

            best_w, best_f = 1.0, loss_at(1.0)
            w = 1.0
            while w < 2.0 ** 10:
                w *= 2.0
                f = loss_at(w)
                if not f < best_f:
                    break
                best_w, best_f = w, f
            loss_at(best_w)
