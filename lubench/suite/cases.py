"""Cases and suites as values: what one unit of work is, how it is named, seeded and hashed."""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePath
from typing import Any

from lubench.metrics.cg import MAXITER as CG_MAXITER
from lubench.metrics.cg import TOLERANCES as CG_TOLERANCES
from lubench.rundir.records import canonical_json, jsonable

__all__ = ["Case", "Suite", "derive_seed", "instance_seed", "fmt_params", "short_params",
           "CASE", "FIT", "STAGES"]

#: A case's stage: ``case`` factorizes one operator and is graded; ``fit`` trains a method
#: across a family's training instances (its test cases are ``case``s that use it).
CASE, FIT = "case", "fit"
STAGES = (CASE, FIT)


def derive_seed(*parts: Any) -> int:
    """A 31-bit seed from the parts' canonical JSON (stable across runs and machines)."""
    digest = hashlib.sha256(canonical_json(list(parts)).encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


def instance_seed(suite_seed: int, operator: str, params: dict, n: int,
                  instance: int | None) -> int:
    """The seed operator ``instance`` of a family is built from (None: a single operator,
    the seed it always had). It depends on the operator side alone, so every method — and
    the fit that trains on the instance — sees the same matrix."""
    if instance is None:
        return derive_seed(suite_seed, operator, params, n)
    return derive_seed(suite_seed, operator, params, n, "instance", instance)


@dataclass(frozen=True)
class Case:
    """One unit of work: an operator instance of size n, factorized by one configured method
    — or (``stage`` ``fit``) that method trained across a family's training instances.

    ``operator_seed`` depends only on the operator side (so that every method sees the same
    random operator); ``seed`` on the whole case identity (not on its position in the suite:
    adding a case changes no other case's numbers).

    Families: an operator entry with ``instances`` N and ``train`` K has test cases for the
    instances K … N−1 (``instance``; its seed :func:`instance_seed`); a method with ``fit``
    has one more case per family, the fit (``stage`` ``fit``, training on instances
    0 … K−1), and its test cases name it (``fit_id``).
    """

    suite: str
    operator: str
    operator_params: dict
    n: int
    method: str
    method_params: dict
    family: str
    suite_seed: int
    seed: int
    operator_seed: int
    repeats: int = 1
    timeout: float | None = None
    memory_limit: int | None = None
    form_limit: int | None = None  # None: a quarter of the memory limit; 0: none
    exact_limit: int = 4096
    grade_limit: float | None = None  # seconds of grading; None: no limit
    device: str = "auto"
    budget: dict = field(default_factory=dict)
    resources: dict = field(default_factory=dict)
    display: str = ""  # the label with only the parameters the suite set (not hashed)
    cg_tolerances: tuple[float, ...] = CG_TOLERANCES
    cg_maxiter: int = CG_MAXITER
    instance: int | None = None  # the family's instance (None: a single operator)
    instances: int = 1           # the family's size
    train: int = 0               # its training split: instances 0 … train−1
    stage: str = CASE            # CASE or FIT
    fit_id: str = ""             # a test case of a method with fit: the fit it uses

    @property
    def case_id(self) -> str:
        """Stable hash of (operator + params, n, method + params, seed), and for a family the
        instance (a test case) or the split (a fit) and the fit a test case uses: what
        --resume uses. A single operator's case keeps the id it always had."""
        parts: list[Any] = [self.operator, self.operator_params, self.n, self.method,
                            self.method_params, self.suite_seed]
        if self.stage == FIT:
            parts += [FIT, self.instances, self.train]
        elif self.instance is not None:
            parts += ["instance", self.instance] + ([FIT, self.fit_id] if self.fit_id else [])
        key = canonical_json(parts)
        return hashlib.sha256(key.encode()).hexdigest()[:16]

    @property
    def training_seeds(self) -> list[int]:
        """The seeds of the family's training instances (a fit's operators)."""
        return [instance_seed(self.suite_seed, self.operator, self.operator_params, self.n, i)
                for i in range(self.train)]

    @property
    def test_instances(self) -> int:
        """How many instances the family tests on (what a fit's training amortizes over)."""
        return self.instances - self.train

    @property
    def label(self) -> str:
        if self.display:
            return self.display
        op = fmt_params(self.operator_params)
        me = fmt_params(self.method_params)
        if self.stage == FIT:
            return f"fit {self.method}{me} on {self.operator}{op}[n={self.n}] " \
                   f"× {self.train} instances"
        inst = f" #{self.instance}" if self.instance is not None else ""
        return f"{self.operator}{op}[n={self.n}]{inst} × {self.method}{me}"

    def as_dict(self) -> dict:
        d = asdict(self)
        d["operator_params"] = jsonable(self.operator_params)
        d["method_params"] = jsonable(self.method_params)
        d["case_id"] = self.case_id
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Case:
        names = {f for f in cls.__dataclass_fields__}
        d = {k: v for k, v in d.items() if k in names}
        if "cg_tolerances" in d:
            d["cg_tolerances"] = tuple(d["cg_tolerances"])
        return cls(**d)


def short_params(params: dict) -> dict:
    """File paths by their name only, for labels."""
    return {k: (v.name if isinstance(v, PurePath) else v) for k, v in params.items()}


def fmt_params(params: dict) -> str:
    if not params:
        return ""
    inner = ",".join(f"{k}={jsonable(v)}" for k, v in params.items())
    return f"[{inner}]"


@dataclass
class Suite:
    """A validated suite and the cases it expands to."""

    path: Path | None
    name: str
    description: str
    seed: int
    repeats: int
    timeout: float | None
    memory_limit: int | None
    exact_limit: int
    device: str
    plugins: list[str]
    executor: dict
    cases: list[Case]
    raw: dict
    text: str = ""

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()
