"""Axes and marks shared by the figures: Pareto fronts, fitted slopes, log axes a reader can
read whatever their span, where exact zeros are drawn, a point per configuration."""

from __future__ import annotations

import math

import matplotlib.ticker as mticker
import numpy as np
import pandas as pd

from lubench.report.columns import BY_KEY
from lubench.report.figures.style import Style
from lubench.report.palette import FAMILY_FRONT, OTHER_FRONT, method_color, method_marker

__all__ = ["pareto_front", "fitted_slope", "log_span", "log_axis", "zero_level", "draw_points",
           "draw_fronts", "FLOOR"]

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


def log_axis(ax, which: str, values: np.ndarray, decades: float = 2.0) -> None:
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


def zero_level(values: np.ndarray) -> float:
    """Where exact zeros are drawn: a decade below the smallest positive value, at most
    :data:`FLOOR` (so that no measured error is mistaken for it)."""
    pos = values[np.isfinite(values) & (values > 0)]
    return min(FLOOR, 10 ** (math.floor(math.log10(pos.min())) - 1)) if len(pos) else FLOOR


def draw_points(ax, d: pd.DataFrame, xcol: str, ycol: str, style: Style, zero: float = FLOOR,
            hollow: str | None = "probe") -> None:
    """A point per configuration in its method's colour and marker (hollow where ``hollow``
    is true); configurations of one method joined by a thin line in order of x."""
    for name, g in d.groupby("method", sort=False):
        g = g.sort_values(xcol)
        x = g[xcol].to_numpy(float)
        y = g[ycol].to_numpy(float)
        y = np.where(y > 0, y, zero)
        if len(g) > 1:
            ax.plot(x, y, color=method_color(name), lw=0.7, alpha=0.7, zorder=2)
        open_ = g[hollow].to_numpy(bool) if hollow and hollow in g else np.zeros(len(g), bool)
        for xi, yi, o in zip(x, y, open_):
            c = method_color(name)
            ax.plot([xi], [yi], linestyle="none", marker=method_marker(name), zorder=3,
                    markeredgecolor=c, markeredgewidth=1.0, markerfacecolor="none" if o else c)


def draw_fronts(ax, d: pd.DataFrame, xcol: str, ycol: str, zero: float = FLOOR) -> list[str]:
    """The Pareto front (lower x and lower y both better) of each family in the panel, as a
    grey staircase (values at or below the metric's round-off floor count as equal); returns
    the families drawn."""
    drawn = []
    floor = BY_KEY[ycol].floor  # values at round-off level tie: none dominates another
    for fam, g in d.groupby("family", sort=False):
        x = g[xcol].to_numpy(float)
        y = g[ycol].to_numpy(float)
        y = np.where(y > 0, y, zero)
        idx = pareto_front(x, np.maximum(y, floor))
        if len(idx) < 2:
            continue
        ax.step(x[idx], y[idx], where="post", color="0.35", lw=1.1, zorder=1,
                ls=FAMILY_FRONT.get(fam, OTHER_FRONT))
        drawn.append(fam)
    return drawn
