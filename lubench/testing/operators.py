"""Operator generator checks: build a size the generator accepts, twice, and check what comes
— the matrix where it is formed, the action, entries and diagonal of every operator, and that
an operator that is not formed stays so at a size where A would not fit."""

from __future__ import annotations

import json
import pickle
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from lubench.api import (
    InvalidParameter,
    MatrixFreeOperator,
    Operator,
    OperatorGenerator,
)
from lubench.errors import one_line
from lubench.rundir.records import canonical_json
from lubench.testing.results import CheckFailed, CheckSkipped
from lubench.testing.tiny import SEED

_SIZES = (16, 64, 36, 32, 25, 27, 100, 8, 9, 4)


def _pick_size(gen: OperatorGenerator) -> int:
    try:
        fixed = gen.sizes()
    except InvalidParameter as exc:
        raise CheckSkipped(f"cannot build with these parameters ({one_line(exc)}); give some: "
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
class Built:
    """What the operator checks share: one operator built once (on first use) by
    ``cls(**params)`` at a size it accepts."""

    cls: type
    params: dict
    n: int = 0
    op: Any = None  # the Operator, or the exception build() raised
    skipped: CheckSkipped | None = None  # no size to build at
    _done: bool = False

    def run(self) -> Built:
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


def _built(cls: type, params: dict | None, cache: Built | None) -> Built:
    return (cache or Built(cls, dict(params or {}))).run()


def check_build(cls: type, params: dict | None = None, *, cache: Built | None = None) -> None:
    """``build(n, seed)`` returns an Operator named after the generator: n × n — float64
    ``matrix`` (NumPy or SciPy sparse) when formed, ``matrix`` None for a
    :class:`~lubench.api.MatrixFreeOperator` — finite, JSON-serialisable params, coords None
    or one row per unknown, and ``symmetric`` and ``spd`` flags that tell the truth."""
    b = _built(cls, params, cache)
    op, n = b.op, b.n
    if isinstance(op, BaseException):
        raise CheckFailed(f"build({n}, seed) to return an Operator", one_line(op))
    if not isinstance(op, Operator):
        raise CheckFailed("build() to return a lubench.api.Operator", type(op).__name__)
    if op.name != cls.name:
        raise CheckFailed(f"op.name == {cls.name!r} (the generator's name)", repr(op.name))
    A = op.matrix
    if op.formed:
        if not (sp.issparse(A) or isinstance(A, np.ndarray)):
            raise CheckFailed("op.matrix a NumPy array, a SciPy sparse matrix, or None (a "
                              "MatrixFreeOperator)", type(A).__name__)
        if A.shape != (n, n) or A.dtype != np.float64:
            raise CheckFailed(f"op.matrix float64 of shape ({n}, {n})", f"{A.dtype} {A.shape}")
        values = A.data if sp.issparse(A) else A
        if not np.all(np.isfinite(values)):
            raise CheckFailed("finite entries", "NaN or Inf in op.matrix")
    elif not isinstance(op, MatrixFreeOperator):
        raise CheckFailed("op.matrix set, or a lubench.api.MatrixFreeOperator",
                          f"{type(op).__name__} with matrix None")
    elif op.n != n:
        raise CheckFailed(f"op.n == {n}", f"op.n = {op.n}")
    dense = op.dense() if n <= 2048 else None
    if dense is not None and not op.formed:
        if dense.shape != (n, n) or dense.dtype != np.float64:
            raise CheckFailed(f"op.dense() float64 of shape ({n}, {n})",
                              f"{dense.dtype} {dense.shape}")
        if not np.all(np.isfinite(dense)):
            raise CheckFailed("finite entries", "NaN or Inf in A formed from the operator")
    try:
        json.loads(canonical_json(op.params))
    except Exception as exc:
        raise CheckFailed("op.params JSON-serialisable (it goes into the result row)",
                          one_line(exc)) from None
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


ACTION_RTOL = 1e-12  # of ‖|A|·|X|‖_F: round-off of another summation order, not a bug


def _mismatch(got: np.ndarray, want: np.ndarray, scale: float) -> float:
    return float(np.linalg.norm(got - want) / scale) if scale > 0 else \
        float(np.linalg.norm(got - want))


def check_action(cls: type, params: dict | None = None, *, cache: Built | None = None) -> None:
    """The operator's forms agree: ``matmat`` = A·X and ``rmatmat`` = Aᵀ·X (shapes (n,) → (n,),
    (n, k) → (n, k); ‖error‖_F ≤ 1e-12·‖|A|·|X|‖_F), ``diagonal`` = diag(A), ``entries`` on
    unsorted, repeated indices = the block of A, ``form()`` = A; the ``symmetric`` flag holds
    for the action (A X = Aᵀ X). A is the operator formed — from its ``entries`` where it has
    them, so that the action is checked against them."""
    b = _built(cls, params, cache)
    op, n = b.op, b.n
    if not isinstance(op, Operator):
        raise CheckSkipped("build() failed (see check_build)")
    if n > 2048:
        raise CheckSkipped(f"the smallest size this generator builds is n = {n}")
    A = op.dense()
    rng = np.random.default_rng(SEED)
    X = rng.standard_normal((n, 3))
    for what, fn, ref in (("matmat", op.matmat, A), ("rmatmat", op.rmatmat, A.T)):
        for arg in (X, X[:, 0]):
            try:
                got = np.asarray(fn(arg))
            except Exception as exc:
                raise CheckFailed(f"op.{what}(X) with X of shape {arg.shape}",
                                  one_line(exc)) from None
            if got.shape != arg.shape:
                raise CheckFailed(f"op.{what}(X) of shape {arg.shape} for X of shape "
                                  f"{arg.shape}", f"shape {got.shape}")
            err = _mismatch(got, ref @ arg, float(np.linalg.norm(np.abs(ref) @ np.abs(arg))))
            if not err <= ACTION_RTOL:
                sign = "Aᵀ" if what == "rmatmat" else "A"
                raise CheckFailed(f"op.{what}(X) = {sign}·X to {ACTION_RTOL:g} relative (A from "
                                  f"{'entries' if op.has_entries else 'the matrix'})",
                                  f"relative error {err:.3g} for X of shape {arg.shape}")
    if op.symmetric and np.array_equal(A, A.T):  # (a flag A itself belies: check_build)
        err = _mismatch(np.asarray(op.matmat(X)), np.asarray(op.rmatmat(X)),
                        float(np.linalg.norm(np.abs(A) @ np.abs(X))))
        if not err <= ACTION_RTOL:
            raise CheckFailed("A·X = Aᵀ·X (the operator says symmetric=True)",
                              f"relative difference {err:.3g}")
    diag = np.asarray(op.diagonal())
    if diag.shape != (n,) or not np.allclose(diag, np.diag(A), rtol=1e-14, atol=0.0):
        raise CheckFailed("op.diagonal() = diag(A), shape (n,)",
                          f"shape {diag.shape}" if diag.shape != (n,) else
                          f"max |difference| {np.max(np.abs(diag - np.diag(A))):.3g}")
    if op.has_entries:
        rows = np.concatenate([rng.permutation(n)[: max(1, n // 2)], [0, 0]])
        cols = np.concatenate([[n - 1], rng.permutation(n)[: max(1, n // 3)], [n - 1]])
        block = np.asarray(op.entries(rows, cols))
        want = A[np.ix_(rows, cols)]
        if block.shape != want.shape or not np.allclose(block, want, rtol=1e-14, atol=0.0):
            raise CheckFailed("op.entries(rows, cols) = A[np.ix_(rows, cols)] on unsorted, "
                              "repeated indices",
                              f"shape {block.shape}" if block.shape != want.shape else
                              f"max |difference| {np.max(np.abs(block - want)):.3g}")
    if not op.formed:
        formed = op.form()
        if not (formed.formed and np.allclose(formed.dense(), A, rtol=1e-14, atol=0.0)):
            raise CheckFailed("op.form() a formed operator holding A", repr(formed.matrix)[:60])


MATRIX_FREE_SIZES = (32768, 32761, 32000, 19683, 16384)  # 32 761 = 181², 19 683 = 27³
MATRIX_FREE_BYTES = 256  # × 8n: what build and one action may allocate (A: 8n² bytes)


def check_matrix_free_memory(cls: type, params: dict | None = None, *,
                             cache: Built | None = None) -> None:
    """An operator that is not formed stays so: at n ≈ 32 768 (its dense A would take 8 GiB)
    ``build(n)``, ``diagonal()``, a block of ``entries`` (where it has them) and one
    ``matmat`` of a vector allocate at most 256·8n bytes of NumPy memory (2048·n: 64 MiB,
    measured by ``tracemalloc``) — never A nor a dense block row of it. Skipped for formed
    operators (they hold A by definition)."""
    import tracemalloc

    b = _built(cls, params, cache)
    if not isinstance(b.op, Operator):
        raise CheckSkipped("build() failed (see check_build)")
    if b.op.formed:
        raise CheckSkipped("a formed operator (op.matrix holds A)")
    gen = cls(**b.params)
    n = next((m for m in MATRIX_FREE_SIZES if _accepts(gen, m)), None)
    if n is None:
        raise CheckSkipped(f"check_size() refuses every large size tried "
                           f"({', '.join(map(str, MATRIX_FREE_SIZES))})")
    bound = MATRIX_FREE_BYTES * 8 * n
    tracemalloc.start()
    try:
        op = gen.build(n, SEED)
        op.diagonal()
        if op.has_entries:
            op.entries(np.arange(8), np.arange(min(n, 4096)))
        op.matmat(np.ones(n))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    if op.formed or peak > bound:
        got = "build() formed A" if op.formed else f"peak {peak / 2**20:.1f} MiB"
        raise CheckFailed(f"build({n}), diagonal(), entries and one matmat within "
                          f"{bound / 2**20:.0f} MiB (A itself: {8 * n * n / 2**30:.0f} GiB)", got)


def _accepts(gen: OperatorGenerator, n: int) -> bool:
    try:
        if gen.sizes():
            return False
        gen.check_size(n)
    except (InvalidParameter, ValueError):
        return False
    return True


def _cholesky_ok(A: np.ndarray) -> bool:
    try:
        np.linalg.cholesky(A)
    except np.linalg.LinAlgError:
        return False
    return True


def check_operator_same_seed(cls: type, params: dict | None = None, *,
                             cache: Built | None = None) -> None:
    """The same ``seed`` builds the same matrix, entry for entry."""
    b = _built(cls, params, cache)
    if not isinstance(b.op, Operator):
        raise CheckSkipped("build() failed (see check_build)")
    again = cls(**b.params).build(b.n, SEED)
    A1, A2 = b.op.dense(), again.dense()
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
        raise CheckFailed("check_size(0) to raise lubench.api.InvalidParameter", one_line(exc)) \
            from None
    raise CheckFailed("check_size(0) to raise lubench.api.InvalidParameter", "no error")


def check_operator_pickle(cls: type, params: dict | None = None, *,
                          cache: Built | None = None) -> None:
    """The generator and the operator it builds survive ``pickle``."""
    b = _built(cls, params, cache)
    gen = cls(**b.params)
    try:
        again = pickle.loads(pickle.dumps(gen))
    except Exception as exc:
        raise CheckFailed("the generator to pickle", one_line(exc)) from None
    if repr(again.get_params()) != repr(gen.get_params()):
        raise CheckFailed("an unpickled generator with the same parameters", repr(again))
    if isinstance(b.op, Operator):
        try:
            pickle.loads(pickle.dumps(b.op))
        except Exception as exc:
            raise CheckFailed("the operator to pickle", one_line(exc)) from None
