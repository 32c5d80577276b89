"""Axes shared by the figures: Pareto fronts, fitted slopes, log axes a reader can read
whatever their span, where exact zeros are drawn."""

from __future__ import annotations

import math

import matplotlib.ticker as mticker
import numpy as np

__all__ = ["pareto_front", "fitted_slope", "log_span", "FLOOR"]

FLOOR = 1e-17  # an exact zero is drawn on a log axis at or below this, on a marked line


def pareto_front(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Indices of the points not dominated when both x and y are to be minimised, by x."""
    order = np.lexsort((y, x))
    front, best = [], math.inf
    for i in order:
        if y[i] < best:
            front.append(i)
            best = y[i]
    return np.asarray(front, dtype=int)


def fitted_slope(n: np.ndarray, y: np.ndarray) -> float:
    """Least-squares slope of log y against log n (NaN with fewer than two sizes)."""
    n, y = np.asarray(n, float), np.asarray(y, float)
    keep = np.isfinite(n) & np.isfinite(y) & (n > 0) & (y > 0)
    if len(np.unique(n[keep])) < 2:
        return float("nan")
    return float(np.polyfit(np.log(n[keep]), np.log(y[keep]), 1)[0])


def log_span(lo: float, hi: float, decades: float = 2.0) -> tuple[float, float]:
    """Limits around [lo, hi] spanning at least ``decades`` powers of ten (centred
    geometrically), with a margin of 5 % of the span on either side."""
    lo, hi = float(lo), float(hi)
    a, b = math.log10(lo), math.log10(hi)
    pad = max(0.05 * (b - a), (decades - (b - a)) / 2, 0.02)
    return 10 ** (a - pad), 10 ** (b + pad)


def _tick_label(value: float, _pos: object = None) -> str:
    """``10⁻³``, ``3×10⁻³``, or a short decimal between 0.01 and 1000."""
    if value <= 0:
        return ""
    if 0.01 <= value < 1000:
        return f"{value:.3g}"
    k = math.floor(math.log10(value) + 1e-9)
    m = value / 10**k
    return f"$10^{{{k}}}$" if abs(m - 1) < 1e-6 else f"${m:.3g}{{\\times}}10^{{{k}}}$"


def _log_axis(ax, which: str, values: np.ndarray, decades: float = 2.0) -> None:
    """Log scale with limits from :func:`log_span` and ticks a reader can read whatever the
    span: powers of ten over two decades or more, 1-2-5 steps over one to two, a few round
    values over less than one (where powers of ten would leave the axis unlabelled)."""
    values = np.asarray(values, float)
    values = values[np.isfinite(values) & (values > 0)]
    axis = ax.xaxis if which == "x" else ax.yaxis
    (ax.set_xscale if which == "x" else ax.set_yscale)("log")
    if not len(values):
        return
    lo, hi = log_span(values.min(), values.max(), decades)
    (ax.set_xlim if which == "x" else ax.set_ylim)(lo, hi)
    span = math.log10(hi / lo)
    if span >= 2:
        axis.set_major_locator(mticker.LogLocator(base=10, numticks=8))
        axis.set_major_formatter(mticker.LogFormatterSciNotation())
        axis.set_minor_locator(mticker.LogLocator(base=10, subs=np.arange(2, 10) * 0.1,
                                                  numticks=12))
    elif span >= 0.8:
        # 1-2-5, or 1-3 on a narrow x axis (where "2×10⁵ 5×10⁵" labels would collide)
        width = ax.get_position().width * ax.figure.get_figwidth()
        subs = (1.0, 3.0) if which == "x" and width < 2.0 else (1.0, 2.0, 5.0)
        axis.set_major_locator(mticker.LogLocator(base=10, subs=subs, numticks=12))
        axis.set_major_formatter(mticker.FuncFormatter(_tick_label))
        axis.set_minor_locator(mticker.NullLocator())
    else:
        axis.set_major_locator(mticker.MaxNLocator(nbins=4, min_n_ticks=2))
        axis.set_major_formatter(mticker.FuncFormatter(_tick_label))
        axis.set_minor_locator(mticker.NullLocator())
    axis.set_minor_formatter(mticker.NullFormatter())


def _zero_level(values: np.ndarray) -> float:
    """Where exact zeros are drawn: a decade below the smallest positive value, at most
    :data:`FLOOR` (so that no measured error is mistaken for it)."""
    pos = values[np.isfinite(values) & (values > 0)]
    return min(FLOOR, 10 ** (math.floor(math.log10(pos.min())) - 1)) if len(pos) else FLOOR
