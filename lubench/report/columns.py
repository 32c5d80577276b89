"""The metric columns a report shows: the numbers of the metric table
(:mod:`lubench.metrics.table`, where each one's headers, unit, better direction, axis label
and definitions are), and which of them a table shows when none are asked for.

``time_to_solution`` is the one derived column: the sum per repeat of the columns it is
``derived_from`` (:data:`DERIVED`), NaN when either is missing.
"""

from __future__ import annotations

from lubench.metrics import table
from lubench.metrics.table import Metric

__all__ = ["Metric", "METRICS", "BY_KEY", "DEFAULT_COLUMNS", "DERIVED", "metric"]

#: The columns a report can show: every metric that is a number, in the table's order.
METRICS: list[Metric] = [m for m in table.METRICS if m.number]
BY_KEY: dict[str, Metric] = {m.key: m for m in METRICS}

#: Derived columns: key -> the result columns summed per repeat.
DERIVED: dict[str, tuple[str, ...]] = {m.key: m.derived_from for m in METRICS if m.derived_from}

#: The columns of a table when none are asked for (those absent from every row are dropped).
DEFAULT_COLUMNS: list[str] = [
    "factor_error", "factor_error_2", "solve_residual", "forward_error", "precond_iterations",
    "gmres_iterations", "n_params", "setup_seconds", "solve_seconds", "precond_seconds",
]


def metric(key: str) -> Metric:
    """The facts of ``key`` (KeyError when the report does not know it)."""
    return BY_KEY[key]
