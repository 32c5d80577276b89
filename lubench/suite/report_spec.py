"""The report specification: which columns, methods, operators, sizes, figures and formats.

One parser for both places a specification comes from — the options of ``lubench report``
and a suite's ``report:`` section (the same keys)::

    report:
      columns: [factor_error, precond_iterations, n_params, setup_seconds]  # table columns
      methods: [plu, ilu, "gfmm_lu[P=32]"]   # names, labels or -k selectors; table order
      operators: [laplacian_2d, "convdiff_*"]
      sizes: [1024]                          # n to keep
      panel_sizes: largest                   # n of the per-(operator, n) panel figures
      group: operator                        # one table per operator | blocks: one table
      figures: [error_vs_params, gmres_vs_params, time_to_solution]
      formats: [pdf, tex]                    # figures: png pdf svg; tables: md tex html
      preset: paper                          # paper (one column) | paper-2col | slides

A value may be a list or a comma-separated string (``--columns a,b``). Anything unknown is
a :class:`~lubench.api.LubenchError` naming the key (and the closest valid value). Options
given on the command line replace the suite's value of the same key (:func:`merge`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from lubench.api import LubenchError
from lubench.errors import shown
from lubench.metrics.table import METRICS
from lubench.params import closest

__all__ = ["ReportSpec", "Preset", "PRESETS", "FIGURE_KINDS", "FIGURE_FORMATS",
           "PANEL_FIGURES", "PANEL_LARGEST",
           "TABLE_FORMATS", "GROUPS", "SPEC_KEYS", "parse_spec", "merge"]

FIGURE_KINDS = ("error_vs_params", "error_vs_time", "gmres_vs_params", "time_to_solution",
                "cg_vs_tolerance", "cg_time_to_solution", "scaling", "training")
FIGURE_FORMATS = ("png", "pdf", "svg")
#: table format -> file it is written to (``latex`` is another name for ``tex``)
TABLE_FORMATS = {"md": "results.md", "tex": "results.tex", "html": "results.html"}
FORMAT_ALIASES = {"latex": "tex"}
GROUPS = ("operator", "blocks")
PANEL_LARGEST = "largest"  # panel_sizes: each operator's largest n
PANEL_FIGURES = ("error_vs_params", "error_vs_time", "gmres_vs_params", "time_to_solution")
DEFAULT_FORMATS = ("png", "pdf", "md", "tex", "html")


@dataclass(frozen=True)
class Preset:
    """Sizes for one medium: a figure ``width`` in inches at ``font`` points is placed at
    100 % (``\\includegraphics[width=\\linewidth]`` in that medium), so its text has the
    size of the document's small text; ``table_size`` is the LaTeX size switch of tables
    (empty: the document's font size) and ``tabcolsep`` their column gap."""

    name: str
    width: float
    font: float
    panel_height: float
    max_cols: int
    table_size: str = ""
    tabcolsep: str = ""


PRESETS: dict[str, Preset] = {
    # one-column article (A4/letter with ~2.5 cm margins: \linewidth ~ 6 in)
    "paper": Preset("paper", width=6.0, font=8.0, panel_height=2.1, max_cols=3,
                    tabcolsep="3pt"),
    # one column of a two-column paper (IEEE, ACM, Elsevier: 3.3-3.5 in)
    "paper-2col": Preset("paper-2col", width=3.4, font=7.0, panel_height=1.9, max_cols=2,
                         table_size=r"\small", tabcolsep="2.5pt"),
    # a 16:9 beamer frame (~5.9 in of text width), larger text
    "slides": Preset("slides", width=5.9, font=9.0, panel_height=2.3, max_cols=3,
                     table_size=r"\small"),
}


@dataclass(frozen=True)
class ReportSpec:
    """A parsed specification; empty tuples mean "all" (all present columns, methods, ...)."""

    columns: tuple[str, ...] = ()
    methods: tuple[str, ...] = ()
    operators: tuple[str, ...] = ()
    sizes: tuple[int, ...] = ()
    panel_sizes: tuple[int, ...] | str = ()
    group: str = "operator"
    figures: tuple[str, ...] = FIGURE_KINDS
    formats: tuple[str, ...] = DEFAULT_FORMATS
    preset: str = "paper"
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False)

    @property
    def figure_formats(self) -> tuple[str, ...]:
        return tuple(f for f in self.formats if f in FIGURE_FORMATS)

    @property
    def table_formats(self) -> tuple[str, ...]:
        return tuple(f for f in self.formats if f in TABLE_FORMATS)

    @property
    def size(self) -> Preset:
        return PRESETS[self.preset]


SPEC_KEYS = {
    "columns": "table columns, by result column name, in order",
    "methods": "methods to keep (names or labels, globs), in table order",
    "operators": "operators to keep (names or labels, globs), in table order",
    "sizes": "sizes n to keep",
    "panel_sizes": "sizes n of the panel figures (error_vs_params, error_vs_time, "
                   "gmres_vs_params, time_to_solution: a panel per operator and n); "
                   "largest: each operator's largest n; the tables and the scaling figure "
                   "keep every size",
    "group": "operator: one table per operator | blocks: one table, a block per operator",
    "figures": "figure kinds to draw",
    "formats": "output formats: png pdf svg (figures), md tex html (tables)",
    "preset": "figure and table sizes: paper | paper-2col | slides",
}


def _at(where: str, key: str) -> str:
    """How an error names a key: ``suite.yaml: report.columns``, or ``--columns`` for the
    command line (``where`` = ``"--"``)."""
    return f"--{key.replace('_', '-')}" if where == "--" else f"{where}.{key}"


def _items(value: Any, where: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    if isinstance(value, (list, tuple)):
        out = []
        for v in value:
            if isinstance(v, (dict, list, tuple)) or v is None:
                raise LubenchError(f"{where}: expected names, got {shown(v)}")
            out.append(str(v).strip())
        return [v for v in out if v]
    raise LubenchError(f"{where}: expected a list or a comma-separated string, got "
                       f"{shown(value)}")


def _choices(values: list[str], allowed: tuple[str, ...] | list[str], where: str,
             what: str) -> tuple[str, ...]:
    for v in values:
        if v not in allowed:
            raise LubenchError(f"{where}: unknown {what} {shown(v)}{closest(v, allowed)} "
                               f"(choose from {', '.join(allowed)})")
    return tuple(dict.fromkeys(values))


def _sizes(value: Any, where: str, word: str | None = None) -> tuple[int, ...] | str:
    """Sizes n ≥ 1 given as an integer, a list or a comma-separated string (``word``, when
    given, alone instead: ``largest``), distinct, in order; else one error naming ``where``."""
    items = [value] if isinstance(value, int) and not isinstance(value, bool) \
        else _items(value, where)
    if word is not None and items == [word]:
        return word
    out = []
    for item in items:
        text = str(item).strip()
        if not (text.isascii() and text.isdigit() and int(text) >= 1):
            also = f" or '{word}'" if word else ""
            raise LubenchError(f"{where}: expected integers{also} (sizes n ≥ 1), "
                               f"got {shown(value)}")
        out.append(int(text))
    return tuple(dict.fromkeys(out))


def parse_spec(mapping: Mapping[str, Any] | None, where: str = "report") -> ReportSpec:
    """Validate a specification given as a mapping (a suite's ``report:`` section, or the
    command line's options); raises LubenchError naming ``where`` and the key (``where`` =
    ``"--"``: the key as a command-line option)."""
    if mapping is None:
        mapping = {}
    if not isinstance(mapping, Mapping):
        raise LubenchError(f"{where}: expected a mapping of {', '.join(SPEC_KEYS)}, "
                           f"got {shown(mapping)}")
    for key in mapping:
        if key not in SPEC_KEYS:
            at = where if where != "--" else "report"
            raise LubenchError(f"{at}: unknown key {shown(key)}{closest(str(key), SPEC_KEYS)} "
                               f"(allowed: {', '.join(SPEC_KEYS)})")
    kw: dict[str, Any] = {"raw": dict(mapping)}
    if mapping.get("columns") is not None:
        cols = _items(mapping["columns"], _at(where, "columns"))
        showable = [m.key for m in METRICS if m.number]  # what a report can show
        kw["columns"] = _choices(cols, showable, _at(where, "columns"), "column")
    for key in ("methods", "operators"):
        if mapping.get(key) is not None:
            kw[key] = tuple(dict.fromkeys(_items(mapping[key], _at(where, key))))
    if mapping.get("sizes") is not None:
        kw["sizes"] = _sizes(mapping["sizes"], _at(where, "sizes"))
    if mapping.get("panel_sizes") is not None:
        kw["panel_sizes"] = _sizes(mapping["panel_sizes"], _at(where, "panel_sizes"),
                                   PANEL_LARGEST)
    if mapping.get("group") is not None:
        kw["group"] = _choices(_items(mapping["group"], _at(where, "group"))[:1] or [""], GROUPS,
                               _at(where, "group"), "grouping")[0]
    if mapping.get("figures") is not None:
        figs = _items(mapping["figures"], _at(where, "figures"))
        kw["figures"] = () if figs == ["none"] else _choices(figs, FIGURE_KINDS,
                                                             _at(where, "figures"), "figure")
    if mapping.get("formats") is not None:
        fmts = [FORMAT_ALIASES.get(f.lower(), f.lower())
                for f in _items(mapping["formats"], _at(where, "formats"))]
        kw["formats"] = _choices(fmts, FIGURE_FORMATS + tuple(TABLE_FORMATS),
                                 _at(where, "formats"), "format")
    if mapping.get("preset") is not None:
        kw["preset"] = _choices(_items(mapping["preset"], _at(where, "preset"))[:1] or [""],
                                tuple(PRESETS), _at(where, "preset"), "preset")[0]
    return ReportSpec(**kw)


def merge(base: Mapping[str, Any] | None, override: Mapping[str, Any] | None) -> dict:
    """``base`` (a suite's ``report:``) with the keys ``override`` (the command line) sets
    replaced; keys whose override is None are kept from ``base``."""
    out = dict(base or {})
    out.update({k: v for k, v in (override or {}).items() if v is not None})
    return out
