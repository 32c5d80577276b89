"""A block-Jacobi preconditioner for Levenberg–Marquardt on a GFMM product L·U ≈ A.

The residual of the whole-matrix loss is R = L(θ_L)·U(θ_U) − A, with L applied to U's
columns (the model's ``full_product``). Every edge tensor of a GFMM graph acts as
out = W·in on one node's value (see :mod:`lubench_learned.gfmm`), so for one edge block W
(P×P, or P×2P / 2P×P for an encoder / decoder pair)

    dR = D · dW · in,        JᵀJ restricted to W:  dW ↦ G · dW · C,
    C = in·inᵀ (the edge's input Gram),   G = Dᵀ D (the Gram of its downstream map D),

exactly, not approximately: the diagonal block of JᵀJ that belongs to one edge is the
Kronecker product C ⊗ G. For L's edges ``in`` is the node's value when L runs on U's
columns (so C carries κ(U)²) and D maps the node's output to L's output (G = the gradient
values' Gram for the cotangent I); for U's edges ``in`` is the node's value on I and D maps
to L·(U's output), so G is the gradient values' Gram for the cotangent Lᵀ.

The preconditioner inverts each such block with the damping: (G ⊗ C + λI)⁻¹, applied through
the eigendecompositions G = Q_G Λ_G Q_Gᵀ, C = Q_C Λ_C Q_Cᵀ as
Y = Q_G [(Q_Gᵀ X Q_C) ⊘ (λ_G λ_Cᵀ + λ)] Q_Cᵀ. It ignores the coupling between edges
(block-Jacobi), so it is symmetric positive definite for λ > 0 and conjugate gradients with
it stays valid. Triangular diagonal blocks (L unit lower, U upper with pivots
s·(δ + softplus θ)) reach their raw weights Θ through a diagonal map T (0 on the fixed
entries, s·σ(θ) on U's pivots, 1 elsewhere); their block gets T⁺ (G ⊗ C + λI)⁻¹ T⁺ with T⁺
the pseudo-inverse of T — symmetric positive definite on the weights that reach the output.

The forward pass is :func:`lubench_learned.gfmm.sweeps._sweep_levels` (the sweep with its level
values, each edge's input); the backward pass here keeps each edge's output-gradient values.
Both read the factor's parameter tensors and change nothing.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from ..gfmm import GFMMFactor, GFMMProduct
from ..gfmm.sweeps import _sweep_levels

__all__ = ["kronecker_factors", "KroneckerPreconditioner", "preconditioner_for"]

# μ / max ‖G ⊗ C‖₂: the preconditioner's damping floor, max(λ, μ) (dead edges, whose
# G = C = 0, and directions the Grams barely see)
FLOOR = 1e-12
Blocks = list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]  # (param, G, C)


def _gram(t: torch.Tensor) -> torch.Tensor:
    """t·tᵀ per block of a (…, a, c) tensor."""
    return torch.bmm(t, t.transpose(1, 2))


def _edge_grams(f: GFMMFactor, x: torch.Tensor, g: torch.Tensor
                ) -> tuple[torch.Tensor, Blocks]:
    """Run factor ``f`` on leaf blocks x (M, P, c) and back with the cotangent g (M, P, c'):
    the output F x as (M, P, c) and, for each parameter tensor, (param, G, C) with G and C
    the per-edge Grams of output gradients and inputs (dead edges: G = C = 0)."""
    M, P, c = x.shape
    K = f.K
    lower = f.lower
    enc, dec, bridges = list(f.enc), list(f.dec), list(f.bridge)
    diag = f.diagonal_blocks()
    off = f.off
    out: Blocks = []
    with torch.no_grad():
        # forward, keeping the up-sweep values v and down-sweep values ys
        v, ys, y = _sweep_levels(x, enc, dec, diag, off, bridges, lower)
        # backward with cotangent g: gy[i] = ∂/∂yⁱ, gv[i] = ∂/∂vⁱ
        cg = g.shape[-1]
        gy = [g]
        for i in range(K - 1):
            gy.append(torch.bmm(dec[i].transpose(1, 2),
                                gy[i].reshape(M >> (i + 1), 2 * P, cg)))
        gv: list[torch.Tensor | None] = [None] * (K + 1)
        for i in range(K - 1, 0, -1):
            nodes = M >> i
            band = bridges[i - 1]
            gdst = gy[i][1:] if lower else gy[i][:-1]
            t = F.pad(torch.bmm(band.transpose(1, 2), gdst),
                      (0, 0, 0, 0, 0, 1) if lower else (0, 0, 0, 0, 1, 0))
            if gv[i + 1] is not None:
                t = t + torch.bmm(enc[i].transpose(1, 2), gv[i + 1]).reshape(nodes, P, cg)
            gv[i] = t
        for i in range(K):
            h = M >> (i + 1)
            if i < K - 1:
                C = _gram(v[i].reshape(h, 2 * P, c))
                G = _gram(gv[i + 1])
            else:
                C = torch.zeros((h, 2 * P, 2 * P), dtype=x.dtype, device=x.device)
                G = torch.zeros((h, P, P), dtype=x.dtype, device=x.device)
            out.append((enc[i], G, C))
        for i in range(K):
            h = M >> (i + 1)
            if i < K - 1:
                C = _gram(ys[i + 1])
                G = _gram(gy[i].reshape(h, 2 * P, cg))
            else:
                C = torch.zeros((h, P, P), dtype=x.dtype, device=x.device)
                G = torch.zeros((h, 2 * P, 2 * P), dtype=x.dtype, device=x.device)
            out.append((dec[i], G, C))
        out.append((f.diag, _gram(g), _gram(x)))
        for i in range(K):
            src = v[i][:-1] if lower else v[i][1:]
            gdst = gy[i][1:] if lower else gy[i][:-1]
            out.append((off if i == 0 else bridges[i - 1], _gram(gdst), _gram(src)))
    return y, out


def kronecker_factors(model: GFMMProduct) -> Blocks:
    """(param, G, C) for every parameter tensor of ``model`` (L's, then U's): the exact
    diagonal blocks G ⊗ C of JᵀJ for the residual L·U − A, one per edge."""
    M, P = model.M, model.P
    N = M * P
    p = model.L.diag
    eye = torch.eye(N, dtype=p.dtype, device=p.device).reshape(M, P, N)
    with torch.no_grad():
        Ld, _ = _edge_grams(model.L, eye, eye[..., :1])  # L itself (the G part unused)
        Ld = Ld.reshape(N, N)
        U, u_blocks = _edge_grams(model.U, eye, Ld.t().reshape(M, P, N))
        _, l_blocks = _edge_grams(model.L, U, eye)
    return l_blocks + u_blocks


class KroneckerPreconditioner:
    """x ↦ (G ⊗ C + λI)⁻¹ x per edge block, for a list of tensors aligned with ``params``
    (parameters this model does not own pass through unchanged)."""

    def __init__(self, model: GFMMProduct, params: list[torch.nn.Parameter],
                 factors: Callable[[GFMMProduct], Blocks] | None = None):
        self.model = model
        self.params = params
        self.factors = factors or kronecker_factors
        self.floor = 1.0
        self._eig: dict[int, tuple] = {}
        self._tmap: dict[int, torch.Tensor] = {}

    def update(self) -> None:
        """Recompute the Kronecker factors and their eigendecompositions at the current
        weights (once per Levenberg–Marquardt step)."""
        self._eig.clear()
        self._tmap.clear()
        for p, G, C in self.factors(self.model):
            wg, qg = torch.linalg.eigh(G)
            wc, qc = torch.linalg.eigh(C)
            self._eig[id(p)] = (wg.clamp_min(0), qg, wc.clamp_min(0), qc)
        top = max((float(e[0].max()) * float(e[2].max()) for e in self._eig.values()
                   if e[0].numel()), default=0.0)
        self.floor = FLOOR * top if top > 0 else 1.0
        for f in (self.model.L, self.model.U):
            if f.diag_kind == "triangular":
                self._tmap[id(f.diag)] = _diag_map_pinv(f)

    def apply(self, xs: list[torch.Tensor], lam: float) -> list[torch.Tensor]:
        out = []
        for p, x in zip(self.params, xs):
            e = self._eig.get(id(p))
            if e is None:
                out.append(x)
                continue
            t = self._tmap.get(id(p))
            if t is not None:
                x = x * t
            wg, qg, wc, qc = e
            z = torch.bmm(qg.transpose(1, 2), torch.bmm(x, qc))
            z = z / (wg[:, :, None] * wc[:, None, :] + max(lam, self.floor))
            y = torch.bmm(qg, torch.bmm(z, qc.transpose(1, 2)))
            out.append(y * t if t is not None else y)
        return out


def _diag_map_pinv(f: GFMMFactor) -> torch.Tensor:
    """T⁺ for a triangular diagonal block's parametrization D(Θ): 0 where Θ does not reach D,
    1 on the free off-diagonal entries, 1/(s·σ(θ)) on U's pivots (dD_ii = s·σ(θ_i)·dΘ_ii)."""
    P = f.P
    with torch.no_grad():
        th = f.diag
        ones = torch.ones((P, P), dtype=th.dtype, device=th.device)
        if f.lower:
            return torch.tril(ones, -1).expand_as(th).clone()
        t = torch.triu(ones, 1).expand_as(th).clone()
        idx = torch.arange(P, device=th.device)
        sig = torch.sigmoid(th[:, idx, idx])
        t[:, idx, idx] = f.pivot_sign / sig
        return t


def preconditioner_for(model: object, params: list[torch.nn.Parameter]
                       ) -> KroneckerPreconditioner | None:
    """The Kronecker block-Jacobi preconditioner for a GFMM product, else None."""
    if isinstance(model, GFMMProduct):
        return KroneckerPreconditioner(model, params)
    return None

