"""The LaTeX tables of a report (booktabs, siunitx ``S`` columns), to paste into a paper."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from lubench.metrics.grading import GMRES_MAXITER as GMRES_MAX
from lubench.report.cells import best_flags, fmt_number, not_converged, short_reason
from lubench.report.columns import Metric
from lubench.report.summary import select, summarize, table_columns
from lubench.rundir.records import OK
from lubench.suite.report_spec import Preset, ReportSpec

__all__ = ["latex_tables", "regenerate_command", "tex_escape"]


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
    if not_converged(row, m):
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
