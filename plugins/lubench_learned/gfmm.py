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
a then depends on input block b ≤ a (resp. ≥ a) only, with the full P×P block D_a on the
diagonal: a block LU. Trainable numbers per factor (root bridge frozen at zero)::

    P²·[(2M−2) encoder + (2M−2) decoder + (2M−1) leaf bridge + (M−1−K) interior bridges]
      = P²(7M − 6 − log₂M).

Of those, 4K edges never reach the output (the root's encoders and decoders, and the two
encoder edges under each level's last node — resp. the decoder edges under its first node —
whose values only meet the zero root bridge), so P²(7M − 6 − 5·log₂M) numbers are live.

Aᵀ runs the same graph with every edge transposed and encoder and decoder swapped; a lower
factor's transpose is an upper graph. Each level's edges are one (nodes, P, P) tensor
applied by one ``torch.bmm``; the two sibling edges of a parent are stored side by side, so
that the sum into the parent (and the split out of it) is the same single product.

:func:`block_substitution` solves L x = b (or U x = b) without forming the factor: it walks
the leaves in order, LU-factored diagonal blocks in hand, and brings in the off-diagonal part
through the tree's own edges — O(n·P) operations per right-hand side, O(n) memory.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy.linalg import lapack
from torch import nn

from lubench.api import FactorizationError

__all__ = [
    "GFMMFactor",
    "GFMMProduct",
    "FactorArrays",
    "block_substitution",
    "factor_params",
    "live_params",
    "is_power_of_two",
    "dense_factor",
]


def is_power_of_two(m: int) -> bool:
    return m >= 1 and (m & (m - 1)) == 0


def factor_params(M: int, P: int) -> int:
    """Trainable numbers of one GFMM factor: P²(7M − 6 − log₂M)."""
    return P * P * (7 * M - 6 - (M.bit_length() - 1))


def live_params(M: int, P: int) -> int:
    """Numbers of one GFMM factor that influence its output: P²(7M − 6 − 5·log₂M) (M ≥ 2)."""
    K = M.bit_length() - 1
    return P * P * (7 * M - 6 - 5 * K) if K else P * P


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
    * ``diag`` (M, P, P) and ``off`` (M−1, P, P): the leaf bridge;
    * ``bridge[i−1]`` (M/2^i − 1, P, P): the interior bridge of level i = 1 … K−1.
    """

    def __init__(self, M: int, P: int, lower: bool, *, init_scale: float = 0.1,
                 identity_diag: bool = False, n_valid: int | None = None,
                 dtype: torch.dtype = torch.float32,
                 generator: torch.Generator | None = None):
        super().__init__()
        if not is_power_of_two(M):
            raise ValueError(f"M must be a power of two, got {M}")
        self.M, self.P, self.lower = M, P, lower
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
        if identity_diag:
            with torch.no_grad():
                self.diag += torch.eye(P, dtype=dtype)
        # Padding that splits leaf a at local index r: zero L's diagonal block above-right of
        # (r, r) (U's below-left), so that L = [[L₁₁, 0], [L₂₁, L₂₂]], U = [[U₁₁, U₁₂],
        # [0, U₂₂]] at n_valid exactly and (LU)[:n, :n] = L₁₁U₁₁ is what solve inverts.
        mask = None
        if n_valid is not None and n_valid < M * P and n_valid % P:
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
        """The diagonal blocks as used (masked where padding splits a leaf)."""
        return self.diag if self.diag_mask is None else self.diag * self.diag_mask

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
        return sum(p.numel() for p in self.parameters())


class GFMMProduct(nn.Module):
    """The product L·U of a block-lower and a block-upper GFMM factor (n = M·P).

    ``forward(X)`` = L(U X); ``forward(X, transpose=True)`` = Uᵀ(Lᵀ X).
    """

    def __init__(self, M: int, P: int, *, init_scale: float = 0.1, identity_diag: bool = False,
                 n_valid: int | None = None, dtype: torch.dtype = torch.float32,
                 generator: torch.Generator | None = None):
        super().__init__()
        g = generator if generator is not None else torch.Generator().manual_seed(0)
        self.M, self.P = M, P
        self.n_valid = M * P if n_valid is None else n_valid
        kw = {"init_scale": init_scale, "identity_diag": identity_diag, "n_valid": n_valid,
              "dtype": dtype, "generator": g}
        self.L = GFMMFactor(M, P, True, **kw)
        self.U = GFMMFactor(M, P, False, **kw)

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


# --------------------------------------------------------------------------------------------
# Structured solve
# --------------------------------------------------------------------------------------------
@dataclass
class FactorArrays:
    """One trained factor in float64 NumPy, edges split out, diagonal blocks LU-factored."""

    M: int
    P: int
    lower: bool
    enc: list[list[np.ndarray]]   # enc[i][child] : P×P
    dec: list[list[np.ndarray]]   # dec[i][child] : P×P
    off: list[np.ndarray]         # leaf band
    bridge: list[list[np.ndarray]]  # bridge[i-1][j] : P×P, interior level i
    lu: list[np.ndarray]
    piv: list[np.ndarray]

    @property
    def K(self) -> int:
        return self.M.bit_length() - 1

    @classmethod
    def from_factor(cls, f: GFMMFactor, name: str = "factor") -> FactorArrays:
        """Copy the factor's weights out and LU-factor its diagonal blocks (once)."""
        P = f.P

        def arr(t: torch.Tensor) -> np.ndarray:
            return t.detach().to("cpu", torch.float64).numpy()

        enc = []
        for e in f.enc:
            a = arr(e)
            enc.append([np.ascontiguousarray(a[c >> 1][:, (c & 1) * P:(c & 1) * P + P])
                        for c in range(2 * a.shape[0])])
        dec = []
        for d in f.dec:
            a = arr(d)
            dec.append([np.ascontiguousarray(a[c >> 1][(c & 1) * P:(c & 1) * P + P])
                        for c in range(2 * a.shape[0])])
        off = list(arr(f.off))
        bridge = [list(arr(b)) for b in f.bridge]
        lu, piv = [], []
        for a, block in enumerate(arr(f.diagonal_blocks())):
            if not np.all(np.isfinite(block)):
                raise FactorizationError(f"diagonal block {a} of {name} is not finite")
            lu_a, piv_a, info = lapack.dgetrf(block)
            if info > 0:
                raise FactorizationError(f"diagonal block {a} of {name} is singular "
                                         f"(zero pivot {info})")
            lu.append(lu_a)
            piv.append(piv_a)
        return cls(f.M, P, f.lower, enc, dec, off, bridge, lu, piv)


def block_substitution(factor: FactorArrays, B: np.ndarray) -> np.ndarray:
    """x with F x = B (F block-lower: forward substitution; block-upper: back substitution).

    B has shape (n, c). Leaves are visited in dependency order; on entering a tree node its
    decoder output yⁱ (bridge term from the finished neighbour plus the parent's output
    through the decoder edge) is formed once, and on leaving it its encoder value is added
    into the parent. Each edge is used once: O(n·P·c) operations, O(n·c) extra memory.
    """
    M, P, K = factor.M, factor.P, factor.K
    c = B.shape[1]
    b = B.reshape(M, P, c)
    x = np.empty((M, P, c))
    v = [x] + [np.zeros((M >> i, P, c)) for i in range(1, K)]
    y = [None] + [np.zeros((M >> i, P, c)) for i in range(1, K)]
    step = 1 if factor.lower else -1
    order = range(M) if factor.lower else range(M - 1, -1, -1)
    getrs = lapack.dgetrs
    for a in order:
        # entering nodes (top-down): form their decoder outputs
        for i in range(K - 1, 0, -1):
            span = 1 << i
            if a % span != (0 if factor.lower else span - 1):
                continue
            node = a >> i
            src = node - step
            acc = np.zeros((P, c))
            if 0 <= src < (M >> i):
                acc += factor.bridge[i - 1][min(node, src)] @ v[i][src]
            if i + 1 <= K - 1:
                acc += factor.dec[i][node] @ y[i + 1][node >> 1]
            y[i][node] = acc
        # the leaf itself
        r = b[a].copy()
        src = a - step
        if 0 <= src < M:
            r -= factor.off[min(a, src)] @ x[src]
        if K >= 2:
            r -= factor.dec[0][a] @ y[1][a >> 1]
        xa, info = getrs(factor.lu[a], factor.piv[a], r)
        if info != 0:
            raise FactorizationError(f"getrs failed on diagonal block {a} (info {info})")
        x[a] = xa
        # leaving nodes (bottom-up): add finished encoder values into the parent
        for i in range(0, K - 1):
            span = 1 << i
            if a % span != (span - 1 if factor.lower else 0):
                break
            node = a >> i
            v[i + 1][node >> 1] += factor.enc[i][node] @ v[i][node]
    return x.reshape(M * P, c)


def dense_factor(factor: GFMMFactor) -> np.ndarray:
    """The factor as a dense float64 matrix (for tests and small checks only)."""
    with torch.no_grad():
        p = next(factor.parameters())
        eye = torch.eye(factor.n, dtype=p.dtype, device=p.device)
        return factor(eye).to("cpu", torch.float64).numpy()

