"""The figures of a report, one function per figure, each returning a matplotlib Figure.

Every figure plots the per-configuration medians of :func:`lubench.report.tables.summarize`
(a cell that is not finite or not measured has no point; the tables show it). A method's
colour and marker come from its name (:mod:`lubench.report.palette`): the same in every
figure and every run. Configurations of one method share them (and are joined by a thin line
in a panel: ILU over its fill factors draws its accuracy/numbers curve); hollow markers are
errors estimated with probes or GMRES counts that did not converge. Axis labels say the norm
and whether a quantity is absolute or relative (:mod:`lubench.report.columns`). Sizes follow
the report's :class:`~lubench.report.spec.Preset`: a figure is drawn at the width it will be
printed at.

Panels: one per (operator, n) — and per run in a report of several runs — for the accuracy,
GMRES and time-to-solution figures; the Pareto front of each family (classical, compressed,
learned) is drawn in grey, one line style per family, so that "method X beats ILU at equal
numbers" is visible, or visibly false.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker as mticker  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from lubench.report.columns import BY_KEY  # noqa: E402
from lubench.report.palette import (  # noqa: E402
    FAMILY_FRONT,
    OTHER_FRONT,
    method_color,
    method_marker,
    variant_dashes,
)
from lubench.report.spec import PRESETS, Preset  # noqa: E402

__all__ = ["Style", "make_style", "error_vs_params", "error_vs_time", "gmres_vs_params",
           "time_to_solution", "scaling", "training", "pareto_front", "fitted_slope", "rc",
           "FIGURES"]

FLOOR = 1e-17  # an exact zero is drawn on a log axis at or below this, on a marked line
FAMILY_ORDER = ["classical", "compressed", "learned"]


def rc(preset: Preset) -> dict:
    """Print-friendly matplotlib settings at the preset's font size: text kept as text in
    SVG, TrueType in PDF (editable, searchable)."""
    f = preset.font
    return {
        "font.size": f, "axes.titlesize": f, "axes.labelsize": f, "legend.fontsize": f - 0.5,
        "xtick.labelsize": f - 1, "ytick.labelsize": f - 1, "legend.title_fontsize": f - 0.5,
        "axes.spines.top": False, "axes.spines.right": False, "axes.grid": True,
        "grid.alpha": 0.35, "grid.linewidth": 0.4, "lines.linewidth": 1.0,
        "lines.markersize": 4.5, "axes.linewidth": 0.6, "xtick.major.width": 0.6,
        "ytick.major.width": 0.6, "svg.fonttype": "none", "pdf.fonttype": 42,
        "ps.fonttype": 42, "savefig.dpi": 200, "figure.dpi": 100, "legend.frameon": False,
    }


@dataclass
class Style:
    """Per configuration label: its method name (hence colour and marker) and line style;
    the legend order; the preset. Built once per report, shared by every figure."""

    names: dict[str, str]
    dashes: dict[str, tuple]
    methods: list[str]
    preset: Preset = field(default_factory=lambda: PRESETS["paper"])

    def name(self, label: str) -> str:
        return self.names.get(label, str(label).split("[")[0])

    def color(self, label: str) -> str:
        return method_color(self.name(label))

    def marker(self, label: str) -> str:
        return method_marker(self.name(label))

    def dash(self, label: str) -> tuple:
        return self.dashes.get(label, (0, ()))

    @property
    def rc(self) -> dict:
        return rc(self.preset)


def make_style(summary: pd.DataFrame, preset: Preset | None = None) -> Style:
    """The style of a report: labels in suite order, classical methods first."""
    order = list(dict.fromkeys(summary["method_label"])) if len(summary) else []
    fam = dict(zip(summary["method_label"], summary["family"])) if len(summary) else {}
    rank = {f: i for i, f in enumerate(FAMILY_ORDER)}
    order.sort(key=lambda m: rank.get(fam.get(m), len(rank)))  # stable within a family
    names = dict(zip(summary["method_label"], summary["method"])) if len(summary) else {}
    dashes: dict[str, tuple] = {}
    for name in dict.fromkeys(names.values()):
        dashes.update(variant_dashes([m for m in order if names[m] == name]))
    return Style(names=names, dashes=dashes, methods=order, preset=preset or PRESETS["paper"])


# --------------------------------------------------------------------------------------------
# Layout
# --------------------------------------------------------------------------------------------
def _ok(summary: pd.DataFrame) -> pd.DataFrame:
    return summary[summary["n_ok"] > 0]


def _panel_keys(data: pd.DataFrame) -> list[tuple]:
    """(operator_label, n[, run]) of every panel, operators in order, n ascending."""
    keys = ["operator_label", "n"] + (["run"] if "run" in data.columns else [])
    out = list(dict.fromkeys(map(tuple, data[keys].itertuples(index=False))))
    ops = {op: i for i, op in enumerate(dict.fromkeys(data["operator_label"]))}
    runs = {r: i for i, r in enumerate(dict.fromkeys(data["run"]))} if "run" in data else {}
    # runs side by side: the panels of one (operator, n) are neighbours
    return sorted(out, key=lambda k: (ops[k[0]], int(k[1]),
                                      runs.get(k[2], 0) if len(k) > 2 else 0))


def _runs(data: pd.DataFrame) -> int:
    return int(data["run"].nunique()) if "run" in data.columns else 1


def _panel(data: pd.DataFrame, key: tuple) -> pd.DataFrame:
    mask = (data["operator_label"] == key[0]) & (data["n"] == key[1])
    if len(key) > 2:
        mask &= data["run"] == key[2]
    return data[mask]


def _title(key: tuple, limit: int = 30) -> str:
    """``operator, n = 256 (run)``; a long operator label breaks before its parameters."""
    op = str(key[0])
    text = f"{op}, n = {key[1]}" + (f" ({key[2]})" if len(key) > 2 else "")
    if len(text) > limit and "[" in op:
        name, _, params = op.partition("[")
        text = f"{name}\n[{params}, n = {key[1]}" + (f" ({key[2]})" if len(key) > 2 else "")
    return text


def _grid(count: int, preset: Preset, height: float | None = None, legend_rows: int = 2,
          runs: int = 1) -> tuple[Figure, np.ndarray]:
    """Panels in at most ``preset.max_cols`` columns at the preset's width (one column per
    run when several runs fit in a row); room below for a legend of ``legend_rows`` rows."""
    ncols = runs if 1 < runs <= preset.max_cols else max(1, min(preset.max_cols, count))
    nrows = max(1, math.ceil(count / ncols))
    h = (height or preset.panel_height) * nrows + 0.16 * legend_rows * preset.font / 8
    fig, axes = plt.subplots(nrows, ncols, figsize=(preset.width, h), squeeze=False,
                             layout="constrained")
    for ax in axes.flat[count:]:
        ax.set_visible(False)
    return fig, axes


def _outer_labels(axes: np.ndarray, count: int, xlabel: str, ylabel: str) -> None:
    """Axis labels on the outer panels only (the bottom one of each column, the first of
    each row): every panel shares the quantity, not the limits."""
    nrows, ncols = axes.shape
    for i, ax in enumerate(axes.flat[:count]):
        r, c = divmod(i, ncols)
        if r == nrows - 1 or i + ncols >= count:
            ax.set_xlabel(xlabel)
        if c == 0:
            ax.set_ylabel(ylabel)


def _legend(fig: Figure, handles: list, preset: Preset) -> None:
    """One legend under the panels (outside them, so it never hides a point)."""
    if not handles:
        return
    ncol = max(1, min(len(handles), int(preset.width / 1.25)))
    fig.legend(handles=handles, loc="outside lower center", ncol=ncol, handlelength=2.2,
               columnspacing=1.0)


def _method_handles(style: Style, labels: list[str]) -> list:
    """One legend entry per method name present (configurations share colour and marker)."""
    names = list(dict.fromkeys(style.name(m) for m in style.methods if m in set(labels)))
    return [Line2D([], [], color=method_color(n), marker=method_marker(n), linestyle="-",
                   lw=0.8, label=n) for n in names]


def _front_handles(families: list[str]) -> list:
    out = []
    for fam in FAMILY_ORDER + sorted(set(families) - set(FAMILY_ORDER)):
        if fam in families:
            out.append(Line2D([], [], color="0.35", lw=1.1, ls=FAMILY_FRONT.get(fam, OTHER_FRONT),
                              label=f"Pareto front: {fam or 'other'}"))
    return out


def _empty(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, fontsize=7,
            color="0.4")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)


def _placeholder(text: str, preset: Preset) -> Figure:
    with plt.rc_context(rc(preset)):
        fig, ax = plt.subplots(figsize=(preset.width, 1.2))
        ax.set_axis_off()
        ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes)
    return fig


def _finite(d: pd.DataFrame, *cols: str) -> pd.DataFrame:
    mask = pd.Series(True, index=d.index)
    for c in cols:
        mask &= d[c + "_state"] == "ok" if c + "_state" in d else np.isfinite(d[c].astype(float))
        mask &= d[c].astype(float) > 0 if c != "factor_error" else True
    return d[mask]


# --------------------------------------------------------------------------------------------
# Axes
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


# --------------------------------------------------------------------------------------------
# Accuracy against numbers / time, with one Pareto front per family
# --------------------------------------------------------------------------------------------
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


# --------------------------------------------------------------------------------------------
# GMRES iterations against numbers
# --------------------------------------------------------------------------------------------
def gmres_vs_params(summary: pd.DataFrame, style: Style) -> Figure:
    """Preconditioned GMRES iterations against stored numbers, a panel per operator and n;
    a hollow marker is a count that stopped without converging (drawn at the count it
    reached); the horizontal line is plain GMRES on the same system (``gmres_iterations``,
    when the run recorded it), with the Pareto front of each family."""
    data = _finite(_ok(summary), "n_params", "precond_iterations")
    keys = _panel_keys(data)
    if not keys:
        return _placeholder("no configuration recorded precond_iterations", style.preset)
    data = data.assign(no_conv=data["precond_converged"].map(lambda v: v is False))
    with plt.rc_context(style.rc):
        fig, axes = _grid(len(keys), style.preset, runs=_runs(data))
        families: set[str] = set()
        plain_drawn = no_conv = False
        for ax, key in zip(axes.flat, keys):
            d = _panel(data, key)
            _points(ax, d, "n_params", "precond_iterations", style, hollow="no_conv")
            families.update(_fronts(ax, d[~d["no_conv"]], "n_params", "precond_iterations"))
            no_conv |= bool(d["no_conv"].any())
            y = list(d["precond_iterations"].astype(float))
            plain = d.loc[d["gmres_iterations_state"] == "ok", "gmres_iterations"]
            if len(plain):
                level = float(plain.median())
                conv = _panel(summary, key)["gmres_converged"]
                stopped = any(v is False for v in conv)
                ax.axhline(level, color="0.15", lw=0.9, ls=(0, (3, 1.5)), zorder=1)
                ax.annotate(f"plain GMRES{' (no conv.)' if stopped else ''}: {level:.0f}",
                            (0.02, level), xycoords=("axes fraction", "data"),
                            textcoords="offset points", xytext=(0, 2), fontsize="x-small",
                            color="0.15", va="bottom")
                y.append(level)
                plain_drawn = True
            _log_axis(ax, "x", d["n_params"].to_numpy(float))
            _log_axis(ax, "y", np.asarray(y), decades=1.0)
            ax.set_title(_title(key))
        _outer_labels(axes, len(keys), BY_KEY["n_params"].axis, BY_KEY["precond_iterations"].axis)
        handles = _method_handles(style, list(data["method_label"])) + \
            _front_handles(sorted(families))
        if plain_drawn:
            handles.append(Line2D([], [], color="0.15", lw=0.9, ls=(0, (3, 1.5)),
                                  label="plain GMRES (no preconditioner)"))
        if no_conv:
            handles.append(Line2D([], [], color="0.3", marker="o", markerfacecolor="none",
                                  linestyle="none", label="hollow: did not converge"))
        fig.suptitle("GMRES iterations against memory (restart 50, rtol 1e-8)")
        _legend(fig, handles, style.preset)
    return fig


# --------------------------------------------------------------------------------------------
# Time to solution
# --------------------------------------------------------------------------------------------
def time_to_solution(summary: pd.DataFrame, style: Style) -> Figure:
    """Per method, a panel per operator and n: setup time (hollow marker) and time to
    solution = setup + preconditioned GMRES (filled marker) joined by a bar; a ``×`` for a
    GMRES that did not converge. Runs that did not record ``precond_seconds`` show setup
    only, and the figure says so."""
    data = _finite(_ok(summary), "setup_seconds")
    keys = _panel_keys(data)
    if not keys:
        return _placeholder("no configuration recorded setup_seconds", style.preset)
    have_total = bool((data["time_to_solution_state"] == "ok").any())
    rows_max = max(_panel(data, k)["method_label"].nunique() for k in keys)
    with plt.rc_context(style.rc):
        height = max(style.preset.panel_height, 0.5 + 0.16 * rows_max)
        fig, axes = _grid(len(keys), style.preset, height=height, runs=_runs(data))
        no_conv = False
        for ax, key in zip(axes.flat, keys):
            d = _panel(data, key).iloc[::-1]  # first method at the top
            ypos = np.arange(len(d))
            xs = []
            for yi, (_i, r) in zip(ypos, d.iterrows()):
                c = style.color(r["method_label"])
                mk = style.marker(r["method_label"])
                setup = float(r["setup_seconds"])
                ax.plot([setup], [yi], marker=mk, markerfacecolor="none", markeredgecolor=c,
                        linestyle="none", zorder=3)
                xs.append(setup)
                if r["time_to_solution_state"] == "ok":
                    total = float(r["time_to_solution"])
                    stopped = r.get("precond_converged") is False
                    ax.plot([setup, total], [yi, yi], color=c, lw=2.2, alpha=0.45, zorder=2,
                            solid_capstyle="butt")
                    ax.plot([total], [yi], marker="x" if stopped else mk, color=c,
                            linestyle="none", zorder=3, markeredgewidth=1.2)
                    no_conv |= bool(stopped)
                    xs.append(total)
            ax.set_yticks(ypos, [str(m) for m in d["method_label"]])
            ax.tick_params(axis="y", length=0)
            ax.grid(axis="y", visible=False)
            ax.set_ylim(-0.6, len(d) - 0.4)
            _log_axis(ax, "x", np.asarray(xs), decades=1.0)
            ax.set_title(_title(key))
        _outer_labels(axes, len(keys), "time [s] (wall clock)", "")
        handles = [Line2D([], [], color="0.3", marker="o", markerfacecolor="none",
                          linestyle="none", label="setup (factorization, training)")]
        if have_total:
            handles.append(Line2D([], [], color="0.3", marker="o", lw=2.2, alpha=0.6,
                                  label="setup + preconditioned GMRES"))
        if no_conv:
            handles.append(Line2D([], [], color="0.3", marker="x", linestyle="none",
                                  label="×: GMRES did not converge"))
        title = "Time to solution (median over repeats)"
        if not have_total:
            title += " — precond_seconds not recorded: setup only"
        fig.suptitle(title)
        _legend(fig, handles, style.preset)
    return fig


# --------------------------------------------------------------------------------------------
# Scaling and training
# --------------------------------------------------------------------------------------------
REFERENCE_SLOPES = [("O(n)", lambda n: n), ("O(n log n)", lambda n: n * np.log2(n)),
                    ("O(n²)", lambda n: n**2), ("O(n³)", lambda n: n**3)]
REFERENCE_DASHES = [(0, (1, 1.5)), (0, (3, 1.5)), (0, (5, 2)), (0, (8, 2, 2, 2))]
SCALING_METRICS = [(k, BY_KEY[k].axis) for k in ("n_params", "setup_seconds", "solve_seconds")]


def scaling(summary: pd.DataFrame, style: Style) -> Figure:
    """Parameters, setup and solve time against n (log–log) per method, with reference
    slopes O(n), O(n log n), O(n²), O(n³) and each method's fitted slope in the legend.

    One row of panels per operator that was run at two sizes or more (every operator when
    none was).
    """
    data = _ok(summary)
    by = ["operator_label"] + (["run"] if "run" in data.columns else [])
    groups = [(k, g) for k, g in data.groupby(by, sort=False)]
    ops = [(k, g) for k, g in groups if g["n"].nunique() > 1] or groups
    if not ops:
        return _placeholder("no case finished ok", style.preset)
    with plt.rc_context(style.rc):
        labels = max(g["method_label"].nunique() for _k, g in ops)
        legend_h = (1.5 + labels) * style.preset.font / 62
        fig, axes = plt.subplots(len(ops), 3, squeeze=False, layout="constrained",
                                 figsize=(max(style.preset.width, 6.0),
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
    _log_axis(ax, "y", np.asarray(values), decades=1.0)
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
        fig.suptitle("Training curves of the learned methods (repeat 0)")
        _legend(fig, handles, style.preset)
    return fig


#: figure kind -> (function, needs the result rows and histories instead of the summary)
FIGURES = {"error_vs_params": error_vs_params, "error_vs_time": error_vs_time,
           "gmres_vs_params": gmres_vs_params, "time_to_solution": time_to_solution,
           "scaling": scaling}
