"""Contract checks for plugin authors: run them in your own CI, or with ``lubench check-plugin``.

::

    from lubench.testing import check_method, check_operator

    def test_my_lu_keeps_the_contract():
        check_method(MyLU)                       # raises ContractError listing what failed
        check_method(MyLU, pivot_tol=0.0)        # keyword arguments are the class's parameters

    def test_my_operator_keeps_the_contract():
        check_operator(MyGenerator, eps=0.1)

Each rule is a small function ``check_<property>(cls, params)`` that raises
:class:`CheckFailed` (an ``AssertionError``, so pytest shows its message) saying what was
expected and what came, or :class:`CheckSkipped` when it does not apply (the residual of a
learned method). :func:`method_checks` / :func:`operator_checks` return them bound to a class,
one callable per check, for ``pytest.mark.parametrize``.

Methods are checked on three tiny operators built here (n = 16, NumPy and SciPy only), for
which LU without pivoting exists on the first two:

* ``diag_dominant``: nonsymmetric, strictly diagonally dominant by rows, a SciPy sparse CSR
  matrix;
* ``spd``: dense symmetric positive definite, A = Q diag(λ) Qᵀ with λ evenly spaced in [1, 10];
* ``needs_pivoting``: dense nonsymmetric, well conditioned, with a₁₁ = 0 — elimination without
  row exchanges breaks down at step 0, so a method may raise
  :class:`~lubench.api.FactorizationError` there (the runner records ``failed``) but must not
  return a wrong answer silently. Partial pivoting permutes its rows by a 3-cycle (P ≠ Pᵀ), so
  a factorization that applies P where Pᵀ belongs fails the exactness check.

An exact method (family ``classical``) must reach ‖A x̂ − b‖₂/‖b‖₂ ≤ 1e-10 and
‖A − PLU‖_F/‖A‖_F ≤ 1e-10 on every tiny operator it accepts: far above round-off
(≈ 1e-16·κ(A), κ ≤ 30 here) and far below what any approximation reaches by chance.
"""

from __future__ import annotations

import functools
import inspect
import json
import pickle
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp
import yaml

from lubench.api import (
    FAMILIES,
    Budget,
    Factorization,
    FactorizationError,
    InvalidParameter,
    LubenchError,
    Method,
    Operator,
    OperatorGenerator,
    RunContext,
    Unsupported,
)
from lubench.hookspecs import hookimpl
from lubench.params import closest, param_specs, validate_params

__all__ = [
    "CHECK_BUDGET", "CheckFailed", "CheckResult", "CheckSkipped", "ContractError",
    "TINY_KINDS", "TinyOperator", "check_method", "check_operator", "method_checks",
    "operator_checks", "run_checks", "tiny_operator",
    # the checks themselves
    "check_name", "check_params_documented", "check_init_stores_params",
    "check_check_raises_unsupported", "check_factorize_tiny", "check_n_params",
    "check_exact_residual", "check_same_seed", "check_pickle", "check_runner_records",
    "check_build", "check_operator_same_seed", "check_size_validation",
    "check_operator_pickle",
]

TINY_N = 16
TINY_KINDS = ("diag_dominant", "spd", "needs_pivoting")
MUST_FACTORIZE = ("diag_dominant", "spd")  # LU without pivoting exists on these
EXACT_TOL = 1e-10
SEED = 12345
K = 3  # right-hand sides in the (n, k) shape checks
CHECK_BUDGET = Budget(max_steps=100)  # steps only: a time budget would break same-seed checks
_NAME_RE = re.compile(r"[A-Za-z][\w.-]*")


# --------------------------------------------------------------------------------------------
# Outcomes
# --------------------------------------------------------------------------------------------
class CheckFailed(AssertionError):
    """One contract check that does not hold: what was expected, and what came instead."""

    def __init__(self, expected: str, got: str):
        super().__init__(f"expected {expected}; got {got}")
        self.expected = expected
        self.got = got


class CheckSkipped(Exception):  # noqa: N818 - mirrors pytest's Skipped
    """The check does not apply to this class (the reason says why)."""


@dataclass
class CheckResult:
    """The outcome of one check on one class, as ``run_checks`` returns it."""

    target: str  # "method textbook_lu"
    check: str  # "check_pickle"
    status: Literal["pass", "fail", "skip"]
    expected: str = ""
    got: str = ""
    reason: str = ""  # why it was skipped

    @property
    def passed(self) -> bool:
        return self.status != "fail"

    @property
    def message(self) -> str:
        if self.status == "fail":
            return f"{self.check}: expected {self.expected}; got {self.got}"
        if self.status == "skip":
            return f"{self.check}: {self.reason}"
        return self.check

    def line(self) -> str:
        return f"  {self.status.upper():4}  {self.message}"

    def as_dict(self) -> dict:
        return {"target": self.target, "check": self.check, "status": self.status,
                "expected": self.expected, "got": self.got, "reason": self.reason}


class ContractError(AssertionError):
    """Raised by :func:`check_method` / :func:`check_operator`: every failed check, one a line."""

    def __init__(self, target: str, failures: list[CheckResult]):
        lines = "\n".join(f"  {f.message}" for f in failures)
        super().__init__(f"{target} breaks {len(failures)} contract check(s):\n{lines}")
        self.target = target
        self.failures = failures


def _err(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text and text[0] else type(exc).__name__


# --------------------------------------------------------------------------------------------
# Tiny operators
# --------------------------------------------------------------------------------------------
def tiny_operator(kind: str, n: int = TINY_N, seed: int = 0) -> Operator:
    """One of :data:`TINY_KINDS` (see the module docstring), n × n, reproducible from ``seed``."""
    rng = np.random.default_rng([seed, TINY_KINDS.index(kind)])
    coords = np.arange(n, dtype=np.float64)[:, None]
    if kind == "diag_dominant":
        # tridiagonal plus two far bands, random entries in [-1, 1], diagonal 5 + |row sum|
        offsets = [-1, 1, -(n // 2), n // 2]
        A = sp.diags([rng.uniform(-1, 1, n - abs(k)) for k in offsets], offsets,
                     shape=(n, n), format="lil")
        row = np.abs(A.toarray()).sum(axis=1)
        A.setdiag(5.0 + row)
        return Operator(TinyOperator.name, sp.csr_array(A.tocsr()), symmetric=False, spd=False,
                        coords=coords, params={"kind": kind})
    if kind == "spd":
        Q, _ = np.linalg.qr(rng.standard_normal((n, n)))
        A = (Q * np.linspace(1.0, 10.0, n)) @ Q.T
        A = (A + A.T) / 2
        return Operator(TinyOperator.name, A, symmetric=True, spd=True, coords=coords,
                        params={"kind": kind})
    if kind == "needs_pivoting":
        # M diagonally dominant by columns (partial pivoting keeps its rows in place) with
        # M[1, 0] = 0; A = M with rows 0, 1, 2 rotated, so A[0, 0] = M[1, 0] = 0 and the
        # pivoting permutation is a 3-cycle: P ≠ Pᵀ, a factorization that confuses them fails
        M = rng.uniform(-1, 1, (n, n))
        M[1, 0] = 0.0
        np.fill_diagonal(M, 0.0)
        M[np.diag_indices(n)] = 2.0 + np.abs(M).sum(axis=0)
        A = M[[1, 2, 0, *range(3, n)]]
        return Operator(TinyOperator.name, A, symmetric=False, spd=False, coords=coords,
                        params={"kind": kind})
    raise InvalidParameter(f"tiny operator kind must be one of {', '.join(TINY_KINDS)}, "
                           f"got {kind!r}")


class TinyOperator(OperatorGenerator):
    """The tiny operators of lubench.testing (diagonally dominant, SPD, needing pivoting).

    Parameters
    ----------
    kind : str
        ``diag_dominant`` (sparse, nonsymmetric, strictly diagonally dominant by rows),
        ``spd`` (dense, eigenvalues evenly spaced in [1, 10]) or ``needs_pivoting`` (dense,
        a₁₁ = 0: elimination without row exchanges breaks down at step 0).
    """

    name = "lubench_testing_tiny"

    def __init__(self, kind: Literal["diag_dominant", "spd", "needs_pivoting"] = "spd"):
        self.kind = kind

    def check_size(self, n: int) -> None:
        if n < 4:
            raise InvalidParameter(f"{self.name} needs n >= 4, got {n}")

    def build(self, n: int, seed: int) -> Operator:
        op = tiny_operator(self.kind, n, seed)
        op.name = self.name
        return op


# --------------------------------------------------------------------------------------------
# What the method checks share: one factorization per tiny operator, computed once
# --------------------------------------------------------------------------------------------
@dataclass
class _Fits:
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

    def run(self) -> _Fits:
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
                self.check_errors[kind] = f"raised {_err(exc)}"
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


def _fits(cls: type, params: dict | None, cache: _Fits | None) -> _Fits:
    if cache is not None:
        return cache.run()
    return _Fits(cls, dict(params or {})).run()


def _rhs(n: int, k: int | None = None, salt: int = 0) -> np.ndarray:
    rng = np.random.default_rng([SEED, salt])
    return rng.standard_normal(n if k is None else (n, k))


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    scale = max(float(np.linalg.norm(b)), np.finfo(float).tiny)
    return float(np.linalg.norm(np.asarray(a, dtype=np.float64) - b) / scale)


# --------------------------------------------------------------------------------------------
# Checks shared by methods and operator generators
# --------------------------------------------------------------------------------------------
def check_name(cls: type, params: dict | None = None, *, cache: Any = None) -> None:
    """A ``name`` (letters, digits, ``_.-``), a one-line description, and (methods) a family."""
    name = cls.__dict__.get("name", getattr(cls, "name", ""))
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise CheckFailed("a class attribute 'name' of letters, digits, '_', '.' or '-' "
                          "(how suites refer to it)", f"name = {name!r}")
    if not cls.describe():
        raise CheckFailed("a class docstring whose first line describes it", "no docstring")
    if issubclass(cls, Method) and cls.family not in FAMILIES:
        raise CheckFailed(f"family one of {', '.join(FAMILIES)}", f"family = {cls.family!r}")


def check_params_documented(cls: type, params: dict | None = None, *, cache: Any = None) -> None:
    """Every constructor parameter is a keyword with a default, a type annotation, and an
    entry in the numpydoc ``Parameters`` section of the class docstring."""
    sig = inspect.signature(cls.__init__)
    varargs = [p.name for p in list(sig.parameters.values())[1:]
               if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    if varargs and cls.__init__ is not object.__init__:  # no __init__: no parameters
        raise CheckFailed("explicit keyword parameters (they are what a suite may set)",
                          f"*{'/**'.join(varargs)} in __init__")
    problems = []
    for spec in param_specs(cls).values():
        missing = [what for what, bad in (
            ("default", spec.default is inspect.Parameter.empty),
            ("type annotation", spec.annotation is None),
            ("description under 'Parameters' in the class docstring", not spec.doc),
        ) if bad]
        if missing:
            problems.append(f"'{spec.name}' has no {' and no '.join(missing)}")
    if problems:
        raise CheckFailed("every parameter with a default, an annotation and a description",
                          "; ".join(problems))


def _same(a: Any, b: Any) -> bool:
    if a is b:
        return True
    try:
        return bool(np.all(a == b)) and type(a) is type(b)
    except Exception:
        return False


def check_init_stores_params(cls: type, params: dict | None = None, *,
                             cache: Any = None) -> None:
    """The constructor only stores each parameter under its own name (scikit-learn's rule)."""
    params = dict(params or {})
    try:
        obj = cls(**params)
    except Exception as exc:
        raise CheckFailed(f"{cls.__name__}(**{params!r}) to construct", _err(exc)) from None
    specs = param_specs(cls)
    wrong = []
    for name, spec in specs.items():
        want = params.get(name, spec.default)
        if not hasattr(obj, name):
            wrong.append(f"no attribute '{name}'")
        elif not _same(getattr(obj, name), want):
            wrong.append(f"{name} = {getattr(obj, name)!r} (given {want!r})")
    if wrong:
        raise CheckFailed("each parameter stored unchanged under its own name",
                          "; ".join(wrong))
    try:
        got = obj.get_params()
    except Exception as exc:
        raise CheckFailed("get_params() to return the parameters", _err(exc)) from None
    if set(got) != set(specs):
        raise CheckFailed(f"get_params() keys {sorted(specs)}", f"{sorted(got)}")


# --------------------------------------------------------------------------------------------
# Method checks
# --------------------------------------------------------------------------------------------
def check_check_raises_unsupported(cls: type, params: dict | None = None, *,
                                   cache: _Fits | None = None) -> None:
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
                         cache: _Fits | None = None) -> None:
    """``factorize`` returns a Factorization on every accepted tiny operator (a
    FactorizationError is allowed only on ``needs_pivoting``), leaves ``op.matrix`` unchanged,
    and ``solve`` / ``apply`` map shape (n,) to (n,) and (n, k) to (n, k), finite."""
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
                              f"(LU without pivoting exists there)", _err(fact))
        if not isinstance(fact, Factorization):
            raise CheckFailed("factorize() to return a lubench.api.Factorization",
                              f"{type(fact).__name__} on the {kind} operator")
        if fits.modified[kind]:
            raise CheckFailed("factorize() to leave op.matrix unchanged (copy before "
                              "working in place)", f"op.matrix modified on the {kind} operator")
        for fn in ("solve", "apply"):
            for shape in ((n,), (n, K)):
                try:
                    out = np.asarray(getattr(fact, fn)(_rhs(*shape)))
                except Exception as exc:
                    raise CheckFailed(f"{fn}(B) for B of shape {shape}",
                                      f"{_err(exc)} on the {kind} operator") from None
                if out.shape != shape:
                    raise CheckFailed(f"{fn}(B) of shape {shape} for B of shape {shape}",
                                      f"shape {out.shape} on the {kind} operator")
                if not np.all(np.isfinite(out)):
                    raise CheckFailed(f"finite values from {fn}(B)",
                                      f"NaN or Inf on the {kind} operator")


def check_n_params(cls: type, params: dict | None = None, *,
                   cache: _Fits | None = None) -> None:
    """``n_params`` (the numbers the factorization stores) is a positive integer."""
    for kind, fact in _fits(cls, params, cache).factorizations().items():
        n_params = getattr(fact, "n_params", None)
        if isinstance(n_params, (bool, np.bool_)) or not isinstance(n_params, (int, np.integer)) \
                or n_params <= 0:
            raise CheckFailed("n_params a positive integer",
                              f"n_params = {n_params!r} on the {kind} operator")


def check_exact_residual(cls: type, params: dict | None = None, *,
                         cache: _Fits | None = None) -> None:
    """An exact method (family ``classical``): ‖A x̂ − b‖₂/‖b‖₂ ≤ 1e-10 and
    ‖A − apply(I)‖_F/‖A‖_F ≤ 1e-10 on every tiny operator it factorized, and solving k
    right-hand sides at once equals solving them one by one."""
    if cls.family != "classical":
        raise CheckSkipped(f"family is '{cls.family}', not 'classical' (not exact)")
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
                    cache: _Fits | None = None) -> None:
    """Two factorizations with the same ``ctx.seed`` give the same result (n_params, solve,
    apply equal to 1e-12), and ``factorize`` leaves the method's parameters unchanged."""
    fits = _fits(cls, params, cache)
    kind, first = next(iter(fits.factorizations().items()))
    method = fits.method()
    before = repr(method.get_params())
    try:
        second = method.factorize(fits.ops[kind], _ctx())
    except Exception as exc:
        raise CheckFailed("a second factorize() with the same seed to succeed",
                          f"{_err(exc)} on the {kind} operator") from None
    if repr(method.get_params()) != before:
        raise CheckFailed("factorize() to leave the parameters as given (store what you "
                          "learn on the Factorization)", f"{before} became "
                          f"{method.get_params()!r}")
    if getattr(first, "n_params", None) != getattr(second, "n_params", None):
        raise CheckFailed("the same n_params with the same seed",
                          f"{first.n_params!r} then {second.n_params!r}")
    B = _rhs(TINY_N, K, salt=3)
    for fn in ("solve", "apply"):
        a, b = np.asarray(getattr(first, fn)(B)), np.asarray(getattr(second, fn)(B))
        if not _rel(b, a) <= 1e-12:
            raise CheckFailed(f"the same {fn}(B) with the same seed (derive every random "
                              f"number from ctx.seed / ctx.rng())",
                              f"relative difference {_rel(b, a):.3g} on the {kind} operator")


def check_pickle(cls: type, params: dict | None = None, *, cache: _Fits | None = None) -> None:
    """The method and its factorization survive ``pickle`` (worker processes, SLURM), and the
    unpickled factorization solves as the original does."""
    fits = _fits(cls, params, cache)
    method = fits.method()
    try:
        again = pickle.loads(pickle.dumps(method))
    except Exception as exc:
        raise CheckFailed("the method to pickle", _err(exc)) from None
    if type(again) is not type(method) or repr(again.get_params()) != repr(method.get_params()):
        raise CheckFailed(f"an unpickled {type(method).__name__} with the same parameters",
                          f"{again!r}")
    B = _rhs(TINY_N, K, salt=4)
    for kind, fact in fits.factorizations().items():
        try:
            copy = pickle.loads(pickle.dumps(fact))
        except Exception as exc:
            raise CheckFailed("the factorization to pickle",
                              f"{_err(exc)} on the {kind} operator") from None
        try:
            diff = _rel(np.asarray(copy.solve(B)), np.asarray(fact.solve(B)))
        except Exception as exc:
            raise CheckFailed("the unpickled factorization to solve",
                              f"{_err(exc)} on the {kind} operator") from None
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


def check_runner_records(cls: type, params: dict | None = None, *,
                         cache: _Fits | None = None) -> None:
    """Through the worker (``lubench.worker.run_case``) each tiny operator is recorded:
    ``unsupported`` with the reason where ``check`` refuses it, ``ok`` where it factorizes
    (``failed`` with the FactorizationError's message allowed on ``needs_pivoting``), and a
    classical method's graded ``solve_residual`` is ≤ 1e-10."""
    from lubench.plugins import Registry
    from lubench.suite import Case
    from lubench.worker import run_case

    fits = _fits(cls, params, cache)
    if fits.check_errors:
        raise CheckSkipped("check() misbehaves (see check_check_raises_unsupported)")
    reg = Registry()
    info = reg.register(_CheckPlugin(cls), "lubench.testing", origin="lubench.testing")
    if info.status != "ok":
        raise CheckSkipped(f"a plugin cannot add it (see check_name): {info.status}")
    for kind in TINY_KINDS:
        case = Case(suite="check", operator=TinyOperator.name, operator_params={"kind": kind},
                    n=TINY_N, method=cls.name, method_params=dict(params or {}),
                    family=cls.family, suite_seed=0, seed=SEED, operator_seed=0,
                    device="cpu", budget=CHECK_BUDGET.as_dict())
        rec = run_case(case, registry=reg)
        status, error = rec["status"], rec["error"]
        if kind in fits.refused:
            want = ("unsupported", fits.refused[kind])
            if (status, error) != want:
                raise CheckFailed(f"status 'unsupported' with error {want[1]!r} (check() "
                                  f"refuses it)", f"status {status!r}, error {error!r} on the "
                                                  f"{kind} operator")
            continue
        fact = fits.facts.get(kind)
        if status == "failed" and isinstance(fact, FactorizationError) \
                and kind not in MUST_FACTORIZE:
            continue
        if status != "ok":
            raise CheckFailed("status 'ok'", f"status {status!r}, error {error!r} on the "
                                             f"{kind} operator")
        if cls.family == "classical" and not rec["solve_residual"] <= EXACT_TOL:
            raise CheckFailed(f"graded solve_residual ≤ {EXACT_TOL:g}",
                              f"{rec['solve_residual']:.3g} on the {kind} operator")


# --------------------------------------------------------------------------------------------
# Operator generator checks
# --------------------------------------------------------------------------------------------
_SIZES = (16, 64, 36, 32, 25, 27, 100, 8, 9, 4)


def _pick_size(gen: OperatorGenerator) -> int:
    try:
        fixed = gen.sizes()
    except InvalidParameter as exc:
        raise CheckSkipped(f"cannot build with these parameters ({_err(exc)}); give some: "
                           f"check_operator(cls, key=value) or check-plugin "
                           f"'{gen.name}[key=value]'") from None
    if fixed:
        return int(min(fixed))
    for n in _SIZES:
        try:
            gen.check_size(n)
        except (InvalidParameter, ValueError):
            continue
        return n
    raise CheckSkipped(f"check_size() refuses every size tried ({', '.join(map(str, _SIZES))})")


@dataclass
class _Built:
    cls: type
    params: dict
    n: int = 0
    op: Any = None  # the Operator, or the exception build() raised
    skipped: CheckSkipped | None = None  # no size to build at
    _done: bool = False

    def run(self) -> _Built:
        if not self._done:
            self._done = True
            gen = self.cls(**self.params)
            try:
                self.n = _pick_size(gen)
            except CheckSkipped as exc:
                self.skipped = exc
            else:
                try:
                    self.op = gen.build(self.n, SEED)
                except Exception as exc:
                    self.op = exc
        if self.skipped is not None:
            raise self.skipped
        return self


def _built(cls: type, params: dict | None, cache: _Built | None) -> _Built:
    return (cache or _Built(cls, dict(params or {}))).run()


def check_build(cls: type, params: dict | None = None, *, cache: _Built | None = None) -> None:
    """``build(n, seed)`` returns an Operator named after the generator: float64 n × n,
    finite, JSON-serialisable params, coords None or one row per unknown, and ``symmetric``
    and ``spd`` flags that tell the truth."""
    from lubench.suite import canonical_json

    b = _built(cls, params, cache)
    op, n = b.op, b.n
    if isinstance(op, BaseException):
        raise CheckFailed(f"build({n}, seed) to return an Operator", _err(op))
    if not isinstance(op, Operator):
        raise CheckFailed("build() to return a lubench.api.Operator", type(op).__name__)
    if op.name != cls.name:
        raise CheckFailed(f"op.name == {cls.name!r} (the generator's name)", repr(op.name))
    A = op.matrix
    if not (sp.issparse(A) or isinstance(A, np.ndarray)):
        raise CheckFailed("op.matrix a NumPy array or a SciPy sparse matrix", type(A).__name__)
    if A.shape != (n, n) or A.dtype != np.float64:
        raise CheckFailed(f"op.matrix float64 of shape ({n}, {n})", f"{A.dtype} {A.shape}")
    dense = op.dense() if n <= 2048 else None
    values = A.data if sp.issparse(A) else A
    if not np.all(np.isfinite(values)):
        raise CheckFailed("finite entries", "NaN or Inf in op.matrix")
    try:
        json.loads(canonical_json(op.params))
    except Exception as exc:
        raise CheckFailed("op.params JSON-serialisable (it goes into the result row)",
                          _err(exc)) from None
    if op.coords is not None and np.asarray(op.coords).shape[0] != n:
        raise CheckFailed(f"op.coords None or with {n} rows",
                          f"shape {np.asarray(op.coords).shape}")
    if dense is None:
        return
    symmetric = bool(np.array_equal(dense, dense.T))
    if bool(op.symmetric) != symmetric:
        raise CheckFailed(f"symmetric={symmetric} (A {'==' if symmetric else '!='} Aᵀ exactly)",
                          f"symmetric={op.symmetric!r}")
    if op.spd is not None:
        spd = symmetric and _cholesky_ok(dense)
        if bool(op.spd) != spd:
            raise CheckFailed(f"spd={spd} (Cholesky {'succeeds' if spd else 'fails'})",
                              f"spd={op.spd!r}")


def _cholesky_ok(A: np.ndarray) -> bool:
    try:
        np.linalg.cholesky(A)
    except np.linalg.LinAlgError:
        return False
    return True


def check_operator_same_seed(cls: type, params: dict | None = None, *,
                             cache: _Built | None = None) -> None:
    """The same ``seed`` builds the same matrix, entry for entry."""
    b = _built(cls, params, cache)
    if not isinstance(b.op, Operator):
        raise CheckSkipped("build() failed (see check_build)")
    again = cls(**b.params).build(b.n, SEED)
    A1 = b.op.matrix.toarray() if sp.issparse(b.op.matrix) else np.asarray(b.op.matrix)
    A2 = again.matrix.toarray() if sp.issparse(again.matrix) else np.asarray(again.matrix)
    if not np.array_equal(A1, A2):
        raise CheckFailed("the same matrix from the same seed (derive randomness from seed)",
                          f"max |difference| {np.max(np.abs(A1 - A2)):.3g}")


def check_size_validation(cls: type, params: dict | None = None, *, cache: Any = None) -> None:
    """``check_size(0)`` raises InvalidParameter (what a suite's bad size must produce)."""
    gen = cls(**dict(params or {}))
    try:
        gen.check_size(0)
    except InvalidParameter:
        return
    except Exception as exc:
        raise CheckFailed("check_size(0) to raise lubench.api.InvalidParameter", _err(exc)) \
            from None
    raise CheckFailed("check_size(0) to raise lubench.api.InvalidParameter", "no error")


def check_operator_pickle(cls: type, params: dict | None = None, *,
                          cache: _Built | None = None) -> None:
    """The generator and the operator it builds survive ``pickle``."""
    b = _built(cls, params, cache)
    gen = cls(**b.params)
    try:
        again = pickle.loads(pickle.dumps(gen))
    except Exception as exc:
        raise CheckFailed("the generator to pickle", _err(exc)) from None
    if repr(again.get_params()) != repr(gen.get_params()):
        raise CheckFailed("an unpickled generator with the same parameters", repr(again))
    if isinstance(b.op, Operator):
        try:
            pickle.loads(pickle.dumps(b.op))
        except Exception as exc:
            raise CheckFailed("the operator to pickle", _err(exc)) from None


# --------------------------------------------------------------------------------------------
# Running checks
# --------------------------------------------------------------------------------------------
METHOD_CHECKS: tuple[Callable[..., None], ...] = (
    check_name, check_params_documented, check_init_stores_params,
    check_check_raises_unsupported, check_factorize_tiny, check_n_params,
    check_exact_residual, check_same_seed, check_pickle, check_runner_records,
)
OPERATOR_CHECKS: tuple[Callable[..., None], ...] = (
    check_name, check_params_documented, check_init_stores_params, check_size_validation,
    check_build, check_operator_same_seed, check_operator_pickle,
)


def _bound(cls: type, params: dict, checks: Iterable[Callable[..., None]],
           cache: Any) -> list[Callable[[], None]]:
    out = []
    for check in checks:
        fn = functools.partial(check, cls, params, cache=cache)
        fn.__name__ = check.__name__  # type: ignore[attr-defined]
        fn.__doc__ = check.__doc__
        out.append(fn)
    return out


def method_checks(cls: type[Method], **params: Any) -> list[Callable[[], None]]:
    """Every method check bound to ``cls(**params)``, for ``pytest.mark.parametrize``::

        @pytest.mark.parametrize("check", method_checks(MyLU), ids=lambda c: c.__name__)
        def test_contract(check):
            check()
    """
    return _bound(cls, params, METHOD_CHECKS, _Fits(cls, dict(params)))


def operator_checks(cls: type[OperatorGenerator], **params: Any) -> list[Callable[[], None]]:
    """Every operator generator check bound to ``cls(**params)`` (see :func:`method_checks`)."""
    return _bound(cls, params, OPERATOR_CHECKS, _Built(cls, dict(params)))


def _run(target: str, checks: list[Callable[[], None]]) -> list[CheckResult]:
    results = []
    for check in checks:
        name = check.__name__  # type: ignore[attr-defined]
        try:
            check()
        except CheckFailed as exc:
            results.append(CheckResult(target, name, "fail", exc.expected, exc.got))
        except CheckSkipped as exc:
            results.append(CheckResult(target, name, "skip", reason=str(exc)))
        except Exception as exc:  # the check could not even run: that is a failure too
            results.append(CheckResult(target, name, "fail", "the check to run", _err(exc)))
        else:
            results.append(CheckResult(target, name, "pass"))
    return results


def _target(cls: type) -> str:
    kind = "method" if issubclass(cls, Method) else "operator"
    return f"{kind} {getattr(cls, 'name', '') or cls.__name__}"


def _raise_failures(target: str, results: list[CheckResult]) -> list[CheckResult]:
    failures = [r for r in results if r.status == "fail"]
    if failures:
        raise ContractError(target, failures)
    return results


def check_method(cls: type[Method], **params: Any) -> list[CheckResult]:
    """Run every method check on ``cls(**params)``; raise :class:`ContractError` (an
    AssertionError) listing each failed check, else return the results (passed, skipped)."""
    if not (isinstance(cls, type) and issubclass(cls, Method)):
        raise TypeError(f"check_method() takes a lubench.api.Method subclass, got {cls!r}")
    target = _target(cls)
    return _raise_failures(target, _run(target, method_checks(cls, **params)))


def check_operator(cls: type[OperatorGenerator], **params: Any) -> list[CheckResult]:
    """Run every generator check on ``cls(**params)``; raise :class:`ContractError` listing
    each failed check, else return the results."""
    if not (isinstance(cls, type) and issubclass(cls, OperatorGenerator)):
        raise TypeError(f"check_operator() takes a lubench.api.OperatorGenerator subclass, "
                        f"got {cls!r}")
    target = _target(cls)
    return _raise_failures(target, _run(target, operator_checks(cls, **params)))


def _parse_name(text: str) -> tuple[str, dict[str, Any]]:
    """``name`` or ``name[key=value,...]``, values read as YAML scalars (as in a suite)."""
    m = re.fullmatch(r"\s*([^\[\]\s]+)\s*(?:\[(.*)\])?\s*", text)
    if not m:
        raise LubenchError(f"check-plugin: expected NAME or NAME[key=value,...], got {text!r}")
    params: dict[str, Any] = {}
    for part in filter(str.strip, (m.group(2) or "").split(",")):
        if "=" not in part:
            raise LubenchError(f"check-plugin {text!r}: expected key=value inside [...], "
                               f"got {part!r}")
        key, value = part.split("=", 1)
        params[key.strip()] = yaml.safe_load(value.strip())
    return m.group(1), params


def run_checks(registry: Any, names: Iterable[str],
               echo: Callable[[str], Any] = print) -> list[CheckResult]:
    """``lubench check-plugin``: check each named method, operator, or plugin (every class
    it adds), print a line per check, and return the failed checks (empty: all passed).

    A method or operator may carry parameters, ``textbook_lu[pivot_tol=0]``. A plugin that is
    broken, or adds nothing, is one failed check (``check_plugin_loads``). An unknown name, or
    a parameter the class does not take, is a :class:`~lubench.api.LubenchError`.
    """
    # (target, class or None for a plugin that adds nothing, parameters, plugin name)
    targets: list[tuple[str, type | None, dict, str]] = []
    for text in names:
        name, params = _parse_name(text)
        if name in registry.methods or name in registry.operators:
            kind = "method" if name in registry.methods else "operator"
            cls = registry.methods[name] if kind == "method" else registry.operators[name]
            valid = validate_params(cls, params, f"check-plugin {text!r}", Path.cwd())
            shown = f"{name}[{', '.join(f'{k}={v!r}' for k, v in valid.items())}]" \
                if valid else name
            targets.append((f"{kind} {shown}", cls, valid,
                            registry.provider.get((kind, name), "?")))
        elif name in registry.plugins and not params:
            info = registry.plugins[name]
            for op in info.operators:
                targets.append((f"operator {op}", registry.operators[op], {}, name))
            for me in info.methods:
                targets.append((f"method {me}", registry.methods[me], {}, name))
            if not (info.operators or info.methods):
                targets.append((f"plugin {name}", None, {}, name))
        else:
            known = [*registry.methods, *registry.operators, *registry.plugins]
            raise LubenchError(f"check-plugin: '{name}' is no method, operator or plugin"
                               f"{closest(name, known)} (see `lubench plugins`)")
    results: list[CheckResult] = []
    for target, cls, params, plugin in targets:
        info = registry.plugins.get(plugin)
        origin = f" — {info.origin}" if info is not None else ""
        echo(f"{target} (plugin {plugin}{origin})")
        if cls is None:
            status = info.status if info is not None else "missing"
            got = status if status != "ok" else "a plugin that adds nothing"
            res = [CheckResult(target, "check_plugin_loads", "fail",
                               "the plugin to load and add operators or methods", got)]
        elif issubclass(cls, Method):
            res = _run(target, method_checks(cls, **params))
        else:
            res = _run(target, operator_checks(cls, **params))
        for r in res:
            echo(r.line())
        results.extend(res)
    counts = {s: sum(r.status == s for r in results) for s in ("pass", "fail", "skip")}
    echo(f"{counts['pass']} passed, {counts['fail']} failed, {counts['skip']} skipped")
    return [r for r in results if r.status == "fail"]
