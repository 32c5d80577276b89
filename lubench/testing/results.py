"""What a contract check reports: a failure (expected, got), a skip, a result, a summary."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


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
