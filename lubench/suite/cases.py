"""Cases and suites as values: what one unit of work is, how it is named, seeded and hashed."""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePath
from typing import Any

from lubench.rundir.records import canonical_json, jsonable

__all__ = ["Case", "Suite", "derive_seed", "fmt_params", "short_params"]


def derive_seed(*parts: Any) -> int:
    """A 31-bit seed from the parts' canonical JSON (stable across runs and machines)."""
    digest = hashlib.sha256(canonical_json(list(parts)).encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


@dataclass(frozen=True)
class Case:
    """One unit of work: an operator instance of size n, factorized by one configured method.

    ``operator_seed`` depends only on the operator side (so that every method sees the same
    random operator); ``seed`` on the whole case identity (not on its position in the suite:
    adding a case changes no other case's numbers).
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

    @property
    def case_id(self) -> str:
        """Stable hash of (operator + params, n, method + params, seed): what --resume uses."""
        key = canonical_json([self.operator, self.operator_params, self.n, self.method,
                              self.method_params, self.suite_seed])
        return hashlib.sha256(key.encode()).hexdigest()[:16]

    @property
    def label(self) -> str:
        if self.display:
            return self.display
        op = fmt_params(self.operator_params)
        me = fmt_params(self.method_params)
        return f"{self.operator}{op}[n={self.n}] × {self.method}{me}"

    def as_dict(self) -> dict:
        d = asdict(self)
        d["operator_params"] = jsonable(self.operator_params)
        d["method_params"] = jsonable(self.method_params)
        d["case_id"] = self.case_id
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Case:
        names = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in d.items() if k in names})


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
