"""The contract between lubench and its plugins.

A plugin adds *operator generators* (:class:`OperatorGenerator`) and *factorization methods*
(:class:`Method`). The core builds an :class:`Operator`, hands it to ``Method.factorize``
together with a :class:`RunContext`, and grades the returned :class:`Factorization` itself
(``lubench.metrics``): a method never grades itself.

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
    "Operator",
    "is_exact",
    "OperatorGenerator",
    "RunContext",
    "Unsupported",
    "FAMILIES",
]

FAMILIES = ("classical", "learned", "compressed")


# --------------------------------------------------------------------------------------------
# Operators
# --------------------------------------------------------------------------------------------
@dataclass
class Operator:
    """A square linear operator A, as a matrix.

    Attributes
    ----------
    name : str
        The generator's name.
    matrix : numpy.ndarray or scipy.sparse matrix
        A itself, float64, shape (n, n).
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

    @property
    def n(self) -> int:
        return int(self.matrix.shape[0])

    @property
    def is_sparse(self) -> bool:
        return sp.issparse(self.matrix)

    def dense(self) -> np.ndarray:
        """A as a dense float64 array (a copy for sparse input, the array itself otherwise)."""
        if sp.issparse(self.matrix):
            return self.matrix.toarray()
        return np.asarray(self.matrix, dtype=np.float64)

    def sparse(self) -> sp.csc_array:
        """A as a CSC sparse array."""
        return sp.csc_array(self.matrix)

    def matmul(self, X: np.ndarray) -> np.ndarray:
        """A @ X for X of shape (n,) or (n, k)."""
        return self.matrix @ X


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

    Subclasses set ``n_params`` and implement :meth:`solve` and :meth:`apply`.

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
        """(P L U) X, the product of the stored factors, for X of shape (n,) or (n, k)."""
        raise NotImplementedError


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

    Subclasses take their parameters as constructor keyword arguments with defaults, and
    implement :meth:`factorize`; :meth:`check` refuses operators they do not apply to.
    """

    family: ClassVar[str] = "classical"
    exact: ClassVar[bool | None] = None
    resources: ClassVar[dict] = {}

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
