"""The network and its loss (PyTorch, PyTorch Geometric). Imported when a case runs.

**Input.** A symmetric A with a positive diagonal, scaled to unit diagonal:
Â = S A S, S = diag(a_ii^(−1/2)). Its graph has a node per unknown and a directed edge j → i
per off-diagonal entry â_ij ≠ 0 (both directions, A being symmetric). Node features: log a_ii
(centred over the nodes), Σ_{j≠i} |â_ij| and the degree over the mean degree; edge feature
â_ij.

**Network.** An encoder lifts the node features to ``hidden`` channels h_i; each of
``layers`` rounds passes messages along A's entries, weighted by them,

    m_i = [Σ_j â_ij W₁h_j,  Σ_j |â_ij| W₂h_j],     h_i ← h_i + ψ([h_i, m_i])

(ψ a two-layer perceptron): O(hidden) work per entry of A and O(hidden²) per unknown, so a
round costs about what a few products with A cost. Two heads read the result:

    L̂_ii = softplus(c + w_dᵀh_i),     L̂_ij = â_ij (1 + (P h_i)ᵀ(Q h_j))   (i > j, â_ij ≠ 0),

c = log(e − 1), so that softplus(c) = 1. An entry is A's own times a factor of its two ends
(IC(0)'s first-order term a_ij / l_jj is of this form). The diagonal is positive by
construction, so L̂ is invertible and L̂L̂ᵀ SPD whatever the weights; w_d and Q start at
zero, so the untrained network gives L̂ = I + strict_lower(Â), the symmetric Gauss–Seidel
preconditioner (I + E)(I + Eᵀ) of Â = I + E + Eᵀ. The preconditioner of A is L Lᵀ with
L = S⁻¹L̂.

**Loss** (``loss``), for k Gaussian probes Z redrawn every step:

* ``preconditioned`` — ‖L̂⁻¹ Â L̂⁻ᵀ Z − Z‖²_F / ‖Z‖²_F, an estimate of ‖L̂⁻¹ÂL̂⁻ᵀ − I‖²_F/n:
  how far the preconditioned operator CG iterates with is from the identity. Two sparse
  triangular substitutions per probe and their adjoints (:class:`_Substitute`), O(nnz(A)·k).
  It ranks the classical preconditioners as CG does (measured: on diffusion_2d, n = 1024,
  IC(0) 0.033 < symmetric Gauss–Seidel 0.052 < Jacobi 0.24, as their CG iterations; on
  random_spd, n = 10⁴, Gauss–Seidel 0.27 < IC(0) 0.37 < Jacobi 1.0, again as CG);
* ``frobenius`` — NeuralIF's ‖(L̂L̂ᵀ − Â) Z‖²_F / ‖ÂZ‖²_F, which needs products with L̂
  only, but ranks IC(0) (0.081) far ahead of Gauss–Seidel (0.43) on random_spd where CG
  ranks them the other way: trained on it, the network's CG iterations grew from the
  Gauss–Seidel start's 585 to 660 at 10⁻⁸ (IC(0): 630) while the loss fell from 0.42 to
  0.080.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn
from torch_geometric.nn import MessagePassing

from .factor import kernels

__all__ = ["Graph", "graph_of", "NeuralICNet", "frobenius_loss", "preconditioned_loss",
           "LOSSES", "NODE_FEATURES"]

NODE_FEATURES = 3
SOFTPLUS_ONE = math.log(math.e - 1.0)  # softplus(SOFTPLUS_ONE) = 1


class _SymmetricProduct(torch.autograd.Function):
    """y = S x for a fixed symmetric sparse S (CSR): the gradient is S ∂y as well, so the
    backward pass needs no transposed copy of S (PyTorch's generic one builds Sᵀ on every
    call, 20× the cost of the product at nnz = 10⁶)."""

    @staticmethod
    def forward(ctx, S: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        ctx.S = S
        return torch.sparse.mm(S, x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[None, torch.Tensor]:
        return None, torch.sparse.mm(ctx.S, grad)


@dataclass
class Graph:
    """A's graph and features as tensors (see the module docstring)."""

    n: int
    scale: np.ndarray          # S's diagonal, a_ii^(−1/2), float64
    x: torch.Tensor            # (n, NODE_FEATURES) node features
    adj: torch.Tensor          # Â − I, sparse CSR (the off-diagonal entries)
    adj_abs: torch.Tensor      # |Â − I|, sparse CSR
    rows: torch.Tensor         # (m,) i of the lower entries â_ij, i > j
    cols: torch.Tensor         # (m,) j of the same
    a_lower: torch.Tensor      # (m,) â_ij
    indptr: np.ndarray         # L̂'s pattern tril(Â) in CSR (the diagonal last in a row)
    indices: np.ndarray
    csr_order: torch.Tensor    # (m + n,): [lower values, diagonal][csr_order] is CSR order

    def to(self, device: str) -> Graph:
        return Graph(self.n, self.scale, *(t.to(device) for t in (
            self.x, self.adj, self.adj_abs, self.rows, self.cols, self.a_lower)),
            self.indptr, self.indices, self.csr_order.to(device))


def graph_of(A: object, dtype: torch.dtype = torch.float32) -> Graph:
    """The graph of a symmetric A with a positive diagonal."""
    A = sp.coo_array(A)
    A.sum_duplicates()
    n = A.shape[0]
    d = np.asarray(sp.csr_array(A).diagonal(), dtype=np.float64)
    s = 1.0 / np.sqrt(d)
    off = A.row != A.col
    i, j = A.row[off].astype(np.int64), A.col[off].astype(np.int64)
    a_hat = A.data[off] * s[i] * s[j]
    deg = np.bincount(i, minlength=n).astype(np.float64)
    row_abs = np.bincount(i, weights=np.abs(a_hat), minlength=n)
    logd = np.log(d)
    x = np.column_stack([logd - logd.mean(), row_abs, deg / max(deg.mean(), 1.0)])
    E = sp.csr_array((a_hat, (i, j)), shape=(n, n))
    E.sort_indices()

    crow = torch.as_tensor(E.indptr, dtype=torch.int64)
    col = torch.as_tensor(E.indices, dtype=torch.int64)

    def csr(values: np.ndarray) -> torch.Tensor:  # Â − I and |Â − I| share their indices
        with warnings.catch_warnings():  # "sparse CSR tensor support is in beta state"
            warnings.simplefilter("ignore", UserWarning)
            return torch.sparse_csr_tensor(crow, col, torch.as_tensor(values, dtype=dtype),
                                           size=(n, n))

    low = i > j
    # L̂'s pattern: the lower entries, then the diagonal; CSR order by (row, column)
    r = np.concatenate([i[low], np.arange(n)])
    c = np.concatenate([j[low], np.arange(n)])
    order = np.lexsort((c, r))
    indptr = np.concatenate([[0], np.cumsum(np.bincount(r, minlength=n))]).astype(np.int64)
    return Graph(n, s, torch.as_tensor(x, dtype=dtype), csr(E.data), csr(np.abs(E.data)),
                 torch.as_tensor(i[low]), torch.as_tensor(j[low]),
                 torch.as_tensor(a_hat[low], dtype=dtype), indptr,
                 np.ascontiguousarray(c[order]), torch.as_tensor(order))


class _Round(MessagePassing):
    """One round: messages Σ_j â_ij W₁h_j and Σ_j |â_ij| W₂h_j, then a residual update.

    The messages are aggregated in one sparse product per weight (PyTorch Geometric's fused
    ``message_and_aggregate`` path, taken when the adjacency is a sparse tensor)."""

    def __init__(self, hidden: int):
        super().__init__(aggr="add")
        self.W1 = nn.Linear(hidden, hidden, bias=False)
        self.W2 = nn.Linear(hidden, hidden, bias=False)
        self.psi = nn.Sequential(nn.Linear(3 * hidden, hidden), nn.ReLU(),
                                 nn.Linear(hidden, hidden))

    def forward(self, h: torch.Tensor, g: Graph) -> torch.Tensor:
        m1 = self.propagate(g.adj, x=self.W1(h))
        m2 = self.propagate(g.adj_abs, x=self.W2(h))
        return h + self.psi(torch.cat([h, m1, m2], dim=1))

    def message_and_aggregate(self, adj: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return _SymmetricProduct.apply(adj, x)


class NeuralICNet(nn.Module):
    """The network of the module docstring; ``forward(graph)`` gives (L̂_ii, L̂_ij for the
    graph's lower entries)."""

    def __init__(self, hidden: int, layers: int, generator: torch.Generator):
        super().__init__()
        self.node_in = nn.Linear(NODE_FEATURES, hidden)
        self.rounds = nn.ModuleList(_Round(hidden) for _ in range(layers))
        self.head_diag = nn.Linear(hidden, 1)
        self.P = nn.Linear(hidden, hidden)
        self.Q = nn.Linear(hidden, hidden)
        for mod in self.modules():  # PyTorch's default ranges, from the seeded generator
            if isinstance(mod, nn.Linear):
                bound = 1.0 / math.sqrt(mod.in_features)
                with torch.no_grad():
                    mod.weight.uniform_(-bound, bound, generator=generator)
                    if mod.bias is not None:
                        mod.bias.uniform_(-bound, bound, generator=generator)
        for head in (self.head_diag, self.Q):  # start at symmetric Gauss–Seidel
            nn.init.zeros_(head.weight)
            nn.init.zeros_(head.bias)

    def forward(self, g: Graph) -> tuple[torch.Tensor, torch.Tensor]:
        h = torch.relu(self.node_in(g.x))
        for layer in self.rounds:
            h = layer(h, g)
        diag = nn.functional.softplus(self.head_diag(h).squeeze(1) + SOFTPLUS_ONE)
        factor = 1.0 + (self.P(h)[g.rows] * self.Q(h)[g.cols]).sum(dim=1)
        return diag, g.a_lower * factor


class _Substitute(torch.autograd.Function):
    """X = L⁻¹B (``transposed`` False) or L⁻ᵀB (True) for the lower triangular L whose values
    (in CSR order, pattern fixed) are ``values``; differentiable in both.

    With X = L⁻¹B and Ḡ = ∂ℓ/∂X: ∂ℓ/∂B = V := L⁻ᵀḠ and ∂ℓ/∂L_ij = −V_i·X_j (rows of the
    (n, k) blocks). With X = L⁻ᵀB: ∂ℓ/∂B = U := L⁻¹Ḡ and ∂ℓ/∂L_ij = −X_i·U_j. Computed in
    float64 by the compiled substitutions of :mod:`lubench_neural_ic.factor`."""

    @staticmethod
    def forward(ctx, values: torch.Tensor, B: torch.Tensor, indptr: np.ndarray,
                indices: np.ndarray, transposed: bool) -> torch.Tensor:
        k = kernels()
        data = np.array(values.detach().cpu().numpy(), dtype=np.float64)  # copies: the
        X = np.array(B.detach().cpu().numpy(), dtype=np.float64, order="C")  # solve is in place
        k["backward_block" if transposed else "forward_block"](indptr, indices, data, X)
        ctx.save_for_backward(values)
        ctx.data, ctx.X, ctx.pattern, ctx.transposed = data, X, (indptr, indices), transposed
        return torch.as_tensor(X, dtype=B.dtype, device=B.device)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (values,) = ctx.saved_tensors
        k = kernels()
        indptr, indices = ctx.pattern
        G = np.array(grad.detach().cpu().numpy(), dtype=np.float64, order="C")
        k["forward_block" if ctx.transposed else "backward_block"](indptr, indices, ctx.data, G)
        dots = (k["entry_dots"](indptr, indices, ctx.X, G) if ctx.transposed
                else k["entry_dots"](indptr, indices, G, ctx.X))
        as_t = {"dtype": values.dtype, "device": values.device}
        return (torch.as_tensor(-dots, **as_t), torch.as_tensor(G, **as_t), None, None, None)


def _lower_products(g: Graph, diag: torch.Tensor, off: torch.Tensor,
                    Z: torch.Tensor) -> torch.Tensor:
    """L̂ (L̂ᵀ Z) with L̂ = diag(diag) + the lower entries ``off`` at (g.rows, g.cols)."""
    i, j = g.rows, g.cols
    W = torch.index_add(diag[:, None] * Z, 0, j, off[:, None] * Z[i])    # L̂ᵀ Z
    return torch.index_add(diag[:, None] * W, 0, i, off[:, None] * W[j])  # L̂ W


def _a_hat(g: Graph, Z: torch.Tensor) -> torch.Tensor:
    return Z + _SymmetricProduct.apply(g.adj, Z)  # Â Z, Â_ii = 1


def frobenius_loss(g: Graph, diag: torch.Tensor, off: torch.Tensor,
                   Z: torch.Tensor) -> torch.Tensor:
    """‖(L̂L̂ᵀ − Â) Z‖²_F / ‖ÂZ‖²_F (module docstring)."""
    AZ = _a_hat(g, Z)
    R = _lower_products(g, diag, off, Z) - AZ
    return (R * R).sum() / (AZ * AZ).sum()


def preconditioned_loss(g: Graph, diag: torch.Tensor, off: torch.Tensor,
                        Z: torch.Tensor) -> torch.Tensor:
    """‖L̂⁻¹ Â L̂⁻ᵀ Z − Z‖²_F / ‖Z‖²_F (module docstring)."""
    values = torch.cat([off, diag])[g.csr_order]
    Y = _Substitute.apply(values, Z, g.indptr, g.indices, True)     # L̂⁻ᵀ Z
    Y = _Substitute.apply(values, _a_hat(g, Y), g.indptr, g.indices, False)  # L̂⁻¹ Â ·
    R = Y - Z
    return (R * R).sum() / (Z * Z).sum()


LOSSES = {"preconditioned": preconditioned_loss, "frobenius": frobenius_loss}
