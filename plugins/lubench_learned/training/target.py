"""What training fits: A padded to the model's size N by an identity block, on the device.

Three forms: dense (a torch tensor, N² numbers: the whole-matrix loss, or a formed dense
A), sparse (two torch CSR matrices, A and Aᵀ) and, for an operator that is not formed, its
action (``op.matmat`` / ``op.rmatmat`` in float64 NumPy, moved to the device) — the probe
loss and the sketch optimizer need nothing else. Every form gives ``mm`` (A Z or Aᵀ Z), the
float64 action ``A64 @ x`` the watch checks with, ‖A‖_F² (``fro2``; for the action, a
probe estimate) and, where cheap, A's near field (:meth:`Target.near_field`: its blocks on
the block-tridiagonal pattern of P × P leaves, from the sparse matrix or ``op.entries``).
"""

from __future__ import annotations

import warnings

import numpy as np
import scipy.sparse as sp
import torch

from lubench.api import Operator

__all__ = ["Target", "Action", "torch_dtype"]

# Probes of the ‖A‖_F² estimate of an operator that is not formed (relative error about
# (2/k)^½ = 0.18; only reported errors are scaled by it, the losses are not)
FRO_PROBES = 64


def torch_dtype(name: str) -> torch.dtype:
    return {"float32": torch.float32, "float64": torch.float64}[name]


class Action:
    """A padded to N ([[A, 0], [0, I]]) as an action in float64 NumPy: ``A @ X``, ``A.T @ X``
    (X of shape (N,) or (N, k)), for an operator that is not formed."""

    def __init__(self, op: Operator, N: int, transpose: bool = False):
        self.op, self.N, self.transpose = op, N, transpose
        self.shape = (N, N)

    @property
    def T(self) -> Action:
        return Action(self.op, self.N, not self.transpose)

    def __matmul__(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        n = self.op.n
        act = self.op.rmatmat if self.transpose else self.op.matmat
        out = np.array(X, dtype=np.float64, copy=True)  # the padding's identity block
        out[:n] = np.asarray(act(np.ascontiguousarray(X[:n])), dtype=np.float64)
        return out


class Target:
    """A, padded to N with an identity block, on the training device.

    Dense (a torch tensor, N² numbers) when ``dense`` is asked or A is a dense array; else
    two torch sparse CSR matrices (A and Aᵀ); an operator that is not formed, unless
    ``dense``, as its action (:class:`Action`; ``is_action``).
    """

    def __init__(self, op: Operator, N: int, dtype: torch.dtype, device: str, dense: bool):
        n = op.n
        self.n, self.N, self.dtype, self.device = n, N, dtype, device
        self.op = op
        self.is_action = False
        if not op.formed and not dense:
            self.A64: np.ndarray | sp.csr_array | Action = Action(op, N)
            self.A = self.AT = None
            self.is_dense = False
            self.is_action = True
            self._fro2: float | None = None  # estimated on first use (:attr:`fro2`)
            return
        if op.is_sparse and not dense:
            A = sp.csr_array(op.matrix, dtype=np.float64)
            if N > n:
                A = sp.csr_array(sp.block_diag((A, sp.identity(N - n)), format="csr"))
            self._fro2 = float((A.data ** 2).sum())
            self.A64: np.ndarray | sp.csr_array = A
            self.A = self._csr(A)
            self.AT = self._csr(sp.csr_array(A.T))
            self.is_dense = False
        else:
            A = np.zeros((N, N), dtype=np.float64)
            A[:n, :n] = op.dense()
            if N > n:
                A[n:, n:] = np.eye(N - n)
            self._fro2 = float((A ** 2).sum())
            self.A64 = A
            self.A = torch.as_tensor(A, dtype=dtype, device=device)
            self.AT = self.A.T
            self.is_dense = True

    @property
    def fro2(self) -> float:
        """‖A‖_F² of the padded A: exact when formed; for the action an estimate from
        ``FRO_PROBES`` Gaussian columns, made on first use (the probe loss never asks: an
        O(n²) kernel action at n = 65 536 costs tens of seconds)."""
        if self._fro2 is None:
            Z = np.random.default_rng(0).standard_normal((self.N, FRO_PROBES))
            self._fro2 = float(np.sum((self.A64 @ Z) ** 2)) / FRO_PROBES
        return self._fro2

    def _csr(self, A: sp.csr_array) -> torch.Tensor:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*[Ss]parse CSR tensor support")
            return torch.sparse_csr_tensor(
                torch.as_tensor(A.indptr, dtype=torch.int64),
                torch.as_tensor(A.indices, dtype=torch.int64),
                torch.as_tensor(A.data, dtype=self.dtype), size=A.shape,
                check_invariants=False).to(self.device)

    def mm(self, Z: torch.Tensor, transpose: bool = False) -> torch.Tensor:
        """A Z (or Aᵀ Z)."""
        if self.is_action:
            A = self.A64.T if transpose else self.A64
            out = A @ Z.detach().to("cpu", torch.float64).numpy()
            return torch.as_tensor(out, dtype=self.dtype, device=self.device)
        return (self.AT if transpose else self.A) @ Z

    def near_field(self, P: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
        """A's blocks on the block-tridiagonal pattern of M = N/P leaves of size P: (A[a, a],
        A[a+1, a], A[a, a+1]) as (M, P, P), (M−1, P, P), (M−1, P, P) tensors — from the
        sparse matrix, from ``op.entries`` where they are cheap (formed dense, kernels), or
        for an operator that gives only its action by probing with 3P columns (leaves
        coloured a mod 3: exact when A is block-tridiagonal, which the caller checks).
        O(n·P) numbers."""
        N, n, op = self.N, self.n, self.op
        M = N // P
        out = [np.zeros((M, P, P)), np.zeros((max(M - 1, 0), P, P)),
               np.zeros((max(M - 1, 0), P, P))]
        if op.is_sparse:
            C = sp.coo_array(op.matrix)
            r, c, v = C.row, C.col, C.data
            if N > n:
                pad = np.arange(n, N)
                r, c, v = np.concatenate([r, pad]), np.concatenate([c, pad]), \
                    np.concatenate([v, np.ones(N - n)])
            br, bc = r // P, c // P
            for t, (sel, a) in enumerate([(br == bc, br), (br == bc + 1, bc),
                                          (br + 1 == bc, br)]):
                np.add.at(out[t], (a[sel], r[sel] % P, c[sel] % P), v[sel])
        elif op.formed or op.has_entries:
            idx = np.arange(N)
            for a in range(M):  # block row a: A[a, a−1], A[a, a], A[a, a+1] in one call
                lo = max(a - 1, 0)
                blk = _padded_entries(op, idx[a * P:(a + 1) * P],
                                      idx[lo * P:min(a + 2, M) * P], n)
                j = (a - lo) * P
                out[0][a] = blk[:, j:j + P]
                if a > 0:
                    out[1][a - 1] = blk[:, :P]
                if a + 1 < M:
                    out[2][a] = blk[:, j + P:j + 2 * P]
        else:  # the action on 3 colours of leaves: A[a, b] from the colour of b
            E = np.zeros((N, 3 * P))
            leaf = np.arange(N) // P
            E[np.arange(N), (leaf % 3) * P + np.arange(N) % P] = 1.0
            Y = (self.A64 @ E).reshape(M, P, 3, P)
            a = np.arange(M)
            out[0][:] = Y[a, :, a % 3]
            if M > 1:
                out[1][:] = Y[a[1:], :, (a[1:] - 1) % 3]
                out[2][:] = Y[a[:-1], :, (a[:-1] + 1) % 3]
        return tuple(torch.as_tensor(x, dtype=self.dtype, device=self.device) for x in out)

    def columns(self, s: slice, transpose: bool = False) -> torch.Tensor:
        """A[:, s] (or Aᵀ[:, s]) as a dense N×|s| tensor."""
        if self.is_dense:
            return (self.AT if transpose else self.A)[:, s].contiguous()
        E = torch.zeros((self.N, s.stop - s.start), dtype=self.dtype, device=self.device)
        E[s] = torch.eye(s.stop - s.start, dtype=self.dtype, device=self.device)
        return self.mm(E, transpose)


def _padded_entries(op: Operator, rows: np.ndarray, cols: np.ndarray, n: int) -> np.ndarray:
    """Ā[rows, cols] for Ā = [[A, 0], [0, I]] (A's entries where both indices are < n)."""
    out = (rows[:, None] == cols[None, :]).astype(np.float64)
    r, c = rows < n, cols < n
    if r.any() and c.any():
        out[np.ix_(r, c)] = op.entries(rows[r], cols[c])
    return out
