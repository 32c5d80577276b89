"""Block-triangular factors as GFMM blocks, their transposes, and block substitution.

A GFMM block (after the "Learn LU" post) applies an n×n matrix, n = M·P, through a binary
tree with M leaves of P unknowns each and K = log₂M levels. Level i = 0 … K (i = 0 the
leaves, i = K the root) has M/2^i nodes, each carrying a P-vector. With x_a the a-th leaf
block of the input and every learned piece a dense P×P map:

* up-sweep:   v⁰ = x,  vⁱ⁺¹_p = E^i_{2p} vⁱ_{2p} + E^i_{2p+1} vⁱ_{2p+1}   (encoder edges);
* bridges:    the leaf bridge acts on x (diagonal blocks D_a and one off-diagonal band),
  the interior bridge of level i on vⁱ (one off-diagonal band), the root bridge is zero;
* down-sweep: yⁱ_a = (bridge term)_a + F^i_a yⁱ⁺¹_{⌊a/2⌋}   (decoder edges),  y = y⁰.

For L (``lower``) the bands connect node a−1 → a; for U (upper) node a+1 → a. Output block
a then depends on input block b ≤ a (resp. ≥ a) only.

**The diagonal blocks** (``diag``):

* ``full`` (the post): D_a is a free P×P block, so (L·D, D⁻¹·U) fits equally well for any
  invertible block-diagonal D — M·P² redundant numbers per product and a drifting gauge;
  nothing keeps D_a invertible.
* ``triangular`` (no gauge, invertible by construction): L's D_a = I + strict_lower(Θ_a)
  (unit lower triangular), U's D_a = strict_upper(Θ_a) + diag(s ⊙ (δ + softplus θ_a)) with
  θ_a = diag(Θ_a), a fixed sign s ∈ {±1}^P and a floor δ ≥ 0: |U_ii| ≥ δ whatever the
  weights. Then det L = 1 and det U ≠ 0, and L·U is the unique unit-lower LU of its product.

Numbers of one factor (root bridge frozen at zero; ``factor_params``)::

    full:        P²·[(2M−2) enc + (2M−2) dec + (2M−1) leaf bridge + (M−1−K) interior]
                   = P²(7M − 6 − log₂M)
    triangular:  the same with each diagonal block's P² replaced by P(P−1)/2 (L) or
                   P(P+1)/2 (U): M·P² fewer for the pair L, U.

Of those, 4K edges never reach the output (the root's encoders and decoders, and the two
encoder edges under each level's last node — resp. the decoder edges under its first node —
whose values only meet the zero root bridge), so 4K·P² fewer are live (``live_params``).
The tensors hold P² per diagonal block whatever the parametrization (the masked-out half of
a triangular block's Θ has zero gradient).

Aᵀ runs the same graph with every edge transposed and encoder and decoder swapped; a lower
factor's transpose is an upper graph. Each level's edges are one (nodes, P, P) tensor
applied by one ``torch.bmm``; the two sibling edges of a parent are stored side by side, so
that the sum into the parent (and the split out of it) is the same single product.

:class:`FactorArrays` holds a factor's effective tensors in float64 NumPy (the same layout
as :class:`GFMMFactor`); its ``solve`` runs block substitution without forming the factor —
O(n·P) operations per right-hand side, O(n) memory — and ``solve(B, transpose=True)`` the
transposed one; :func:`inv_norm1_estimate` estimates ‖F⁻¹‖₁ from those two solves.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy.linalg import lapack
from torch import nn

from lubench.api import FactorizationError

__all__ = [
    "DIAGS",
    "GFMMFactor",
    "GFMMProduct",
    "FactorArrays",
    "inv_norm1_estimate",
    "factor_params",
    "live_params",
    "is_power_of_two",
    "dense_factor",
    "softplus_inverse",
]

DIAGS = ("full", "triangular")


def is_power_of_two(m: int) -> bool:
    return m >= 1 and (m & (m - 1)) == 0


def _diag_numbers(P: int, lower: bool, diag: str) -> int:
    """Numbers of one diagonal block under the parametrization ``diag``."""
    if diag == "full":
        return P * P
    return P * (P - 1) // 2 if lower else P * (P + 1) // 2


def factor_params(M: int, P: int, lower: bool = True, diag: str = "full") -> int:
    """Numbers of one GFMM factor's parametrization: P²(7M − 6 − log₂M) with full diagonal
    blocks; triangular ones replace each block's P² by P(P−1)/2 (L) or P(P+1)/2 (U)."""
    K = M.bit_length() - 1
    return P * P * (6 * M - 6 - K) + M * _diag_numbers(P, lower, diag)


def live_params(M: int, P: int, lower: bool = True, diag: str = "full") -> int:
    """Numbers of one GFMM factor that influence its output: ``factor_params`` − 4·log₂M·P²."""
    K = M.bit_length() - 1
    return factor_params(M, P, lower, diag) - 4 * K * P * P


def softplus_inverse(y: np.ndarray | float) -> np.ndarray:
    """θ with softplus(θ) = log(1 + e^θ) = y, for y > 0 (stable for small and large y)."""
    y = np.asarray(y, dtype=np.float64)
    return y + np.log(-np.expm1(-y))


def _uniform(shape: tuple[int, ...], scale: float, generator: torch.Generator,
             dtype: torch.dtype) -> nn.Parameter:
    w = torch.empty(shape, dtype=torch.float64).uniform_(-scale, scale, generator=generator)
    return nn.Parameter(w.to(dtype))


def _sweep(x: torch.Tensor, enc: list[torch.Tensor], dec: list[torch.Tensor],
           diag: torch.Tensor, off: torch.Tensor, bridges: list[torch.Tensor],
           lower: bool) -> torch.Tensor:
    """y = (GFMM graph) x for leaf blocks x of shape (M, P, c); one bmm per level and role."""
    M, P, c = x.shape
    K = len(enc)
    # up-sweep; the root's value only meets the zero root bridge, so it is not formed
    v = [x]
    for i in range(K - 1):
        v.append(torch.bmm(enc[i], v[-1].reshape(M >> (i + 1), 2 * P, c)))
    # down-sweep from the root's children to the leaves
    pad = (0, 0, 0, 0, 1, 0) if lower else (0, 0, 0, 0, 0, 1)
    y: torch.Tensor | None = None
    for i in range(K - 1, -1, -1):
        nodes = M >> i
        src = v[i][:-1] if lower else v[i][1:]
        t = F.pad(torch.bmm(off if i == 0 else bridges[i - 1], src), pad)
        if i == 0:
            t = torch.baddbmm(t, diag, x)
        if y is not None:
            t = t + torch.bmm(dec[i], y).reshape(nodes, P, c)
        y = t
    if y is None:  # M = 1: the factor is its one diagonal block
        y = torch.bmm(diag, x)
    return y



class GFMMFactor(nn.Module):
    """One block-lower (``lower=True``) or block-upper GFMM factor of size n = M·P.

    Parameters (one tensor per level and role; index i = 0 at the leaves):

    * ``enc[i]`` (M/2^{i+1}, P, 2P): the encoder edges of level i, siblings side by side;
    * ``dec[i]`` (M/2^{i+1}, 2P, P): the decoder edges into level i, siblings stacked;
    * ``diag`` (M, P, P) and ``off`` (M−1, P, P): the leaf bridge (``diag`` holds Θ, the raw
      weights of the diagonal blocks; :meth:`diagonal_blocks` gives the blocks as used);
    * ``bridge[i−1]`` (M/2^i − 1, P, P): the interior bridge of level i = 1 … K−1.

    ``diag_kind``: ``full`` or ``triangular`` (see the module docstring); for a triangular
    U, ``pivot_sign`` (M, P) holds s and ``pivot_floor`` δ. ``identity_diag`` starts the
    diagonal blocks at I (full: Θ + I; triangular: L's strict part as drawn, U's pivots at
    s·1 — or at s·δ·2 should δ exceed 1 — with its strict part as drawn).
    """

    def __init__(self, M: int, P: int, lower: bool, *, diag: str = "full",
                 init_scale: float = 0.1, identity_diag: bool = False,
                 n_valid: int | None = None, pivot_sign: torch.Tensor | None = None,
                 pivot_floor: float = 0.0, dtype: torch.dtype = torch.float32,
                 generator: torch.Generator | None = None):
        super().__init__()
        if not is_power_of_two(M):
            raise ValueError(f"M must be a power of two, got {M}")
        if diag not in DIAGS:
            raise ValueError(f"diag must be one of {DIAGS}, got {diag!r}")
        self.M, self.P, self.lower, self.diag_kind = M, P, lower, diag
        self.K = M.bit_length() - 1
        g = generator if generator is not None else torch.Generator().manual_seed(0)
        K = self.K
        self.enc = nn.ParameterList(
            [_uniform((M >> (i + 1), P, 2 * P), init_scale, g, dtype) for i in range(K)])
        self.dec = nn.ParameterList(
            [_uniform((M >> (i + 1), 2 * P, P), init_scale, g, dtype) for i in range(K)])
        self.diag = _uniform((M, P, P), init_scale, g, dtype)
        self.off = _uniform((M - 1, P, P), init_scale, g, dtype)
        self.bridge = nn.ParameterList(
            [_uniform(((M >> i) - 1, P, P), init_scale, g, dtype) for i in range(1, K)])
        sign = torch.ones((M, P), dtype=dtype) if pivot_sign is None else \
            torch.where(pivot_sign.reshape(M, P) < 0, -1.0, 1.0).to(dtype)
        self.pivot_sign: torch.Tensor
        self.pivot_floor: torch.Tensor
        self.register_buffer("pivot_sign", sign)
        self.register_buffer("pivot_floor", torch.tensor(float(pivot_floor), dtype=dtype))
        if identity_diag:
            with torch.no_grad():
                if diag == "full":
                    self.diag += torch.eye(P, dtype=dtype)
                elif not lower:
                    start = max(1.0, 2.0 * float(pivot_floor))
                    theta = float(softplus_inverse(start - float(pivot_floor)))
                    torch.diagonal(self.diag, dim1=1, dim2=2).fill_(theta)
        # Padding that splits leaf a at local index r: zero L's diagonal block above-right of
        # (r, r) (U's below-left), so that L = [[L₁₁, 0], [L₂₁, L₂₂]], U = [[U₁₁, U₁₂],
        # [0, U₂₂]] at n_valid exactly and (LU)[:n, :n] = L₁₁U₁₁ is what solve inverts.
        # (Triangular blocks have those zeros already.)
        mask = None
        if diag == "full" and n_valid is not None and n_valid < M * P and n_valid % P:
            a, r = divmod(n_valid, P)
            mask = torch.ones((M, P, P), dtype=dtype)
            if lower:
                mask[a, :r, r:] = 0
            else:
                mask[a, r:, :r] = 0
        self.diag_mask: torch.Tensor | None
        self.register_buffer("diag_mask", mask)

    @property
    def n(self) -> int:
        return self.M * self.P

    def diagonal_blocks(self) -> torch.Tensor:
        """The diagonal blocks D_a as used (full: Θ, masked where padding splits a leaf;
        triangular: I + strict_lower Θ for L, strict_upper Θ + diag(s(δ + softplus θ)) for U)."""
        if self.diag_kind == "full":
            return self.diag if self.diag_mask is None else self.diag * self.diag_mask
        if self.lower:
            eye = torch.eye(self.P, dtype=self.diag.dtype, device=self.diag.device)
            return torch.tril(self.diag, -1) + eye
        # (masks instead of diagonal views: their double backward, which Levenberg–Marquardt
        # takes, has no in-place copies)
        eye = torch.eye(self.P, dtype=self.diag.dtype, device=self.diag.device)
        theta = (self.diag * eye).sum(-1)
        pivots = self.pivot_sign * (self.pivot_floor + F.softplus(theta))
        return torch.triu(self.diag, 1) + pivots[..., None] * eye

    def forward(self, X: torch.Tensor, transpose: bool = False) -> torch.Tensor:
        """F X (or Fᵀ X) for X of shape (n, c)."""
        n, c = X.shape
        x = X.reshape(self.M, self.P, c)
        diag = self.diagonal_blocks()
        if transpose:
            y = _sweep(x, [d.transpose(1, 2) for d in self.dec],
                       [e.transpose(1, 2) for e in self.enc], diag.transpose(1, 2),
                       self.off.transpose(1, 2), [b.transpose(1, 2) for b in self.bridge],
                       not self.lower)
        else:
            y = _sweep(x, list(self.enc), list(self.dec), diag, self.off,
                       list(self.bridge), self.lower)
        return y.reshape(n, c)

    def edge_views(self) -> list[tuple[nn.Parameter, Callable[[torch.Tensor], torch.Tensor]]]:
        """Each parameter with a view of a same-shaped tensor as (…edges, P, P) blocks."""
        P = self.P
        out: list[tuple[nn.Parameter, Callable[[torch.Tensor], torch.Tensor]]] = []
        for e in self.enc:
            h = e.shape[0]
            out.append((e, lambda t, h=h: t.view(h, P, 2, P).transpose(1, 2)))
        for d in self.dec:
            h = d.shape[0]
            out.append((d, lambda t, h=h: t.view(h, 2, P, P)))
        for p in [self.diag, self.off, *self.bridge]:
            out.append((p, lambda t: t))
        return out

    def n_trainable(self) -> int:
        """Numbers of the parametrization (:func:`factor_params`)."""
        return factor_params(self.M, self.P, self.lower, self.diag_kind)

    def n_live(self) -> int:
        """Numbers that reach the output (:func:`live_params`)."""
        return live_params(self.M, self.P, self.lower, self.diag_kind)

    def arrays(self) -> FactorArrays:
        """The factor as used (diagonal blocks after the parametrization), in float64."""
        def arr(t: torch.Tensor) -> np.ndarray:
            return t.detach().to("cpu", torch.float64).numpy().copy()

        with torch.no_grad():
            return FactorArrays.from_tensors(
                self.M, self.P, self.lower, [arr(e) for e in self.enc],
                [arr(d) for d in self.dec], arr(self.diagonal_blocks()), arr(self.off),
                [arr(b) for b in self.bridge])

    def load_arrays(self, enc: list[np.ndarray], dec: list[np.ndarray], diag: np.ndarray,
                    off: np.ndarray, bridge: list[np.ndarray]) -> None:
        """Set the weights so that the factor equals the given tensors (layout of
        :class:`FactorArrays`): the inverse of the parametrization.

        Triangular L needs unit lower triangular diagonal blocks; triangular U upper ones
        whose pivots keep their sign in ``pivot_sign`` and get θ = softplus⁻¹(|d| − δ)
        (pivots with |d| ≤ δ are raised to the floor's nearest representable value, 2δ).
        Raises ValueError for a shape or pattern that does not fit.
        """
        M, P, K = self.M, self.P, self.K
        diag = np.asarray(diag, dtype=np.float64)
        if diag.shape != (M, P, P) or len(enc) != K or len(dec) != K or \
                len(bridge) != max(K - 1, 0):
            raise ValueError(f"tensors do not fit a GFMM factor with M={M}, P={P}")
        dev, dt = self.diag.device, self.diag.dtype

        def put(p: torch.Tensor, a: np.ndarray) -> None:
            a = np.asarray(a, dtype=np.float64)
            if tuple(a.shape) != tuple(p.shape):
                raise ValueError(f"shape {a.shape} does not fit {tuple(p.shape)}")
            p.copy_(torch.as_tensor(a, dtype=dt, device=dev))

        with torch.no_grad():
            for p, a in zip(self.enc, enc):
                put(p, a)
            for p, a in zip(self.dec, dec):
                put(p, a)
            for p, a in zip(self.bridge, bridge):
                put(p, a)
            put(self.off, off)
            if self.diag_kind == "full":
                put(self.diag, diag)
                return
            eye = np.eye(P)
            if self.lower:
                if np.abs(np.triu(diag, 0) - eye).max() > 0:
                    raise ValueError("L's diagonal blocks are not unit lower triangular")
                put(self.diag, np.tril(diag, -1))
                return
            if np.abs(np.tril(diag, -1)).max() > 0:
                raise ValueError("U's diagonal blocks are not upper triangular")
            d = np.diagonal(diag, axis1=1, axis2=2)
            floor = float(self.pivot_floor)
            mag = np.maximum(np.abs(d) - floor, max(floor, 1e-300))
            theta = np.triu(diag, 1)
            idx = np.arange(P)
            theta[:, idx, idx] = softplus_inverse(mag)
            put(self.diag, theta)
            self.pivot_sign.copy_(torch.as_tensor(np.where(d < 0, -1.0, 1.0), dtype=dt,
                                                  device=dev))


class GFMMProduct(nn.Module):
    """The product L·U of a block-lower and a block-upper GFMM factor (n = M·P).

    ``forward(X)`` = L(U X); ``forward(X, transpose=True)`` = Uᵀ(Lᵀ X). ``diag``, the
    pivot signs s and the floor δ apply as in :class:`GFMMFactor` (s and δ to U only).
    """

    def __init__(self, M: int, P: int, *, diag: str = "full", init_scale: float = 0.1,
                 identity_diag: bool = False, n_valid: int | None = None,
                 pivot_sign: torch.Tensor | None = None, pivot_floor: float = 0.0,
                 dtype: torch.dtype = torch.float32, generator: torch.Generator | None = None):
        super().__init__()
        g = generator if generator is not None else torch.Generator().manual_seed(0)
        self.M, self.P, self.diag_kind = M, P, diag
        self.n_valid = M * P if n_valid is None else n_valid
        kw = {"diag": diag, "init_scale": init_scale, "identity_diag": identity_diag,
              "n_valid": n_valid, "dtype": dtype, "generator": g}
        self.L = GFMMFactor(M, P, True, **kw)
        self.U = GFMMFactor(M, P, False, pivot_sign=pivot_sign, pivot_floor=pivot_floor, **kw)

    @property
    def n(self) -> int:
        return self.M * self.P

    @property
    def block_size(self) -> int:
        return self.P

    def forward(self, X: torch.Tensor, transpose: bool = False) -> torch.Tensor:
        if transpose:
            return self.U(self.L(X, transpose=True), transpose=True)
        return self.L(self.U(X))

    def full_product(self) -> torch.Tensor:
        """L·U as a dense n×n tensor (the graph applied to the identity)."""
        p = next(self.parameters())
        return self.forward(torch.eye(self.n, dtype=p.dtype, device=p.device))

    def edge_views(self) -> list[tuple[nn.Parameter, Callable[[torch.Tensor], torch.Tensor]]]:
        return self.L.edge_views() + self.U.edge_views()

    def float64_factors(self) -> tuple[FactorArrays, FactorArrays]:
        """L and U as used, in float64 (what the watch and the factorization solve with)."""
        return self.L.arrays(), self.U.arrays()

    def n_trainable(self) -> int:
        return self.L.n_trainable() + self.U.n_trainable()

    def n_live(self) -> int:
        return self.L.n_live() + self.U.n_live()


# --------------------------------------------------------------------------------------------
# Structured solve (float64 NumPy)
# --------------------------------------------------------------------------------------------
@dataclass
class FactorArrays:
    """One factor in float64 NumPy: the tensors of :class:`GFMMFactor` (diagonal blocks as
    used), edges split out, diagonal blocks LU-factored once."""

    M: int
    P: int
    lower: bool
    tensors: tuple  # (enc, dec, diag, off, bridge) in the layout of GFMMFactor
    enc: list[list[np.ndarray]]   # enc[i][child] : P×P
    dec: list[list[np.ndarray]]   # dec[i][child] : P×P
    off: list[np.ndarray]         # leaf band
    bridge: list[list[np.ndarray]]  # bridge[i-1][j] : P×P, interior level i
    lu: list[np.ndarray]
    piv: list[np.ndarray]
    _transposed: FactorArrays | None = None

    @property
    def K(self) -> int:
        return self.M.bit_length() - 1

    @property
    def n(self) -> int:
        return self.M * self.P

    @classmethod
    def from_tensors(cls, M: int, P: int, lower: bool, enc: list[np.ndarray],
                     dec: list[np.ndarray], diag: np.ndarray, off: np.ndarray,
                     bridge: list[np.ndarray], name: str = "factor") -> FactorArrays:
        """Split the edges out and LU-factor the diagonal blocks (once).

        Raises :class:`FactorizationError` for a diagonal block that is not finite or
        singular."""
        f64 = [np.asarray(a, dtype=np.float64) for a in enc], \
            [np.asarray(a, dtype=np.float64) for a in dec], np.asarray(diag, np.float64), \
            np.asarray(off, np.float64), [np.asarray(a, dtype=np.float64) for a in bridge]
        enc64, dec64, diag64, off64, bridge64 = f64
        enc_s = [[np.ascontiguousarray(a[c >> 1][:, (c & 1) * P:(c & 1) * P + P])
                  for c in range(2 * a.shape[0])] for a in enc64]
        dec_s = [[np.ascontiguousarray(a[c >> 1][(c & 1) * P:(c & 1) * P + P])
                  for c in range(2 * a.shape[0])] for a in dec64]
        lu, piv = [], []
        for a, block in enumerate(diag64):
            if not np.all(np.isfinite(block)):
                raise FactorizationError(f"diagonal block {a} of {name} is not finite")
            lu_a, piv_a, info = lapack.dgetrf(block)
            if info > 0:
                raise FactorizationError(f"diagonal block {a} of {name} is singular "
                                         f"(zero pivot {info})")
            lu.append(lu_a)
            piv.append(piv_a)
        return cls(M, P, lower, f64, enc_s, dec_s, list(off64), [list(b) for b in bridge64],
                   lu, piv)

    def transposed(self) -> FactorArrays:
        """Fᵀ: every edge transposed, encoders and decoders swapped, lower ↔ upper."""
        if self._transposed is None:
            enc, dec, diag, off, bridge = self.tensors
            t = FactorArrays.from_tensors(
                self.M, self.P, not self.lower, [d.transpose(0, 2, 1) for d in dec],
                [e.transpose(0, 2, 1) for e in enc], diag.transpose(0, 2, 1),
                off.transpose(0, 2, 1), [b.transpose(0, 2, 1) for b in bridge])
            t._transposed = self
            self._transposed = t
        return self._transposed

    def apply(self, X: np.ndarray, transpose: bool = False) -> np.ndarray:
        """F X (or Fᵀ X) for X of shape (n, c), through the graph in float64."""
        enc, dec, diag, off, bridge = (self.transposed() if transpose else self).tensors
        lower = self.lower != transpose
        X = np.ascontiguousarray(X, dtype=np.float64)
        c = X.shape[1]
        t = torch.from_numpy
        with torch.no_grad():
            y = _sweep(t(X).reshape(self.M, self.P, c), [t(np.ascontiguousarray(e))
                                                         for e in enc],
                       [t(np.ascontiguousarray(d)) for d in dec],
                       t(np.ascontiguousarray(diag)), t(np.ascontiguousarray(off)),
                       [t(np.ascontiguousarray(b)) for b in bridge], lower)
        return y.reshape(self.n, c).numpy()

    def solve(self, B: np.ndarray, transpose: bool = False) -> np.ndarray:
        """x with F x = B (or Fᵀ x = B), B of shape (n, c): block substitution."""
        return _block_substitution(self.transposed() if transpose else self,
                                   np.asarray(B, dtype=np.float64))

    def dense(self) -> np.ndarray:
        """The factor as a dense matrix (tests and small checks only)."""
        return self.apply(np.eye(self.n))


def _block_substitution(F: FactorArrays, B: np.ndarray) -> np.ndarray:
    """x with F x = B (F block-lower: forward substitution; block-upper: back substitution).

    B has shape (n, c). Leaves are visited in dependency order; on entering a tree node its
    decoder output yⁱ (bridge term from the finished neighbour plus the parent's output
    through the decoder edge) is formed once, and on leaving it its encoder value is added
    into the parent. Each edge is used once: O(n·P·c) operations, O(n·c) extra memory.
    """
    M, P, K = F.M, F.P, F.K
    c = B.shape[1]
    b = B.reshape(M, P, c)
    x = np.empty((M, P, c))
    v = [x] + [np.zeros((M >> i, P, c)) for i in range(1, K)]
    y = [None] + [np.zeros((M >> i, P, c)) for i in range(1, K)]
    step = 1 if F.lower else -1
    order = range(M) if F.lower else range(M - 1, -1, -1)
    getrs = lapack.dgetrs
    for a in order:
        # entering nodes (top-down): form their decoder outputs
        for i in range(K - 1, 0, -1):
            span = 1 << i
            if a % span != (0 if F.lower else span - 1):
                continue
            node = a >> i
            src = node - step
            acc = np.zeros((P, c))
            if 0 <= src < (M >> i):
                acc += F.bridge[i - 1][min(node, src)] @ v[i][src]
            if i + 1 <= K - 1:
                acc += F.dec[i][node] @ y[i + 1][node >> 1]
            y[i][node] = acc
        # the leaf itself
        r = b[a].copy()
        src = a - step
        if 0 <= src < M:
            r -= F.off[min(a, src)] @ x[src]
        if K >= 2:
            r -= F.dec[0][a] @ y[1][a >> 1]
        xa, info = getrs(F.lu[a], F.piv[a], r)
        if info != 0:
            raise FactorizationError(f"getrs failed on diagonal block {a} (info {info})")
        x[a] = xa
        # leaving nodes (bottom-up): add finished encoder values into the parent
        for i in range(0, K - 1):
            span = 1 << i
            if a % span != (span - 1 if F.lower else 0):
                break
            node = a >> i
            v[i + 1][node >> 1] += F.enc[i][node] @ v[i][node]
    return x.reshape(M * P, c)


def inv_norm1_estimate(solve: Callable[[np.ndarray, bool], np.ndarray], n: int,
                       max_iter: int = 5) -> float:
    """Hager–Higham estimate of ‖F⁻¹‖₁ from solves with F and Fᵀ (``solve(B, transpose)``).

    Hager's power method on the convex function x ↦ ‖F⁻¹x‖₁ over the unit 1-ball (LAPACK
    ``dlacon``): x = 1/n; repeat y = F⁻¹x, ξ = sign(y), z = F⁻ᵀξ; stop when
    ‖z‖_∞ ≤ zᵀx, else x = e_j with j = argmax |z_j|. Higham's safeguard adds the alternating
    vector x_i = (−1)^i (1 + i/(n−1)), estimate 2‖F⁻¹x‖₁/(3n). A lower bound of ‖F⁻¹‖₁,
    usually within a factor 3; inf when a solve overflows.
    """
    with np.errstate(all="ignore"):
        x = np.full((n, 1), 1.0 / n)
        est = 0.0
        last_j = -1
        for k in range(max_iter):
            y = solve(x, False)
            if not np.all(np.isfinite(y)):
                return math.inf
            est = max(est, float(np.abs(y).sum()))
            xi = np.where(y >= 0, 1.0, -1.0)
            z = solve(xi, True)
            if not np.all(np.isfinite(z)):
                return math.inf
            j = int(np.argmax(np.abs(z)))
            if k > 0 and (abs(z[j, 0]) <= float(z[:, 0] @ x[:, 0]) or j == last_j):
                break
            x = np.zeros((n, 1))
            x[j] = 1.0
            last_j = j
        alt = np.array([(-1.0) ** i * (1 + i / max(n - 1, 1)) for i in range(n)])[:, None]
        y = solve(alt, False)
        if not np.all(np.isfinite(y)):
            return math.inf
        return max(est, 2.0 * float(np.abs(y).sum()) / (3 * n))


def dense_factor(F: GFMMFactor) -> np.ndarray:
    """The factor as a dense float64 matrix (for tests and small checks only)."""
    with torch.no_grad():
        p = next(F.parameters())
        eye = torch.eye(F.n, dtype=p.dtype, device=p.device)
        return F(eye).to("cpu", torch.float64).numpy()
