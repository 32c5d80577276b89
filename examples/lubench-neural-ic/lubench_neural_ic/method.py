"""``neural_ic``: the method — ``fit`` across a family's training instances, ``factorize``
on any instance. Imports PyTorch only inside its methods."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Literal

import numpy as np
import scipy.sparse as sp

from lubench.api import InvalidParameter, Method, Operator, RunContext, Unsupported

from .factor import LearnedCholesky

__all__ = ["NeuralIC", "CACHE_EDGES"]

CACHE_EDGES = 30_000_000  # training graphs are kept in memory up to this many edges in all


class NeuralIC(Method):
    """Learned incomplete Cholesky: a message-passing network predicts L on A's lower pattern.

    The network (``lubench_neural_ic.model``) reads A's graph — node per unknown, edge per
    off-diagonal entry of the unit-diagonal Â = S A S, S = diag(a_ii^(−1/2)) — and predicts
    L̂ on the pattern of tril(Â) with L̂_ii = softplus(·) > 0, so L = S⁻¹L̂ has a positive
    diagonal and M = L Lᵀ is SPD for any weights. Untrained it is the symmetric Gauss–Seidel
    preconditioner. ``fit`` trains it once across a family's training instances with Adam on
    ``loss`` (``probes`` Gaussian columns Z redrawn every step, one instance per step,
    ``epochs`` passes in a seeded order, within the fit's budget): by default the distance
    of the preconditioned operator from I, ‖L̂⁻¹ÂL̂⁻ᵀZ − Z‖²_F/‖Z‖²_F, which ranks
    preconditioners as CG does; NeuralIF's ‖(L̂L̂ᵀ − Â)Z‖²_F/‖ÂZ‖²_F does not (the model's
    docstring gives the measurements). ``factorize``
    runs the trained network once on an unseen A (O(nnz(A)·hidden²)) and stores L: nnz(tril
    A) numbers, solved by two sparse triangular substitutions like IC(0).

    Parameters
    ----------
    hidden : int
        Channels per node and edge, ≥ 1.
    layers : int
        Message-passing rounds, ≥ 1.
    probes : int
        Gaussian probe columns per training step, ≥ 1.
    lr : float
        Adam's learning rate, > 0.
    epochs : int
        Passes over the training instances, ≥ 1 (the fit's budget may stop it earlier).
    loss : str
        ``preconditioned`` (‖L̂⁻¹ÂL̂⁻ᵀ − I‖ on probes) or ``frobenius`` (NeuralIF's
        ‖L̂L̂ᵀ − Â‖ on probes).
    """

    name = "neural_ic"
    family = "learned"
    exact = False

    def __init__(self, hidden: int = 16, layers: int = 3, probes: int = 8, lr: float = 1e-3,
                 epochs: int = 10,
                 loss: Literal["preconditioned", "frobenius"] = "preconditioned"):
        self.hidden = hidden
        self.layers = layers
        self.probes = probes
        self.lr = lr
        self.epochs = epochs
        self.loss = loss

    @classmethod
    def check_params(cls, params: dict) -> None:
        for key in ("hidden", "layers", "probes", "epochs"):
            v = params.get(key, 1)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise InvalidParameter(f"neural_ic: {key} must be an integer >= 1, got {v!r}")
        lr = params.get("lr", 1e-3)
        if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
            raise InvalidParameter(f"neural_ic: lr must be a positive number, got {lr!r}")
        if params.get("loss", "preconditioned") not in ("preconditioned", "frobenius"):
            raise InvalidParameter(f"neural_ic: loss must be 'preconditioned' or 'frobenius', "
                                   f"got {params.get('loss')!r}")

    def check(self, op: Operator) -> None:
        if not op.symmetric:
            raise Unsupported("neural_ic needs a symmetric operator (it learns L with A ≈ LLᵀ)")
        if np.any(sp.csr_array(op.matrix).diagonal() <= 0):
            raise Unsupported("neural_ic needs a positive diagonal")

    def prepare(self, ctx: RunContext) -> None:
        import torch  # noqa: F401 - the imports, outside the timed calls
        import torch_geometric.nn  # noqa: F401

        fact = LearnedCholesky(sp.csr_array(np.eye(2)))
        for B in (np.ones(2), np.ones((2, 2))):  # compile the solves, one and many columns
            fact.solve(B)

    # ----------------------------------------------------------------------------------------
    def _network(self, seed: int):
        import torch

        from .model import NeuralICNet

        net = NeuralICNet(int(self.hidden), int(self.layers),
                          torch.Generator().manual_seed(int(seed) % 2**63))
        weights = getattr(self, "weights_", None)
        if weights is not None:
            net.load_state_dict({k: torch.as_tensor(v) for k, v in weights.items()})
        return net

    def fit(self, train: Sequence[Operator], ctx: RunContext) -> NeuralIC:
        """Train the network across ``train`` (see the class docstring); what it learned is
        kept in ``weights_`` (the state dict as NumPy arrays), ``history_`` (a row per step:
        step, epoch, seconds, loss) and ``fit_info_``. Stops after ``epochs`` passes, or
        at the budget's ``max_steps`` / ``max_seconds`` / ``target_loss`` (a mean over the
        last pass)."""
        import torch

        from .model import LOSSES, graph_of

        self.check_params(self.get_params())
        if len(train) == 0:
            raise ValueError("neural_ic.fit needs at least one training operator")
        device = ctx.device if ctx.device.startswith("cuda") else "cpu"
        net = self._network(ctx.seed).to(device)
        loss_of = LOSSES[self.loss]
        opt = torch.optim.Adam(net.parameters(), lr=float(self.lr))
        gen = torch.Generator(device=device).manual_seed(int(ctx.seed) % 2**63 + 1)
        rng = np.random.default_rng([ctx.seed, 2])
        budget = ctx.budget
        cache: dict[int, object] = {}
        edges = 0
        history: list[dict] = []
        step, stopped, t0 = 0, "epochs", time.perf_counter()
        for epoch in range(int(self.epochs)):
            losses = []
            for idx in rng.permutation(len(train)):
                g = cache.get(int(idx))
                if g is None:
                    op = train[int(idx)]
                    self.check(op)
                    g = graph_of(op.matrix).to(device)
                    if edges + 2 * g.rows.numel() <= CACHE_EDGES:
                        cache[int(idx)] = g
                        edges += 2 * g.rows.numel()
                Z = torch.randn(g.n, int(self.probes), generator=gen, device=device)
                diag, off = net(g)
                loss = loss_of(g, diag, off, Z)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                step += 1
                value = float(loss.detach())
                if not math.isfinite(value):
                    from lubench.api import Diverged

                    raise Diverged(step, history)
                losses.append(value)
                seconds = time.perf_counter() - t0
                history.append({"step": step, "epoch": epoch, "seconds": seconds,
                                "loss": value})
                ctx.progress(step, int(self.epochs) * len(train), loss=value)
                if budget.max_steps is not None and step >= budget.max_steps:
                    stopped = "max_steps"
                elif budget.max_seconds is not None and seconds >= budget.max_seconds:
                    stopped = "max_seconds"
                if stopped != "epochs":
                    break
            mean = float(np.mean(losses))
            if stopped == "epochs" and budget.target_loss is not None \
                    and mean <= budget.target_loss:
                stopped = "target_loss"
            if stopped != "epochs":
                break
        self.weights_ = {k: v.detach().cpu().numpy() for k, v in net.state_dict().items()}
        self.history_ = history
        self.fit_info_ = {"steps": step, "epochs_run": epoch + 1, "instances": len(train),
                          "final_loss": mean, "first_loss": history[0]["loss"],
                          "parameters": int(sum(p.numel() for p in net.parameters())),
                          "stopped_because": stopped}
        return self

    def factorize(self, op: Operator, ctx: RunContext) -> LearnedCholesky:
        """L = S⁻¹L̂ from one forward pass of the (trained, else initial) network on A."""
        import torch

        from .model import graph_of

        self.check(op)
        net = self._network(ctx.seed)
        g = graph_of(op.matrix)
        with torch.no_grad():
            diag, off = net(g)
        values = torch.cat([off, diag])[g.csr_order].double().numpy()
        rows = np.repeat(np.arange(g.n), np.diff(g.indptr))
        L = sp.csr_array((values / g.scale[rows], g.indices, g.indptr), shape=(g.n, g.n))
        fact = LearnedCholesky(L)  # L = S⁻¹L̂: row i of L̂ divided by s_i
        fact.info.update({"trained": getattr(self, "weights_", None) is not None})
        return fact
