"""The CG figure: preconditioned CG iterations against the tolerance, per method."""

from __future__ import annotations

import json
import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from lubench.report.figures.axes import log_axis
from lubench.report.figures.layout import (
    legend_below,
    method_handles,
    outer_labels,
    panel_grid,
    panel_keys,
    panel_rows,
    panel_title,
    run_count,
)
from lubench.report.figures.style import Style
from lubench.rundir.records import OK

__all__ = ["cg_vs_tolerance", "curve_medians"]


def _curve(text: object) -> dict[float, float]:
    """tolerance → iterations of one ``cg_curve`` (inf where it was not reached); {} when
    the row has none."""
    if not isinstance(text, str) or not text:
        return {}
    try:
        data = json.loads(text)
    except ValueError:
        return {}
    return {float(t["tol"]): (math.inf if t.get("iterations") is None
                              else float(t["iterations"]))
            for t in data.get("tolerances", [])}


def curve_medians(rows: pd.DataFrame, column: str = "cg_curve") -> dict[float, float]:
    """Per tolerance, the median of the iterations over ``rows`` (its instances and
    repeats), a tolerance not reached counting as +inf: the median is finite when more than
    half reached it."""
    curves = [c for c in map(_curve, rows[column]) if c] if column in rows else []
    tols = sorted({t for c in curves for t in c}, reverse=True)
    return {t: float(np.median([c.get(t, math.inf) for c in curves])) for t in tols}


def cg_vs_tolerance(rows: pd.DataFrame, style: Style) -> Figure | None:
    """CG iterations to each tolerance the suite listed, a panel per operator and n, a line
    per method configuration: the median over the operator's instances (and repeats) of the
    ``ok`` test cases, a tolerance that fewer than half reached left out; plain CG on the
    same systems dashed. None when no case was graded with CG."""
    data = rows[(rows["status"] == OK) & (rows.get("stage", "case") != "fit")]
    if "cg_curve" not in data or not data["cg_curve"].map(bool).any():
        return None
    data = data[data["cg_curve"].map(lambda v: isinstance(v, str) and bool(v))]
    keys = panel_keys(data)
    with plt.rc_context(style.rc):
        fig, axes = panel_grid(len(keys), style.preset, runs=run_count(data))
        plain_drawn = False
        for ax, key in zip(axes.flat, keys):
            d = panel_rows(data, key)
            ys: list[float] = []
            for label, g in d.groupby("method_label", sort=False):
                med = {t: v for t, v in curve_medians(g).items() if math.isfinite(v)}
                if not med:
                    continue
                ax.plot(list(med), list(med.values()), color=style.color(label),
                        marker=style.marker(label), ls=style.dash(label), lw=1.0,
                        markersize=4)
                ys += list(med.values())
            plain = {t: v for t, v in curve_medians(d, "cg_plain_curve").items()
                     if math.isfinite(v)}
            if plain:
                ax.plot(list(plain), list(plain.values()), color="0.15", lw=0.9,
                        ls=(0, (3, 1.5)), zorder=1)
                ys += list(plain.values())
                plain_drawn = True
            tols = [t for g in d["cg_curve"] for t in _curve(g)]
            ax.set_xscale("log")
            ax.set_xlim(max(tols) * 3, min(tols) / 3)  # tighter tolerances to the right
            log_axis(ax, "y", np.asarray([y for y in ys if y > 0] or [1.0]), decades=1.0)
            ax.set_title(panel_title(key))
        outer_labels(axes, len(keys), "tolerance (relative residual)", "CG iterations")
        handles = method_handles(style, list(data["method_label"]))
        if plain_drawn:
            handles.append(Line2D([], [], color="0.15", lw=0.9, ls=(0, (3, 1.5)),
                                  label="plain CG (no preconditioner)"))
        fig.suptitle("CG iterations to ‖b − Ax‖₂ ≤ tol·‖b‖₂ (median over a family's "
                     "test instances)")
        legend_below(fig, handles, style.preset)
    return fig
