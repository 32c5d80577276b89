"""Panels of a figure: one per (operator, n[, run]), laid out at the preset's width, with
axis labels on the outer panels and one legend under them."""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from lubench.report.figures.style import FAMILY_ORDER, Style, rc
from lubench.report.palette import (
    FAMILY_FRONT,
    OTHER_FRONT,
    method_color,
    method_marker,
)
from lubench.suite.report_spec import Preset

__all__ = ["ok_rows", "panel_keys", "run_count", "panel_rows", "panel_title", "panel_grid",
           "outer_labels", "legend_below", "method_handles", "front_handles", "placeholder",
           "finite_rows"]


def ok_rows(summary: pd.DataFrame) -> pd.DataFrame:
    """The summary rows with at least one repeat that finished ok."""
    return summary[summary["n_ok"] > 0]


def panel_keys(data: pd.DataFrame) -> list[tuple]:
    """(operator_label, n[, run]) of every panel, operators in order, n ascending."""
    keys = ["operator_label", "n"] + (["run"] if "run" in data.columns else [])
    out = list(dict.fromkeys(map(tuple, data[keys].itertuples(index=False))))
    ops = {op: i for i, op in enumerate(dict.fromkeys(data["operator_label"]))}
    runs = {r: i for i, r in enumerate(dict.fromkeys(data["run"]))} if "run" in data else {}
    # runs side by side: the panels of one (operator, n) are neighbours
    return sorted(out, key=lambda k: (ops[k[0]], int(k[1]),
                                      runs.get(k[2], 0) if len(k) > 2 else 0))


def run_count(data: pd.DataFrame) -> int:
    """How many runs the frame holds (1 without a ``run`` column)."""
    return int(data["run"].nunique()) if "run" in data.columns else 1


def panel_rows(data: pd.DataFrame, key: tuple) -> pd.DataFrame:
    """The rows of one panel (:func:`panel_keys`)."""
    mask = (data["operator_label"] == key[0]) & (data["n"] == key[1])
    if len(key) > 2:
        mask &= data["run"] == key[2]
    return data[mask]


def panel_title(key: tuple, limit: int = 30) -> str:
    """``operator, n = 256 (run)``; a long operator label breaks before its parameters."""
    op = str(key[0])
    text = f"{op}, n = {key[1]}" + (f" ({key[2]})" if len(key) > 2 else "")
    if len(text) > limit and "[" in op:
        name, _, params = op.partition("[")
        text = f"{name}\n[{params}, n = {key[1]}" + (f" ({key[2]})" if len(key) > 2 else "")
    return text


def panel_grid(count: int, preset: Preset, height: float | None = None, legend_rows: int = 2,
          runs: int = 1, max_cols: int | None = None) -> tuple[Figure, np.ndarray]:
    """Panels in at most ``preset.max_cols`` columns (or ``max_cols``, when fewer) at the
    preset's width (one column per run when several runs fit in a row); room below for a
    legend of ``legend_rows`` rows."""
    cols = min(preset.max_cols, max_cols or preset.max_cols)
    ncols = runs if 1 < runs <= cols else max(1, min(cols, count))
    nrows = max(1, math.ceil(count / ncols))
    h = (height or preset.panel_height) * nrows + 0.16 * legend_rows * preset.font / 8
    fig, axes = plt.subplots(nrows, ncols, figsize=(preset.width, h), squeeze=False,
                             layout="constrained")
    for ax in axes.flat[count:]:
        ax.set_visible(False)
    return fig, axes


def outer_labels(axes: np.ndarray, count: int, xlabel: str, ylabel: str) -> None:
    """Axis labels on the outer panels only (the bottom one of each column, the first of
    each row): every panel shares the quantity, not the limits."""
    nrows, ncols = axes.shape
    for i, ax in enumerate(axes.flat[:count]):
        r, c = divmod(i, ncols)
        if r == nrows - 1 or i + ncols >= count:
            ax.set_xlabel(xlabel)
        if c == 0:
            ax.set_ylabel(ylabel)


def legend_below(fig: Figure, handles: list, preset: Preset) -> None:
    """One legend under the panels (outside them, so it never hides a point)."""
    if not handles:
        return
    ncol = max(1, min(len(handles), int(preset.width / 1.25)))
    fig.legend(handles=handles, loc="outside lower center", ncol=ncol, handlelength=2.2,
               columnspacing=1.0)


def method_handles(style: Style, labels: list[str]) -> list:
    """One legend entry per method name present (configurations share colour and marker)."""
    names = list(dict.fromkeys(style.name(m) for m in style.methods if m in set(labels)))
    return [Line2D([], [], color=method_color(n), marker=method_marker(n), linestyle="-",
                   lw=0.8, label=n) for n in names]


def front_handles(families: list[str]) -> list:
    out = []
    for fam in FAMILY_ORDER + sorted(set(families) - set(FAMILY_ORDER)):
        if fam in families:
            out.append(Line2D([], [], color="0.35", lw=1.1, ls=FAMILY_FRONT.get(fam, OTHER_FRONT),
                              label=f"Pareto front: {fam or 'other'}"))
    return out


def placeholder(text: str, preset: Preset) -> Figure:
    """A one-line figure saying why there is nothing to draw."""
    with plt.rc_context(rc(preset)):
        fig, ax = plt.subplots(figsize=(preset.width, 1.2))
        ax.set_axis_off()
        ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes)
    return fig


def finite_rows(d: pd.DataFrame, *cols: str) -> pd.DataFrame:
    """The rows where every column of ``cols`` holds a finite value, positive except for
    ``factor_error`` (an exact zero is drawn on its own line)."""
    mask = pd.Series(True, index=d.index)
    for c in cols:
        mask &= d[c + "_state"] == "ok" if c + "_state" in d else np.isfinite(d[c].astype(float))
        mask &= d[c].astype(float) > 0 if c != "factor_error" else True
    return d[mask]
