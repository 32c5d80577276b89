"""The contract between lubench and its plugins.

A plugin adds *operator generators* (:class:`OperatorGenerator`) and *factorization methods*
(:class:`Method`). The core builds an :class:`Operator`, hands it to ``Method.factorize``
together with a :class:`RunContext`, and grades the returned :class:`Factorization` itself
(``lubench.metrics.grading``): a method never grades itself.

Conventions, after scikit-learn's estimators:

* a constructor only stores its keyword parameters, each with a default, under attributes of
  the same name; the parameters are read from the constructor's signature, their
  descriptions from the numpydoc ``Parameters`` section of the class docstring;
* ``build`` / ``factorize`` does the work;
* what a factorization learned or stores lives on the :class:`Factorization` it returns.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from lubench.errors import (  # noqa: F401 - re-exported: plugins import them from here
    Diverged,
    FactorizationError,
    InvalidParameter,
    LubenchError,
    Unsupported,
)
from lubench.lazy import lazy_module
from lubench.params import param_specs

sp = lazy_module("scipy.sparse")

__all__ = [
    "Budget",
    "Diverged",
    "Factorization",
    "FactorizationError",
    "InvalidParameter",
    "LubenchError",
    "Method",
    "MatrixFreeOperator",
    "NEEDS",
    "Operator",
    "is_exact",
    "has_apply",
    "has_fit",
    "OperatorGenerator",
    "RunContext",
    "Unsupported",
    "FAMILIES",
]

FAMILIES = ("classical", "learned", "compressed")


# --------------------------------------------------------------------------------------------
# Operators
# --------------------------------------------------------------------------------------------
NEEDS = ("matrix", "entries", "action")
"""What a method may need of an operator (``Method.needs``): the formed matrix A, blocks of
its entries A[rows, cols] evaluated on demand, or only its action X ↦ A·X (and Aᵀ·X)."""

FORM_BLOCK = 1024  # rows per block when an operator is formed from its entries or action


@dataclass
class Operator:
    """A square linear operator A: its action always, its entries where they are cheap, the
    matrix itself where it is formed.

    A *formed* operator holds A in ``matrix`` (a SciPy sparse matrix or a NumPy array, float64,
    shape (n, n)) and every other form derives from it. An operator that is *not formed*
    (``matrix`` is None) subclasses :class:`MatrixFreeOperator` and gives its action
    ``matmat`` (Aᵀ's ``rmatmat`` too unless symmetric) and, where a block of A is cheap to
    evaluate (kernel matrices), ``entries``. The core forms such an operator (:meth:`form`)
    only for a method that ``needs`` the matrix, and only when the dense A fits the suite's
    ``form_limit``; otherwise that method's case is ``unsupported`` with the reason.

    Attributes
    ----------
    name : str
        The generator's name.
    matrix : numpy.ndarray or scipy.sparse matrix or None
        A itself, float64, shape (n, n); None when the operator is not formed.
    symmetric : bool
        A == A.T exactly.
    spd : bool or None
        A is symmetric positive definite (None: not known).
    coords : numpy.ndarray or None
        One row per unknown: its point or grid index, for hierarchical partitioning.
    params : dict
        The generator's parameters (for the result row).
    """

    name: str
    matrix: Any
    symmetric: bool
    spd: bool | None
    coords: np.ndarray | None = None
    params: dict = field(default_factory=dict)

    # -- what it is --------------------------------------------------------------------------
    @property
    def n(self) -> int:
        """The size: A is n × n."""
        return int(self.matrix.shape[0])

    @property
    def formed(self) -> bool:
        """Whether ``matrix`` holds A (a sparse or dense array) rather than None."""
        return self.matrix is not None

    @property
    def is_sparse(self) -> bool:
        return self.formed and sp.issparse(self.matrix)

    @property
    def has_entries(self) -> bool:
        """Whether :meth:`entries` is cheap (O(1) per entry): a formed operator, a kernel."""
        return self.formed

    @property
    def dense_bytes(self) -> int:
        """Bytes of A as a dense float64 array, 8·n² (what forming it densely costs)."""
        return 8 * self.n * self.n

    # -- the action --------------------------------------------------------------------------
    def matmat(self, X: np.ndarray) -> np.ndarray:
        """A·X for X of shape (n,) or (n, k), float64, the same shape out."""
        return self.matrix @ X

    def rmatmat(self, X: np.ndarray) -> np.ndarray:
        """Aᵀ·X for X of shape (n,) or (n, k)."""
        return self.matrix.T @ X

    def matmul(self, X: np.ndarray) -> np.ndarray:
        """A·X (the former name of :meth:`matmat`)."""
        return self.matmat(X)

    def as_linear_operator(self) -> Any:
        """A as a :class:`scipy.sparse.linalg.LinearOperator` (matvec, rmatvec, matmat)."""
        spla = lazy_module("scipy.sparse.linalg")
        n = self.n

        def _rmat(X: np.ndarray) -> np.ndarray:
            return self.rmatmat(X)

        return spla.LinearOperator((n, n), dtype=np.float64, matvec=self.matmat,
                                   rmatvec=_rmat, matmat=self.matmat, rmatmat=_rmat)

    # -- entries -----------------------------------------------------------------------------
    def entries(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """A[rows, cols] as a dense float64 block of shape (len(rows), len(cols)).

        ``rows`` and ``cols`` are integer index arrays (any order, repeats allowed)."""
        rows = np.asarray(rows, dtype=np.intp)
        cols = np.asarray(cols, dtype=np.intp)
        if sp.issparse(self.matrix):
            return sp.csr_array(self.matrix)[rows][:, cols].toarray().astype(np.float64)
        return np.asarray(self.matrix, dtype=np.float64)[np.ix_(rows, cols)]

    def diagonal(self) -> np.ndarray:
        """The diagonal of A, shape (n,)."""
        if sp.issparse(self.matrix):
            return np.asarray(self.matrix.diagonal(), dtype=np.float64)
        return np.asarray(np.diag(np.asarray(self.matrix)), dtype=np.float64)

    # -- the matrix --------------------------------------------------------------------------
    def dense(self) -> np.ndarray:
        """A as a dense float64 array: a copy for sparse input, the array itself when dense;
        for an operator that is not formed, A formed from its entries or action (8·n² bytes —
        the caller decides whether that is affordable; see :meth:`form`)."""
        if not self.formed:
            return _form_dense(self)
        if sp.issparse(self.matrix):
            return self.matrix.toarray()
        return np.asarray(self.matrix, dtype=np.float64)

    def sparse(self) -> Any:
        """A as a CSC sparse array (formed operators only)."""
        if not self.formed:
            raise Unsupported(f"operator '{self.name}' at n = {self.n} is not formed; "
                              "it has no sparse matrix")
        return sp.csc_array(self.matrix)

    def form(self) -> Operator:
        """This operator with ``matrix`` set: itself when formed, else a formed copy (dense,
        built block by block from :meth:`entries`, or from :meth:`matmat` on identity
        columns where entries are not cheap)."""
        if self.formed:
            return self
        return Operator(self.name, _form_dense(self), symmetric=self.symmetric, spd=self.spd,
                        coords=self.coords, params=dict(self.params))


class MatrixFreeOperator(Operator):
    """Base class of an operator that is never formed: A only as an action (and entries).

    Subclasses call ``super().__init__(name, n, symmetric=..., spd=..., coords=...,
    params=...)`` and implement :meth:`matmat`; they implement :meth:`rmatmat` unless A is
    symmetric (the default then is ``matmat``), :meth:`entries` where a block of A is cheap
    to evaluate (and set ``has_entries = True``), and :meth:`diagonal` where it is cheaper
    than entries (the default reads it from ``entries`` in blocks). ``matrix`` is None.

    Example: the n × n operator A = 2I − (shift up) − (shift down), never formed::

        class Tridiagonal(MatrixFreeOperator):
            has_entries = False
            def matmat(self, X):
                Y = 2.0 * X
                Y[1:] -= X[:-1]
                Y[:-1] -= X[1:]
                return Y
    """

    has_entries: ClassVar[bool] = False  # type: ignore[misc]

    def __init__(self, name: str, n: int, *, symmetric: bool, spd: bool | None,
                 coords: np.ndarray | None = None, params: dict | None = None):
        super().__init__(name, None, symmetric=symmetric, spd=spd, coords=coords,
                         params=dict(params or {}))
        self._n = int(n)

    @property
    def n(self) -> int:
        return self._n

    def matmat(self, X: np.ndarray) -> np.ndarray:
        raise NotImplementedError(f"{type(self).__name__}.matmat")

    def rmatmat(self, X: np.ndarray) -> np.ndarray:
        if self.symmetric:
            return self.matmat(X)
        raise NotImplementedError(f"{type(self).__name__}.rmatmat (A is not symmetric)")

    def entries(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        raise Unsupported(f"operator '{self.name}' gives no entries, only its action")

    def diagonal(self) -> np.ndarray:
        if not self.has_entries:
            raise Unsupported(f"operator '{self.name}' gives no diagonal, only its action")
        out = np.empty(self.n)
        for lo in range(0, self.n, FORM_BLOCK):
            idx = np.arange(lo, min(lo + FORM_BLOCK, self.n))
            out[idx] = np.diag(self.entries(idx, idx))
        return out


def _form_dense(op: Operator) -> np.ndarray:
    """A as a dense array, FORM_BLOCK rows (or columns) at a time, from the operator's
    entries where it has them, else from its action on identity columns."""
    n = op.n
    A = np.empty((n, n))
    cols = np.arange(n)
    for lo in range(0, n, FORM_BLOCK):
        hi = min(lo + FORM_BLOCK, n)
        if op.has_entries:
            A[lo:hi] = op.entries(np.arange(lo, hi), cols)
        else:
            E = np.zeros((n, hi - lo))
            E[np.arange(lo, hi), np.arange(hi - lo)] = 1.0
            A[:, lo:hi] = np.asarray(op.matmat(E), dtype=np.float64)
    return A


class _Parameterized:
    """Parameters from the constructor signature, the scikit-learn way."""

    name: ClassVar[str] = ""

    @classmethod
    def describe(cls) -> str:
        """The one-line description: the first line of the class docstring."""
        doc = inspect.getdoc(cls) or ""
        return doc.strip().splitlines()[0].strip() if doc.strip() else ""

    @classmethod
    def check_params(cls, params: dict[str, Any]) -> None:
        """Raise :class:`InvalidParameter` when these parameter values cannot work together.

        Optional. Called when a suite loads (``--dry-run`` included), once per point of the
        parameter grid, with every parameter (the suite's values converted to their
        annotated types, defaults filled in), before any case runs: a value out of range
        (``gfmm_lu`` with ``M: 3``, not a power of two) is then an error of the suite file
        instead of a failed case per operator. The message names the parameter and the
        value. It must be cheap and import nothing heavy (it runs in the parent even when
        the plugin's requirements are missing). Size-dependent checks belong in
        ``check(op)`` / ``check_size(n)``.
        """
        return None

    def get_params(self) -> dict[str, Any]:
        """The constructor parameters and their current values."""
        return {p: getattr(self, p) for p in param_specs(type(self))}

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({inner})"


class OperatorGenerator(_Parameterized):
    """Base class of operator generators.

    Subclasses set the class attribute ``name``, take their parameters as constructor keyword
    arguments with defaults (stored under the same names), and implement :meth:`build`.
    """

    def sizes(self) -> list[int] | None:
        """The sizes this generator is fixed to (e.g. a matrix read from a file), else None.

        When it returns a list, a suite entry needs no ``sizes``.
        """
        return None

    def check_size(self, n: int) -> None:
        """Raise :class:`InvalidParameter` when the generator cannot build size ``n``."""
        if n < 1:
            raise InvalidParameter(f"size must be a positive integer, got {n}")

    def build(self, n: int, seed: int) -> Operator:
        """Build the n×n operator; ``seed`` drives any randomness (same seed, same matrix)."""
        raise NotImplementedError


# --------------------------------------------------------------------------------------------
# Methods and their factorizations
# --------------------------------------------------------------------------------------------
@dataclass
class Budget:
    """How long a learned method may train. None means no limit from the suite."""

    max_steps: int | None = None
    max_seconds: float | None = None
    target_loss: float | None = None

    def as_dict(self) -> dict:
        return {"max_steps": self.max_steps, "max_seconds": self.max_seconds,
                "target_loss": self.target_loss}


def _no_progress(step: int, total: int | None = None, **fields: Any) -> None:
    return None


@dataclass
class RunContext:
    """What the runner tells a method about the case it runs.

    Attributes
    ----------
    device : str
        ``"cpu"`` or ``"cuda"`` (already resolved from ``auto``).
    dtype : str
        The working precision the suite asks for (``"float64"`` unless set); learned methods
        may override it with their own ``dtype`` parameter.
    seed : int
        The case's seed (derived from the suite seed and the case identity).
    budget : Budget
        Training limits from the suite (soft: checked by the method).
    memory_limit : int or None
        Bytes the case may use; a method whose needs exceed it raises :class:`Unsupported`.
    progress : callable
        ``progress(step, total, **fields)``: report training progress (optional to call).
    """

    device: str = "cpu"
    dtype: str = "float64"
    seed: int = 0
    budget: Budget = field(default_factory=Budget)
    memory_limit: int | None = None
    progress: Callable[..., None] = _no_progress

    def rng(self, salt: int = 0) -> np.random.Generator:
        """A NumPy generator seeded from the case seed (and ``salt``)."""
        return np.random.default_rng([self.seed, salt])

    def synchronize(self) -> None:
        """Wait for queued device work (CUDA) so that wall-clock timings are honest."""
        if self.device.startswith("cuda"):
            import torch

            torch.cuda.synchronize()


class Factorization:
    """What ``Method.factorize`` returns: the stored factors and how to use them.

    Subclasses set ``n_params`` and implement :meth:`solve` and, when they have factors,
    :meth:`apply`; optionally :meth:`apply_transpose`, which lets the core estimate
    ‖A − PLU‖₂ above the suite's ``exact_limit`` (power iteration on (A − PLU)ᵀ(A − PLU),
    from products only). A factorization that gives only M⁻¹ — a preconditioner with no
    product of factors to compare with A, such as one multigrid V-cycle — implements
    :meth:`solve` alone: its factor metrics (``factor_error``, ``factor_error_2``) are then
    "not measured" and every solver metric is graded as for any other (:func:`has_apply`).

    Attributes
    ----------
    n_params : int
        How many numbers the factorization stores (e.g. n² for dense PLU).
    history : list of dict
        Training curve rows (``step``, ``seconds``, ``loss``, optionally ``rel_error``);
        empty for classical methods.
    info : dict
        Anything else worth keeping (JSON-serialisable), e.g. ``iterations``,
        ``final_loss``, ``stopped_because``.
    expensive_apply : bool
        True when ``apply`` on n identity columns is too costly for the exact error: the
        metrics then use the Gaussian probe estimate at every size.
    """

    n_params: int = 0
    expensive_apply: bool = False

    def __init__(self) -> None:
        self.history: list[dict] = []
        self.info: dict = {}

    def solve(self, B: np.ndarray) -> np.ndarray:
        """x̂ with (P L U) x̂ = B, for B of shape (n,) or (n, k); same shape out."""
        raise NotImplementedError

    def apply(self, X: np.ndarray) -> np.ndarray:
        """(P L U) X, the product of the stored factors, for X of shape (n,) or (n, k).
        Optional: not implemented by a factorization that gives only M⁻¹."""
        raise NotImplementedError

    def apply_transpose(self, X: np.ndarray) -> np.ndarray:
        """(P L U)ᵀ X = Uᵀ Lᵀ Pᵀ X, for X of shape (n,) or (n, k) (optional: without it,
        ``factor_error_2`` is not measured above the suite's ``exact_limit``)."""
        raise NotImplementedError


def has_apply(fact: Factorization | type) -> bool:
    """Whether a factorization (or its class) implements :meth:`Factorization.apply`, the
    product of its factors; False for one that gives only M⁻¹ (its ``solve``)."""
    cls = fact if isinstance(fact, type) else type(fact)
    return getattr(cls, "apply", None) is not Factorization.apply


def has_fit(method: Method | type) -> bool:
    """Whether a method (or its class) trains across instances: it defines
    ``fit(train, ctx)`` (see :class:`Method`)."""
    return callable(getattr(method, "fit", None))


def is_exact(method: type | object) -> bool:
    """Whether a method class (or instance) promises ``P·L·U = A`` up to round-off: its
    ``exact`` attribute, or, when that is ``None``, whether its family is ``classical``."""
    exact = getattr(method, "exact", None)
    return getattr(method, "family", None) == "classical" if exact is None else bool(exact)


class Method(_Parameterized):
    """Base class of factorization methods.

    Class attributes
    ----------------
    name : str
        Unique across all plugins (the suite refers to it).
    family : str
        ``classical`` (computed by a numerical-linear-algebra algorithm, no training),
        ``learned`` (fitted by optimization) or ``compressed`` (a structured approximation
        built by classical means, e.g. low-rank blocks).
    exact : bool or None
        Whether ``P·L·U = A`` up to round-off, so that the exactness checks of
        :mod:`lubench.testing` apply (‖A x̂ − b‖₂/‖b‖₂ ≤ 1e-10). ``None`` (the default) means
        "exact when the family is ``classical``"; an incomplete factorization such as ILU is
        ``classical`` with ``exact = False``. Read it through :func:`is_exact`.
    resources : dict
        What one case needs on a cluster, e.g. ``{"gpus_per_task": 1}`` (SLURM executor).
    needs : str
        What the method needs of the operator (:data:`NEEDS`): ``"matrix"`` (the default:
        it reads ``op.matrix``, ``op.dense()`` or ``op.sparse()``), ``"entries"`` (blocks
        ``op.entries(rows, cols)`` and the action) or ``"action"`` (only ``op.matmat`` /
        ``op.rmatmat``). The core checks it before :meth:`check`: a method that needs the
        matrix gets the operator formed when the dense A fits the suite's ``form_limit``,
        and its case is ``unsupported`` otherwise; one that needs entries is
        ``unsupported`` on an operator that has none (``op.has_entries``).

    Subclasses take their parameters as constructor keyword arguments with defaults, and
    implement :meth:`factorize`; :meth:`check` refuses operators they do not apply to.

    **Training across instances** (optional). A method that learns once from many operators
    of a family and then factorizes unseen ones defines

        ``fit(self, train: Sequence[Operator], ctx: RunContext) -> None``

    The core calls it once per method configuration and operator family (operator,
    parameters, n) on the family's training instances (a suite's ``instances`` and
    ``train``), under the entry's ``fit_budget`` and ``fit_timeout``, in a worker of its own;
    ``train[i]`` builds instance i when it is read (keep what you need, not the list). What
    it learned is stored on ``self`` in attributes ending in ``_`` (scikit-learn's
    convention) and must pickle: the core keeps the fitted method in the run directory, so a
    killed run resumes with it instead of training again, and calls ``factorize`` on a copy
    for every test instance. Optional attributes it may set: ``history_`` (training-curve
    rows, as ``Factorization.history``) and ``fit_info_`` (JSON-serialisable: what was
    learned, e.g. steps and final loss). An exception from ``fit`` is one failed row for the
    configuration, and its test cases are recorded ``not_run`` with the reason.
    Read whether a method has it through :func:`has_fit`.
    """

    family: ClassVar[str] = "classical"
    exact: ClassVar[bool | None] = None
    resources: ClassVar[dict] = {}
    needs: ClassVar[str] = "matrix"

    def check(self, op: Operator) -> None:
        """Raise :class:`Unsupported` (with the reason) when this method cannot factor ``op``."""
        return None

    def prepare(self, ctx: RunContext) -> None:
        """Untimed warm-up before ``factorize`` (import a framework, initialise the device),
        so that one-off start-up costs do not count in ``setup_seconds``."""
        return None

    def factorize(self, op: Operator, ctx: RunContext) -> Factorization:
        """Factor ``op``; the wall time of this call is the case's ``setup_seconds``."""
        raise NotImplementedError
