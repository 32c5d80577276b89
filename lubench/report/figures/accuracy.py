"""Accuracy figures: relative factor error against stored numbers and against setup time,
a panel per operator and n, with the Pareto front of each family."""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import matplotlib.ticker as mticker
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from lubench.report.columns import BY_KEY
from lubench.report.figures.axes import (
    FLOOR,
    _log_axis,
    _zero_level,
    pareto_front,
)
from lubench.report.figures.layout import (
    _finite,
    _front_handles,
    _grid,
    _legend,
    _method_handles,
    _ok,
    _outer_labels,
    _panel,
    _panel_keys,
    _placeholder,
    _runs,
    _title,
)
from lubench.report.figures.style import Style
from lubench.report.palette import (
    FAMILY_FRONT,
    OTHER_FRONT,
    method_color,
    method_marker,
)

__all__ = ["error_vs_params", "error_vs_time"]


def _points(ax, d: pd.DataFrame, xcol: str, ycol: str, style: Style, zero: float = FLOOR,
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


def _fronts(ax, d: pd.DataFrame, xcol: str, ycol: str, zero: float = FLOOR) -> list[str]:
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


def _zero_axis(ax, values: np.ndarray, zero: float) -> None:
    """Log y axis; exact zeros sit on a dotted line at ``zero`` with a tick labelled 0."""
    _log_axis(ax, "y", np.where(values > 0, values, zero))
    if np.any(values <= 0):
        ax.axhline(zero, color="0.5", lw=0.6, ls=":", zorder=1)
        lo, hi = ax.get_ylim()
        ticks = [t for t in ax.get_yticks() if zero * 5 < t <= hi]
        ax.set_yticks(ticks + [zero], [f"$10^{{{round(math.log10(t))}}}$" for t in ticks]
                      + ["0"])
        ax.yaxis.set_minor_locator(mticker.NullLocator())
        ax.set_ylim(min(lo, zero / 2), hi)


def _accuracy_figure(summary: pd.DataFrame, style: Style, xcol: str, title: str) -> Figure:
    data = _finite(_ok(summary), xcol, "factor_error")
    keys = _panel_keys(data)
    if not keys:
        return _placeholder(f"no configuration has both factor_error and {xcol}", style.preset)
    with plt.rc_context(style.rc):
        fig, axes = _grid(len(keys), style.preset, runs=_runs(data))
        families: set[str] = set()
        probe = False
        for ax, key in zip(axes.flat, keys):
            d = _panel(data, key)
            y = d["factor_error"].to_numpy(float)
            zero = _zero_level(y)
            _points(ax, d, xcol, "factor_error", style, zero)
            families.update(_fronts(ax, d, xcol, "factor_error", zero))
            probe |= bool(d["probe"].any())
            _log_axis(ax, "x", d[xcol].to_numpy(float))
            _zero_axis(ax, y, zero)
            ax.set_title(_title(key))
        _outer_labels(axes, len(keys), BY_KEY[xcol].axis, BY_KEY["factor_error"].axis)
        handles = _method_handles(style, list(data["method_label"]))
        handles += _front_handles(sorted(families))
        if probe:
            handles.append(Line2D([], [], color="0.3", marker="o", markerfacecolor="none",
                                  linestyle="none", label="hollow: probe estimate"))
        fig.suptitle(title)
        _legend(fig, handles, style.preset)
    return fig


def error_vs_params(summary: pd.DataFrame, style: Style) -> Figure:
    """Relative factor error against stored numbers (log–log), a panel per operator and n,
    the Pareto front of each family."""
    return _accuracy_figure(summary, style, "n_params",
                            "Accuracy against memory (median over repeats)")


def error_vs_time(summary: pd.DataFrame, style: Style) -> Figure:
    """Relative factor error against setup time (factorization, training included)."""
    return _accuracy_figure(summary, style, "setup_seconds",
                            "Accuracy against setup time (median over repeats)")
