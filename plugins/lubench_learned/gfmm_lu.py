"""``gfmm_lu``: L and U as GFMM blocks, trained by the shared loop, solved structurally."""

from __future__ import annotations

import math
import textwrap
from collections import Counter
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from lubench_structured.gfmm import GFMMFactorization, compress_lu, derive_M, is_power_of_two

from lubench.api import (
    InvalidParameter,
    MatrixFreeOperator,
    Operator,
    RunContext,
    Unsupported,
)
from lubench.lazy import lazy_module

from .base import TRAINING_PARAMS_DOC, LearnedLU, pivot_signs_and_floor
from .parametrization import DIAGS

sp = lazy_module("scipy.sparse")

if TYPE_CHECKING:  # PyTorch is imported when a case runs, never when the plugin registers
    from .gfmm import GFMMProduct

__all__ = ["GfmmLU", "TrainedGFMMFactorization", "POST", "DEFAULT"]

# The "Learn LU" post's protocol: uniform start, full diagonal blocks, Adam 1e-2 with betas
# (0.999, 0.999) and 1e-3 after 5 000 steps of a block, block-wise training with the
# transpose loss on identity inputs, float32, its plateau rule; the last weights are kept.
POST: dict[str, Any] = {
    "diag": "full", "pivot_floor": 0.0, "blockwise": True, "loss": "identity", "probes": 64,
    "transpose_loss": True, "optimizer": "adam", "lr": 1e-2, "lr_late": 1e-3,
    "lr_drop_step": 5000, "betas": (0.999, 0.999), "max_steps_per_block": 50000,
    "check_interval": 1000, "tol": 1e-3, "patience": 2, "dtype": "float32",
    "init": "uniform", "init_scale": 0.1, "keep": "last", "watch_patience": 0,
    "eval_every": 500, "cg_iters": 40, "cg_precond": "none", "inverse_weight": 0.0,
}
# The best configuration measured here (docs/methods/learned.md; the numbers in docs/experiments/).
DEFAULT: dict[str, Any] = {
    **POST, "diag": "triangular", "pivot_floor": 1e-8, "blockwise": False, "loss": "auto",
    "probes": None, "transpose_loss": False, "optimizer": "auto", "dtype": "float64",
    "init": "identity", "keep": "best", "watch_patience": 10, "eval_every": 10,
    "check_interval": 20, "cg_iters": 200, "cg_precond": "kronecker",
}
# ``optimizer: auto`` runs dense Newton up to this padded size N and the sketch optimizer
# beyond: dense Newton's step is O(N³) in N² memory (≈ 1 s at N = 2048, 8 s at 4096 on one
# core), the sketch optimizer's O(N·k·P) (docs/experiments/learned-at-scale.md has the
# measurements this threshold rests on)
NEWTON_MAX_N = 2048
# The sketch optimizer's probes per sketch at least this many times P (d = 3P unknowns per
# row: sketch-and-solve loses a factor about 1 + d/(k − d))
SKETCH_PROBES_PER_P = 4
# The sketch optimizer's memory model (GfmmLU._sketch_bytes): parameter-sized arrays held at
# once, and N-long probe columns per probe (both measured, see there)
SKETCH_PARAM_COPIES = 5.0
SKETCH_PROBE_COLUMNS = 12.0


def newton_applies(cfg: dict[str, Any]) -> bool:
    """Whether ``newton`` (and ``als``) can run: triangular diagonal blocks, the whole-matrix
    loss (or ``auto``), no block-wise training, no inverse-side term (they fit LU = A
    only)."""
    return cfg["diag"] == "triangular" and not cfg["blockwise"] and \
        cfg["loss"] in ("identity", "auto") and not float(cfg["inverse_weight"]) > 0


def sketch_applies(cfg: dict[str, Any]) -> bool:
    """Whether ``sketch`` can run: triangular diagonal blocks, A's action (loss ``probes``
    or ``auto``), no block-wise training, no inverse-side term, float64."""
    return cfg["diag"] == "triangular" and not cfg["blockwise"] and \
        cfg["loss"] in ("probes", "auto") and not float(cfg["inverse_weight"]) > 0 and \
        cfg["dtype"] == "float64"


def resolve(cfg: dict[str, Any], N: int, P: int) -> dict[str, Any]:
    """``cfg`` with ``optimizer``, ``loss`` and ``probes`` as they run at padded size N:
    ``auto`` is ``newton`` (loss ``identity``) where it applies and N ≤ ``NEWTON_MAX_N``,
    else ``sketch`` (loss ``probes``) where that applies, else ``lm``; loss ``auto`` is
    ``probes`` for ``sketch`` and ``identity`` otherwise; probes None is 64, or
    max(64, 4P) for ``sketch``."""
    cfg = dict(cfg)
    if cfg["optimizer"] == "auto":
        if newton_applies(cfg) and N <= NEWTON_MAX_N:
            cfg["optimizer"] = "newton"
        elif sketch_applies(cfg):
            cfg["optimizer"] = "sketch"
        else:
            cfg["optimizer"] = "lm"
    if cfg["loss"] == "auto":
        cfg["loss"] = "probes" if cfg["optimizer"] == "sketch" else "identity"
    if cfg["probes"] is None:
        cfg["probes"] = max(64, SKETCH_PROBES_PER_P * P) if cfg["optimizer"] == "sketch" \
            else 64
    cfg["probes"] = int(cfg["probes"])
    return cfg


def row_permuted(op: Operator, p: np.ndarray) -> Operator:
    """A[p] (rows moved: row i of the result is row p[i] of A) as an operator: ``op`` itself
    for the identity, a formed copy when A is formed, else :class:`RowPermuted` (A never
    formed)."""
    if np.array_equal(p, np.arange(op.n)):
        return op
    if op.formed:
        A = sp.csr_array(op.matrix)[p] if op.is_sparse else np.asarray(op.matrix)[p]
        return Operator(op.name, A, symmetric=False, spd=False, coords=op.coords,
                        params=op.params)
    return RowPermuted(op, p)


class RowPermuted(MatrixFreeOperator):
    """A[p] for an operator that is not formed: (A[p])X = (AX)[p], (A[p])ᵀY = Aᵀ(Pᵀ Y) with
    (PᵀY)[p] = Y, entries A[p[rows], cols] (where A has them)."""

    def __init__(self, op: Operator, p: np.ndarray):
        super().__init__(op.name, op.n, symmetric=False, spd=False, coords=op.coords,
                         params=op.params)
        self.base, self.p = op, np.asarray(p, dtype=np.intp)
        self.has_entries = op.has_entries  # type: ignore[misc]

    def matmat(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(self.base.matmat(X))[self.p]

    def rmatmat(self, X: np.ndarray) -> np.ndarray:
        Y = np.empty_like(np.asarray(X, dtype=np.float64))
        Y[self.p] = X
        return np.asarray(self.base.rmatmat(Y))

    def entries(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        return self.base.entries(self.p[np.asarray(rows, dtype=np.intp)], cols)


class TrainedGFMMFactorization(GFMMFactorization):
    """Trained GFMM factors of A padded to N = M·P (identity block below n), in float64.

    The same structure and solve as ``gfmm_compressed``'s factorization (GFMMArrays, level-wise
    block substitution through the graphs, O(n·P) per column, never a dense L or U), whatever
    precision training ran in; ``perm`` is the identity unless the start (``init:
    projected``) came with row exchanges.
    """


class GfmmLU(LearnedLU):
    __doc__ = (textwrap.dedent("""\
        GFMM-block LU: block-lower L and block-upper U as learned FMM graphs, A ≈ L·U.

        n = M·P (A padded with an identity block otherwise); each factor is a binary tree of
        M leaves with one dense P×P map per edge and bridge block. L's leaf bridge is
        lower-bidiagonal and its interior bridges strictly lower; U mirrors it. The diagonal
        blocks (``diag``) are free P×P blocks (``full``, the post) or triangular —
        L's unit lower, U's upper with pivots s·(δ + softplus θ), |U_ii| ≥ δ — so that L and
        U are invertible by construction and carry no block-diagonal gauge. Numbers per
        factor: P²(7M − 6 − log₂M) with full blocks, M·P² fewer for the pair with triangular
        ones; 4·log₂M·P² of them per factor never reach the output (``info``:
        ``trainable_params``, ``live_params``). Trained on ‖LU − A‖²_F (see ``loss``);
        solved in float64 by block substitution through the graphs.

        ``init: projected`` (this method only) starts from ``gfmm_compressed``'s factors
        (exact LU of A, row exchanges only where it must, far field compressed into the
        tree at full rank P) and trains from there on A[perm]; the start is the watch's
        first check, so with ``keep: best`` the result's held-out residual is never worse
        than the start's.

        Parameters
        ----------
        P : int
            Leaf size: the size of every block and edge.
        M : int or None
            Number of leaves, a power of two; None or 0: the smallest with M·P ≥ n.
        diag : {'full', 'triangular'} or None
            The diagonal blocks' parametrization (see above).
        pivot_floor : float or None
            δ / max|A_ij|: U's pivots keep |U_ii| ≥ δ (``triangular`` only). Their signs s
            are those of A's diagonal (+ where it is 0).
        blockwise : bool or None
            Fit output block m = 0 … M−1 in turn, freezing what influenced finished blocks.
        cg_iters : int or None
            Conjugate-gradient products JᵀJv per Levenberg–Marquardt step at most (``lm``,
            the inner step of ``als``, and ``newton``'s fallback steps).
        cg_precond : {'none', 'kronecker'} or None
            The preconditioner of ``lm``'s conjugate gradients: none, or per-edge
            block-Jacobi — each edge's exact diagonal block G ⊗ C of JᵀJ (C its input
            Gram, G its downstream Gram), inverted with the damping
            (:mod:`lubench_learned.optim.kronecker`). Whole-matrix loss only (``identity``, not
            block-wise; its sweeps run on n columns): otherwise none. ``newton``'s fallback
            steps follow it too. It approximates the fit's part of JᵀJ only, not the
            inverse-side term's.
        inverse_weight : float or None
            w ≥ 0 (both presets: 0, no term): the loss gains the inverse-side term
            (w/k)‖U⁻¹L⁻¹(AZ) − Z‖²_F on k = ``probes`` Gaussian columns Z redrawn every
            step, U⁻¹L⁻¹ by differentiable block substitution through the graphs (O(n·P·k)
            per step, no dense factor; :mod:`lubench_learned.gfmm.substitution`) — for runs
            that want a preconditioner: it penalizes what the fit ‖LU − A‖ cannot see,
            ‖(LU)⁻¹A − I‖ and so large ‖L⁻¹‖, ‖U⁻¹‖. Optimizers ``adam``, ``lbfgs``, ``lm``
            (``auto`` is ``lm`` when w > 0; ``newton`` and ``als`` fit LU = A only).
        """) + TRAINING_PARAMS_DOC)

    name = "gfmm_lu"
    PRESETS = {"default": DEFAULT, "post": POST}
    INITS = ("uniform", "identity", "projected")
    OPTIMIZERS = ("adam", "lbfgs", "lm", "als", "newton", "sketch", "auto")
    LOSSES = ("identity", "probes", "auto")

    def __init__(self, P: int = 32, M: int | None = None,
                 preset: Literal["default", "post"] = "default",
                 diag: Literal["full", "triangular"] | None = None,
                 pivot_floor: float | None = None, blockwise: bool | None = None,
                 loss: Literal["identity", "probes", "auto"] | None = None,
                 probes: int | None = None, transpose_loss: bool | None = None,
                 optimizer: Literal["adam", "lbfgs", "lm", "als", "newton", "sketch",
                                    "auto"] | None = None,
                 lr: float | None = None,
                 lr_late: float | None = None, lr_drop_step: int | None = None,
                 betas: tuple[float, float] | None = None,
                 max_steps_per_block: int | None = None, check_interval: int | None = None,
                 tol: float | None = None, patience: int | None = None,
                 dtype: Literal["float32", "float64"] | None = None,
                 init: Literal["uniform", "identity", "projected"] | None = None,
                 init_scale: float | None = None, keep: Literal["best", "last"] | None = None,
                 watch_patience: int | None = None, eval_every: int | None = None,
                 cg_iters: int | None = None,
                 cg_precond: Literal["none", "kronecker"] | None = None,
                 inverse_weight: float | None = None,
                 seed: int | None = None, log_every: int = 10):
        self.P = P
        self.M = M
        self.preset = preset
        self.diag = diag
        self.pivot_floor = pivot_floor
        self.blockwise = blockwise
        self.loss = loss
        self.probes = probes
        self.transpose_loss = transpose_loss
        self.optimizer = optimizer
        self.lr = lr
        self.lr_late = lr_late
        self.lr_drop_step = lr_drop_step
        self.betas = betas
        self.max_steps_per_block = max_steps_per_block
        self.check_interval = check_interval
        self.tol = tol
        self.patience = patience
        self.dtype = dtype
        self.init = init
        self.init_scale = init_scale
        self.keep = keep
        self.watch_patience = watch_patience
        self.eval_every = eval_every
        self.cg_iters = cg_iters
        self.cg_precond = cg_precond
        self.inverse_weight = inverse_weight
        self.seed = seed
        self.log_every = log_every

    # ----------------------------------------------------------------------------------------
    def _validated(self) -> dict[str, Any]:
        cfg = self.config()
        self._validate_training(cfg, self.INITS)
        if int(self.P) < 1:
            raise InvalidParameter(f"gfmm_lu: P must be at least 1, got {self.P!r}")
        if self.M not in (None, 0) and not is_power_of_two(int(self.M)):
            raise InvalidParameter(f"gfmm_lu: M must be a power of two (or 0/None to derive "
                                   f"it from n), got {self.M!r}")
        if cfg["diag"] not in DIAGS:
            raise InvalidParameter(f"gfmm_lu: diag must be 'full' or 'triangular', "
                                   f"got {cfg['diag']!r}")
        if not float(cfg["pivot_floor"]) >= 0:
            raise InvalidParameter(f"gfmm_lu: pivot_floor must be non-negative, "
                                   f"got {cfg['pivot_floor']!r}")
        if int(cfg["cg_iters"]) < 1:
            raise InvalidParameter(f"gfmm_lu: cg_iters must be at least 1, "
                                   f"got {cfg['cg_iters']!r}")
        try:
            w = float(cfg["inverse_weight"])
        except (TypeError, ValueError):
            w = math.nan
        if not (w >= 0 and math.isfinite(w)):
            raise InvalidParameter(f"gfmm_lu: inverse_weight must be a non-negative number, "
                                   f"got {cfg['inverse_weight']!r}")
        cfg["inverse_weight"] = w
        if cfg["optimizer"] in ("als", "newton", "sketch") and w > 0:
            raise InvalidParameter(f"gfmm_lu: inverse_weight {w:g} > 0 needs optimizer "
                                   f"'adam', 'lbfgs', 'lm' or 'auto'; {cfg['optimizer']!r} "
                                   f"fits LU = A only")
        if cfg["cg_precond"] not in ("none", "kronecker"):
            raise InvalidParameter(f"gfmm_lu: cg_precond must be 'none' or 'kronecker', "
                                   f"got {cfg['cg_precond']!r}")
        if cfg["optimizer"] in ("als", "newton") and not newton_applies(cfg):
            raise InvalidParameter(f"gfmm_lu: optimizer {cfg['optimizer']!r} needs diag "
                                   f"'triangular', loss 'identity' and blockwise false")
        if cfg["optimizer"] == "sketch":
            self._validate_sketch(cfg)
        return cfg

    def _validate_sketch(self, cfg: dict[str, Any]) -> None:
        """``optimizer: sketch``'s combinations, each refused naming the field."""
        def bad(name: str, rule: str) -> InvalidParameter:
            return InvalidParameter(f"gfmm_lu: optimizer 'sketch' {rule}, got {name} "
                                    f"{cfg[name]!r}")

        if cfg["loss"] == "identity":
            raise bad("loss", "trains on sketches of A, never the whole matrix: loss "
                      "'probes' or 'auto'")
        if cfg["diag"] != "triangular":
            raise bad("diag", "needs triangular diagonal blocks (no gauge, pivots kept)")
        if cfg["blockwise"]:
            raise bad("blockwise", "fits L and U as a whole: blockwise false")
        if cfg["dtype"] != "float64":
            raise bad("dtype", "solves normal equations: dtype 'float64'")
        least = SKETCH_PROBES_PER_P * int(self.P)
        if cfg["probes"] is not None and int(cfg["probes"]) < least:
            raise bad("probes", f"needs at least {SKETCH_PROBES_PER_P}·P = {least} probes "
                      f"per sketch (P = {self.P}: 3P unknowns per row)")

    def resolved(self, n: int) -> dict[str, Any]:
        """The configuration that runs at size n (:func:`resolve` at N = M·P): what
        ``info["config"]`` records."""
        M, P = self.shape_for(n)
        return resolve(self._validated(), M * P, P)

    @property
    def needs(self) -> str:  # type: ignore[override]
        """``action`` where this configuration can train on A's action alone (the sketch
        optimizer, the probe loss; ``auto`` forms A itself where it runs dense Newton, at
        N ≤ ``NEWTON_MAX_N``, within its memory estimate), else ``matrix``."""
        try:
            cfg = self._validated()
        except InvalidParameter:
            return "matrix"
        if cfg["init"] == "projected":
            return "matrix"  # gfmm_compressed's start factors the dense A
        dense_only = cfg["optimizer"] in ("als", "newton") or cfg["loss"] == "identity" or \
            (cfg["optimizer"] != "sketch" and cfg["blockwise"])
        return "matrix" if dense_only else "action"

    def shape_for(self, n: int) -> tuple[int, int]:
        """(M, P) used for size n."""
        P = int(self.P)
        M = int(self.M) if self.M else derive_M(n, P)
        return M, P

    def check(self, op: Operator) -> None:
        self._validated()
        M, P = self.shape_for(op.n)
        if M * P < op.n:
            raise Unsupported(f"M·P = {M}·{P} = {M * P} is smaller than n = {op.n}; "
                              f"raise M or leave it unset")

    def memory_estimate(self, op: Operator) -> float:
        """Bytes: parameters, gradients and optimizer state (Adam's 2 moments, L-BFGS's
        history of 2·50 vectors, or LM's 6 conjugate-gradient vectors), activations, A, the
        float64 copies; for ``sketch``, :meth:`_sketch_bytes`."""
        M, P = self.shape_for(op.n)
        N = M * P
        cfg = resolve(self._validated(), N, P)
        params = 2 * M * P * P * (7 - 1 / M)
        if cfg["optimizer"] == "sketch":
            return self._sketch_bytes(op, N, P, params, cfg)
        width = N if (cfg["loss"] == "identity" and not cfg["blockwise"]) else \
            (2 * P if cfg["loss"] == "identity" else int(cfg["probes"]))
        activations = 40.0 * N * width + (2.0 * N * N if width == N else 0.0)
        size = self._itemsize(cfg)
        state = {"lbfgs": 100, "lm": 6, "als": 6, "newton": 6}.get(cfg["optimizer"], 2)
        # ALS's dense L, U, W; Newton's L, U, R, X, ΔL, ΔU, the trial and the SVD work
        dense = {"als": 4.0, "newton": 10.0}.get(cfg["optimizer"], 0.0) * N * N * 8
        projected = 6.0 * N * N * 8 if cfg["init"] == "projected" else 0.0
        return ((2 + state) * params * size + activations * size + 3.0 * params * 8
                + self._target_bytes(op, N, cfg["loss"] == "identity", cfg) + projected + dense)

    def _sketch_bytes(self, op: Operator, N: int, P: int, params: float,
                      cfg: dict[str, Any]) -> float:
        """The sketch optimizer's bytes: the weights and their flat gradient, the factors as
        used and a proposal's (SKETCH_PARAM_COPIES copies of the parameter count in all), the
        probe blocks and a fit's level values (SKETCH_PROBE_COLUMNS columns of N per probe),
        the leaf chunk's normal equations, A's near field (3·N·P), the float64 factors the
        watch takes out (~7·N·P each, solve plans alike) and A's sparse form if formed
        (measured peaks: docs/experiments/learned-at-scale.md)."""
        from .optim.sketch import CHUNK

        k = int(cfg["probes"])
        nu = 3 * P
        chunk = 4.0 * CHUNK * nu * (nu + P)
        watch = 4.0 * 7 * N * P
        return 8.0 * (SKETCH_PARAM_COPIES * params + SKETCH_PROBE_COLUMNS * N * k + chunk
                      + 3.0 * N * P + watch) + self._target_bytes(op, N, False, cfg)

    def build_model(self, op: Operator, cfg: dict[str, Any], seed: int) -> GFMMProduct:
        """The untrained GFMM product for ``op`` under ``cfg`` (its start)."""
        import torch

        from .gfmm import GFMMProduct

        M, P = self.shape_for(op.n)
        sign, floor, start = pivot_signs_and_floor(op, M * P, float(cfg["pivot_floor"]))
        return GFMMProduct(M, P, diag=cfg["diag"], init_scale=float(cfg["init_scale"]),
                           identity_diag=cfg["init"] == "identity", n_valid=op.n,
                           pivot_sign=sign, pivot_floor=floor, pivot_start=start,
                           dtype={"float32": torch.float32,
                                  "float64": torch.float64}[cfg["dtype"]],
                           generator=torch.Generator().manual_seed(seed))

    def prepare(self, ctx: RunContext) -> None:
        """The shared preparation (PyTorch, the device), and the structured solve compiled or
        loaded from Numba's cache: the watch solves from the first check on, so otherwise
        the first case of each worker would pay that (0.2–10 s) inside ``setup_seconds``."""
        super().prepare(ctx)
        from lubench_structured.gfmm.substitution import warm_up

        warm_up()

    def factorize(self, op: Operator, ctx: RunContext) -> TrainedGFMMFactorization:
        self.check(op)
        cfg = self.resolved(op.n)
        M, P = self.shape_for(op.n)
        self._check_memory(self.memory_estimate(op), ctx,
                           f"GFMM factors with M={M}, P={P}, their optimizer state and "
                           f"activations")
        seed = self._seed(ctx)
        net = self.build_model(op, cfg, seed)
        perm, start = np.arange(M * P), {}
        if cfg["init"] == "projected":
            perm, op, start = self.project(net, op)
        net.to(self._device(ctx))
        result, info = self._train(net, op, M * P, ctx, cfg, blockwise=bool(cfg["blockwise"]),
                                   edge_groups=net.edge_views(), block_size=P)
        L, U = net.float64_factors()
        fact = TrainedGFMMFactorization(perm, L, U, op.n, net.n_trainable())
        info.update(start)
        fact.history = result.history
        fact.info = {**info, "M": M, "P": P, "N": M * P, "padding": M * P - op.n,
                     "diag": cfg["diag"], "trainable_params": net.n_trainable(),
                     "live_params": net.n_live(),
                     "block_stops": dict(Counter(result.block_stops)),
                     "frozen_fraction": result.frozen_fraction}
        return fact

    @staticmethod
    def project(net: GFMMProduct, op: Operator) -> tuple[np.ndarray, Operator, dict[str, Any]]:
        """Load ``gfmm_compressed``'s factors of ``op`` (P·L·U ≈ A at full rank) into
        ``net``; return the row permutation, the operator to train on (A's rows permuted,
        A[perm] ≈ L·U) and what the start was (``info`` fields ``start_*``)."""
        perm, L, U, cinfo = compress_lu(op.dense(), net.M, net.P)
        net.L.load_arrays(L.enc, L.dec, L.diag, L.off, L.bridge)
        net.U.load_arrays(U.enc, U.dec, U.diag, U.off, U.bridge)
        start = {"start": "gfmm_compressed", "start_pivoting": cinfo["pivoting"],
                 "start_growth": cinfo["growth"]}
        return perm, row_permuted(op, np.asarray(perm[: op.n])), start
