"""Training a GFMM LU at scale (``optimizer: sketch``): near-field Newton and block least
squares on sketches, O(n·k·P + n·P²) work and O(n·(k + P)) memory per step.

Notation of :mod:`lubench_learned.gfmm`: n = M·P, K = log₂M levels, a factor F applies
y = F x through its up-sweep (encoders), bridges and down-sweep (decoders); its *output
side* is what acts after the bridges (the decoders, the bridges, the leaf bridge with the
diagonal blocks), its *input side* the encoders. Everything here works on the factors *as
used* (:class:`Factor`: diagonal blocks after the parametrization, the layout of
:class:`~lubench_structured.gfmm.arrays.GFMMArrays`) and loads the result back into the
model's weights (:meth:`Factor.load`, the inverse of the parametrization).

**Near-field Newton.** While the far field is zero (every bridge of L and U zero: the
``identity`` start) and A's near field is known (its blocks A[a, a], A[a+1, a], A[a, a+1]
from ``op.entries`` or the sparse matrix), L and U are block-bidiagonal and LU − A restricted
to the block-tridiagonal pattern, R, is what Newton's method for A = LU sees there. Its
linearization δL·U + L·δU = −R on that pattern (δL, δU block-bidiagonal, δL's diagonal
blocks strictly lower, δU's upper) is a square system that one sweep over the leaves solves
exactly: at leaf a, with the bands of leaf a − 1 known,

    X = L_aa⁻¹ (−R_aa − δL_{a,a−1} U_{a−1,a} − L_{a,a−1} δU_{a−1,a}) U_aa⁻¹,
    δL_aa = L_aa·strict_lower(X),  δU_aa = upper(X)·U_aa,
    δU_{a,a+1} = L_aa⁻¹(−R_{a,a+1}) − strict_lower(X)·U_{a,a+1},
    δL_{a+1,a} = (−R_{a+1,a}) U_aa⁻¹ − L_{a+1,a}·upper(X),

O(n·P²) — the dense Newton step of :mod:`lubench_learned.optim.newton` split block by block,
exact here because the pattern is closed under it. Where A's LU lies in the near field
(bandwidth ≤ P: ``laplacian_1d``, ``convdiff_1d``) this is Newton's method itself:
quadratic convergence, ~log n steps from the identity start (measured: 20 steps to
round-off at n = 65 536). A trial is a full step halved until the near-field residual falls
(as Newton's), kept only if the probe error falls too; the first failure ends this phase.

**Block least squares on sketches.** With k Gaussian probes Z (fresh each step), the loss
‖(LU − A)Z‖² is, with U fixed, a linear least-squares problem in every output-side unknown
of L given the others: W = UZ is L's input and AZ its target. Two kinds of solve, both exact
for their unknowns given the rest:

* *interior levels* (top down): the bridge into node q at level i and the decoder into it
  enter as y_q ∋ [B D]·[v_{q−1}; y_parent] and reach the rows of q through the decoder chain
  C_q, so min ‖C_q Δ X_q − r_q‖ is Kronecker-structured: Δ = (C_qᵀC_q)⁻¹ (C_qᵀ r_q) X_qᵀ
  (X_q X_qᵀ)⁻¹, with C_qᵀ C_q and C_qᵀ r by one up-sweep of the decoders' transposes; the
  residual is kept current level by level (the change of each level pushed down through the
  decoders and Grams), so one forward sweep serves all levels;
* *leaf rows* (first, and again after the interior levels, each time on the residual the
  other left — so that one fit is exact where only the leaf rows are off; interior levels
  first left a perturbed leaf row's part to the shared interior and crept back, 10⁻³ →
  3·10⁻⁴ in 8 fits on a 2D kernel at n = 128): row g = aP + i of L is linear in its own ≤ 3P
  unknowns — the leaf band row (acting on W's leaf a − 1), the leaf decoder row (on the far-
  field value y¹ of its leaf) and the diagonal block's row left of the diagonal (on W's leaf
  a) — so every row is one least-squares problem with k equations. Ordered [band, far,
  diagonal], row i of a leaf uses the leading 2P + i columns of its leaf's design, and one
  Cholesky factor of the leaf's 3P × 3P Gram serves all P rows (the leading block's factor
  is the leading part): forward substitution, the tail beyond 2P + i zeroed, back
  substitution.

U's output side is fitted the same way through Uᵀ(LᵀY) ≈ AᵀY (fresh probes Y, ``rmatmat``):
Uᵀ is block-lower, its rows are U's columns, its diagonal includes the pivots, which keep
their sign and stay at least the floor δ (a pivot that would not is held at s·δ and its row
solved again). The input sides (L's encoders, U's decoders = Uᵀ's encoders) have no
row-local form: one encoder level per step (cycling) by the Kronecker step with the input
Gram exact and the downstream Gram estimated from 4P random cotangents (K-FAC-like).

Each of the four proposals (L output side, L input side, U output side, U input side) is
damped, min ‖ΔB − r‖² + λ·s‖Δ‖², and kept only when the relative error on fixed
evaluation probes falls (λ ÷ 3), else dropped (λ × 4, the weights exactly as they were).
Sketch-and-solve with k probes finds the minimizer of a random sketch, within a factor
about 1 + d/(k − d) of the true one for d unknowns per row (3P): ``probes`` ≥ 4P.

Measured (docs/experiments/learned-at-scale.md): from ``gfmm_compressed``'s factors where P
truncates the far field (rbf_kernel dim 2), 20 steps take the factor error 7–50× below the
compressed factors' at the same numbers; from the identity start on a kernel the input-side
bases are learned slowly (rbf_kernel dim 1, n = 1024: 1e-3 after 15 steps, pivots at the
floor): only the near-field phase converges fast from scratch, on banded operators.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import torch

from ..gfmm.sweeps import _sweep_levels

__all__ = ["Factor", "fit_output_side", "fit_input_side", "near_residual",
           "near_field_apply", "near_newton_direction", "SketchOptimizer", "ROUND_OFF"]

# Relative probe error at which training stops (as projected Newton's: 512 ulps)
ROUND_OFF = 512
# Damping bounds of the proposals
LAMBDA_START, LAMBDA_MIN, LAMBDA_MAX = 1e-6, 1e-12, 1e8
# The leaves of one batched normal-equation solve (bounds its memory: chunk·(3P)²)
CHUNK = 256
# Relative ridge on every Gram (keeps unused directions, e.g. a zero far field, at zero)
RIDGE = 1e-12


def _t(a: torch.Tensor) -> torch.Tensor:
    return a.transpose(-2, -1)


def _eye(P: int, like: torch.Tensor) -> torch.Tensor:
    return torch.eye(P, dtype=like.dtype, device=like.device)


def _damped(S: torch.Tensor, rel: float) -> torch.Tensor:
    """S + rel·s·I per batch entry, s its mean diagonal (floored at 1e-6 of the largest, so
    that an all-zero block is regularized too)."""
    d = torch.diagonal(S, dim1=-2, dim2=-1).mean(-1)
    if d.numel():
        d = torch.maximum(d, 1e-6 * d.max())
    d = d.clamp_min(1e-300)
    return S + (rel * d)[..., None, None] * _eye(S.shape[-1], S)


# --------------------------------------------------------------------------------------------
# A factor as used
# --------------------------------------------------------------------------------------------
class Factor:
    """One GFMM factor as used: ``enc``, ``dec``, ``bridge`` (lists), ``diag`` (M, P, P)
    after the parametrization, ``off`` (M − 1, P, P); ``lower`` as the graph's. Plain tensors
    (no autograd); operations return new factors."""

    def __init__(self, M: int, P: int, lower: bool, enc: list[torch.Tensor],
                 dec: list[torch.Tensor], diag: torch.Tensor, off: torch.Tensor,
                 bridge: list[torch.Tensor]):
        self.M, self.P, self.lower = M, P, lower
        self.enc, self.dec, self.diag, self.off, self.bridge = enc, dec, diag, off, bridge

    @property
    def K(self) -> int:
        return self.M.bit_length() - 1

    @property
    def n(self) -> int:
        return self.M * self.P

    @classmethod
    def of(cls, f: Any) -> Factor:
        """The factor of a :class:`~lubench_learned.gfmm.model.GFMMFactor`: its weights'
        tensors themselves (detached, not copied; nothing here writes into a tensor it did
        not make) and the diagonal blocks as used."""
        with torch.no_grad():
            return cls(f.M, f.P, f.lower, [e.detach() for e in f.enc],
                       [d.detach() for d in f.dec], f.diagonal_blocks().detach(),
                       f.off.detach(), [b.detach() for b in f.bridge])

    def load(self, f: Any) -> None:
        """Set the weights of GFMMFactor ``f`` so that it equals this factor: the inverse of
        its parametrization (triangular: L's strict lower part; U's strict upper part and
        θ = softplus⁻¹(s·d − δ) for its pivots d, whose signs s are ``f.pivot_sign``)."""
        with torch.no_grad():
            for p, t in zip(f.enc, self.enc):
                p.copy_(t)
            for p, t in zip(f.dec, self.dec):
                p.copy_(t)
            for p, t in zip(f.bridge, self.bridge):
                p.copy_(t)
            f.off.copy_(self.off)
            if f.diag_kind == "full":
                f.diag.copy_(self.diag)
                return
            if f.lower:
                f.diag.copy_(torch.tril(self.diag, -1))
                return
            d = torch.diagonal(self.diag, dim1=1, dim2=2) * f.pivot_sign
            y = (d - f.pivot_floor).clamp_min(1e-300)
            theta = torch.triu(self.diag, 1)
            theta.diagonal(dim1=1, dim2=2).copy_(y + torch.log(-torch.expm1(-y)))
            f.diag.copy_(theta)

    def clone(self) -> Factor:
        """A shallow copy: new lists of the same tensors (every change replaces a tensor)."""
        return Factor(self.M, self.P, self.lower, list(self.enc), list(self.dec), self.diag,
                      self.off, list(self.bridge))

    def transposed(self) -> Factor:
        """Fᵀ: every block transposed, encoders and decoders swapped, ``lower`` flipped."""
        return Factor(self.M, self.P, not self.lower, [_t(d) for d in self.dec],
                      [_t(e) for e in self.enc], _t(self.diag), _t(self.off),
                      [_t(b) for b in self.bridge])

    def reversed(self) -> Factor:
        """J F J (J the exchange matrix): every array flipped along every axis, ``lower``
        flipped — a block-upper factor as a block-lower one."""
        def f(a: torch.Tensor) -> torch.Tensor:
            return torch.flip(a, dims=(0, 1, 2))
        return Factor(self.M, self.P, not self.lower, [f(e) for e in self.enc],
                      [f(d) for d in self.dec], f(self.diag), f(self.off),
                      [f(b) for b in self.bridge])

    def levels(self, x: torch.Tensor):
        """(v, ys, y) of the sweep on leaf blocks x (M, P, k)."""
        return _sweep_levels(x, self.enc, self.dec, self.diag, self.off, self.bridge,
                             self.lower)

    def apply(self, X: torch.Tensor) -> torch.Tensor:
        """F X for X of shape (n, k)."""
        return self.levels(X.reshape(self.M, self.P, -1))[2].reshape(self.n, -1)


def _leaf_dec(F: Factor) -> torch.Tensor:
    """The leaf decoders as (M, P, P) (leaf a's block of ``dec[0][a // 2]``), a view."""
    return F.dec[0].reshape(F.M, F.P, F.P)


# --------------------------------------------------------------------------------------------
# Output side: interior levels (Kronecker) and leaf rows
# --------------------------------------------------------------------------------------------
def _interior_levels(G: Factor, v, ys, r: torch.Tensor, lam: float) -> torch.Tensor | None:
    """The interior levels of block-lower ``G`` (modified in place), top down, on the
    residual r (M, P, k) of its leaves; returns the new level-1 values (None when K < 2)."""
    M, P, K = G.M, G.P, G.K
    if K < 2:
        return None
    k = r.shape[-1]
    rho, gram = [r], [None]
    Gc = _eye(P, r).expand(M, P, P)
    for i in range(1, K):
        h = M >> i
        D = G.dec[i - 1].reshape(h, 2, P, P)
        rho.append((_t(D) @ rho[-1].reshape(h, 2, P, k)).sum(1))
        Gc = (_t(D) @ Gc.reshape(h, 2, P, P) @ D).sum(1)
        gram.append(Gc)
    new = None  # the new values of level i + 1
    for i in range(K - 1, 0, -1):
        N = M >> i
        old = ys[i]
        if new is None:
            cur = old
            parent = torch.zeros_like(old)
        else:
            Dn = G.dec[i].reshape(N >> 1, 2 * P, P)
            cur = old + (Dn @ (new - ys[i + 1])).reshape(N, P, k)
            parent = new.repeat_interleave(2, dim=0)
        rho_cur = rho[i] - gram[i] @ (cur - old)
        src = torch.zeros_like(old)
        src[1:] = v[i][:-1]
        X = torch.cat([src, parent], dim=1)                                 # (N, 2P, k)
        left = torch.linalg.solve(_damped(gram[i], RIDGE + lam), rho_cur @ _t(X))
        delta = _t(torch.linalg.solve(_damped(X @ _t(X), RIDGE + lam), _t(left)))
        G.bridge[i - 1] = G.bridge[i - 1] + delta[1:, :, :P]
        if i < K - 1:  # dec[K − 1] (from the root) never reaches the output
            G.dec[i] = G.dec[i] + delta[:, :, P:].reshape(N >> 1, 2 * P, P)
        new = cur + delta @ X
    return new


def _fit_lower(F: Factor, W: torch.Tensor, T: torch.Tensor, *, unit: bool,
               sign: torch.Tensor | None, floor: float, lam: float) -> Factor:
    """Block-lower F with its output side fitted so that F W ≈ T (module docstring): the leaf
    rows, then the interior levels on what they leave, then the leaf rows again."""
    M, P = F.M, F.P
    k = W.shape[1]
    G = F.clone()
    x = W.reshape(M, P, k)
    v, ys, y = G.levels(x)
    r = T.reshape(M, P, k) - y
    del y
    far = ys[1] if G.K >= 2 else None
    _leaf_rows(G, x, far, r, unit=unit, sign=sign, floor=floor, lam=lam)
    if G.K < 2:
        return G
    y1 = _interior_levels(G, v, ys, r, lam)
    D0 = _leaf_dec(G).reshape(M >> 1, 2 * P, P)
    r -= (D0 @ (y1 - ys[1])).reshape(M, P, k)  # the leaves' residual with the new levels
    del v, ys
    _leaf_rows(G, x, y1, r, unit=unit, sign=sign, floor=floor, lam=lam)
    return G


def _leaf_rows(G: Factor, x: torch.Tensor, far: torch.Tensor | None, r: torch.Tensor, *,
               unit: bool, sign: torch.Tensor | None, floor: float, lam: float) -> None:
    """Every row's leaf-local unknowns of block-lower G, in place (new tensors), by one
    damped least-squares solve per row on the residual r (M, P, k) of its leaves, which is
    updated in place; x the input's leaf blocks, far the level-1 values (None: no far
    field). Design blocks [band source; far value; own leaf], the diagonal part last."""
    M, P = G.M, G.P
    k = x.shape[-1]
    F = G.clone()  # the values before (G's leaf parts are replaced below)
    parts: list[tuple[str, Callable[[int, int], torch.Tensor]]] = []
    if M > 1:
        def band(a0: int, a1: int) -> torch.Tensor:
            out = torch.zeros(a1 - a0, P, k, dtype=x.dtype, device=x.device)
            lo = max(a0, 1)
            out[lo - a0:] = x[lo - 1:a1 - 1]
            return out
        parts.append(("band", band))
    if far is not None:  # leaf a's far value is its parent's, far[a // 2]: this chunk's only
        parts.append(("far", lambda a0, a1: far[a0 // 2:(a1 + 1) // 2].repeat_interleave(
            2, dim=0)[a0 % 2:a0 % 2 + a1 - a0]))
    parts.append(("diag", lambda a0, a1: x[a0:a1]))
    nu = P * len(parts)
    first = nu - P  # where the diagonal block's unknowns start
    G.diag, G.off = F.diag.clone(), F.off.clone()  # written leaf chunk by leaf chunk
    if far is not None:  # contiguous, so that _leaf_dec is a view of it (F's may be transposed)
        G.dec[0] = G.dec[0].clone(memory_format=torch.contiguous_format)
    idx = torch.arange(nu, device=x.device)[:, None]
    col = torch.arange(P, device=x.device)[None, :]
    keep = (idx < first + col + (0 if unit else 1)).to(x.dtype)
    for a0 in range(0, M, CHUNK):
        a1 = min(M, a0 + CHUNK)
        m = a1 - a0
        blocks = [f(a0, a1) for _, f in parts]
        Gm = torch.empty(m, nu, nu, dtype=x.dtype, device=x.device)
        b = torch.empty(m, nu, P, dtype=x.dtype, device=x.device)
        rt = _t(r[a0:a1])
        for p, Bp in enumerate(blocks):
            b[:, p * P:(p + 1) * P] = Bp @ rt
            for q in range(p, len(blocks)):
                g = Bp @ _t(blocks[q])
                Gm[:, p * P:(p + 1) * P, q * P:(q + 1) * P] = g
                if q != p:
                    Gm[:, q * P:(q + 1) * P, p * P:(p + 1) * P] = _t(g)
        Gm = _damped(Gm, RIDGE + lam)
        Rc, info = torch.linalg.cholesky_ex(Gm, upper=True)
        if bool((info != 0).any()):
            raise FloatingPointError("a leaf's normal equations are not positive definite")
        z = torch.linalg.solve_triangular(_t(Rc), b, upper=False) * keep
        d = _t(torch.linalg.solve_triangular(Rc, z, upper=True))          # (m, P rows, nu)
        _place(G, F, d, a0, a1, parts, unit, sign, floor, Gm, Rc, b)
        for p, Bp in enumerate(blocks):  # the rows' change of output, off the residual
            r[a0:a1] -= d[:, :, p * P:(p + 1) * P] @ Bp
        del blocks


def _place(G: Factor, F: Factor, d: torch.Tensor, a0: int, a1: int, parts, unit: bool,
           sign: torch.Tensor | None, floor: float, Gm, Rc, b) -> None:
    """Add the leaf rows' changes d (m, P, nu) of leaves a0 … a1 − 1 into G (whose leaf
    parts still hold F's values); hold pivots at the floor where they would cross it."""
    P = G.P
    names = [n for n, _ in parts]
    pos = {n: i * P for i, n in enumerate(names)}
    first = pos["diag"]
    ar = torch.arange(P, device=d.device)
    nd = F.diag[a0:a1] + torch.tril(d[:, :, first:], -1 if unit else 0)
    if not unit and sign is not None:
        s = sign.reshape(G.M, P)[a0:a1].to(d.dtype)
        low = max(floor * (1 + 2 ** -20), 1e-300)
        bad = nd[:, ar, ar] * s < low
        if bool(bad.any()):
            # the floor binds: the pivot held at s·δ, the row's other unknowns solved again
            for a, i in zip(*[t.tolist() for t in torch.nonzero(bad, as_tuple=True)]):
                m = first + i
                fixed = float(s[a, i]) * low
                dp = fixed - float(F.diag[a0 + a, i, i])
                t = b[a, :m, i] - dp * Gm[a, :m, m]
                xs = torch.cholesky_solve(t[:, None], Rc[a, :m, :m], upper=True)[:, 0]
                d[a, i, :m] = xs
                d[a, i, m:] = 0
                nd[a, i] = F.diag[a0 + a, i] + torch.cat([xs[first:], d.new_zeros(P - i)])
                nd[a, i, i] = fixed
    G.diag[a0:a1] = nd
    if "band" in pos:
        lo = max(a0, 1)
        G.off[lo - 1:a1 - 1] = F.off[lo - 1:a1 - 1] + d[lo - a0:, :, :P]
    if "far" in pos:
        D0 = _leaf_dec(G)
        D0[a0:a1] = _leaf_dec(F)[a0:a1] + d[:, :, pos["far"]:pos["far"] + P]


def fit_output_side(F: Factor, W: torch.Tensor, T: torch.Tensor, *, unit: bool,
                    sign: torch.Tensor | None = None, floor: float = 0.0,
                    lam: float = 0.0) -> Factor:
    """F with its output side (interior decoders and bridges, leaf decoders, leaf bridge,
    diagonal blocks — their strict lower part when ``unit``, else with the diagonal, whose
    signs ``sign`` and floor ``floor`` are kept) fitted so that F W ≈ T, damped by ``lam``.
    A block-upper F is fitted as its reversal."""
    if F.lower:
        return _fit_lower(F, W, T, unit=unit, sign=sign, floor=floor, lam=lam)
    s = torch.flip(sign, dims=(0,)) if sign is not None else None
    return _fit_lower(F.reversed(), torch.flip(W, dims=(0,)), torch.flip(T, dims=(0,)),
                      unit=unit, sign=s, floor=floor, lam=lam).reversed()


# --------------------------------------------------------------------------------------------
# Input side: one encoder level, Kronecker step with a sketched downstream Gram
# --------------------------------------------------------------------------------------------
def _adjoint(F: Factor, g: torch.Tensor, level: int) -> torch.Tensor:
    """∂⟨g, F x⟩/∂vˡ (l = ``level``, 1 … K − 1), the up-sweep values' cotangent at one level,
    for block-lower F: the cotangents root down, stopping there (the finer levels, the
    costly ones, are not needed)."""
    M, P, K = F.M, F.P, F.K
    c = g.shape[-1]
    gy = [g]
    for i in range(K - 1):
        gy.append(_t(F.dec[i]) @ gy[i].reshape(M >> (i + 1), 2 * P, c))
    up = None
    for i in range(K - 1, level - 1, -1):
        N = M >> i
        t = torch.zeros(N, P, c, dtype=g.dtype, device=g.device)
        t[:-1] = _t(F.bridge[i - 1]) @ gy[i][1:]
        if up is not None:
            t += (_t(F.enc[i]) @ up).reshape(N, P, c)
        up = t
    return t


def _fit_encoders(F: Factor, W: torch.Tensor, T: torch.Tensor, level: int, lam: float,
                  generator: torch.Generator | None) -> Factor:
    M, P = F.M, F.P
    k = W.shape[1]
    G = F.clone()
    v, ys, y = G.levels(W.reshape(M, P, k))
    r = T.reshape(M, P, k) - y
    del ys, y
    s = 4 * P
    gam = torch.randn(M, P, s, generator=generator, dtype=W.dtype, device="cpu").to(W.device)
    rho, S = _adjoint(G, r, level + 1), _adjoint(G, gam, level + 1)
    N1 = M >> (level + 1)
    X = v[level].reshape(N1, 2 * P, k)
    left = torch.linalg.solve(_damped(S @ _t(S) / s, RIDGE + lam), rho @ _t(X))
    G.enc[level] = G.enc[level] + _t(torch.linalg.solve(_damped(X @ _t(X), RIDGE + lam),
                                                        _t(left)))
    return G


def fit_input_side(F: Factor, W: torch.Tensor, T: torch.Tensor, *, level: int,
                   lam: float = 0.0, generator: torch.Generator | None = None) -> Factor:
    """F with its encoders of one ``level`` (0 … K − 2, those that reach a bridge) moved by a
    damped Kronecker least-squares step towards F W ≈ T: the input Gram X Xᵀ exact, the
    downstream Gram estimated from 4P Gaussian cotangents. A block-upper F as its reversal."""
    if F.K < 2:
        return F
    if F.lower:
        return _fit_encoders(F, W, T, level, lam, generator)
    return _fit_encoders(F.reversed(), torch.flip(W, dims=(0,)), torch.flip(T, dims=(0,)),
                         level, lam, generator).reversed()


# --------------------------------------------------------------------------------------------
# Near-field Newton
# --------------------------------------------------------------------------------------------
def near_residual(L: Factor, U: Factor, Ad: torch.Tensor, Al: torch.Tensor,
                  Au: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(LU − A) on the block-tridiagonal pattern, for block-bidiagonal L, U (far field zero):
    blocks (a, a), (a + 1, a), (a, a + 1)."""
    Rd = L.diag @ U.diag - Ad
    Rd[1:] += L.off @ U.off
    return Rd, L.off @ U.diag[:-1] - Al, L.diag[:-1] @ U.off - Au


def near_field_apply(near: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
                     X: torch.Tensor) -> torch.Tensor:
    """A_nf X for the block-tridiagonal part A_nf given by its blocks ``near``."""
    Ad, Al, Au = near
    M, P, _ = Ad.shape
    x = X.reshape(M, P, -1)
    y = Ad @ x
    if M > 1:
        y[1:] += Al @ x[:-1]
        y[:-1] += Au @ x[1:]
    return y.reshape(M * P, -1)


def near_newton_direction(L: Factor, U: Factor, Rd: torch.Tensor, Rl: torch.Tensor,
                          Ru: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """(δL_diag, δL_band, δU_diag, δU_band): the Newton step of the near-field equations, by
    one sweep over the leaves (module docstring)."""
    Ld, Lo, Ud, Uo = L.diag, L.off, U.diag, U.off
    M, P, _ = Ld.shape
    eye = _eye(P, Ld).expand(M, P, P)
    Linv = torch.linalg.solve_triangular(Ld, eye, upper=False, unitriangular=True)
    Uinv = torch.linalg.solve_triangular(Ud, eye, upper=True)
    Lm = Linv[:-1] @ (-Ru)
    Um = (-Rl) @ Uinv[:-1]
    dLd, dUd = torch.empty_like(Ld), torch.empty_like(Ud)
    dLo, dUo = torch.empty_like(Lo), torch.empty_like(Uo)
    for a in range(M):
        rhs = -Rd[a]
        if a:
            rhs = rhs - dLo[a - 1] @ Uo[a - 1] - Lo[a - 1] @ dUo[a - 1]
        X = Linv[a] @ rhs @ Uinv[a]
        XL, XU = torch.tril(X, -1), torch.triu(X)
        dLd[a] = Ld[a] @ XL
        dUd[a] = XU @ Ud[a]
        if a + 1 < M:
            dUo[a] = Lm[a] - XL @ Uo[a]
            dLo[a] = Um[a] - Lo[a] @ XU
    return dLd, dLo, dUd, dUo


# --------------------------------------------------------------------------------------------
# The optimizer
# --------------------------------------------------------------------------------------------
class SketchOptimizer:
    """Near-field Newton, then block least squares on sketches, for a triangular
    :class:`~lubench_learned.gfmm.model.GFMMProduct` (module docstring).

    ``matmat(Z)`` = A Z and ``rmatmat(Y)`` = Aᵀ Y on the model's device and dtype (A padded
    to N); ``near`` = (A[a, a], A[a+1, a], A[a, a+1]) as (M, P, P), (M−1, P, P) tensors, or
    None (no near-field phase); ``omega``, ``a_omega``: the fixed evaluation probes and A
    applied to them (every proposal is kept only if ‖(LU − A)Ω‖/‖AΩ‖ falls). ``step`` has the
    interface of :class:`~lubench_learned.optim.lm.LevenbergMarquardt` (its argument is not
    used) and returns the loss (1/k)‖(LU − A)Ω‖² and the relative error before the step."""

    def __init__(self, model: Any, matmat: Callable[[torch.Tensor], torch.Tensor],
                 rmatmat: Callable[[torch.Tensor], torch.Tensor], *, probes: int,
                 omega: torch.Tensor, a_omega: torch.Tensor,
                 near: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
                 seed: int = 0):
        if getattr(model, "diag_kind", None) != "triangular":
            raise ValueError("the sketch optimizer needs a GFMM product with triangular "
                             "diagonal blocks")
        self.model, self.matmat, self.rmatmat = model, matmat, rmatmat
        self.k = int(probes)
        self.omega, self.a_omega = omega, a_omega
        self.a_norm = float(torch.linalg.vector_norm(a_omega))
        dev = omega.device
        self.gen = torch.Generator(device=dev).manual_seed(int(seed) + 17)
        self.cpu_gen = torch.Generator().manual_seed(int(seed) + 18)
        self.near = near
        self.near_active = near is not None and self._far_field_zero()
        self.lam = {key: LAMBDA_START for key in ("L", "L_in", "U", "U_in")}
        self.kept = {key: 0 for key in self.lam}
        self.cycle = 0
        self.deadline: float | None = None
        self.converged = False
        self.round_off = ROUND_OFF * float(torch.finfo(omega.dtype).eps)
        self.last: dict[str, Any] = {}
        self.param_groups: list[dict] = [{"lr": 1.0}]  # set_lr is a no-op

    # ----------------------------------------------------------------------------------------
    def _far_field_zero(self) -> bool:
        m = self.model
        return all(not bool(b.detach().any()) for f in (m.L, m.U) for b in f.bridge)

    def _late(self) -> bool:
        return self.deadline is not None and time.perf_counter() >= self.deadline

    def _err(self, L: Factor, U: Factor) -> float:
        R = L.apply(U.apply(self.omega)) - self.a_omega
        e = float(torch.linalg.vector_norm(R)) / self.a_norm
        return e if math.isfinite(e) else math.inf

    def _probes(self) -> torch.Tensor:
        return torch.randn(self.omega.shape[0], self.k, generator=self.gen,
                           dtype=self.omega.dtype, device=self.omega.device)

    def step(self, residual: Any = None) -> tuple[float, torch.Tensor]:
        L, U = Factor.of(self.model.L), Factor.of(self.model.U)
        e0 = self._err(L, U)
        f0 = (e0 * self.a_norm) ** 2 / self.omega.shape[1]
        rel = torch.tensor(e0, dtype=torch.float64)
        if not math.isfinite(e0):
            return math.inf, rel
        if e0 <= self.round_off:
            self.converged = True
            return f0, rel
        if self.near_active:
            L, U, e1, ok = self._near_newton(L, U, e0)
            if not ok:
                self.near_active = False
        if not self.near_active:
            L, U, e1 = self._sweep(L, U, e0)
            if all(v >= LAMBDA_MAX for v in self.lam.values()):
                self.converged = True  # nothing is kept however strongly damped
        L.load(self.model.L)
        U.load(self.model.U)
        self.last = {"err": e1, **{f"lambda_{k}": v for k, v in self.lam.items()}}
        return f0, rel

    def _near_newton(self, L: Factor, U: Factor, e0: float
                     ) -> tuple[Factor, Factor, float, bool]:
        Ad, Al, Au = self.near
        R = near_residual(L, U, Ad, Al, Au)
        f = sum(float((r * r).sum()) for r in R)
        d = near_newton_direction(L, U, *R)
        alpha = 1.0
        for _ in range(7):
            L1, U1 = L.clone(), U.clone()
            L1.diag, L1.off = L.diag + alpha * d[0], L.off + alpha * d[1]
            U1.diag, U1.off = U.diag + alpha * d[2], U.off + alpha * d[3]
            f1 = sum(float((r * r).sum()) for r in near_residual(L1, U1, Ad, Al, Au))
            if math.isfinite(f1) and f1 < f * (1 - 1e-4 * alpha):
                e1 = self._err(L1, U1)
                if e1 < e0:
                    return L1, U1, e1, True
                break
            alpha *= 0.5
            if self._late():
                break
        return L, U, e0, False

    def _propose(self, key: str, make: Callable[[float], tuple[Factor, Factor]],
                 L: Factor, U: Factor, e0: float) -> tuple[Factor, Factor, float]:
        try:
            L1, U1 = make(self.lam[key])
            e1 = self._err(L1, U1)
        except (FloatingPointError, RuntimeError):  # singular normal equations
            e1 = math.inf
        if e1 < e0:
            self.lam[key] = max(self.lam[key] / 3.0, LAMBDA_MIN)
            self.kept[key] += 1
            return L1, U1, e1
        self.lam[key] = min(self.lam[key] * 4.0, LAMBDA_MAX)
        return L, U, e0

    def _sweep(self, L: Factor, U: Factor, e0: float) -> tuple[Factor, Factor, float]:
        sign = self.model.U.pivot_sign.reshape(-1)
        floor = float(self.model.U.pivot_floor)
        level = self.cycle % max(L.K - 1, 1)
        self.cycle += 1
        Z = self._probes()
        AZ, W = self.matmat(Z), U.apply(Z)
        del Z
        L, U, e0 = self._propose("L", lambda lam: (fit_output_side(L, W, AZ, unit=True,
                                                                   lam=lam), U), L, U, e0)
        if not self._late() and L.K >= 2:
            L, U, e0 = self._propose("L_in", lambda lam: (fit_input_side(
                L, W, AZ, level=level, lam=lam, generator=self.cpu_gen), U), L, U, e0)
        AZ = W = None  # (the proposals above are done with them)
        if self._late():
            return L, U, e0
        Y = self._probes()  # independent of Z (measured: the same probes on both sides fit worse)
        ATY, V = self.rmatmat(Y), L.transposed().apply(Y)
        del Y
        Ut = U.transposed()
        L, U, e0 = self._propose("U", lambda lam: (L, fit_output_side(
            Ut, V, ATY, unit=False, sign=sign, floor=floor, lam=lam).transposed()), L, U, e0)
        if not self._late() and U.K >= 2:
            Ut = U.transposed()
            L, U, e0 = self._propose("U_in", lambda lam: (L, fit_input_side(
                Ut, V, ATY, level=level, lam=lam, generator=self.cpu_gen).transposed()),
                L, U, e0)
        return L, U, e0
