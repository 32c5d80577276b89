"""The scaling figure: parameters, setup and solve time against n, with reference slopes
and each method's fitted slope."""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from lubench.report.columns import BY_KEY
from lubench.report.figures.axes import (
    fitted_slope,
    log_axis,
)
from lubench.report.figures.layout import (
    ok_rows,
    placeholder,
)
from lubench.report.figures.style import Style

__all__ = ["scaling", "REFERENCE_SLOPES", "SCALING_METRICS"]

REFERENCE_SLOPES = [("O(n)", lambda n: n), ("O(n log n)", lambda n: n * np.log2(n)),
                    ("O(n log²n)", lambda n: n * np.log2(n) ** 2),
                    ("O(n²)", lambda n: n**2), ("O(n³)", lambda n: n**3)]
REFERENCE_DASHES = [(0, (1, 1.5)), (0, (3, 1.5)), (0, (2, 1, 1, 1)), (0, (5, 2)),
                    (0, (8, 2, 2, 2))]
SCALING_METRICS = [(k, BY_KEY[k].axis) for k in ("n_params", "peak_memory_bytes",
                                                  "setup_seconds", "solve_seconds")]


def scaling(summary: pd.DataFrame, style: Style) -> Figure | None:
    """Stored numbers, peak memory, setup and solve time against n (log–log) per method, with
    reference slopes O(n), O(n log n), O(n log²n), O(n²), O(n³) and each method's fitted
    slope in the legend.

    One row of panels per operator that was run at two sizes or more; None when no
    operator was (there is no scaling to show; the report says so).
    """
    data = ok_rows(summary)
    if data.empty:
        return placeholder("no case finished ok", style.preset)
    by = ["operator_label"] + (["run"] if "run" in data.columns else [])
    ops = [(k, g) for k, g in data.groupby(by, sort=False) if g["n"].nunique() > 1]
    if not ops:
        return None
    with plt.rc_context(style.rc):
        labels = max(g["method_label"].nunique() for _k, g in ops)
        legend_h = (1.5 + labels) * style.preset.font / 62
        cols = len(SCALING_METRICS)
        fig, axes = plt.subplots(len(ops), cols, squeeze=False, layout="constrained",
                                 figsize=(max(style.preset.width, 2.0 * cols),
                                          (style.preset.panel_height + 0.4 + legend_h)
                                          * len(ops)))
        for row, (op, d) in zip(axes, ops):
            op = " ".join(map(str, op)) if isinstance(op, tuple) else op
            sizes = np.array(sorted({int(n) for n in d["n"]}), float)
            for ax, (col, label) in zip(row, SCALING_METRICS):
                _scaling_panel(ax, d, col, sizes, style)
                ax.set_xlabel("n (unknowns)")
                ax.set_ylabel(label)
                ax.set_title(f"{op}: {col}")
        fig.suptitle("Scaling with n (median over repeats; dashed: reference slopes)")
    return fig


def _scaling_panel(ax, d: pd.DataFrame, col: str, sizes: np.ndarray, style: Style) -> None:
    starts, values = [], []
    groups = [(m, g) for m, g in d.groupby("method_label", sort=False)]
    for k, (method, g) in enumerate(groups):
        g = g[np.isfinite(g[col].astype(float)) & (g[col] > 0)].sort_values("n")
        if g.empty:
            continue
        n, y = g["n"].to_numpy(float), g[col].to_numpy(float)
        slope = fitted_slope(n, y)
        label = f"{method}: –" if math.isnan(slope) else f"{method}: {slope:.2f}"
        # earlier methods wider and underneath: lines that coincide (plu and a dense learned
        # LU both store n² numbers) stay visible as a coloured edge
        width = max(1.1, 2.6 - 0.45 * k)
        ax.plot(n, y, color=style.color(method), marker=style.marker(method),
                ms=2 + 1.4 * width, lw=width, ls=style.dash(method), label=label,
                zorder=3 + 0.1 * k)
        starts.append(y[0])
        values.extend(y)
    ax.set_xscale("log", base=2)
    ax.minorticks_off()
    ax.set_xticks(sizes)
    ax.set_xticklabels([f"{int(s)}" for s in sizes])
    ax.set_xlim(sizes[0] / 1.15, sizes[-1] * 1.6)
    if not values:
        ax.text(0.5, 0.5, "no value", ha="center", va="center", transform=ax.transAxes)
        return
    log_axis(ax, "y", np.asarray(values), decades=1.0)
    lo, hi = ax.get_ylim()
    if len(sizes) >= 2:
        _reference_slopes(ax, sizes, float(np.exp(np.mean(np.log(starts)))), lo, hi)
        ax.set_ylim(lo, hi)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=1,
              title="fitted slope of log y on log n", fontsize="x-small",
              title_fontsize="x-small", handlelength=2.2)


def _reference_slopes(ax, sizes: np.ndarray, y0: float, lo: float, hi: float) -> None:
    """Dashed c·f(n) for the reference orders, from (n₀, y0) (y0: the geometric mean of the
    methods' values at the smallest n), each named where it leaves the panel or ends."""
    grid = np.geomspace(sizes[0], sizes[-1], 80)
    frac = lambda y: (math.log(y) - math.log(lo)) / (math.log(hi) - math.log(lo))  # noqa: E731
    ends = []
    for (name, f), dash in zip(REFERENCE_SLOPES, REFERENCE_DASHES):
        ref = y0 * f(grid) / f(sizes[0])
        ax.plot(grid, ref, color="0.55", lw=0.8, ls=dash, zorder=1)
        inside = np.nonzero((ref <= hi) & (ref >= lo))[0]
        if not len(inside):
            continue
        i = inside[-1]
        if i == len(grid) - 1:
            ends.append([frac(ref[i]), name])
        else:  # leaves through the top: name it there, left of the exit point
            ax.annotate(name, (grid[i], ref[i]), xytext=(-2, -1), textcoords="offset points",
                        fontsize=6.5, color="0.35", ha="right", va="top")
    ends.sort()
    for j in range(1, len(ends)):  # names at the right end: at least 5.5 % of the height apart
        ends[j][0] = max(ends[j][0], ends[j - 1][0] + 0.055)
    for y, name in ends:
        ax.annotate(name, (sizes[-1] * 1.03, y), xycoords=("data", "axes fraction"),
                    fontsize=6.5, color="0.35", ha="left", va="center", annotation_clip=False)
