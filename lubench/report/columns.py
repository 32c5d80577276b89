"""The metric columns a report shows, read from the one metric table
(:mod:`lubench.metrics.table`): every table and figure takes its headers, units, better
direction and definitions from there."""

from __future__ import annotations

from lubench.metrics.table import BY_KEY, DEFAULT_COLUMNS, DERIVED, METRICS, Metric, metric

__all__ = ["Metric", "METRICS", "BY_KEY", "DEFAULT_COLUMNS", "DERIVED", "metric"]
