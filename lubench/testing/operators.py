"""Operator generator checks: build a size the generator accepts, twice, and check what comes."""

from __future__ import annotations

import json
import pickle
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from lubench.api import (
    InvalidParameter,
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
    """``build(n, seed)`` returns an Operator named after the generator: float64 n × n,
    finite, JSON-serialisable params, coords None or one row per unknown, and ``symmetric``
    and ``spd`` flags that tell the truth."""
    b = _built(cls, params, cache)
    op, n = b.op, b.n
    if isinstance(op, BaseException):
        raise CheckFailed(f"build({n}, seed) to return an Operator", one_line(op))
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
