"""The training figure: loss and relative error of the learned methods against step and
seconds."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from lubench.report.figures.axes import (
    log_axis,
)
from lubench.report.figures.layout import (
    legend_below,
)
from lubench.report.figures.style import Style

__all__ = ["training"]


def training(results: pd.DataFrame, histories: pd.DataFrame, style: Style) -> Figure | None:
    """Training loss and relative error against step and against seconds, one row per
    operator, one line per learned case (colour = method, line style = n); repeat 0 only.

    None when no case has a training history.
    """
    if histories is None or histories.empty or "loss" not in histories.columns:
        return None
    if "case_id" not in histories.columns:
        return None
    if "repeat" not in histories.columns:
        histories = histories.assign(repeat=0)
    on = ["case_id", "repeat"] + (["run"] if "run" in results and "run" in histories else [])
    keys = results[on + ["operator_label", "method_label", "n"]]
    h = histories.drop(columns=[c for c in ("n", "method", "operator") if c in histories],
                       errors="ignore").merge(keys, on=on, how="inner")
    if "run" in h.columns:
        h["operator_label"] = h["operator_label"] + " (" + h["run"].astype(str) + ")"
        h["case_id"] = h["case_id"] + "@" + h["run"].astype(str)
    if h.empty:
        return None
    first = h.groupby("case_id")["repeat"].transform("min")
    h = h[h["repeat"] == first]
    xcols = [("step", "training step")] + ([("seconds", "training time [s]")]
                                           if "seconds" in h else [])
    ycols = [("loss", "training loss (as minimised)")]
    if "rel_error" in h and np.isfinite(pd.to_numeric(h["rel_error"], errors="coerce")).any():
        ycols.append(("rel_error", r"relative error $\|LU - A\|_F \,/\, \|A\|_F$"))
    ops = list(dict.fromkeys(h["operator_label"]))
    sizes = sorted({int(n) for n in h["n"]})
    dashes = ["-", (0, (5, 2)), (0, (1.5, 1.5)), (0, (6, 2, 1.5, 2)), (0, (3, 1))]
    ls = {n: dashes[i % len(dashes)] for i, n in enumerate(sizes)}
    ncols = len(xcols) * len(ycols)
    with plt.rc_context(style.rc):
        fig, axes = plt.subplots(len(ops), ncols, squeeze=False, layout="constrained",
                                 figsize=(max(style.preset.width, 1.6 * ncols),
                                          (style.preset.panel_height + 0.2) * len(ops) + 0.5))
        for row, op in zip(axes, ops):
            d = h[h["operator_label"] == op]
            panels = [(y, yl, x, xl) for y, yl in ycols for x, xl in xcols]
            for ax, (y, ylabel, x, xlabel) in zip(row, panels):
                xs, ys, missing = [], [], []
                for (method, n, _case), g in d.groupby(["method_label", "n", "case_id"],
                                                       sort=False):
                    g = g.sort_values("step")
                    yy = pd.to_numeric(g[y], errors="coerce").to_numpy(float)
                    xx = pd.to_numeric(g[x], errors="coerce").to_numpy(float)
                    keep = np.isfinite(yy) & (yy > 0) & np.isfinite(xx)
                    if not keep.any():
                        missing.append(method)
                        continue
                    few = keep.sum() <= 3  # a curve of one point is a marker, not a line
                    ax.plot(xx[keep], yy[keep], color=style.color(method), ls=ls[int(n)],
                            lw=1.1, marker="o" if few else None, ms=3.5)
                    xs.extend(xx[keep])
                    ys.extend(yy[keep])
                log_axis(ax, "y", np.asarray(ys), decades=0.0)
                if x == "seconds":
                    log_axis(ax, "x", np.asarray(xs), decades=0.0)
                if missing:
                    ax.text(0.02, 0.02, "not recorded by: " + ", ".join(dict.fromkeys(missing)),
                            transform=ax.transAxes, fontsize=6.5, color="0.35", va="bottom")
                ax.set_xlabel(xlabel)
                ax.set_ylabel(ylabel)
                ax.set_title(op)
        methods = [m for m in style.methods if m in set(h["method_label"])]
        handles = [Line2D([], [], color=style.color(m), label=m) for m in methods]
        handles += [Line2D([], [], color="0.3", ls=ls[n], label=f"n = {n}") for n in sizes]
        fig.suptitle("Training curves of the learned methods (repeat 0)")
        legend_below(fig, handles, style.preset)
    return fig
