"""The figures of a report, one function per figure, each returning a matplotlib Figure.

Every figure plots the per-configuration medians of :func:`lubench.report.tables.summarize`
(cases that did not finish ``ok`` have no numbers to plot; the tables list them). A
:class:`Style` is built once per report so that a method has the same colour in every figure:
colours come from seaborn's colour-blind-safe palette (classical methods first, in suite
order), markers tell the sizes n apart, hollow markers are errors estimated with probes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker as mticker  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

__all__ = ["Style", "make_style", "error_vs_params", "error_vs_time", "scaling", "training",
           "pareto_front", "fitted_slope", "RC"]

#: Print-friendly defaults: 9-pt text, text kept as text in SVG and TrueType in PDF.
RC = {
    "font.size": 9, "axes.titlesize": 9, "axes.labelsize": 9, "legend.fontsize": 7.5,
    "xtick.labelsize": 8, "ytick.labelsize": 8, "legend.title_fontsize": 8,
    "axes.spines.top": False, "axes.spines.right": False, "axes.grid": True,
    "grid.alpha": 0.35, "grid.linewidth": 0.5, "lines.linewidth": 1.3, "lines.markersize": 6,
    "svg.fonttype": "none", "pdf.fonttype": 42, "ps.fonttype": 42, "savefig.dpi": 200,
    "figure.dpi": 100, "legend.frameon": False,
}
MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*", "<", ">", "h", "p"]
FACTOR_ERROR = r"factor error $\|A - PLU\|_F \,/\, \|A\|_F$"
FLOOR = 1e-17  # an exact zero is drawn on a log axis at or below this, on a marked line


@dataclass
class Style:
    """Colours per method label, markers per n: built once, shared by every figure."""

    colors: dict[str, tuple]
    markers: dict[int, str]
    methods: list[str]

    def color(self, label: str) -> tuple:
        return self.colors.get(label, (0.4, 0.4, 0.4))

    def marker(self, n: int) -> str:
        return self.markers.get(int(n), "o")


def make_style(summary: pd.DataFrame) -> Style:
    """The report's palette: seaborn ``colorblind`` in suite order, classical methods first."""
    order = list(dict.fromkeys(summary["method_label"]))
    fam = dict(zip(summary["method_label"], summary["family"]))
    order.sort(key=lambda m: fam.get(m) != "classical")  # stable: keeps suite order within
    base = sns.color_palette("colorblind", 10)
    if len(order) > len(base):
        base = base + sns.color_palette("dark", 10) + sns.color_palette("pastel", 10)
    colors = {m: tuple(base[i % len(base)]) for i, m in enumerate(order)}
    sizes = sorted({int(n) for n in summary["n"].dropna()})
    markers = {n: MARKERS[i % len(MARKERS)] for i, n in enumerate(sizes)}
    return Style(colors=colors, markers=markers, methods=order)


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------
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
        axis.set_major_locator(mticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0), numticks=12))
        axis.set_major_formatter(mticker.FuncFormatter(_tick_label))
        axis.set_minor_locator(mticker.NullLocator())
    else:
        axis.set_major_locator(mticker.MaxNLocator(nbins=4, min_n_ticks=2))
        axis.set_major_formatter(mticker.FuncFormatter(_tick_label))
        axis.set_minor_locator(mticker.NullLocator())
    axis.set_minor_formatter(mticker.NullFormatter())


def _panels(count: int, ncols: int, width: float = 3.4,
            height: float = 2.8) -> tuple[Figure, np.ndarray]:
    ncols = max(1, min(ncols, count))
    nrows = max(1, math.ceil(count / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows),
                             squeeze=False, layout="constrained")
    for ax in axes.flat[count:]:
        ax.set_visible(False)
    return fig, axes


def _ok(summary: pd.DataFrame) -> pd.DataFrame:
    return summary[summary["n_ok"] > 0]


def _legend_handles(style: Style, methods: list[str], sizes: list[int],
                    extra: list[Line2D] | None = None) -> list:
    handles = [Line2D([], [], color=style.color(m), marker="o", linestyle="-", label=m)
               for m in methods]
    handles += [Line2D([], [], color="0.3", marker=style.marker(n), linestyle="none",
                       label=f"n = {n}") for n in sizes]
    return handles + (extra or [])


def _zero_level(values: np.ndarray) -> float:
    """Where exact zeros are drawn: a decade below the smallest positive value, at most
    :data:`FLOOR` (so that no measured error is mistaken for it)."""
    pos = values[np.isfinite(values) & (values > 0)]
    return min(FLOOR, 10 ** (math.floor(math.log10(pos.min())) - 1)) if len(pos) else FLOOR


def _scatter_panel(ax, data: pd.DataFrame, xcol: str, style: Style) -> None:
    """Points per method (joined across n) and the Pareto front per n; errors that are exactly
    zero sit on a dotted line labelled ``error = 0``."""
    all_y = data["factor_error"].to_numpy(float)
    zero = _zero_level(all_y)
    for method, g in data.groupby("method_label", sort=False):
        g = g.sort_values("n")
        y = g["factor_error"].to_numpy(float)
        y = np.where(y > 0, y, zero)
        x = g[xcol].to_numpy(float)
        ax.plot(x, y, color=style.color(method), alpha=0.45, lw=0.9, zorder=2)
        for xi, yi, n, kind in zip(x, y, g["n"], g["probe"]):
            ax.plot([xi], [yi], linestyle="none", marker=style.marker(n), zorder=3,
                    markeredgecolor=style.color(method), markeredgewidth=1.2,
                    markerfacecolor="none" if kind else style.color(method))
    for _n, g in data.groupby("n"):
        x = g[xcol].to_numpy(float)
        y = g["factor_error"].to_numpy(float)
        y = np.where(y > 0, y, zero)
        idx = pareto_front(x, y)
        if len(idx) > 1:
            ax.step(x[idx], y[idx], where="post", color="0.25", lw=0.8, ls=(0, (4, 2)),
                    zorder=1)
    _log_axis(ax, "x", data[xcol].to_numpy(float))
    _log_axis(ax, "y", np.where(all_y > 0, all_y, zero))
    if np.any(all_y <= 0):  # a tick labelled 0 on a dotted line, below every measured error
        ax.axhline(zero, color="0.5", lw=0.7, ls=":", zorder=1)
        lo, hi = ax.get_ylim()
        lo = min(lo, zero / 2)
        ticks = [t for t in ax.get_yticks() if zero * 5 < t <= hi]
        ax.set_yticks(ticks + [zero], [f"$10^{{{round(math.log10(t))}}}$" for t in ticks]
                      + ["0"])
        ax.yaxis.set_minor_locator(mticker.NullLocator())
        ax.set_ylim(lo, hi)


def _accuracy_figure(summary: pd.DataFrame, style: Style, xcol: str, xlabel: str,
                     title: str) -> Figure:
    data = _ok(summary).copy()
    data = data[np.isfinite(data[xcol].astype(float)) & (data[xcol] > 0)
                & np.isfinite(data["factor_error"].astype(float))]
    data["probe"] = data.get("probe", False)
    ops = list(dict.fromkeys(data["operator_label"])) or ["(no case finished ok)"]
    with plt.rc_context(RC):
        fig, axes = _panels(len(ops), ncols=3, width=3.3, height=2.9)
        for ax, op in zip(axes.flat, ops):
            d = data[data["operator_label"] == op]
            if d.empty:
                ax.text(0.5, 0.5, "no case finished ok", ha="center", va="center",
                        transform=ax.transAxes)
                ax.set_axis_off()
                continue
            _scatter_panel(ax, d, xcol, style)
            ax.set_title(op)
            ax.set_xlabel(xlabel)
            ax.set_ylabel(FACTOR_ERROR)
        extra = [Line2D([], [], color="0.25", lw=0.8, ls=(0, (4, 2)),
                        label="Pareto front (per n)")]
        if data["probe"].any():
            extra.append(Line2D([], [], color="0.3", marker="o", markerfacecolor="none",
                                linestyle="none", label="hollow: probe estimate"))
        handles = _legend_handles(style, [m for m in style.methods
                                          if m in set(data["method_label"])],
                                  sorted({int(n) for n in data["n"]}), extra)
        fig.suptitle(title, fontsize=10)
        _figure_legend(fig, handles)
    return fig


def _figure_legend(fig: Figure, handles: list) -> None:
    """One legend to the right of the panels (outside them, so it never hides a point)."""
    fig.legend(handles=handles, loc="outside right center")


# --------------------------------------------------------------------------------------------
# The figures
# --------------------------------------------------------------------------------------------
def error_vs_params(summary: pd.DataFrame, style: Style) -> Figure:
    """Factor error against stored parameters (log–log), one panel per operator."""
    return _accuracy_figure(summary, style, "n_params",
                            "stored parameters (numbers)",
                            "Accuracy against memory (median over repeats)")


def error_vs_time(summary: pd.DataFrame, style: Style) -> Figure:
    """Factor error against setup (factorization + training) time, one panel per operator."""
    return _accuracy_figure(summary, style, "setup_seconds",
                            "setup time [s]",
                            "Accuracy against setup time (factorization, training included; "
                            "median over repeats)")


REFERENCE_SLOPES = [("O(n)", lambda n: n), ("O(n log n)", lambda n: n * np.log2(n)),
                    ("O(n²)", lambda n: n**2), ("O(n³)", lambda n: n**3)]
REFERENCE_DASHES = [(0, (1, 1.5)), (0, (3, 1.5)), (0, (5, 2)), (0, (8, 2, 2, 2))]
SCALING_METRICS = [("n_params", "stored parameters (numbers)"),
                   ("setup_seconds", "setup time [s]"),
                   ("solve_seconds", "solve time [s] (one right-hand side)")]


def scaling(summary: pd.DataFrame, style: Style) -> Figure:
    """Parameters, setup and solve time against n (log–log) per method, with reference
    slopes O(n), O(n log n), O(n²), O(n³) and each method's fitted slope in the legend.

    One row of panels per operator that was run at two sizes or more (every operator when
    none was).
    """
    data = _ok(summary)
    ops = [op for op, g in data.groupby("operator_label", sort=False) if g["n"].nunique() > 1]
    if not ops:
        ops = list(dict.fromkeys(data["operator_label"]))
    with plt.rc_context(RC):
        if not ops:
            fig, ax = plt.subplots(figsize=(5, 2))
            ax.text(0.5, 0.5, "no case finished ok", ha="center", va="center")
            ax.set_axis_off()
            return fig
        fig, axes = plt.subplots(len(ops), 3, figsize=(10, 3.6 * len(ops)), squeeze=False,
                                 layout="constrained")
        for row, op in zip(axes, ops):
            d = data[data["operator_label"] == op]
            sizes = np.array(sorted({int(n) for n in d["n"]}), float)
            for ax, (col, label) in zip(row, SCALING_METRICS):
                _scaling_panel(ax, d, col, sizes, style)
                ax.set_xlabel("n (unknowns)")
                ax.set_ylabel(label)
                ax.set_title(f"{op}: {col}")
        fig.suptitle("Scaling with n (median over repeats; dashed: reference slopes)",
                     fontsize=10)
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
        ax.plot(n, y, color=style.color(method), marker="o", ms=2 + 1.4 * width, lw=width,
                label=label, zorder=3 + 0.1 * k)
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
    _log_axis(ax, "y", np.asarray(values), decades=1.0)
    lo, hi = ax.get_ylim()
    if len(sizes) >= 2:
        _reference_slopes(ax, sizes, float(np.exp(np.mean(np.log(starts)))), lo, hi)
        ax.set_ylim(lo, hi)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2 if len(starts) > 3 else 1,
              title="fitted slope of log y on log n", fontsize=6.5, title_fontsize=6.5,
              handlelength=1.5, columnspacing=1.0)


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
    keys = results[["case_id", "repeat", "operator_label", "method_label", "n"]]
    h = histories.drop(columns=[c for c in ("n", "method", "operator") if c in histories],
                       errors="ignore").merge(keys, on=["case_id", "repeat"], how="inner")
    if h.empty:
        return None
    first = h.groupby("case_id")["repeat"].transform("min")
    h = h[h["repeat"] == first]
    xcols = [("step", "training step")] + ([("seconds", "training time [s]")]
                                           if "seconds" in h else [])
    ycols = [("loss", "training loss (as minimised)")]
    if "rel_error" in h and np.isfinite(pd.to_numeric(h["rel_error"], errors="coerce")).any():
        ycols.append(("rel_error", r"$\|LU - A\|_F \,/\, \|A\|_F$"))
    ops = list(dict.fromkeys(h["operator_label"]))
    sizes = sorted({int(n) for n in h["n"]})
    dashes = ["-", (0, (5, 2)), (0, (1.5, 1.5)), (0, (6, 2, 1.5, 2)), (0, (3, 1))]
    ls = {n: dashes[i % len(dashes)] for i, n in enumerate(sizes)}
    ncols = len(xcols) * len(ycols)
    with plt.rc_context(RC):
        fig, axes = plt.subplots(len(ops), ncols, figsize=(2.9 * ncols, 2.5 * len(ops)),
                                 squeeze=False, layout="constrained")
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
                _log_axis(ax, "y", np.asarray(ys), decades=0.0)
                if x == "seconds":
                    _log_axis(ax, "x", np.asarray(xs), decades=0.0)
                if missing:
                    ax.text(0.02, 0.02, "not recorded by: " + ", ".join(dict.fromkeys(missing)),
                            transform=ax.transAxes, fontsize=6.5, color="0.35", va="bottom")
                ax.set_xlabel(xlabel)
                ax.set_ylabel(ylabel)
                ax.set_title(op)
        methods = [m for m in style.methods if m in set(h["method_label"])]
        handles = [Line2D([], [], color=style.color(m), label=m) for m in methods]
        handles += [Line2D([], [], color="0.3", ls=ls[n], label=f"n = {n}") for n in sizes]
        fig.suptitle("Training curves of the learned methods (repeat 0)", fontsize=10)
        _figure_legend(fig, handles)
    return fig
