"""Solver figures: preconditioned GMRES iterations against stored numbers, and time to
solution (setup + preconditioned GMRES, or + preconditioned CG with the training across
instances amortized) per method."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from lubench.report.columns import BY_KEY
from lubench.report.figures.axes import (
    draw_fronts,
    draw_points,
    log_axis,
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

__all__ = ["gmres_vs_params", "time_to_solution", "cg_time_to_solution"]


def gmres_vs_params(summary: pd.DataFrame, style: Style) -> Figure:
    """Preconditioned GMRES iterations against stored numbers, a panel per operator and n;
    a hollow marker is a count that stopped without converging (drawn at the count it
    reached); the horizontal line is plain GMRES on the same system (``gmres_iterations``,
    when the run recorded it), with the Pareto front of each family."""
    data = finite_rows(ok_rows(summary), "n_params", "precond_iterations")
    keys = panel_keys(data)
    if not keys:
        return placeholder("no configuration recorded precond_iterations", style.preset)
    data = data.assign(no_conv=data["precond_converged"].map(lambda v: v is False))
    with plt.rc_context(style.rc):
        fig, axes = panel_grid(len(keys), style.preset, runs=run_count(data))
        families: set[str] = set()
        plain_drawn = no_conv = False
        for ax, key in zip(axes.flat, keys):
            d = panel_rows(data, key)
            draw_points(ax, d, "n_params", "precond_iterations", style, hollow="no_conv")
            families.update(draw_fronts(ax, d[~d["no_conv"]], "n_params", "precond_iterations"))
            no_conv |= bool(d["no_conv"].any())
            y = list(d["precond_iterations"].astype(float))
            plain = d.loc[d["gmres_iterations_state"] == "ok", "gmres_iterations"]
            if len(plain):
                level = float(plain.median())
                conv = panel_rows(summary, key)["gmres_converged"]
                stopped = any(v is False for v in conv)
                ax.axhline(level, color="0.15", lw=0.9, ls=(0, (3, 1.5)), zorder=1)
                ax.annotate(f"plain GMRES{' (no conv.)' if stopped else ''}: {level:.0f}",
                            (0.02, level), xycoords=("axes fraction", "data"),
                            textcoords="offset points", xytext=(0, 2), fontsize="x-small",
                            color="0.15", va="bottom")
                y.append(level)
                plain_drawn = True
            log_axis(ax, "x", d["n_params"].to_numpy(float))
            log_axis(ax, "y", np.asarray(y), decades=1.0)
            ax.set_title(panel_title(key))
        outer_labels(axes, len(keys), BY_KEY["n_params"].axis, BY_KEY["precond_iterations"].axis)
        handles = method_handles(style, list(data["method_label"])) + \
            front_handles(sorted(families))
        if plain_drawn:
            handles.append(Line2D([], [], color="0.15", lw=0.9, ls=(0, (3, 1.5)),
                                  label="plain GMRES (no preconditioner)"))
        if no_conv:
            handles.append(Line2D([], [], color="0.3", marker="o", markerfacecolor="none",
                                  linestyle="none", label="hollow: did not converge"))
        fig.suptitle("GMRES iterations against memory (restart 50, rtol 1e-8)")
        legend_below(fig, handles, style.preset)
    return fig


# --------------------------------------------------------------------------------------------
# Time to solution
# --------------------------------------------------------------------------------------------
def time_to_solution(summary: pd.DataFrame, style: Style) -> Figure:
    """Per method, a panel per operator and n: setup time (hollow marker) and time to
    solution = setup + preconditioned GMRES (filled marker) joined by a bar; a ``×`` for a
    GMRES that did not converge. Runs that did not record ``precond_seconds`` show setup
    only, and the figure says so."""
    return _time_panels(summary, style, "time_to_solution", "precond_converged",
                        "preconditioned GMRES", "GMRES", "precond_seconds")


def cg_time_to_solution(summary: pd.DataFrame, style: Style) -> Figure | None:
    """The same with CG to 1e-8 (``cg_time_to_solution`` = setup + ``cg_seconds``), and, for a
    method trained across instances, its training amortized over the family's test
    instances (``cg_time_with_training``, a dotted bar to a tick). None when no case was
    graded with CG."""
    if not (summary.get("cg_time_to_solution_state", pd.Series(dtype=object)) == "ok").any():
        return None
    return _time_panels(summary, style, "cg_time_to_solution", "cg_converged",
                        "preconditioned CG to 1e-8", "CG", "cg_seconds",
                        training="cg_time_with_training")


def _time_panels(summary: pd.DataFrame, style: Style, total_key: str, converged: str,
                 solver: str, short: str, part: str, training: str | None = None) -> Figure:
    data = finite_rows(ok_rows(summary), "setup_seconds")
    keys = panel_keys(data)
    if not keys:
        return placeholder("no configuration recorded setup_seconds", style.preset)
    have_total = bool((data[f"{total_key}_state"] == "ok").any())
    rows_max = max(panel_rows(data, k)["method_label"].nunique() for k in keys)
    with plt.rc_context(style.rc):
        height = max(style.preset.panel_height, 0.5 + 0.16 * rows_max)
        # the method labels are the y tick labels: as many columns as leave each panel
        # about 1.3 in beside its labels (long ones, such as swept parameters, take one)
        label_in = data["method_label"].astype(str).str.len().max() * style.preset.font * 0.55 / 72
        fig, axes = panel_grid(len(keys), style.preset, height=height, runs=run_count(data),
                               max_cols=max(1, int(style.preset.width // (label_in + 1.3))))
        no_conv = trained = False
        for ax, key in zip(axes.flat, keys):
            d = panel_rows(data, key).iloc[::-1]  # first method at the top
            ypos = np.arange(len(d))
            xs = []
            for yi, (_i, r) in zip(ypos, d.iterrows()):
                c = style.color(r["method_label"])
                mk = style.marker(r["method_label"])
                setup = float(r["setup_seconds"])
                ax.plot([setup], [yi], marker=mk, markerfacecolor="none", markeredgecolor=c,
                        linestyle="none", zorder=3)
                xs.append(setup)
                if r[f"{total_key}_state"] == "ok":
                    total = float(r[total_key])
                    stopped = r.get(converged) is False
                    ax.plot([setup, total], [yi, yi], color=c, lw=2.2, alpha=0.45, zorder=2,
                            solid_capstyle="butt")
                    ax.plot([total], [yi], marker="x" if stopped else mk, color=c,
                            linestyle="none", zorder=3, markeredgewidth=1.2)
                    no_conv |= bool(stopped)
                    xs.append(total)
                    if training and r.get(f"{training}_state") == "ok" \
                            and float(r[training]) > total:
                        amortized = float(r[training])
                        ax.plot([total, amortized], [yi, yi], color=c, lw=1.2, ls=":",
                                zorder=2)
                        ax.plot([amortized], [yi], marker="|", color=c, markersize=9,
                                markeredgewidth=1.6, linestyle="none", zorder=3)
                        xs.append(amortized)
                        trained = True
            ax.set_yticks(ypos, [str(m) for m in d["method_label"]])
            ax.tick_params(axis="y", length=0)
            ax.grid(axis="y", visible=False)
            ax.set_ylim(-0.6, len(d) - 0.4)
            log_axis(ax, "x", np.asarray(xs), decades=1.0)
            ax.set_title(panel_title(key))
        outer_labels(axes, len(keys), "time [s] (wall clock)", "")
        handles = [Line2D([], [], color="0.3", marker="o", markerfacecolor="none",
                          linestyle="none", label="setup (factorization, training)")]
        if have_total:
            handles.append(Line2D([], [], color="0.3", marker="o", lw=2.2, alpha=0.6,
                                  label=f"setup + {solver}"))
        if trained:
            handles.append(Line2D([], [], color="0.3", marker="|", markersize=9, ls=":",
                                  markeredgewidth=1.6,
                                  label="+ training across instances per test instance"))
        if no_conv:
            handles.append(Line2D([], [], color="0.3", marker="x", linestyle="none",
                                  label=f"×: {short} did not converge"))
        title = f"Time to solution with {short} (median over repeats and instances)"
        if not have_total:
            title += f" — {part} not recorded: setup only"
        fig.suptitle(title)
        legend_below(fig, handles, style.preset)
    return fig
