"""The one training loop of the learned LU methods: fit L·U to A by gradient descent.

Both learned methods hand this module a model with ``forward(X, transpose=False)`` (L U X, or
Uᵀ Lᵀ X) and ``full_product()`` (L U as a dense tensor); they differ only in how L and U are
parameterized. With A padded to the model's size N by an identity block, the losses are

* ``identity``: ‖LU − A‖²_F, from the full product (the n identity columns at once);
* ``probes``:   (1/k)‖(LU − A)Z‖²_F with Z an N×k standard Gaussian block redrawn every
  step — an unbiased estimate of ‖LU − A‖²_F at O(k·n·P) cost for a GFMM model;
* ``transpose_loss`` adds the same term for UᵀLᵀ − Aᵀ. On the full identity batch it equals
  the first term (‖(LU − A)ᵀ‖_F = ‖LU − A‖_F), so the loss is just doubled, from one product;
  it only changes the fit together with block-wise training;
* ``inverse_weight`` w > 0 adds the inverse-side term (w/k)‖U⁻¹L⁻¹(AW) − W‖²_F on k
  (= ``probes``) Gaussian columns W redrawn every step, U⁻¹L⁻¹ by differentiable block
  substitution through the graphs (the model's ``solve``; GFMM products,
  :mod:`lubench_learned.gfmm.substitution`), O(k·n·P): it sees ‖L⁻¹‖ and ‖U⁻¹‖, which the fit
  ‖LU − A‖ does not. Its part of the least-squares residual is √(w/k)·vec(U⁻¹L⁻¹AW − W).

Block-wise training (models with a block size P and M blocks) fits output block m = 0 … M−1
in turn: block-row m of LU − A, and with ``transpose_loss`` also block-column m. With
identity inputs these come from the P columns of I in block m: the forward graph on them
gives block-column m of LU, the transposed graph block-row m — 2P inputs per step instead of
2n. When block m ends, every edge that influenced block-rows or block-columns 0 … m (found
by a gradient probe) is frozen, and the optimizer is rebuilt.

Optimizer and stopping (the post's choices are the defaults; see :class:`Schedule`):
Adam with lr 1e-2, betas (0.999, 0.999), lr 1e-3 from step 5 000 of a block; a block ends
when its loss improved by less than 0.1 % over 1 000 steps at two checks in a row, or after
50 000 steps. L-BFGS (strong-Wolfe line search, one iteration per step), matrix-free
Levenberg–Marquardt (:class:`~lubench_learned.optim.lm.LevenbergMarquardt`) and alternating
least squares (:mod:`lubench_learned.optim.als`, GFMM products with triangular diagonal blocks,
whole loss only) are the alternatives.

The suite's budget (max steps, max seconds, target loss) always ends training cleanly. With
block-wise training the remaining steps and seconds are shared among the remaining blocks,
so that every block is trained; a block also ends when its loss reaches ``target_loss``.
The seconds are checked between steps, and inside a second-order step too: an optimizer
with a ``deadline`` attribute (Levenberg–Marquardt, projected Newton, ALS) is given the
block's, and cuts its conjugate gradients (after one product) or its backtracking short
there — one step of those at n = 4096 could otherwise run minutes past the budget.
``stopped_because`` is ``max_steps`` or ``max_seconds`` when the budget cut a block short,
else ``target_loss`` when the last block reached it, else ``converged`` (the schedule ended
every block: plateau, its step cap, or an optimizer that reports ``converged`` — projected
Newton at round-off, :mod:`lubench_learned.optim.newton`). A loss that is not finite raises
:class:`lubench.api.Diverged` with the step and the curve.

**The watch** (optional, :class:`~lubench_learned.training.watch.Watch`): every ``eval_every``
steps and at the end, the factors are taken out in float64 and checked where the loss
cannot see: the solve residual
‖A x̂ − b‖_F/‖b‖_F on 4 held-out probes (b = A x for Gaussian x, x̂ = U⁻¹L⁻¹b by the
structured solve), Hager–Higham estimates of ‖L⁻¹‖₁, ‖U⁻¹‖₁ and
``cond_est`` = ‖A‖₁·‖(LU)⁻¹‖₁, and (N ≤ 1024) the growth ‖|L||U|‖_∞/‖A‖_∞. With
``keep="best"`` the weights of the check with the smallest held-out residual are restored at
the end (not those of the smallest loss), a non-finite loss after a finite check restores
them instead of raising, and training stops (``residual_worse``) after ``patience``
consecutive checks whose residual exceeds twice the best.

On the CPU, small steps (n × columns ≤ 2¹⁸, e.g. n = 256 block-wise or n ≤ 4096 with 64
probes) train on one intra-op thread; subnormal floats are flushed to zero while training.

Modules, lowest first:

* :mod:`.target`   A padded to N, dense or sparse, on the training device (:class:`Target`);
* :mod:`.watch`    what the loss does not see, checked on the float64 factors (:class:`Watch`);
* :mod:`.trainer`  the losses, block-wise freezing and the optimizer of one run
  (:class:`Trainer`, :class:`Schedule`, :class:`LossSpec`);
* :mod:`.loop`     :func:`train`: blocks, budget, stopping, history (:class:`TrainResult`).
"""

from __future__ import annotations

from .loop import SMALL_STEP, STOP_REASONS, TrainResult, train, training_environment, warm_up
from .target import Target, torch_dtype
from .trainer import EdgeFreezer, LossSpec, Schedule, Trainer
from .watch import Watch, inv_norm1, solve_lu

__all__ = ["Schedule", "LossSpec", "Target", "EdgeFreezer", "Trainer", "TrainResult", "train",
           "training_environment", "torch_dtype", "STOP_REASONS", "SMALL_STEP", "Watch",
           "solve_lu", "inv_norm1", "warm_up"]
