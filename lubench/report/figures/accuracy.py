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
    draw_fronts,
    draw_points,
    log_axis,
    zero_level,
)
from lubench.report.figures.layout import (
    finite_rows,
    front_handles,
    legend_below,
    method_handles,
    ok_rows,
    outer_labels,
    panel_grid,
    panel_keys,
    panel_rows,
    panel_title,
    placeholder,
    run_count,
)
from lubench.report.figures.style import Style

__all__ = ["error_vs_params", "error_vs_time"]


def zero_axis(ax, values: np.ndarray, zero: float) -> None:
    """Log y axis; exact zeros sit on a dotted line at ``zero`` with a tick labelled 0."""
    log_axis(ax, "y", np.where(values > 0, values, zero))
    if np.any(values <= 0):
        ax.axhline(zero, color="0.5", lw=0.6, ls=":", zorder=1)
        lo, hi = ax.get_ylim()
        ticks = [t for t in ax.get_yticks() if zero * 5 < t <= hi]
        ax.set_yticks(ticks + [zero], [f"$10^{{{round(math.log10(t))}}}$" for t in ticks]
                      + ["0"])
        ax.yaxis.set_minor_locator(mticker.NullLocator())
        ax.set_ylim(min(lo, zero / 2), hi)


def _accuracy_figure(summary: pd.DataFrame, style: Style, xcol: str, title: str) -> Figure:
    data = finite_rows(ok_rows(summary), xcol, "factor_error")
    keys = panel_keys(data)
    if not keys:
        return placeholder(f"no configuration has both factor_error and {xcol}", style.preset)
    with plt.rc_context(style.rc):
        fig, axes = panel_grid(len(keys), style.preset, runs=run_count(data))
        families: set[str] = set()
        probe = False
        for ax, key in zip(axes.flat, keys):
            d = panel_rows(data, key)
            y = d["factor_error"].to_numpy(float)
            zero = zero_level(y)
            draw_points(ax, d, xcol, "factor_error", style, zero)
            families.update(draw_fronts(ax, d, xcol, "factor_error", zero))
            probe |= bool(d["probe"].any())
            log_axis(ax, "x", d[xcol].to_numpy(float))
            zero_axis(ax, y, zero)
            ax.set_title(panel_title(key))
        outer_labels(axes, len(keys), BY_KEY[xcol].axis, BY_KEY["factor_error"].axis)
        handles = method_handles(style, list(data["method_label"]))
        handles += front_handles(sorted(families))
        if probe:
            handles.append(Line2D([], [], color="0.3", marker="o", markerfacecolor="none",
                                  linestyle="none", label="hollow: probe estimate"))
        fig.suptitle(title)
        legend_below(fig, handles, style.preset)
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
