"""GFMM factors as float64 NumPy arrays: apply, structured solve, conditioning estimate.

The GFMM block of the "Learn LU" post applies an n×n matrix, n = M·P, through a binary tree
with M leaves of P unknowns each and K = log₂M levels (level i = 0 the leaves, i = K the
root; level i has N_i = M/2^i nodes, each holding a P-vector). With x_a the a-th leaf block:

* up-sweep:   v⁰ = x,  vⁱ⁺¹_p = E^i_{2p} vⁱ_{2p} + E^i_{2p+1} vⁱ_{2p+1}        (``enc[i][p]``);
* bridges:    level 0 (the leaf bridge): the diagonal blocks D_a (``diag``) and one band
  ``off``; level i = 1 … K−1: one band ``bridge[i−1]``; the root has none;
* down-sweep: yⁱ_a = (band term)_a + F^i_a yⁱ⁺¹_{⌊a/2⌋}                     (``dec[i][⌊a/2⌋]``),
  and (F x)_a = D_a x_a + y⁰_a.

For a block-lower factor (``lower=True``) the band of level i carries node q to q + 1:
yⁱ_{q+1} ∋ Bⁱ_q vⁱ_q, with Bⁱ_q = ``off[q]`` (i = 0) or ``bridge[i−1][q]``; for a block-upper
factor it carries q + 1 to q: yⁱ_q ∋ Bⁱ_q vⁱ_{q+1}. Leaf block b therefore reaches leaf block
a > b (lower) at every level i with anc_i(a) = anc_i(b) + 1, through the encoder chain of b
up to level i, the bridge, and the decoder chain down to a. The layout and the semantics are
those of ``GFMMFactor`` in the learned plugin, tensor for tensor (its ``diag`` masked as
``diagonal_blocks()`` returns it), so a trained factor converts by detaching each tensor.

Two identities reduce every case to one solver:

* transpose: Fᵀ is the GFMM graph with every block transposed, encoder and decoder swapped,
  and ``lower`` flipped;
* reversal: with J the n×n exchange matrix, J F J is the GFMM graph whose arrays are all
  flipped along every axis (node order, and the P resp. 2P index of each block), with
  ``lower`` flipped.

So F⁻¹ B and F⁻ᵀ B are block-lower solves of (possibly reversed, transposed) arrays, done
by :mod:`lubench_structured.gfmm.substitution`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from lubench.api import FactorizationError
from lubench.lazy import lazy_module

spla = lazy_module("scipy.sparse.linalg")

__all__ = ["GFMMArrays", "inv_norm1_estimate", "sweep"]


def _as_f64(t) -> np.ndarray:
    """A float64 copy of anything np.asarray accepts (a torch tensor: detached first)."""
    if hasattr(t, "detach"):
        t = t.detach().to("cpu").double().numpy()
    return np.array(t, dtype=np.float64, copy=True)


def sweep(x: np.ndarray, enc: list[np.ndarray], dec: list[np.ndarray], diag: np.ndarray,
          off: np.ndarray, bridge: list[np.ndarray], lower: bool) -> np.ndarray:
    """y = (GFMM graph) x for leaf blocks x of shape (M, P, c): one matmul per level and role.

    The root's value only meets the (zero) root bridge, so neither it nor ``enc[K−1]`` and
    ``dec[K−1]`` take part.
    """
    M, P, c = x.shape
    K = len(enc)
    v = [x]
    for i in range(K - 1):
        v.append(np.matmul(enc[i], v[-1].reshape(M >> (i + 1), 2 * P, c)))
    y: np.ndarray | None = None
    for i in range(K - 1, -1, -1):
        nodes = M >> i
        band = off if i == 0 else bridge[i - 1]
        t = np.zeros((nodes, P, c))
        if lower:
            t[1:] = np.matmul(band, v[i][:-1])
        else:
            t[:-1] = np.matmul(band, v[i][1:])
        if i == 0:
            t += np.matmul(diag, x)
        if y is not None:
            t += np.matmul(dec[i], y).reshape(nodes, P, c)
        y = t
    if y is None:  # M = 1: the factor is its one diagonal block
        y = np.matmul(diag, x)
    return y


@dataclass
class _LowerArrays:
    """Arrays of a block-lower GFMM graph, the form every solve is reduced to."""

    M: int
    P: int
    enc: list[np.ndarray]
    dec: list[np.ndarray]
    diag: np.ndarray
    off: np.ndarray
    bridge: list[np.ndarray]


def _flip(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a[::-1, ::-1, ::-1])


def _tr(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a.transpose(0, 2, 1))


@dataclass
class GFMMArrays:
    """One block-lower (``lower=True``) or block-upper GFMM factor, n = M·P, in float64.

    Arrays (index i = 0 at the leaves, K = log₂M):

    * ``enc[i]`` (M/2^{i+1}, P, 2P): encoder edges of level i, the two siblings side by side;
    * ``dec[i]`` (M/2^{i+1}, 2P, P): decoder edges into level i, the two siblings stacked;
    * ``diag`` (M, P, P): the diagonal blocks as they act (already masked for padding);
    * ``off`` (M−1, P, P): the leaf band;
    * ``bridge[i−1]`` ((M/2^i)−1, P, P): the band of interior level i = 1 … K−1.

    ``apply`` runs the graph (O(n·P) per column); ``solve`` is block substitution through
    the graph, leaf by leaf in compiled code, O(n·P) per column. Its plan (the inverted
    diagonal blocks and every block laid out for the substitution, ~7·n·P numbers) is
    formed on the first solve of each orientation and kept: do not modify the arrays after
    solving (build a new GFMMArrays instead). Pickling drops them.
    """

    M: int
    P: int
    lower: bool
    enc: list[np.ndarray]
    dec: list[np.ndarray]
    diag: np.ndarray
    off: np.ndarray
    bridge: list[np.ndarray]
    _plans: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    # ----------------------------------------------------------------------------------------
    @classmethod
    def from_tensors(cls, M, P, lower, enc, dec, diag, off, bridge) -> GFMMArrays:
        """Copy the arrays (NumPy arrays, torch tensors, nested lists) to float64 and check
        their shapes against (M, P)."""
        M, P = int(M), int(P)
        if M < 1 or M & (M - 1):
            raise ValueError(f"M must be a power of two, got {M}")
        K = M.bit_length() - 1
        out = cls(M, P, bool(lower), [_as_f64(e) for e in enc], [_as_f64(d) for d in dec],
                  _as_f64(diag), _as_f64(off), [_as_f64(b) for b in bridge])
        out._check_shapes(K)
        return out

    def _check_shapes(self, K: int) -> None:
        M, P = self.M, self.P
        want = {"diag": (M, P, P), "off": (M - 1, P, P)}
        got = {"diag": self.diag.shape, "off": self.off.shape}
        if len(self.enc) != K or len(self.dec) != K or len(self.bridge) != max(K - 1, 0):
            raise ValueError(f"GFMMArrays with M={M}: need {K} enc, {K} dec and {max(K - 1, 0)}"
                             f" bridge arrays, got {len(self.enc)}, {len(self.dec)}, "
                             f"{len(self.bridge)}")
        for i in range(K):
            want[f"enc[{i}]"], got[f"enc[{i}]"] = (M >> (i + 1), P, 2 * P), self.enc[i].shape
            want[f"dec[{i}]"], got[f"dec[{i}]"] = (M >> (i + 1), 2 * P, P), self.dec[i].shape
        for i in range(1, K):
            want[f"bridge[{i - 1}]"] = ((M >> i) - 1, P, P)
            got[f"bridge[{i - 1}]"] = self.bridge[i - 1].shape
        for k, w in want.items():
            if tuple(got[k]) != w:
                raise ValueError(f"GFMMArrays: {k} has shape {tuple(got[k])}, expected {w}")

    @property
    def K(self) -> int:
        return self.M.bit_length() - 1

    @property
    def n(self) -> int:
        return self.M * self.P

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_plans"] = {}
        return state

    def n_numbers(self) -> int:
        """How many numbers the arrays hold (all of them, live or not)."""
        return int(sum(a.size for a in [*self.enc, *self.dec, self.diag, self.off,
                                         *self.bridge]))

    # ----------------------------------------------------------------------------------------
    def _columns(self, X: np.ndarray) -> tuple[np.ndarray, bool]:
        X = np.asarray(X, dtype=np.float64)
        vec = X.ndim == 1
        if X.shape[0] != self.n or X.ndim not in (1, 2):
            raise ValueError(f"GFMMArrays of size n = {self.n}: input has shape {X.shape}")
        return X.reshape(self.M, self.P, -1), vec

    def apply(self, X: np.ndarray, transpose: bool = False) -> np.ndarray:
        """F X (or Fᵀ X) for X of shape (n,) or (n, c)."""
        x, vec = self._columns(X)
        if transpose:
            y = sweep(x, [_tr(d) for d in self.dec], [_tr(e) for e in self.enc],
                      _tr(self.diag), _tr(self.off), [_tr(b) for b in self.bridge],
                      not self.lower)
        else:
            y = sweep(x, self.enc, self.dec, self.diag, self.off, self.bridge, self.lower)
        y = y.reshape(self.n, -1)
        return y[:, 0] if vec else y

    def dense(self) -> np.ndarray:
        """F as a dense n×n array (tests and small checks only)."""
        return self.apply(np.eye(self.n))

    # ----------------------------------------------------------------------------------------
    def _lower_form(self, transpose: bool) -> tuple[_LowerArrays, bool]:
        """(arrays of a block-lower graph G, reversed) with F (or Fᵀ) = G, or = J G J."""
        enc, dec, diag, off, bridge = self.enc, self.dec, self.diag, self.off, self.bridge
        lower = self.lower
        if transpose:
            enc, dec = [_tr(d) for d in dec], [_tr(e) for e in enc]
            diag, off, bridge = _tr(diag), _tr(off), [_tr(b) for b in bridge]
            lower = not lower
        if lower:
            return _LowerArrays(self.M, self.P, enc, dec, diag, off, bridge), False
        return _LowerArrays(self.M, self.P, [_flip(e) for e in enc], [_flip(d) for d in dec],
                            _flip(diag), _flip(off), [_flip(b) for b in bridge]), True

    def _plan(self, transpose: bool) -> _SolvePlan:
        key = bool(transpose)
        if key not in self._plans:
            G, reversed_ = self._lower_form(key)
            self._plans[key] = _SolvePlan(G, reversed_)
        return self._plans[key]

    def solve(self, B: np.ndarray, transpose: bool = False) -> np.ndarray:
        """F⁻¹ B (or F⁻ᵀ B) for B of shape (n,) or (n, c), by block substitution."""
        b, vec = self._columns(B)
        plan = self._plan(transpose)
        if plan.reversed:
            b = b[::-1, ::-1]
        x = plan.solve(np.ascontiguousarray(b))
        if plan.reversed:
            x = x[::-1, ::-1]
        x = np.ascontiguousarray(x).reshape(self.n, -1)
        return x[:, 0] if vec else x


class _SolvePlan:
    """Block forward substitution for a block-lower graph G, leaf by leaf, compiled
    (:func:`~lubench_structured.gfmm.substitution.forward_substitution`).

    Setup forms D_a⁻¹ (one batched LU of the diagonal blocks) and lays every block the
    substitution reads out transposed, one contiguous buffer per kind (D⁻¹, bands, encoder
    and decoder halves), nodes in the order the substitution meets them: O(n·P) numbers and
    work, about 7·n·P numbers (as many as G holds). A solve reads each of them once, in one
    compiled call: O(n·P) operations and memory per right-hand side.
    """

    def __init__(self, G: _LowerArrays, reversed_: bool):
        self.reversed = reversed_
        M, P = G.M, G.P
        K = M.bit_length() - 1
        self.K, self.P = K, P
        self.dinv = _tr(_diag_inverses(G.diag))
        bands = [G.off, *G.bridge]
        self.band, self.boff = _stack([_tr(bands[i]) for i in range(K)], P)
        # node q of level i: the columns of enc[i][q // 2] (rows of dec[i][q // 2]) acting on it
        self.enc, self.eoff = _stack(
            [_tr(G.enc[i].reshape(M >> (i + 1), P, 2, P).transpose(0, 2, 1, 3)
                 .reshape(M >> i, P, P)) for i in range(K - 1)], P)
        self.dec, self.doff = _stack([_tr(G.dec[i].reshape(M >> i, P, P))
                                      for i in range(K - 1)], P)

    def solve(self, b: np.ndarray) -> np.ndarray:
        """x with G x = b for b of shape (M, P, c); returns (M, P, c)."""
        # imported here: Numba costs ~0.2 s to import, and loading the plugin needs no solve
        from .substitution import forward_substitution

        M, P, c = b.shape
        bt = np.ascontiguousarray(b.reshape(M * P, c).T)
        x = forward_substitution(self.K, self.P, self.dinv, self.band, self.boff, self.enc,
                                 self.eoff, self.dec, self.doff, bt)
        return x.T.reshape(M, P, c)


def _stack(blocks: list[np.ndarray], P: int) -> tuple[np.ndarray, np.ndarray]:
    """One contiguous (Σ N_i, P, P) buffer of the per-level block arrays and each level's
    offset in it."""
    sizes = [len(a) for a in blocks]
    off = np.zeros(max(len(blocks), 1), dtype=np.int64)
    off[1:len(blocks)] = np.cumsum(sizes)[:-1]
    buf = np.concatenate(blocks) if blocks else np.zeros((0, P, P))
    return np.ascontiguousarray(buf), off


def _diag_inverses(diag: np.ndarray) -> np.ndarray:
    """D_a⁻¹ for every diagonal block, through one batched LU (LAPACK gesv on the identity).

    A block that is singular or not finite is a :class:`FactorizationError` naming it.
    """
    bad = ~np.isfinite(diag).all(axis=(1, 2))
    if bad.any():
        raise FactorizationError(f"diagonal block {int(np.flatnonzero(bad)[0])} is not finite")
    try:
        return np.linalg.inv(diag)
    except np.linalg.LinAlgError:
        for a, blk in enumerate(diag):
            try:
                np.linalg.inv(blk)
            except np.linalg.LinAlgError:
                raise FactorizationError(f"diagonal block {a} is singular") from None
        raise


def inv_norm1_estimate(F: GFMMArrays) -> float:
    """‖F⁻¹‖₁ estimated by Hager–Higham (``scipy.sparse.linalg.onenormest``) through the
    structured solves F⁻¹ X and F⁻ᵀ X: a few solves, never a dense matrix."""
    n = F.n
    op = spla.LinearOperator((n, n), dtype=np.float64,
                        matvec=lambda x: F.solve(x), rmatvec=lambda x: F.solve(x, True),
                        matmat=lambda X: F.solve(X), rmatmat=lambda X: F.solve(X, True))
    if n <= 4:  # onenormest computes the exact norm for tiny sizes itself
        return float(np.abs(F.solve(np.eye(n))).sum(axis=0).max())
    return float(spla.onenormest(op))
