"""What runs inside a worker for one case: build the operator, factorize, grade, report —
or, for a fit (``case.stage`` ``fit``), train the method across its family's training
instances and keep it (:mod:`lubench.rundir.fits`).

``run_case`` never raises for a problem of the case itself: every outcome becomes a record
(a dict holding one result row, plus the training history) with a ``status``:

* ``ok``          factorized and graded (a fit: trained and kept);
* ``unsupported`` the method's ``check`` or ``factorize`` raised :class:`~lubench.api.Unsupported`;
* ``diverged``    training reached NaN/Inf (:class:`~lubench.api.Diverged`);
* ``failed``      anything else, with a one-line reason (the traceback is kept in the record's
  ``traceback`` field for ``--debug``).

The runner adds ``timeout`` and killed-worker outcomes, which a worker cannot report itself.
"""

from __future__ import annotations

import os
import resource
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from lubench.api import (
    Budget,
    Diverged,
    Factorization,
    FactorizationError,
    LubenchError,
    Operator,
    RunContext,
    Unsupported,
    has_fit,
)
from lubench.errors import one_line
from lubench.execution.devices import auto_device
from lubench.execution.limits import format_bytes
from lubench.execution.plan import RunPlan
from lubench.metrics.grading import grade
from lubench.rundir.records import (
    DIVERGED,
    FAILED,
    OK,
    UNSUPPORTED,
    base_record,
    json_text,
)
from lubench.suite.cases import FIT, Case
from lubench.suite.limits import effective_form_limit, effective_memory_limit

__all__ = ["run_case", "resolve_device", "current_rss", "operator_for"]


def resolve_device(device: str, family: str = "learned") -> str:
    """``auto`` → ``cuda`` when PyTorch sees a GPU, else ``cpu`` (:func:`lubench.execution.devices.
    auto_device`: asked in a child process, so that this one may still fork). Classical
    methods run on the CPU (SciPy) whatever is asked. ``run_cases`` resolves ``auto`` once
    before any case; this covers a case run on its own."""
    if family == "classical":
        return "cpu"
    if device != "auto":
        return device
    return auto_device()


def current_rss() -> int:
    """This process's resident memory now, bytes."""
    try:
        import psutil

        return int(psutil.Process().memory_info().rss)
    except Exception:
        return 0


def _peak_memory(device: str, baseline: int) -> int:
    """Peak resident memory the case added: peak RSS (``ru_maxrss``) minus the RSS when the
    case started. A forked worker starts with its parent's pages resident; they are not the
    case's. (In the in-process executor the peak is the whole process's: an upper bound.)"""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    if sys.platform == "darwin":
        peak //= 1024
    peak = max(0, peak - baseline)
    if device.startswith("cuda") and "torch" in sys.modules:
        import torch

        peak += int(torch.cuda.max_memory_allocated())
    return int(peak)


def _check_operator(op: object, case: Case) -> Operator:
    if not isinstance(op, Operator):
        raise FactorizationError(f"operator '{case.operator}' build() returned "
                                 f"{type(op).__name__}, expected lubench.api.Operator")
    shape = tuple(op.matrix.shape) if op.formed else (op.n, op.n)
    if shape != (case.n, case.n):
        raise FactorizationError(f"operator '{case.operator}' built shape {shape}, "
                                 f"expected ({case.n}, {case.n})")
    return op


def operator_for(method: Any, op: Operator, form_limit: int | None) -> Operator:
    """The operator as ``method`` needs it (``Method.needs``), or :class:`Unsupported`.

    ``matrix``: a formed operator as it is; one that is not formed is formed when its dense
    A (8·n² bytes) fits ``form_limit`` (None: no limit), else the case is unsupported.
    ``entries``: the operator, if it has them. ``action``: the operator."""
    needs = getattr(method, "needs", "matrix")
    name = getattr(method, "name", type(method).__name__)
    if needs == "action" or op.formed:
        return op
    if needs == "entries":
        if not op.has_entries:
            raise Unsupported(f"{name} needs the entries of A; operator '{op.name}' gives "
                              "only its action")
        return op
    if form_limit is not None and op.dense_bytes > form_limit:
        raise Unsupported(f"{name} needs the formed matrix; operator '{op.name}' at "
                          f"n = {op.n} is not formed (dense A: {format_bytes(op.dense_bytes)} > "
                          f"form_limit {format_bytes(form_limit)})")
    return op.form()


def run_case(case: Case, repeat: int = 0, *, plan: RunPlan | None = None,
             progress: Callable[..., None] | None = None) -> dict:
    """Run one case (one repeat) under ``plan`` and return its record. Never raises for the
    case's faults.

    The plan gives the run id, the plugins (:meth:`RunPlan.plugins`: an in-process caller
    such as ``lubench.testing`` passes ``RunPlan(registry=...)`` with classes no plugin spec
    names) and grading's cache; without one, the installed plugins and no cache.
    """
    plan = plan or RunPlan()
    started = time.time()
    baseline = current_rss()
    device = ""
    rec = base_record(case, repeat, plan.run_id)
    if case.fit_id:
        rec["fit_id"] = case.fit_id
    history: list[dict] = []
    info: dict = {}
    try:
        registry = plan.plugins()
        gen = registry.operator(case.operator)(**case.operator_params)
        device = resolve_device(case.device, case.family)
        rec["device"] = device
        memory_limit = effective_memory_limit(case.memory_limit)
        ctx = RunContext(device=device, seed=case.seed, budget=Budget(**case.budget),
                         memory_limit=memory_limit,
                         **({"progress": progress} if progress else {}))
        if case.stage == FIT:
            history, info = _fit(case, gen, registry.method(case.method)(**case.method_params),
                                 ctx, plan, rec)
        else:
            history, info = _factorize_and_grade(case, gen, ctx, plan, rec)
        rec["status"] = OK
    except Unsupported as exc:
        rec["status"], rec["error"] = UNSUPPORTED, exc.reason
    except Diverged as exc:
        rec["status"], rec["error"] = DIVERGED, str(exc)
        rec["iterations"] = exc.step
        history = list(exc.history)
    except MemoryError:
        rec["status"], rec["error"] = FAILED, "out of memory"
    except FactorizationError as exc:
        rec["status"], rec["error"] = FAILED, str(exc).splitlines()[0] if str(exc) else \
            type(exc).__name__
    except Exception as exc:  # a plugin that raises must not take the run down
        rec["status"], rec["error"] = FAILED, one_line(exc)
        rec["traceback"] = traceback.format_exc()
    except SystemExit as exc:  # nor one that calls sys.exit (the inline executor runs here)
        rec["status"], rec["error"] = FAILED, f"the plugin called sys.exit({exc.code!r})"
        rec["traceback"] = traceback.format_exc()
    rec["peak_memory_bytes"] = _peak_memory(device, baseline)
    rec["info"] = json_text(_plain(info))
    rec["history"] = _plain(history)
    rec["threads"] = _threads()
    rec["pid"] = os.getpid()
    rec["started_at"] = started
    rec["wall_seconds"] = time.time() - started
    return rec


def _build(gen: Any, case: Case, seed: int) -> Operator:
    return _check_operator(gen.build(case.n, seed), case)


def _factorize_and_grade(case: Case, gen: Any, ctx: RunContext, plan: RunPlan,
                         rec: dict) -> tuple[list[dict], dict]:
    """A case: the method (fitted, for a test case of a fit), factorize, grade."""
    op = _build(gen, case, case.operator_seed)
    train_seconds, share = 0.0, 0.0
    if case.fit_id:
        kept = plan.fits().load(case.fit_id)
        method, train_seconds = kept["method"], float(kept["train_seconds"])
        share = train_seconds / max(case.test_instances, 1)
    else:
        method = plan.plugins().method(case.method)(**case.method_params)
    built = op
    op = operator_for(method, built, effective_form_limit(case.form_limit, ctx.memory_limit))
    method.check(op)
    if has_fit(method) and not case.fit_id:
        raise Unsupported(f"{case.method} trains across instances (fit) and operator "
                          f"'{case.operator}' has no training split (give its entry "
                          f"'instances' and 'train')")
    method.prepare(ctx)
    ctx.synchronize()
    t0 = time.perf_counter()
    fact = method.factorize(op, ctx)
    ctx.synchronize()
    setup = time.perf_counter() - t0
    if not isinstance(fact, Factorization):
        raise FactorizationError(f"method '{case.method}' factorize() returned "
                                 f"{type(fact).__name__}, expected a "
                                 f"lubench.api.Factorization")
    history = list(getattr(fact, "history", []) or [])
    info = dict(getattr(fact, "info", {}) or {})
    t0 = time.perf_counter()
    # graded against the operator as built, whatever form the method got: every method on
    # one operator sees the same products (and shares its plain GMRES and plain CG)
    rec.update(grade(built, fact, seed=case.operator_seed, exact_limit=case.exact_limit,
                     synchronize=ctx.synchronize, cache=plan.grading_cache(),
                     grade_limit=case.grade_limit, cg_tolerances=case.cg_tolerances,
                     cg_maxiter=case.cg_maxiter))
    rec["grade_seconds"] = time.perf_counter() - t0
    rec["setup_seconds"] = setup
    rec["train_seconds"], rec["train_share_seconds"] = train_seconds, share
    rec["iterations"] = info.get("iterations")
    rec["final_loss"] = info.get("final_loss")
    return history, info


class _Instances(Sequence):
    """A family's training instances, built when read (a fit's ``train``): instance i of
    ``seeds`` each time it is indexed, nothing kept — the method keeps what it needs."""

    def __init__(self, gen: Any, case: Case, method: Any, memory_limit: int | None):
        self.gen, self.case, self.method = gen, case, method
        self.seeds = case.training_seeds
        self.limit = effective_form_limit(case.form_limit, memory_limit)

    def __len__(self) -> int:
        return len(self.seeds)

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        if not -len(self) <= i < len(self):
            raise IndexError(f"training instance {i} of {len(self)}")
        op = _build(self.gen, self.case, self.seeds[i])
        return operator_for(self.method, op, self.limit)


def _fit(case: Case, gen: Any, method: Any, ctx: RunContext, plan: RunPlan,
         rec: dict) -> tuple[list[dict], dict]:
    """A fit: ``method.fit`` on the family's training instances, timed (``train_seconds``),
    then kept in the run directory before the record is written (so an ``ok`` fit record
    always has its method)."""
    if not has_fit(method):
        raise FactorizationError(f"method '{case.method}' has no fit(train, ctx)")
    train = _Instances(gen, case, method, ctx.memory_limit)
    method.prepare(ctx)
    ctx.synchronize()
    t0 = time.perf_counter()
    method.fit(train, ctx)
    ctx.synchronize()
    seconds = time.perf_counter() - t0
    try:
        plan.fits().save(case.case_id, method, seconds)
    except LubenchError:
        raise  # the disk: its one line names the path
    except Exception as exc:  # the fitted method does not pickle
        raise FactorizationError(f"the fitted method cannot be kept: {one_line(exc)} (what "
                                 f"fit() learns must pickle)") from None
    history = list(getattr(method, "history_", []) or [])
    info = dict(getattr(method, "fit_info_", {}) or {})
    rec["train_seconds"] = seconds
    rec["train_share_seconds"] = seconds / max(case.test_instances, 1)
    rec["train_instances"] = case.train
    rec["iterations"] = info.get("steps", info.get("iterations", len(history) or None))
    rec["final_loss"] = info.get("final_loss")
    return history, info


def _threads() -> int | None:
    try:
        from threadpoolctl import threadpool_info

        nums = [p.get("num_threads") for p in threadpool_info() if p.get("num_threads")]
        return int(max(nums)) if nums else None
    except Exception:
        return None


def _plain(value: Any) -> Any:
    """NumPy scalars and arrays to plain Python, for JSON."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value
