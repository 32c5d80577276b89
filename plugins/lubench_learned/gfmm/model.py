"""The GFMM factors as PyTorch modules: :class:`GFMMFactor` (one block-triangular factor),
:class:`GFMMProduct` (L·U), their parameter counts, and F⁻¹B through the graph.

The graph, the diagonal blocks' parametrizations and the counts are in
:mod:`lubench_learned.gfmm`. A factor applies itself through :mod:`.sweeps` (fused, or plain
for second-order optimizers) and :mod:`.identity_sweep`; the product's full-batch step is
:mod:`.step_plan`; :func:`solve_factor` is :mod:`.substitution`'s block substitution.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from lubench_structured.gfmm import GFMMArrays, is_power_of_two
from torch import nn

from ..flat import FlatParameters
from ..parametrization import DIAGS, pivot_weights, softplus_inverse
from .identity_sweep import _IdentitySweep
from .step_plan import _run, _StepPlan
from .substitution import forward_substitution
from .sweeps import _sweep, _sweep_fused

__all__ = ["GFMMFactor", "GFMMProduct", "factor_params", "live_params", "dense_factor",
           "solve_factor"]


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


def _uniform(shape: tuple[int, ...], scale: float, generator: torch.Generator,
             dtype: torch.dtype) -> nn.Parameter:
    w = torch.empty(shape, dtype=torch.float64).uniform_(-scale, scale, generator=generator)
    return nn.Parameter(w.to(dtype))


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
    factor at exactly I (L) or diag(s ⊙ ``pivot_start``) (U; the magnitudes, e.g. |A_ii|,
    so that the start has A's scale, pivots at least 2δ): diagonal blocks' other entries,
    leaf bridge and interior bridges zero, the encoders and decoders drawn as usual (they
    give the bridges their first gradients).
    """

    def __init__(self, M: int, P: int, lower: bool, *, diag: str = "full",
                 init_scale: float = 0.1, identity_diag: bool = False,
                 n_valid: int | None = None, pivot_sign: torch.Tensor | None = None,
                 pivot_floor: float = 0.0, pivot_start: torch.Tensor | None = None,
                 dtype: torch.dtype = torch.float32, generator: torch.Generator | None = None):
        super().__init__()
        if not is_power_of_two(M):
            raise ValueError(f"M must be a power of two, got {M}")
        if diag not in DIAGS:
            raise ValueError(f"diag must be one of {DIAGS}, got {diag!r}")
        self.M, self.P, self.lower, self.diag_kind = M, P, lower, diag
        self.K = M.bit_length() - 1
        # the sweep with the hand-written backward (_FusedSweep); False: plain autograd,
        # which differentiates twice (Levenberg–Marquardt)
        self.fused = True
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
            start = np.ones((M, P)) if lower or pivot_start is None else \
                np.asarray(pivot_start, dtype=np.float64).reshape(M, P)
            with torch.no_grad():
                # exactly I (L) or diag(s ⊙ start) (U): near field and couplings zero, the
                # random bases only give the couplings their first gradients (noise in a
                # unit triangular factor's strict part grows its inverse exponentially).
                self.diag.zero_()
                self.off.zero_()
                for b in self.bridge:
                    b.zero_()
                # U = S·Ũ with S = diag(start): the leaf decoders that bring U's far field
                # into a row scaled by its pivot, so that small pivots do not meet
                # O(init_scale) entries once the couplings grow
                if K and not lower:
                    rows = torch.as_tensor(start, dtype=dtype)[..., None]
                    self.dec[0].mul_(rows.reshape(M >> 1, 2 * P, 1))
                if diag == "full":
                    d = torch.as_tensor(start, dtype=dtype) * (1.0 if lower else sign)
                    self.diag += torch.diag_embed(d)
                elif not lower:
                    floor = float(pivot_floor)
                    theta = softplus_inverse(np.maximum(start, 2.0 * floor) - floor)
                    idx = torch.arange(P)
                    self.diag[:, idx, idx] = torch.as_tensor(theta, dtype=dtype)
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
        sweep = _sweep_fused if self.fused else _sweep
        if transpose:
            y = sweep(x, [d.transpose(1, 2) for d in self.dec],
                       [e.transpose(1, 2) for e in self.enc], diag.transpose(1, 2),
                       self.off.transpose(1, 2), [b.transpose(1, 2) for b in self.bridge],
                       not self.lower)
        else:
            y = sweep(x, list(self.enc), list(self.dec), diag, self.off,
                       list(self.bridge), self.lower)
        return y.reshape(n, c)

    def as_dense(self) -> torch.Tensor:
        """F as a dense n×n tensor, differentiable: F applied to I. Fused, through
        :class:`_IdentitySweep` (I's zero blocks never multiplied, no I formed); otherwise
        the plain graph on I (differentiable twice)."""
        diag = self.diagonal_blocks()
        if not self.fused:
            return self.forward(torch.eye(self.n, dtype=diag.dtype, device=diag.device))
        return _IdentitySweep.apply(self.lower, self.K, diag, self.off, *self.enc,
                                    *self.dec, *self.bridge)

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

    def arrays(self) -> GFMMArrays:
        """The factor as used (diagonal blocks after the parametrization), in float64: the
        structure ``gfmm_compressed`` solves with (one structure, one solve)."""
        with torch.no_grad():
            return GFMMArrays.from_tensors(self.M, self.P, self.lower, list(self.enc),
                                           list(self.dec), self.diagonal_blocks(), self.off,
                                           list(self.bridge))

    def load_arrays(self, enc: list[np.ndarray], dec: list[np.ndarray], diag: np.ndarray,
                    off: np.ndarray, bridge: list[np.ndarray]) -> None:
        """Set the weights so that the factor equals the given tensors (the layout of
        :class:`~lubench_structured.gfmm.arrays.GFMMArrays`): the inverse of the
        parametrization.

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
            piv, sign = pivot_weights(np.diagonal(diag, axis1=1, axis2=2),
                                      float(self.pivot_floor))
            theta = np.triu(diag, 1)
            idx = np.arange(P)
            theta[:, idx, idx] = piv
            put(self.diag, theta)
            self.pivot_sign.copy_(torch.as_tensor(sign, dtype=dt, device=dev))

    def diagonal_grad(self, g_blocks: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """∂ℓ/∂Θ (``diag``'s gradient) from G = ∂ℓ/∂D (D = :meth:`diagonal_blocks`), into
        ``out``, by hand: full G (⊙ the padding mask); triangular L strict_lower(G); U
        strict_upper(G) + diag(G_ii · s_i · σ(θ_i)) (D_ii = s_i(δ + softplus θ_i), softplus′ =
        σ the logistic function). The same as autograd through :meth:`diagonal_blocks`."""
        with torch.no_grad():
            if self.diag_kind == "full":
                if self.diag_mask is None:
                    return out.copy_(g_blocks)
                return torch.mul(g_blocks, self.diag_mask, out=out)
            if self.lower:
                return torch.tril(g_blocks, -1, out=out)
            torch.triu(g_blocks, 1, out=out)
            theta = self.diag.diagonal(0, -2, -1)
            out.diagonal(0, -2, -1).copy_(g_blocks.diagonal(0, -2, -1) * self.pivot_sign
                                          * torch.sigmoid(theta))
            return out


class GFMMProduct(nn.Module):
    """The product L·U of a block-lower and a block-upper GFMM factor (n = M·P).

    ``forward(X)`` = L(U X); ``forward(X, transpose=True)`` = Uᵀ(Lᵀ X). ``diag``, the
    pivot signs s, the floor δ and the start apply as in :class:`GFMMFactor` (to U only).
    """

    def __init__(self, M: int, P: int, *, diag: str = "full", init_scale: float = 0.1,
                 identity_diag: bool = False, n_valid: int | None = None,
                 pivot_sign: torch.Tensor | None = None, pivot_floor: float = 0.0,
                 pivot_start: torch.Tensor | None = None, dtype: torch.dtype = torch.float32,
                 generator: torch.Generator | None = None):
        super().__init__()
        g = generator if generator is not None else torch.Generator().manual_seed(0)
        self.M, self.P, self.diag_kind = M, P, diag
        self.n_valid = M * P if n_valid is None else n_valid
        kw = {"diag": diag, "init_scale": init_scale, "identity_diag": identity_diag,
              "n_valid": n_valid, "dtype": dtype, "generator": g}
        self.L = GFMMFactor(M, P, True, **kw)
        self.U = GFMMFactor(M, P, False, pivot_sign=pivot_sign, pivot_floor=pivot_floor,
                            pivot_start=pivot_start, **kw)
        # every parameter a view of one flat tensor, every gradient of one flat gradient
        # (one fused Adam kernel, one fill to zero them: flat.py)
        self._flat = FlatParameters(list(self.parameters()))
        self._plan: _StepPlan | None = None

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
        """L·U as a dense n×n tensor (the graph applied to the identity): L applied to
        U's dense form (:meth:`GFMMFactor.as_dense`)."""
        return self.L(self.U.as_dense())

    def solve(self, B: torch.Tensor) -> torch.Tensor:
        """U⁻¹ L⁻¹ B for B of shape (n, c), by block substitution through both graphs
        (:func:`solve_factor`): O(n·P·c), differentiable in the weights
        (twice) — the inverse-side loss term of training (``LossSpec.inverse_weight``)."""
        return solve_factor(self.U, solve_factor(self.L, B))

    def edge_views(self) -> list[tuple[nn.Parameter, Callable[[torch.Tensor], torch.Tensor]]]:
        return self.L.edge_views() + self.U.edge_views()

    def factors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """L and U as dense n×n tensors (differentiable)."""
        return self.L.as_dense(), self.U.as_dense()

    def retract(self, L: torch.Tensor, U: torch.Tensor) -> None:
        """Set the weights to dense unit lower triangular L and upper triangular U placed
        into the pattern (triangular diagonal blocks only): near field exact, far field
        compressed into the nested bases by truncated SVDs — the map ``gfmm_compressed``
        applies to A's factors (:func:`lubench_structured.gfmm.compression.compress_factors`,
        rank ≤ P, singular values ≤ 1e-16‖·‖_F dropped). U's pivots of magnitude ≤ δ are
        raised to 2δ; their signs become U's (:meth:`GFMMFactor.load_arrays`)."""
        from lubench_structured.gfmm import compress_factors

        Lc, Uc, _, _ = compress_factors(L.detach().cpu().double().numpy(),
                                        U.detach().cpu().double().numpy(), self.M, self.P)
        self.L.load_arrays(Lc.enc, Lc.dec, Lc.diag, Lc.off, Lc.bridge)
        self.U.load_arrays(Uc.enc, Uc.dec, Uc.diag, Uc.off, Uc.bridge)

    def float64_factors(self) -> tuple[GFMMArrays, GFMMArrays]:
        """L and U as used, in float64 (what the watch and the factorization solve with)."""
        return self.L.arrays(), self.U.arrays()

    def n_trainable(self) -> int:
        return self.L.n_trainable() + self.U.n_trainable()

    def n_live(self) -> int:
        return self.L.n_live() + self.U.n_live()

    def flat_parameters(self) -> FlatParameters:
        """The binding of every parameter to one flat tensor (bound again first if
        something moved a parameter or replaced a gradient)."""
        self._flat.ensure()
        return self._flat

    def _step_plan(self, A: torch.Tensor, weight: float) -> _StepPlan:
        """The plan of :meth:`identity_loss_and_grad` for this A and weight, made again
        when the binding changed (a parameter moved)."""
        flat = self.flat_parameters()
        plan = self._plan
        if plan is None or not plan.made_for(A, float(weight), flat):
            self._plan = None  # let the old buffers go first
            plan = self._plan = _StepPlan(self, A, float(weight), flat)
        return plan

    def identity_loss_and_grad(self, A: torch.Tensor, weight: float = 1.0) -> torch.Tensor:
        """sq = ‖LU − A‖²_F (a 0-dim tensor) and, written into the parameters' gradients
        (overwritten, not accumulated), the gradient of weight·sq — without autograd.

        One pass each way: Y = U I (:func:`_identity_forward`), Z = L Y
        (:func:`_dense_forward`), R = Z − A, sq = ⟨R, R⟩, G = 2·weight·R; then ∂/∂Y = Lᵀ G
        and L's weight gradients (:func:`_dense_backward`), U's from ∂/∂Y
        (:func:`_identity_backward`), each product written straight into the flat gradient
        (:class:`~lubench_learned.flat.FlatParameters`) or into buffers kept from call to
        call, as a plan of kernel calls made once (:class:`_StepPlan`). The same products
        as :meth:`full_product` with autograd and ``mse_loss``, so the same loss and
        gradients to round-off; the 4·log₂M edges that never reach LU keep a zero
        gradient."""
        plan = self._step_plan(A, weight)
        with torch.no_grad():
            _run(plan.plan)
            return plan.parts.sum()


def dense_factor(factor: GFMMFactor) -> np.ndarray:
    """The factor as a dense float64 matrix (for tests and small checks only)."""
    with torch.no_grad():
        p = next(factor.parameters())
        eye = torch.eye(factor.n, dtype=p.dtype, device=p.device)
        return factor(eye).to("cpu", torch.float64).numpy()


def _flip(t: torch.Tensor) -> torch.Tensor:
    return t.flip(tuple(range(t.dim())))


def solve_factor(factor: GFMMFactor, B: torch.Tensor) -> torch.Tensor:
    """F⁻¹ B for a :class:`GFMMFactor` F (its diagonal blocks as used,
    :meth:`GFMMFactor.diagonal_blocks`) and B of shape (n, c),
    differentiable in F's parameters and in B. A block-upper F is solved as its reversal
    (see :mod:`.substitution`)."""
    n, c = B.shape
    M, P = factor.M, factor.P
    b = B.reshape(M, P, c)
    diag = factor.diagonal_blocks()
    enc, dec, bridge = list(factor.enc), list(factor.dec), list(factor.bridge)
    triangular = factor.diag_kind == "triangular"
    if factor.lower:
        kind = "unit_lower" if triangular else "general"
        x = forward_substitution(diag, factor.off, enc, dec, bridge, b, kind)
        return x.reshape(n, c)
    kind = "lower" if triangular else "general"
    x = forward_substitution(_flip(diag), _flip(factor.off), [_flip(e) for e in enc],
                             [_flip(d) for d in dec], [_flip(br) for br in bridge],
                             b.flip((0, 1)), kind)
    return x.flip((0, 1)).reshape(n, c)
