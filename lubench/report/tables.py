"""Tables of a run (or of several): one row per operator × n × method (× run), the median
over repeats.

The same aggregate (:func:`summarize`) feeds three renderings: Markdown (printed after a run),
LaTeX (booktabs and siunitx ``S`` columns, to paste into a paper) and HTML (the sortable,
filterable table of ``report.html``). The columns, their units and the direction in which a
value is better come from :mod:`lubench.report.columns`.

A cell holds the median over the repeats that finished ``ok`` — (min–max) follows in Markdown
and HTML when they differ. Three things a cell can say instead of a number:

* ``–``   not measured (the column is absent from the row: an older run, a probe-only size);
* ``NaN`` the metric was computed and is not finite (the row's ``error`` names it, by the
  non-finite rule of DESIGN.md) — a median over repeats with one such repeat is NaN too;
* ``∞``   an infinite value (runs older than that rule stored inf).

A configuration that did not finish ``ok`` keeps its row: its status says what happened.
"""

from __future__ import annotations

import fnmatch
import html
import json
import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from lubench.api import LubenchError
from lubench.metrics import GMRES_MAXITER as GMRES_MAX
from lubench.report.columns import BY_KEY, DEFAULT_COLUMNS, DERIVED, METRICS, Metric
from lubench.report.load import OK, prepare_results
from lubench.report.spec import Preset, ReportSpec

__all__ = ["summarize", "select", "table_columns", "summary_markdown", "latex_tables",
           "html_table", "frame_text", "fmt_number", "short_reason", "cell", "best_flags",
           "nonfinite_keys", "NOT_MEASURED", "GMRES_MAX"]

REASON_CHARS = 60
NOT_MEASURED = "–"
NAN_TEXT = "NaN"
INF_TEXT = "∞"


# --------------------------------------------------------------------------------------------
# Numbers
# --------------------------------------------------------------------------------------------
def fmt_number(x: float | None, digits: int = 3, integer: bool = False) -> str:
    """``1.23e-4`` (``digits`` significant digits, short exponent, none for 10⁰: ``3.44``);
    integers below 10⁶ as they are; ``–`` for a missing value, ``∞``/``-∞`` for infinities.
    siunitx's ``S`` columns read the output as it is."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return NOT_MEASURED
    x = float(x)
    if math.isinf(x):
        return INF_TEXT if x > 0 else "-" + INF_TEXT
    if integer and abs(x) < 1e6:
        return str(int(round(x)))
    if x == 0:
        return "0"
    mantissa, exponent = f"{x:.{digits - 1}e}".split("e")
    return mantissa if int(exponent) == 0 else f"{mantissa}e{int(exponent)}"


def short_reason(text: str, limit: int = REASON_CHARS) -> str:
    """The first line of a reason, cut at ``limit`` characters with an ellipsis."""
    line = (text or "").strip().splitlines()[0] if (text or "").strip() else ""
    return line if len(line) <= limit else line[: limit - 1].rstrip() + "…"


_NONFINITE = re.compile(r"not finite[^:]*:\s*([\w ,]+)")


def nonfinite_keys(error: str) -> set[str]:
    """The metrics an ``ok`` row's ``error`` names as not finite (``"not finite (NaN):
    factor_error, precond_iterations"``)."""
    out: set[str] = set()
    for m in _NONFINITE.finditer(error or ""):
        out.update(k.strip() for k in m.group(1).split(",") if k.strip())
    return out


# --------------------------------------------------------------------------------------------
# Selection and aggregate
# --------------------------------------------------------------------------------------------
def _ordered(values: pd.Series) -> list:
    return list(dict.fromkeys(values.tolist()))


def _value_matches(actual: object, wanted: str) -> bool:
    if isinstance(actual, bool):
        return wanted.lower() == str(actual).lower()
    if isinstance(actual, (int, float)):
        try:
            return float(wanted) == float(actual)
        except ValueError:
            return False
    return fnmatch.fnmatchcase(str(actual), wanted)


def _matches(pattern: str, name: str, label: str, params: str, n: object) -> bool:
    """A pattern names a row: its label or name (globs), or ``name[key=value,...]`` as
    ``-k`` reads it (:func:`lubench.selection.parse_selector`), the values compared with the
    row's parameters (``n`` its size) — so ``gfmm_lu[P=32]`` matches whether or not the
    label shows ``P``."""
    from lubench.selection import parse_selector

    if fnmatch.fnmatchcase(label, pattern) or label == pattern:
        return True
    try:
        glob, constraints = parse_selector(pattern)
    except LubenchError:
        return False
    if not fnmatch.fnmatchcase(name, glob):
        return False
    try:
        values = json.loads(params) if params else {}
    except ValueError:
        values = {}
    for key, wanted in constraints.items():
        actual = n if key == "n" else values.get(key, _MISSING)
        if actual is _MISSING or not _value_matches(actual, wanted):
            return False
    return True


_MISSING = object()


def _match_index(name: str, label: str, params: str, n: object,
                 patterns: Sequence[str]) -> int:
    """The index of the first pattern naming the row (:func:`_matches`), -1 for none."""
    for i, p in enumerate(patterns):
        if _matches(p, name, label, params, n):
            return i
    return -1


def select(results: pd.DataFrame, spec: ReportSpec | None) -> tuple[pd.DataFrame, list[str]]:
    """The prepared rows the specification keeps, in its order of operators and methods
    (given patterns first, in the order given; otherwise the suite's order), and the patterns
    that matched nothing (to warn about). LubenchError when nothing is left."""
    df = _prepare(results)
    if spec is None:
        return df, []
    unmatched: list[str] = []
    for key, name, label in (("operators", "operator", "operator_label"),
                             ("methods", "method", "method_label")):
        patterns = getattr(spec, key)
        if not patterns:
            continue
        idx = [_match_index(str(a), str(b), str(p), nn, patterns) for a, b, p, nn in
               zip(df[name], df[label], df[name + "_params"], df["n"])]
        df = df.assign(**{f"_{key}": idx})
        hit = set(df[f"_{key}"])
        unmatched += [f"{key}: '{p}'" for i, p in enumerate(patterns) if i not in hit]
        df = df[df[f"_{key}"] >= 0]
    if spec.sizes:
        missing = [n for n in spec.sizes if n not in set(df["n"].dropna().astype(int))]
        unmatched += [f"sizes: {n}" for n in missing]
        df = df[df["n"].isin(spec.sizes)]
    order = [c for c in ("_operators", "_methods") if c in df.columns]
    if order:
        df = df.sort_values(order, kind="stable").drop(columns=order)
    if df.empty:
        raise LubenchError("the report specification keeps no result row ("
                           + "; ".join(unmatched or ["check --methods/--operators/--sizes"])
                           + " matched nothing)")
    return df.reset_index(drop=True), unmatched


def _prepare(results: pd.DataFrame) -> pd.DataFrame:
    """Prepared rows (see :func:`lubench.report.load.prepare_results`) with the derived
    columns and ``_nonfinite``, the set of metrics each row names as not finite."""
    if "_nonfinite" in results.columns:
        return results
    df = prepare_results(results)
    for col in ("precond_seconds", "gmres_iterations", "precond_converged", "gmres_converged"):
        if col not in df.columns:
            df[col] = float("nan") if not col.endswith("converged") else None
    for col in ("precond_seconds", "gmres_iterations"):
        df[col] = pd.to_numeric(df[col], errors="coerce").astype(float)
    nonfinite = [nonfinite_keys(e) if s == OK else set()
                 for e, s in zip(df["error"], df["status"])]
    for key, parts in DERIVED.items():
        df[key] = sum(df[p] for p in parts)
        for bad in nonfinite:
            if bad & set(parts):
                bad.add(key)
    df["_nonfinite"] = nonfinite
    return df


def _aggregate(ok: pd.DataFrame, key: str) -> tuple[float, float, float, str]:
    """(median, min, max, state) of one metric over the ok repeats: state ``ok``,
    ``missing`` (no repeat measured it), ``nan`` / ``inf`` (a repeat was not finite: the
    median is NaN then, never the median of the others)."""
    finite, bad = [], []
    for v, flagged in zip(ok[key], ok["_nonfinite"]):
        v = float(v) if v is not None else float("nan")
        if math.isinf(v):
            bad.append(v)
        elif math.isnan(v):
            if key in flagged:
                bad.append(v)
        else:
            finite.append(v)
    nan = float("nan")
    if bad:
        state = "inf" if all(b == math.inf for b in bad) else "nan"
        return (math.inf if state == "inf" else nan), nan, nan, state
    if not finite:
        return nan, nan, nan, "missing"
    return float(np.median(finite)), min(finite), max(finite), "ok"


def _all_true(values: Iterable) -> bool | None:
    """True when every value is true, False when one is false, None when none is known."""
    known = [v for v in values if v is not None and v == v]
    if not known:
        return None
    return all(bool(v) for v in known)  # numpy.bool_ from parquet: test truth, not identity


def summarize(results: pd.DataFrame) -> pd.DataFrame:
    """One row per (operator_label, n, method_label[, run]): for every metric of
    :data:`~lubench.report.columns.METRICS` its median, min and max over the ``ok`` repeats
    (``<key>``, ``<key>_min``, ``<key>_max``) and ``<key>_state`` (``ok``, ``missing``,
    ``nan``, ``inf``); the repeat counts; the status (``ok``, or the most frequent other
    status with its first reason).

    Rows keep the order of the frame (the suite's, or the specification's) of operators and
    methods, n ascending, runs in the order given.
    """
    df = _prepare(results)
    multi = "run" in df.columns
    keys = ["operator_label", "n", "method_label"] + (["run"] if multi else [])
    orders = {k: {v: i for i, v in enumerate(_ordered(df[k]))} for k in keys if k != "n"}
    rows = []
    for _key, g in df.groupby(keys, sort=False, dropna=False):
        ok = g[g["status"] == OK]
        first = g.iloc[0]
        row: dict = {k: first[k] for k in keys}
        row.update(operator=first["operator"], method=first["method"], family=first["family"],
                   repeats=len(g), n_ok=len(ok))
        for m in METRICS:
            med, lo, hi, state = _aggregate(ok, m.key)
            row.update({m.key: med, m.key + "_min": lo, m.key + "_max": hi,
                        m.key + "_state": state})
            if m.converged:
                row[m.converged] = _all_true(ok[m.converged]) if m.converged in ok else None
        kinds = ok["factor_error_kind"] if "factor_error_kind" in ok.columns else pd.Series()
        row["probe"] = bool(any(isinstance(k, str) and k.startswith("probe") for k in kinds))
        bad = g[g["status"] != OK]
        if bad.empty:
            row["status"], row["reason"] = OK, ""
            row["note"] = next((e for e in ok["error"] if e), "")
        else:
            status = Counter(bad["status"]).most_common(1)[0][0]
            reasons = bad.loc[bad["status"] == status, "error"]
            row["status"] = status
            row["reason"] = next((r for r in reasons if r), "")
            row["note"] = ""
        rows.append(row)
    out = pd.DataFrame(rows)
    if out.empty:
        return out
    sort = []
    for k in keys:
        if k == "n":
            sort.append("n")
            continue
        out["_" + k] = out[k].map(orders[k])
        sort.append("_" + k)
    out = out.sort_values(sort, kind="stable").drop(columns=[s for s in sort if s != "n"])
    return out.reset_index(drop=True)


def table_columns(summary: pd.DataFrame, spec: ReportSpec | None = None) -> list[Metric]:
    """The metric columns of a table: the specification's, in its order (a column no row
    measured stays, as ``–``); else :data:`DEFAULT_COLUMNS` that some row measured."""
    if spec is not None and spec.columns:
        return [BY_KEY[k] for k in spec.columns]
    return [BY_KEY[k] for k in DEFAULT_COLUMNS
            if summary.empty or (summary[k + "_state"] != "missing").any()]


# --------------------------------------------------------------------------------------------
# Cells and the best value of a group
# --------------------------------------------------------------------------------------------
def _not_converged(row: pd.Series, m: Metric) -> bool:
    return bool(m.converged) and row.get(m.converged) is False


def cell(row: pd.Series, m: Metric, ranges: bool = True) -> str:
    """A metric cell: the median, and (min–max) when the ok repeats differ; ``–``, ``NaN``
    or ``∞`` (see the module docstring); ``>500`` / ``(no conv.)`` for a count that stopped
    without converging."""
    state = row[m.key + "_state"]
    if state == "missing":
        return NOT_MEASURED
    if state == "nan":
        return NAN_TEXT
    if state == "inf":
        return INF_TEXT
    med = row[m.key]
    text = fmt_number(med, integer=m.integer)
    if _not_converged(row, m):
        text = f">{GMRES_MAX}" if med >= GMRES_MAX else f"{text} (no conv.)"
    lo, hi = row[m.key + "_min"], row[m.key + "_max"]
    if ranges and row["n_ok"] > 1 and lo != hi:
        lo_t, hi_t = fmt_number(lo, integer=m.integer), fmt_number(hi, integer=m.integer)
        if lo_t != hi_t:
            text += f" ({lo_t}–{hi_t})"
    return text


def best_flags(table: pd.DataFrame, m: Metric) -> pd.Series:
    """True where a row holds the best value of ``m`` in its group (operator, n): the lowest
    for a metric better when lower, every tie included (values equal as printed, values at
    or below the metric's round-off floor equal). Only rows that finished ok with a finite,
    converged value compete; a group with fewer than two such rows marks nothing."""
    flags = pd.Series(False, index=table.index)
    if m.better != "lower" or table.empty:
        return flags
    for _k, g in table.groupby(["operator_label", "n"], sort=False):
        cand = {i: max(float(r[m.key]), m.floor) for i, r in g.iterrows()
                if r["n_ok"] > 0 and r[m.key + "_state"] == "ok" and not _not_converged(r, m)}
        if len(cand) < 2:
            continue
        best = fmt_number(min(cand.values()), integer=m.integer)
        for i, v in cand.items():
            flags[i] = fmt_number(v, integer=m.integer) == best
    return flags


def status_text(row: pd.Series, limit: int = REASON_CHARS) -> str:
    """``ok``; ``timeout: reason``; ``2/3 ok; failed: reason`` for mixed repeats; an ok row
    with a note (a non-finite metric) says it: ``ok (not finite (NaN): ...)``."""
    if row["status"] == OK:
        note = row.get("note") or ""
        return f"{OK} ({short_reason(note, limit)})" if note else OK
    text = row["status"]
    if row["reason"]:
        text += f": {short_reason(row['reason'], limit)}"
    if row["n_ok"]:
        text = f"{row['n_ok']}/{row['repeats']} ok; {text}"
    return text


# --------------------------------------------------------------------------------------------
# Markdown
# --------------------------------------------------------------------------------------------
def _md_escape(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _md(headers: list[str], rows: list[list[str]], numeric: list[bool]) -> list[str]:
    lines = ["| " + " | ".join(headers) + " |",
             "|" + "|".join("---:" if r else "---" for r in numeric) + "|"]
    lines += ["| " + " | ".join(_md_escape(c) for c in row) + " |" for row in rows]
    return lines


def summary_markdown(results: pd.DataFrame, spec: ReportSpec | None = None) -> str:
    """The Markdown table (operator × n × method [× run]), as printed after ``lubench run``.

    Every configuration has a row, including those that failed; their metrics are ``–`` and
    the status column gives the reason. With repeats, cells are median (min–max); the best
    value of each (operator, n) is in bold.
    """
    if results is None or len(results) == 0:
        return "(no results)"
    df, _ = select(results, spec)
    table = summarize(df)
    cols = table_columns(table, spec)
    multi = "run" in table.columns
    headers = ["operator", "n", "method"] + (["run"] if multi else []) \
        + [c.header for c in cols] + ["status"]
    best = {c.key: best_flags(table, c) for c in cols}
    rows = []
    for i, row in table.iterrows():
        cells = [row["operator_label"], str(row["n"]), row["method_label"]]
        cells += [row["run"]] if multi else []
        cells += [f"**{cell(row, c)}**" if best[c.key][i] else cell(row, c) for c in cols]
        cells.append(status_text(row))
        rows.append(cells)
    numeric = [False, True, False] + ([False] if multi else []) + [True] * len(cols) + [False]
    lines = _md(headers, rows, numeric)
    repeats = int(table["repeats"].max())
    notes = []
    if repeats > 1:
        notes.append(f"Median over {repeats} repeats (min–max where they differ).")
    notes.append("Bold: best value per operator and n. –: not measured; NaN/∞: not finite.")
    return "\n".join(lines + [""] + notes)


# --------------------------------------------------------------------------------------------
# LaTeX
# --------------------------------------------------------------------------------------------
_TEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
                "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}",
                "^": r"\textasciicircum{}", "–": "--", "…": r"\dots{}", "→": r"$\to$",
                "|": r"\textbar{}", "<": r"\textless{}", ">": r"\textgreater{}",
                "×": r"$\times$", "‖": r"$\|$", "∞": r"$\infty$"}


def tex_escape(text: str) -> str:
    """Text safe inside a LaTeX table cell."""
    return "".join(_TEX_SPECIAL.get(ch, ch) for ch in str(text))


# numbers in math mode (Type 1 fonts; siunitx's text mode would need TS1 bitmap fonts for the
# minus sign), bold from \bfseries (detect-weight)
_SI_PREAMBLE = r"\sisetup{detect-weight=true, table-align-text-after=false}"


def _tex_value(row: pd.Series, m: Metric, bold: bool) -> tuple[str, str | None]:
    """(the S-column cell, the plain number siunitx parses or None for a text cell)."""
    state = row[m.key + "_state"]
    if state == "missing":
        return "{--}", None
    if state == "nan":
        return "{NaN}", None
    if state == "inf":
        return r"{$\infty$}", None
    med = row[m.key]
    # counts in full (siunitx groups the digits: 16 777 216), never 1.68e7
    text = str(int(round(med))) if m.integer else fmt_number(med)
    if _not_converged(row, m):
        if med >= GMRES_MAX:
            return rf"{{$>${GMRES_MAX}}}", None
        # a text cell (braced): the dagger does not fit the space siunitx keeps for numbers
        return "{" + text + r"$^\dagger$}", text
    return (r"\bfseries " + text if bold else text), text


def _table_format(numbers: list[str]) -> str:
    """siunitx ``table-format`` wide enough for every number of a column."""
    if not numbers:
        return "1.0"
    sign = any(t.startswith("-") for t in numbers)
    ints, decs, exps, eneg = 1, 0, 0, False
    for t in numbers:
        mant, _, exp = t.lstrip("-").partition("e")
        i, _, d = mant.partition(".")
        ints, decs = max(ints, len(i)), max(decs, len(d))
        if exp:
            eneg |= exp.startswith("-")
            exps = max(exps, len(exp.lstrip("-")))
    fmt = ("-" if sign else "") + f"{ints}.{decs}"
    if exps:
        fmt += "e" + ("-" if eneg else "") + str(exps)
    return fmt


def _tex_header(m: Metric) -> str:
    unit = rf" (\si{{{m.unit}}})" if m.unit else ""
    return "{" + m.latex + unit + "}"


def _tex_method(label: str) -> str:
    """``\\texttt{ilu} (fill\\_factor${=}$1)``: the name in typewriter, the parameters that
    tell configurations apart in the text font (narrower)."""
    name, _, params = str(label).partition("[")
    text = r"\texttt{" + tex_escape(name) + "}"
    if params:
        text += " (" + tex_escape(params.rstrip("]")).replace("=", "${=}$") + ")"
    return text


def _tex_label(text: str) -> str:
    return "tab:lubench-" + "".join(ch if ch.isalnum() else "-" for ch in text).strip("-")


def _tex_table(t: pd.DataFrame, cols: list[Metric], blocks: bool, caption: str, label: str,
               preset: Preset, repeats: int) -> list[str]:
    multi = "run" in t.columns
    best = {c.key: best_flags(t, c) for c in cols}
    cells: dict[str, list[tuple[str, str | None]]] = {c.key: [] for c in cols}
    for i, row in t.iterrows():
        for c in cols:
            cells[c.key].append(_tex_value(row, c, bool(best[c.key][i])))
    formats = {c.key: _table_format([num for _, num in cells[c.key] if num is not None])
               for c in cols}
    lead = ["@{}l"] + (["l"] if multi else [])  # flush with the rules, as booktabs sets it
    spec = " ".join(lead + [f"S[table-format={formats[c.key]}]" for c in cols]) + "@{}"
    head = ["method"] + (["run"] if multi else []) + [_tex_header(c) for c in cols]
    width = len(head)
    body, notes = [], []
    prev: tuple | None = None
    for j, (_i, row) in enumerate(t.iterrows()):
        op, n = row["operator_label"], row["n"]
        if (op, n) != prev:  # a heading row per size (and operator, in one table of blocks)
            if prev is not None:
                body.append(r"\midrule" if blocks and op != prev[0] else r"\addlinespace")
            what = (rf"\emph{{{tex_escape(op)}}}, " if blocks else "") + f"$n = {n}$"
            body.append(rf"\multicolumn{{{width}}}{{@{{}}l}}{{{what}}} \\")
        method = _tex_method(row["method_label"])
        if row["status"] != OK or row.get("note"):
            why = (f"{row['status']}" + (f" in {row['repeats'] - row['n_ok']} of "
                                         f"{row['repeats']} repeats" if row["n_ok"] else "")
                   + f": {short_reason(row['reason'], 90)}") if row["status"] != OK \
                else short_reason(row["note"], 90)
            if why not in notes:  # one mark per distinct reason
                notes.append(why)
            method += rf"$^{{{notes.index(why) + 1}}}$"
        lead_cells = [method] + ([r"\texttt{" + tex_escape(row["run"]) + "}"] if multi else [])
        body.append(" & ".join(lead_cells + [cells[c.key][j][0] for c in cols]) + r" \\")
        prev = (op, n)
    defs = "; ".join(f"{c.latex}: {c.latex_meaning}" for c in cols)
    rep = f"Median of {repeats} repeats. " if repeats > 1 else ""
    note = (f"{rep}{defs}. Bold: best per $n$; --: not measured; NaN: not finite."
            + "".join(f" $^{{{k}}}$\\,{tex_escape(w)}." for k, w in enumerate(notes, 1)))
    # a column of a two-column paper holds three metric columns; more span both columns
    env = "table*" if preset.name == "paper-2col" and len(cols) > 3 else "table"
    out = [rf"\begin{{{env}}}[tbp]", r"\centering"]
    if preset.table_size:
        out.append(preset.table_size)
    if preset.tabcolsep:
        out.append(rf"\setlength{{\tabcolsep}}{{{preset.tabcolsep}}}")
    out += [_SI_PREAMBLE, r"\caption{" + caption + "}", r"\label{" + label + "}",
            r"\begin{tabular}{" + spec + "}", r"\toprule", " & ".join(head) + r" \\",
            r"\midrule", *body, r"\bottomrule", r"\end{tabular}",
            r"\par\smallskip{\footnotesize\raggedright " + note + r"\par}",
            rf"\end{{{env}}}", ""]
    return out


def latex_tables(results: pd.DataFrame, spec: ReportSpec | None = None,
                 runs: Sequence[str] = ("RUN_DIR",)) -> str:
    """The LaTeX tables (``\\usepackage{booktabs,siunitx}``, siunitx ≥ 3): one per operator
    (``group: operator``) or one with a block per operator (``group: blocks``). No
    ``\\resizebox``: a table is as wide as its columns at the document's font size (the
    ``paper-2col`` preset sets it ``\\small`` with narrower gaps) — choose the columns with
    ``--columns``. Best value per (operator, n) in bold; the metric definitions and the
    rows that did not finish ok in a footnote-size note under the table."""
    spec = spec or ReportSpec()
    df, _ = select(results, spec)
    table = summarize(df)
    cols = table_columns(table, spec)
    repeats = int(table["repeats"].max()) if not table.empty else 1
    suite = next((s for s in df["suite"].dropna()), "") if "suite" in df else ""
    out = ["% lubench tables: needs \\usepackage{booktabs,siunitx} (siunitx >= 3).",
           f"% regenerate: {regenerate_command(spec, runs)}", ""]
    if spec.group == "blocks":
        caption = "Factorizations" + (f" (suite \\texttt{{{tex_escape(suite)}}})"
                                      if suite else "") + "."
        out += _tex_table(table, cols, True, caption, _tex_label(suite or "results"),
                          spec.size, repeats)
    else:
        for op, t in table.groupby("operator_label", sort=False):
            caption = f"Factorizations of \\texttt{{{tex_escape(op)}}}."
            out += _tex_table(t, cols, False, caption, _tex_label(str(op)), spec.size, repeats)
    return "\n".join(out)


def regenerate_command(spec: ReportSpec, runs: Sequence[str] = ("RUN_DIR",)) -> str:
    """The ``lubench report`` command line that writes these tables again."""
    parts = ["lubench report", *runs, "--formats tex"]
    for key in ("columns", "methods", "operators"):
        if getattr(spec, key):
            parts.append(f"--{key} '{','.join(getattr(spec, key))}'")
    if spec.sizes:
        parts.append("--sizes " + ",".join(str(n) for n in spec.sizes))
    if spec.group != "operator":
        parts.append(f"--group {spec.group}")
    if spec.preset != "paper":
        parts.append(f"--preset {spec.preset}")
    return " ".join(parts)


# --------------------------------------------------------------------------------------------
# HTML
# --------------------------------------------------------------------------------------------
def _sort_value(row: pd.Series, m: Metric) -> str:
    state = row[m.key + "_state"]
    if state == "ok" and not _not_converged(row, m):
        return repr(float(row[m.key]))
    if state == "ok":  # not converged: after every converged count
        return repr(1e300 + float(row[m.key]))
    return "Infinity" if state in ("nan", "inf") else ""  # missing: empty, sorts last


def html_table(results: pd.DataFrame, spec: ReportSpec | None = None) -> str:
    """One ``<table id="results">`` of every row (operator, n, method [, run], family,
    metrics, status), each header carrying ``data-kind`` (``num``/``text``) for sorting and
    each row ``data-operator``/``data-method``/``data-status`` for filtering (the script of
    :mod:`lubench.report.html`); a metric cell's ``data-v`` is its number (empty when not
    measured). Works as a plain table without the script."""
    df, _ = select(results, spec)
    table = summarize(df)
    cols = table_columns(table, spec)
    multi = "run" in table.columns
    lead = [("operator", "text"), ("n", "num"), ("method", "text")] \
        + ([("run", "text")] if multi else []) + [("family", "text")]
    head = "".join(f'<th data-kind="{k}" data-key="{h}">{html.escape(h)}</th>'
                   for h, k in lead)
    head += "".join(f'<th data-kind="num" data-key="{c.key}" title="{html.escape(c.meaning)}">'
                    f"{html.escape(c.header)}</th>" for c in cols)
    head += '<th data-kind="text" data-key="status">status</th>'
    best = {c.key: best_flags(table, c) for c in cols}
    rows = []
    for i, row in table.iterrows():
        status = row["status"]
        attrs = (f'data-operator="{html.escape(str(row["operator_label"]))}" '
                 f'data-method="{html.escape(str(row["method_label"]))}" '
                 f'data-status="{html.escape(status)}"'
                 + (f' data-run="{html.escape(str(row["run"]))}"' if multi else ""))
        cells = [f"<td>{html.escape(str(row['operator_label']))}</td>",
                 f'<td class="num" data-v="{row["n"]}">{row["n"]}</td>',
                 f"<td><code>{html.escape(str(row['method_label']))}</code></td>"]
        if multi:
            cells.append(f"<td>{html.escape(str(row['run']))}</td>")
        cells.append(f"<td>{html.escape(str(row['family']))}</td>")
        for c in cols:
            text = html.escape(cell(row, c))
            cls = "num best" if best[c.key][i] else "num"
            cells.append(f'<td class="{cls}" data-v="{_sort_value(row, c)}">'
                         + (f"<b>{text}</b>" if best[c.key][i] else text) + "</td>")
        full = status_text(row, limit=10_000)
        cells.append(f'<td class="status" title="{html.escape(full)}">'
                     f"{html.escape(status_text(row))}</td>")
        cls = "ok" if status == OK else "bad"
        rows.append(f'<tr class="{cls}" {attrs}>' + "".join(cells) + "</tr>")
    legend = "".join(f"<li><code>{html.escape(c.header)}</code>: {html.escape(c.meaning)}</li>"
                     for c in cols)
    return (f'<table class="results" id="results"><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(rows)}</tbody></table>\n"
            f'<ul class="legend"><li><b>bold</b>: best value per operator and n; '
            f"–: not measured; NaN / ∞: computed and not finite</li>{legend}</ul>")


# --------------------------------------------------------------------------------------------
# Any frame, in any table format (for `lubench compare`)
# --------------------------------------------------------------------------------------------
def _plain(value: object) -> str:
    if isinstance(value, float):
        return fmt_number(value)
    if isinstance(value, (list, tuple)):
        return "; ".join(str(v) for v in value)
    return "" if value is None else str(value)


def frame_text(df: pd.DataFrame, fmt: str, caption: str = "") -> str:
    """``df`` as a Markdown (``md``), LaTeX booktabs (``tex``) or HTML (``html``) table:
    floats as :func:`fmt_number` writes them, lists joined by ``;``."""
    headers = [str(c) for c in df.columns]
    rows = [[_plain(v) for v in r] for r in df.itertuples(index=False)]
    numeric = [pd.api.types.is_numeric_dtype(df[c]) for c in df.columns]
    if fmt == "md":
        return "\n".join(_md(headers, rows, numeric)) + "\n"
    if fmt in ("tex", "latex"):
        spec = "".join("r" if n else "l" for n in numeric)
        lines = [r"\begin{table}[tbp]", r"\centering"]
        if caption:
            lines.append(r"\caption{" + tex_escape(caption) + "}")
        lines += [r"\begin{tabular}{" + spec + "}", r"\toprule",
                  " & ".join(tex_escape(h) for h in headers) + r" \\", r"\midrule"]
        lines += [" & ".join(tex_escape(c) for c in r) + r" \\" for r in rows]
        lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}", ""]
        return "\n".join(lines)
    if fmt == "html":
        head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
        body = "".join("<tr>" + "".join(
            f'<td class="{"num" if n else ""}">{html.escape(c)}</td>'
            for c, n in zip(r, numeric)) + "</tr>" for r in rows)
        cap = f"<caption>{html.escape(caption)}</caption>" if caption else ""
        return f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>\n"
    raise LubenchError(f"unknown table format '{fmt}' (choose from md, tex, html)")
