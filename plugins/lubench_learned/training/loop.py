"""The training loop: a :class:`~.trainer.Trainer` stepped under the suite's budget.

:func:`train` runs the blocks in turn, shares the remaining steps and seconds among them,
stops a block at its plateau, step cap, target loss or deadline, reads the losses from the
device every ``read_every`` steps, lets the watch check the factors, and returns a
:class:`TrainResult`; :func:`training_environment` sets the CPU threads and subnormal
flushing it runs under, :func:`warm_up` starts a CUDA device before the timed part.
"""

from __future__ import annotations

import contextlib
import math
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from lubench.api import Budget, Diverged

from .target import Target
from .trainer import LossSpec, LUModel, Schedule, Trainer
from .watch import Watch

__all__ = ["train", "TrainResult", "training_environment", "warm_up", "STOP_REASONS",
           "SMALL_STEP"]

STOP_REASONS = ("target_loss", "max_steps", "max_seconds", "converged", "residual_worse",
                "nonfinite")
# Steps that push at most this many numbers (n × columns) through a graph run on one CPU
# thread: their kernels are too small to share, and a second thread that the OS deschedules
# (a busy machine) stalls every one of them.
SMALL_STEP = 2**18


@dataclass
class TrainResult:
    history: list[dict]
    iterations: int
    final_loss: float
    rel_error: float
    stopped_because: str
    seconds: float
    block_stops: list[str] = field(default_factory=list)
    frozen_fraction: float = 0.0
    watch: dict = field(default_factory=dict)


def warm_up(device: str) -> None:
    """Start ``device`` (CUDA: the context, cuBLAS's batched and plain GEMM, cuSPARSE's CSR
    product, in both precisions), wait for it, and reset its peak-memory statistics."""
    dev = torch.device(device)
    if dev.type != "cuda":
        return
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*[Ss]parse CSR tensor support")
        for dtype in (torch.float32, torch.float64):
            a = torch.ones((2, 8, 8), dtype=dtype, device=dev)
            torch.bmm(a, a)
            b = a[0] @ a[0]
            torch.eye(8, dtype=dtype, device=dev).to_sparse_csr() @ b
            torch.linalg.vector_norm(b)
    torch.cuda.synchronize(dev)
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(dev)


def _read(values: list[Any]) -> list[float]:
    """Losses (0-dim tensors, or floats) as floats: one wait for the device when they are
    tensors of one device and dtype."""
    if values and all(isinstance(v, torch.Tensor) for v in values) and \
            len({(v.device, v.dtype) for v in values}) == 1:
        return [float(v) for v in torch.stack(values).tolist()]
    return [float(v) for v in values]


class _Plateau:
    """The post's early stop: relative improvement over ``interval`` steps below ``tol`` at
    ``patience`` consecutive checks."""

    def __init__(self, interval: int, tol: float, patience: int):
        self.interval, self.tol, self.patience = interval, tol, patience
        self.losses: list[float] = []
        self.count = 0

    def add(self, loss: float) -> bool:
        self.losses.append(loss)
        t = len(self.losses) - 1
        if self.interval <= 0 or (t + 1) % self.interval != 0 or t < self.interval:
            return False
        prev = self.losses[t - self.interval]
        improvement = (prev - loss) / prev if prev > 0 else 0.0
        self.count = self.count + 1 if improvement < self.tol else 0
        return self.count >= self.patience


def train(model: LUModel, target: Target, spec: LossSpec, schedule: Schedule, budget: Budget,
          *, seed: int = 0, progress: Callable[..., None] | None = None, log_every: int = 10,
          eval_every: int = 500, synchronize: Callable[[], None] = lambda: None,
          edge_groups: list | None = None, block_size: int | None = None,
          watch: Watch | None = None, read_every: int | None = None) -> TrainResult:
    """Fit ``model`` (L U) to ``target`` (A) under ``budget``; see the module docstring.

    History rows: ``step``, ``seconds`` (since the start), ``loss`` (of the current block),
    ``block`` (block-wise only), and every ``eval_every`` steps and at the end of each block
    ``rel_error`` and, with a ``watch``, its fields. Raises :class:`~lubench.api.Diverged`
    when the loss is not finite (unless the watch has weights to restore).

    The losses stay on the device and are read every ``read_every`` steps (default: every
    step on the CPU, where reading costs nothing; every ``log_every`` steps elsewhere, where
    a read waits for the device), and at every log row, check and block end. The stopping
    tests (non-finite loss, ``target_loss``, the plateau, the deadline) run when the losses
    are read, on every loss read: the step that reached the target, or the first non-finite
    one, is known exactly, but up to ``read_every`` − 1 further steps may have run. Log rows
    and budget checks wait for the device (``synchronize``) before they read the clock.
    """
    if read_every is None:
        read_every = 1 if target.device == "cpu" else log_every
    with training_environment(spec, target, block_size):
        return _train(model, target, spec, schedule, budget, seed=seed, progress=progress,
                      log_every=log_every, eval_every=eval_every, synchronize=synchronize,
                      edge_groups=edge_groups, block_size=block_size, watch=watch,
                      read_every=max(1, int(read_every)))


@contextlib.contextmanager
def training_environment(spec: LossSpec, target: Target,
                         block_size: int | None = None) -> Iterator[None]:
    """Flush subnormals to zero, and use one CPU thread for small steps, while training.

    Adam's second moments of converged weights underflow to subnormal floats, which the CPU
    computes many times slower. Steps that push at most ``SMALL_STEP`` numbers through a
    graph have kernels too small to share between threads.
    """
    flushing = torch.set_flush_denormal(True)
    threads = torch.get_num_threads()
    if target.device == "cpu" and _step_width(spec, target.N, block_size) * target.N \
            <= SMALL_STEP:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        if flushing:
            torch.set_flush_denormal(False)


def _step_width(spec: LossSpec, N: int, block_size: int | None) -> int:
    """Columns a step pushes through the graphs."""
    if spec.kind == "probes":
        return spec.probes
    return block_size if spec.blockwise and block_size else N


def _train(model: LUModel, target: Target, spec: LossSpec, schedule: Schedule, budget: Budget,
           *, seed: int, progress: Callable[..., None] | None, log_every: int, eval_every: int,
           synchronize: Callable[[], None], edge_groups: list | None,
           block_size: int | None, watch: Watch | None, read_every: int) -> TrainResult:
    tr = Trainer(model, target, spec, schedule, seed=seed, edge_groups=edge_groups,
                 block_size=block_size)
    n_blocks = len(tr.blocks)
    history: list[dict] = []
    block_stops: list[str] = []
    budget_reason: str | None = None
    step = 0
    last_loss = float("nan")
    end_reason: str | None = None  # the watch ended all training
    checked_at = -1
    t0 = time.perf_counter()

    def elapsed() -> float:
        return time.perf_counter() - t0

    if watch is not None:  # the start is a candidate too
        loss0, rel0 = tr.final_loss()
        history.append({"step": 0, "seconds": 0.0, "loss": loss0, "rel_error": rel0,
                        **watch.check(model, 0)[0]})
    for bi, m in enumerate(tr.blocks):
        remaining = n_blocks - bi
        cap, cap_reason = schedule.max_steps_per_block, "block_max_steps"
        if budget.max_steps is not None:
            left = budget.max_steps - step
            if left <= 0:
                budget_reason = "max_steps"
                break
            share = max(1, left // remaining)
            if share < cap:
                cap, cap_reason = share, "max_steps"
        deadline = math.inf
        if budget.max_seconds is not None:
            left_s = budget.max_seconds - elapsed()
            if left_s <= 0:
                budget_reason = "max_seconds"
                break
            deadline = elapsed() + left_s / remaining
        tr.start_block(m)
        if hasattr(tr.opt, "deadline"):  # second-order steps cut their inner loops short
            tr.opt.deadline = t0 + deadline if deadline < math.inf else None
        plateau = _Plateau(schedule.check_interval, schedule.tol, schedule.patience)
        reason = cap_reason
        pending: list[tuple[int, Any, Any]] = []  # (step, loss, rel) not read yet
        for bstep in range(cap):
            if schedule.optimizer == "adam" and bstep == schedule.lr_drop_step:
                tr.set_lr(schedule.lr_late)
            loss_t, rel_t = tr.step()
            step += 1
            pending.append((step, loss_t, rel_t))
            plateau_check = schedule.check_interval > 0 and \
                (bstep + 1) % schedule.check_interval == 0
            # an optimizer that knows it is done (Newton at round-off, optim/newton.py)
            done = bool(getattr(tr.opt, "converged", False))
            if not (step % read_every == 0 or step % log_every == 0 or done or
                    step % eval_every == 0 or step == 1 or bstep == cap - 1 or plateau_check):
                continue
            free_rel = pending[-1][2] is not None  # the last step's exact error, read too
            values = _read([v for _, v, _ in pending] + ([pending[-1][2]] if free_rel else []))
            rel = values.pop() if free_rel else None
            steps = [k for k, _, _ in pending]
            pending = []
            stop: str | None = None
            bad = next((j for j, v in enumerate(values) if not math.isfinite(v)), None)
            if bad is not None:
                history.append({"step": steps[bad], "seconds": elapsed(), "loss": values[bad],
                                **({"block": m} if m is not None else {})})
                if watch is not None and watch.keep == "best" and watch.best_state is not None:
                    end_reason = "nonfinite"
                    break
                where = f" (block {m})" if m is not None else ""
                raise Diverged(steps[bad], history,
                               f"loss is {values[bad]} at step {steps[bad]}{where}")
            for lv in values:
                if stop is None and budget.target_loss is not None and \
                        lv <= budget.target_loss:
                    stop = "target_loss"
                if plateau.add(lv) and stop is None:
                    stop = "plateau"
            if done and stop is None:
                stop = "plateau"
            lv = last_loss = values[-1]
            if stop is None and deadline < math.inf:
                synchronize()
            if stop is None and elapsed() >= deadline:
                stop = "max_seconds"
            last = stop is not None or bstep == cap - 1
            evaluate = step % eval_every == 0 or last
            watched: dict[str, float] = {}
            if evaluate and watch is not None:
                watched, worse = watch.check(model, step)
                checked_at = step
                if worse and stop is None:
                    stop = end_reason = "residual_worse"
                    last = True
            if step % log_every == 0 or last or step == 1:
                synchronize()
                row: dict[str, Any] = {"step": step, "seconds": elapsed(), "loss": lv}
                if m is not None:
                    row["block"] = m
                if evaluate:
                    row["rel_error"] = rel if rel is not None else tr.probe_rel_error()
                    row.update(watched)
                    if progress is not None:
                        progress(step, budget.max_steps, loss=lv,
                                 **({"block": m} if m is not None else {}))
                history.append(row)
            if stop is not None:
                reason = stop
                break
        if end_reason is not None:
            block_stops.append(end_reason)
            break
        block_stops.append(reason)
        if reason in ("max_steps", "max_seconds"):
            budget_reason = reason
        if tr.freezer is not None and m is not None and m < n_blocks - 1:
            tr.freeze_through(m)

    synchronize()
    if watch is not None:
        if checked_at != step and end_reason != "nonfinite":
            watch.check(model, step)
        watch.restore(model)
    seconds = elapsed()
    final_loss, rel_error = tr.final_loss()
    if end_reason is not None:
        stopped = end_reason
    elif budget_reason is not None:
        stopped = budget_reason
    elif block_stops and block_stops[-1] == "target_loss":
        stopped = "target_loss"
    else:
        stopped = "converged"
    frozen = tr.freezer.frozen_numbers() if tr.freezer is not None else 0
    n_total = sum(p.numel() for p in tr.params)
    history.append({"step": step, "seconds": seconds, "loss": last_loss,
                    "rel_error": rel_error, "final": True})
    return TrainResult(history=history, iterations=step, final_loss=final_loss,
                       rel_error=rel_error, stopped_because=stopped, seconds=seconds,
                       block_stops=block_stops, frozen_fraction=frozen / max(n_total, 1),
                       watch=watch.summary() if watch is not None else {})
