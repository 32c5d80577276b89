"""What training fits: A padded to the model's size N by an identity block, on the device."""

from __future__ import annotations

import warnings

import numpy as np
import scipy.sparse as sp
import torch

from lubench.api import Operator

__all__ = ["Target", "torch_dtype"]


def torch_dtype(name: str) -> torch.dtype:
    return {"float32": torch.float32, "float64": torch.float64}[name]


class Target:
    """A, padded to N with an identity block, on the training device.

    Dense (a torch tensor, N² numbers) when ``dense`` is asked or A is a dense array; else
    two torch sparse CSR matrices (A and Aᵀ).
    """

    def __init__(self, op: Operator, N: int, dtype: torch.dtype, device: str, dense: bool):
        n = op.n
        self.n, self.N, self.dtype, self.device = n, N, dtype, device
        if op.is_sparse and not dense:
            A = sp.csr_array(op.matrix, dtype=np.float64)
            if N > n:
                A = sp.csr_array(sp.block_diag((A, sp.identity(N - n)), format="csr"))
            self.fro2 = float((A.data ** 2).sum())
            self.A64: np.ndarray | sp.csr_array = A
            self.A = self._csr(A)
            self.AT = self._csr(sp.csr_array(A.T))
            self.is_dense = False
        else:
            A = np.zeros((N, N), dtype=np.float64)
            A[:n, :n] = op.dense()
            if N > n:
                A[n:, n:] = np.eye(N - n)
            self.fro2 = float((A ** 2).sum())
            self.A64 = A
            self.A = torch.as_tensor(A, dtype=dtype, device=device)
            self.AT = self.A.T
            self.is_dense = True

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
        return (self.AT if transpose else self.A) @ Z

    def columns(self, s: slice, transpose: bool = False) -> torch.Tensor:
        """A[:, s] (or Aᵀ[:, s]) as a dense N×|s| tensor."""
        if self.is_dense:
            return (self.AT if transpose else self.A)[:, s].contiguous()
        E = torch.zeros((self.N, s.stop - s.start), dtype=self.dtype, device=self.device)
        E[s] = torch.eye(s.stop - s.start, dtype=self.dtype, device=self.device)
        return self.mm(E, transpose)
