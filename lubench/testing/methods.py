"""Method checks: factorize the tiny operators once, then one small check per property of the
contract (see :mod:`lubench.testing` for the operators and the tolerances)."""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lubench.api import (
    Budget,
    Factorization,
    FactorizationError,
    Method,
    Operator,
    OperatorGenerator,
    RunContext,
    Unsupported,
    has_apply,
    has_fit,
    is_exact,
)
from lubench.errors import one_line
from lubench.execution.plan import RunPlan
from lubench.execution.worker import run_case
from lubench.hookspecs import hookimpl
from lubench.registry import Registry
from lubench.rundir.records import FAILED, OK, UNSUPPORTED
from lubench.suite.cases import Case
from lubench.testing.results import CheckFailed, CheckSkipped
from lubench.testing.tiny import (
    MUST_FACTORIZE,
    SEED,
    TINY_KINDS,
    TINY_N,
    TinyOperator,
    tiny_operator,
)

EXACT_TOL = 1e-10
K = 3  # right-hand sides in the (n, k) shape checks
CHECK_BUDGET = Budget(max_steps=100)  # steps only: a time budget would break same-seed checks


@dataclass
class Fits:
    """What the method checks share: one factorization per tiny operator, computed once (on
    first use) for ``cls(**params)``."""

    cls: type
    params: dict
    ops: dict[str, Operator] = field(default_factory=dict)
    refused: dict[str, str] = field(default_factory=dict)  # kind -> Unsupported reason
    check_errors: dict[str, str] = field(default_factory=dict)  # kind -> what check() did
    facts: dict[str, Any] = field(default_factory=dict)  # kind -> Factorization or exception
    modified: dict[str, bool] = field(default_factory=dict)  # factorize changed op.matrix
    _done: bool = False

    def method(self) -> Method:
        return self.cls(**self.params)

    def run(self) -> Fits:
        if self._done:
            return self
        self._done = True
        for kind in TINY_KINDS:
            op = tiny_operator(kind)
            self.ops[kind] = op
            try:
                out = self.method().check(op)
            except Unsupported as exc:
                self.refused[kind] = exc.reason
                continue
            except Exception as exc:
                self.check_errors[kind] = f"raised {one_line(exc)}"
                continue
            if out is not None:
                self.check_errors[kind] = f"returned {out!r}"
                continue
            before = op.dense().copy()
            try:
                self.facts[kind] = self.method().factorize(op, _ctx())
            except Exception as exc:
                self.facts[kind] = exc
            self.modified[kind] = not np.array_equal(before, op.dense())
        return self

    def accepted(self) -> list[str]:
        return [k for k in TINY_KINDS if k in self.facts]

    def factorizations(self) -> dict[str, Factorization]:
        """The tiny operators that factorized, or CheckSkipped when none did."""
        self.run()
        good = {k: f for k, f in self.facts.items() if isinstance(f, Factorization)}
        if not good:
            raise CheckSkipped("no tiny operator was factorized (see check_factorize_tiny)")
        return good


def _ctx(seed: int = SEED) -> RunContext:
    return RunContext(device="cpu", dtype="float64", seed=seed, budget=CHECK_BUDGET)


def _fits(cls: type, params: dict | None, cache: Fits | None) -> Fits:
    if cache is not None:
        return cache.run()
    return Fits(cls, dict(params or {})).run()


def _rhs(n: int, k: int | None = None, salt: int = 0) -> np.ndarray:
    rng = np.random.default_rng([SEED, salt])
    return rng.standard_normal(n if k is None else (n, k))


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    scale = max(float(np.linalg.norm(b)), np.finfo(float).tiny)
    return float(np.linalg.norm(np.asarray(a, dtype=np.float64) - b) / scale)


def check_check_raises_unsupported(cls: type, params: dict | None = None, *,
                                   cache: Fits | None = None) -> None:
    """``check(op)`` returns None or raises ``lubench.api.Unsupported(reason)`` with a
    one-line reason, and accepts at least one tiny operator."""
    fits = _fits(cls, params, cache)
    if fits.check_errors:
        kind, what = next(iter(fits.check_errors.items()))
        raise CheckFailed("check() to return None or raise lubench.api.Unsupported(reason)",
                          f"on the {kind} operator it {what}")
    for kind, reason in fits.refused.items():
        if not isinstance(reason, str) or not reason.strip() or "\n" in reason.strip():
            raise CheckFailed("Unsupported with a one-line reason (it becomes the error column)",
                              f"Unsupported({reason!r}) on the {kind} operator")
    if not fits.accepted():
        reasons = "; ".join(f"{k}: {r}" for k, r in fits.refused.items())
        raise CheckFailed(f"at least one of the tiny operators ({', '.join(TINY_KINDS)}) "
                          f"accepted", f"all refused ({reasons})")


def check_factorize_tiny(cls: type, params: dict | None = None, *,
                         cache: Fits | None = None) -> None:
    """``factorize`` returns a Factorization on every accepted tiny operator (a
    FactorizationError is allowed only on ``needs_pivoting``), leaves ``op.matrix`` unchanged,
    and ``solve`` / ``apply`` map shape (n,) to (n,) and (n, k) to (n, k), finite (``apply``
    where the factorization has it: one that gives only M⁻¹ has ``solve`` alone)."""
    fits = _fits(cls, params, cache)
    if not fits.accepted():
        raise CheckSkipped("check() refused every tiny operator")
    n = TINY_N
    for kind in fits.accepted():
        fact = fits.facts[kind]
        if isinstance(fact, FactorizationError) and kind not in MUST_FACTORIZE:
            if not str(fact).strip():
                raise CheckFailed("a FactorizationError with a message (the error column)",
                                  f"an empty {type(fact).__name__} on the {kind} operator")
            continue
        if isinstance(fact, BaseException):
            raise CheckFailed(f"factorize() to succeed on the {kind} operator "
                              f"(LU without pivoting exists there)", one_line(fact))
        if not isinstance(fact, Factorization):
            raise CheckFailed("factorize() to return a lubench.api.Factorization",
                              f"{type(fact).__name__} on the {kind} operator")
        if fits.modified[kind]:
            raise CheckFailed("factorize() to leave op.matrix unchanged (copy before "
                              "working in place)", f"op.matrix modified on the {kind} operator")
        for fn in ("solve", "apply") if has_apply(fact) else ("solve",):
            for shape in ((n,), (n, K)):
                try:
                    out = np.asarray(getattr(fact, fn)(_rhs(*shape)))
                except Exception as exc:
                    raise CheckFailed(f"{fn}(B) for B of shape {shape}",
                                      f"{one_line(exc)} on the {kind} operator") from None
                if out.shape != shape:
                    raise CheckFailed(f"{fn}(B) of shape {shape} for B of shape {shape}",
                                      f"shape {out.shape} on the {kind} operator")
                if not np.all(np.isfinite(out)):
                    raise CheckFailed(f"finite values from {fn}(B)",
                                      f"NaN or Inf on the {kind} operator")


def check_n_params(cls: type, params: dict | None = None, *,
                   cache: Fits | None = None) -> None:
    """``n_params`` (the numbers the factorization stores) is a positive integer."""
    for kind, fact in _fits(cls, params, cache).factorizations().items():
        n_params = getattr(fact, "n_params", None)
        if isinstance(n_params, (bool, np.bool_)) or not isinstance(n_params, (int, np.integer)) \
                or n_params <= 0:
            raise CheckFailed("n_params a positive integer",
                              f"n_params = {n_params!r} on the {kind} operator")


def check_exact_residual(cls: type, params: dict | None = None, *,
                         cache: Fits | None = None) -> None:
    """An exact method (:func:`lubench.api.is_exact`): ‖A x̂ − b‖₂/‖b‖₂ ≤ 1e-10 and
    ‖A − apply(I)‖_F/‖A‖_F ≤ 1e-10 on every tiny operator it factorized, and solving k
    right-hand sides at once equals solving them one by one."""
    if not is_exact(cls):
        if getattr(cls, "exact", None) is None:
            raise CheckSkipped(f"family is '{cls.family}', not 'classical' (not exact)")
        raise CheckSkipped(f"{cls.name} declares exact = False (not exact)")
    n = TINY_N
    fits = _fits(cls, params, cache)
    for kind, fact in fits.factorizations().items():
        op = fits.ops[kind]
        A = op.dense()
        x_true = _rhs(n, salt=1)
        b = A @ x_true
        x = np.asarray(fact.solve(b), dtype=np.float64)
        res = float(np.linalg.norm(A @ x - b) / np.linalg.norm(b))
        if not res <= EXACT_TOL:
            raise CheckFailed(f"‖A x̂ − b‖/‖b‖ ≤ {EXACT_TOL:g} (an exact method)",
                              f"{res:.3g} on the {kind} operator")
        err = _rel(np.asarray(fact.apply(np.eye(n))), A)
        if not err <= EXACT_TOL:
            raise CheckFailed(f"‖A − apply(I)‖_F/‖A‖_F ≤ {EXACT_TOL:g} (an exact method)",
                              f"{err:.3g} on the {kind} operator")
        B = _rhs(n, K, salt=2)
        X = np.asarray(fact.solve(B), dtype=np.float64)
        cols = np.column_stack([np.asarray(fact.solve(B[:, j])) for j in range(K)])
        if not _rel(X, cols) <= EXACT_TOL:
            raise CheckFailed("solve(B) for B (n, k) equal to solving its columns one by one",
                              f"relative difference {_rel(X, cols):.3g} on the {kind} "
                              f"operator")


def check_same_seed(cls: type, params: dict | None = None, *,
                    cache: Fits | None = None) -> None:
    """Two factorizations with the same ``ctx.seed`` give the same result (n_params, solve,
    and apply where there is one, equal to 1e-12), and ``factorize`` leaves the method's
    parameters unchanged."""
    fits = _fits(cls, params, cache)
    kind, first = next(iter(fits.factorizations().items()))
    method = fits.method()
    before = repr(method.get_params())
    try:
        second = method.factorize(fits.ops[kind], _ctx())
    except Exception as exc:
        raise CheckFailed("a second factorize() with the same seed to succeed",
                          f"{one_line(exc)} on the {kind} operator") from None
    if repr(method.get_params()) != before:
        raise CheckFailed("factorize() to leave the parameters as given (store what you "
                          "learn on the Factorization)", f"{before} became "
                          f"{method.get_params()!r}")
    if getattr(first, "n_params", None) != getattr(second, "n_params", None):
        raise CheckFailed("the same n_params with the same seed",
                          f"{first.n_params!r} then {second.n_params!r}")
    B = _rhs(TINY_N, K, salt=3)
    for fn in ("solve", "apply") if has_apply(first) else ("solve",):
        a, b = np.asarray(getattr(first, fn)(B)), np.asarray(getattr(second, fn)(B))
        if not _rel(b, a) <= 1e-12:
            raise CheckFailed(f"the same {fn}(B) with the same seed (derive every random "
                              f"number from ctx.seed / ctx.rng())",
                              f"relative difference {_rel(b, a):.3g} on the {kind} operator")


def check_pickle(cls: type, params: dict | None = None, *, cache: Fits | None = None) -> None:
    """The method and its factorization survive ``pickle`` (worker processes, SLURM), and the
    unpickled factorization solves as the original does."""
    fits = _fits(cls, params, cache)
    method = fits.method()
    try:
        again = pickle.loads(pickle.dumps(method))
    except Exception as exc:
        raise CheckFailed("the method to pickle", one_line(exc)) from None
    if type(again) is not type(method) or repr(again.get_params()) != repr(method.get_params()):
        raise CheckFailed(f"an unpickled {type(method).__name__} with the same parameters",
                          f"{again!r}")
    B = _rhs(TINY_N, K, salt=4)
    for kind, fact in fits.factorizations().items():
        try:
            copy = pickle.loads(pickle.dumps(fact))
        except Exception as exc:
            raise CheckFailed("the factorization to pickle",
                              f"{one_line(exc)} on the {kind} operator") from None
        try:
            diff = _rel(np.asarray(copy.solve(B)), np.asarray(fact.solve(B)))
        except Exception as exc:
            raise CheckFailed("the unpickled factorization to solve",
                              f"{one_line(exc)} on the {kind} operator") from None
        if not diff <= 1e-12:
            raise CheckFailed("the unpickled factorization to solve as the original",
                              f"relative difference {diff:.3g} on the {kind} operator")


class _CheckPlugin:
    """An in-memory plugin: the tiny operators and the method under test."""

    def __init__(self, method: type):
        self.method = method

    @hookimpl
    def lubench_operators(self) -> list[type[OperatorGenerator]]:
        return [TinyOperator]

    @hookimpl
    def lubench_methods(self) -> list[type[Method]]:
        return [self.method]


def _fitted_case(case: Case, plan: RunPlan) -> Case:
    """For a method with fit: the case as the test instance of a family of three tiny
    operators (two for training), its fit run first through the worker (kept in this
    process)."""
    from dataclasses import replace

    from lubench.suite.cases import FIT

    family = dict(instances=3, train=2)
    fit = replace(case, stage=FIT, **family)
    rec = run_case(fit, plan=plan)
    if rec["status"] != OK:
        raise CheckFailed("the fit on two tiny operators to end ok (through the worker)",
                          f"status {rec['status']!r}, error {rec['error']!r}")
    return replace(case, instance=2, fit_id=fit.case_id, **family)


def check_runner_records(cls: type, params: dict | None = None, *,
                         cache: Fits | None = None) -> None:
    """Through the worker (``lubench.execution.worker.run_case``) each tiny operator is recorded:
    ``unsupported`` with the reason where ``check`` refuses it, ``ok`` where it factorizes
    (``failed`` with the FactorizationError's message allowed on ``needs_pivoting``), and a
    classical method's graded ``solve_residual`` is ≤ 1e-10. A method with ``fit`` is run as
    a test instance of a tiny family, after its fit."""
    fits = _fits(cls, params, cache)
    if fits.check_errors:
        raise CheckSkipped("check() misbehaves (see check_check_raises_unsupported)")
    reg = Registry()
    info = reg.register(_CheckPlugin(cls), "lubench.testing", origin="lubench.testing")
    if info.status != "ok":
        raise CheckSkipped(f"a plugin cannot add it (see check_name): {info.status}")
    plan = RunPlan(registry=reg)
    for kind in TINY_KINDS:
        case = Case(suite="check", operator=TinyOperator.name, operator_params={"kind": kind},
                    n=TINY_N, method=cls.name, method_params=dict(params or {}),
                    family=cls.family, suite_seed=0, seed=SEED, operator_seed=0,
                    device="cpu", budget=CHECK_BUDGET.as_dict())
        if has_fit(cls) and kind not in fits.refused:
            case = _fitted_case(case, plan)
        rec = run_case(case, plan=plan)
        status, error = rec["status"], rec["error"]
        if kind in fits.refused:
            want = (UNSUPPORTED, fits.refused[kind])
            if (status, error) != want:
                raise CheckFailed(f"status 'unsupported' with error {want[1]!r} (check() "
                                  f"refuses it)", f"status {status!r}, error {error!r} on the "
                                                  f"{kind} operator")
            continue
        fact = fits.facts.get(kind)
        if status == FAILED and isinstance(fact, FactorizationError) \
                and kind not in MUST_FACTORIZE:
            continue
        if status != OK:
            raise CheckFailed("status 'ok'", f"status {status!r}, error {error!r} on the "
                                             f"{kind} operator")
        if is_exact(cls) and not rec["solve_residual"] <= EXACT_TOL:
            raise CheckFailed(f"graded solve_residual ≤ {EXACT_TOL:g}",
                              f"{rec['solve_residual']:.3g} on the {kind} operator")


def check_fit(cls: type, params: dict | None = None, *, cache: Fits | None = None) -> None:
    """A method that trains across instances (:func:`lubench.api.has_fit`): ``fit`` on two
    tiny operators of a kind it accepts leaves the parameters as given, the fitted method
    pickles, and the copy factorizes a third instance as the original does (solve equal to
    1e-12). Skipped for a method without ``fit``."""
    if not has_fit(cls):
        raise CheckSkipped(f"{cls.name} has no fit (it does not train across instances)")
    fits = _fits(cls, params, cache)
    kinds = [k for k, f in fits.factorizations().items()]
    kind = kinds[0]
    train = [tiny_operator(kind, seed=s) for s in (1, 2)]
    method = fits.method()
    before = repr(method.get_params())
    try:
        method.fit(train, _ctx())
    except Exception as exc:
        raise CheckFailed(f"fit() on two {kind} operators to succeed", one_line(exc)) from None
    if repr(method.get_params()) != before:
        raise CheckFailed("fit() to leave the parameters as given (store what it learns in "
                          "attributes ending in '_')", f"{before} became "
                                                       f"{method.get_params()!r}")
    try:
        copy = pickle.loads(pickle.dumps(method))
    except Exception as exc:
        raise CheckFailed("the fitted method to pickle (the run directory keeps it)",
                          one_line(exc)) from None
    op = tiny_operator(kind, seed=3)
    B = _rhs(TINY_N, K, salt=5)
    try:
        a = np.asarray(method.factorize(op, _ctx()).solve(B))
        b = np.asarray(copy.factorize(op, _ctx()).solve(B))
    except Exception as exc:
        raise CheckFailed("the fitted method and its copy to factorize a new instance",
                          one_line(exc)) from None
    if a.shape != B.shape or not _rel(b, a) <= 1e-12:
        raise CheckFailed("the unpickled fitted method to factorize as the original",
                          f"relative difference {_rel(b, a):.3g} on the {kind} operator")
