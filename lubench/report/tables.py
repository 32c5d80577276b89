"""Tables of a run: one row per operator × n × method, median over repeats.

The same aggregate (:func:`summarize`) feeds three renderings: Markdown (printed after a run),
LaTeX (booktabs and siunitx ``\\num{}``, one table per operator, for a paper) and HTML (for
``report.html``). A cell holds the median over the repeats that finished ``ok``, followed by
(min–max) when there was more than one and they differ. A configuration that did not finish
``ok`` keeps its row: its status column says what happened and why.
"""

from __future__ import annotations

import html
import math
from collections import Counter
from dataclasses import dataclass

import numpy as np
import pandas as pd

from lubench.metrics import GMRES_MAXITER as GMRES_MAX
from lubench.report.load import OK, prepare_results

__all__ = ["COLUMNS", "Column", "summarize", "summary_markdown", "latex_tables", "html_table",
           "fmt_number", "short_reason"]


@dataclass(frozen=True)
class Column:
    """A metric column of the tables: its result-row key, headers and meaning."""

    key: str
    header: str          # Markdown / HTML header
    latex: str           # LaTeX header
    meaning: str         # one sentence for the HTML legend
    latex_meaning: str   # the same for the LaTeX caption
    integer: bool = False


COLUMNS: list[Column] = [
    Column("factor_error", "factor_error", r"$\|A-\hat A\|_F/\|A\|_F$",
           "relative Frobenius error of the factors, ‖A − PLU‖_F / ‖A‖_F (a 32-probe "
           "estimate above the exact limit)",
           r"relative Frobenius error of the factors, $\hat A = PLU$ (estimated with 32 "
           r"Gaussian probes above the exact limit)"),
    Column("factor_error_2", "factor_error_2", r"$\|A-\hat A\|_2$",
           "absolute spectral error ‖A − PLU‖₂ (exact sizes only)",
           "absolute spectral error (exact sizes only)"),
    Column("solve_residual", "solve_residual", r"$\|A\hat x-b\|/\|b\|$",
           "relative residual ‖A x̂ − b‖₂ / ‖b‖₂ of one solve, b = A x*, x* ~ N(0, I)",
           r"relative residual of one solve $\hat x = \hat A^{-1}b$, $b = Ax^*$, "
           r"$x^* \sim N(0, I)$"),
    Column("forward_error", "forward_error", r"$\|\hat x-x^*\|/\|x^*\|$",
           "relative forward error ‖x̂ − x*‖₂ / ‖x*‖₂ of that solve",
           "relative forward error of that solve"),
    Column("precond_iterations", "precond_iterations", "GMRES it.",
           "GMRES iterations (restart 50, rtol 1e-8) with the factorization as "
           "preconditioner; '>500' when it did not converge",
           r"GMRES iterations (restart 50, rtol $10^{-8}$) preconditioned by the "
           r"factorization ($>$500: no convergence; $\dagger$: stopped without converging)",
           integer=True),
    Column("n_params", "n_params", "params", "numbers stored by the factorization",
           "numbers stored by the factorization", integer=True),
    Column("setup_seconds", "setup_seconds", "setup [s]",
           "wall time of the factorization (training included), seconds",
           "wall time of the factorization, training included"),
    Column("solve_seconds", "solve_seconds", "solve [s]",
           "median wall time of one solve with one right-hand side, seconds",
           "median wall time of one solve with one right-hand side"),
]
REASON_CHARS = 60


# --------------------------------------------------------------------------------------------
# Numbers
# --------------------------------------------------------------------------------------------
def fmt_number(x: float | None, digits: int = 3, integer: bool = False) -> str:
    """``1.23e-4`` (``digits`` significant digits, short exponent, none for 10⁰: ``3.44``);
    integers below 10⁶ as they are; ``–`` for a missing value. siunitx's ``\\num{}`` reads
    the output as it is."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    x = float(x)
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
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


# --------------------------------------------------------------------------------------------
# Aggregate
# --------------------------------------------------------------------------------------------
def _ordered(values: pd.Series) -> list:
    return list(dict.fromkeys(values.tolist()))


def summarize(results: pd.DataFrame) -> pd.DataFrame:
    """One row per (operator_label, n, method_label): median, min and max over the ``ok``
    repeats of every metric (``<key>``, ``<key>_min``, ``<key>_max``), the repeat counts, and
    the status (``ok``, or the most frequent other status with its first reason).

    Rows keep the suite's order of operators and methods, n ascending.
    """
    df = prepare_results(results)
    op_order = {v: i for i, v in enumerate(_ordered(df["operator_label"]))}
    me_order = {v: i for i, v in enumerate(_ordered(df["method_label"]))}
    rows = []
    for (op, n, me), g in df.groupby(["operator_label", "n", "method_label"], sort=False,
                                     dropna=False):
        ok = g[g["status"] == OK]
        row: dict = {"operator_label": op, "n": n, "method_label": me,
                     "operator": g["operator"].iloc[0], "method": g["method"].iloc[0],
                     "family": g["family"].iloc[0], "repeats": len(g), "n_ok": len(ok)}
        for col in COLUMNS:
            vals = ok[col.key].dropna()
            row[col.key] = float(vals.median()) if len(vals) else float("nan")
            row[col.key + "_min"] = float(vals.min()) if len(vals) else float("nan")
            row[col.key + "_max"] = float(vals.max()) if len(vals) else float("nan")
        conv = ok["precond_converged"] if "precond_converged" in ok.columns else pd.Series()
        # numpy.bool_ from parquet: test truth, not identity with False
        row["precond_converged"] = bool(len(conv) == 0 or
                                        all(v is not None and v == v and bool(v) for v in conv))
        kinds = ok["factor_error_kind"] if "factor_error_kind" in ok.columns else pd.Series()
        row["probe"] = bool(any(isinstance(k, str) and k.startswith("probe") for k in kinds))
        bad = g[g["status"] != OK]
        if bad.empty:
            row["status"], row["reason"] = OK, ""
        else:
            status = Counter(bad["status"]).most_common(1)[0][0]
            reasons = bad.loc[bad["status"] == status, "error"]
            row["status"] = status
            row["reason"] = next((r for r in reasons if r), "")
        rows.append(row)
    out = pd.DataFrame(rows)
    if out.empty:
        return out
    out["_o"] = out["operator_label"].map(op_order)
    out["_m"] = out["method_label"].map(me_order)
    out = out.sort_values(["_o", "n", "_m"], kind="stable").drop(columns=["_o", "_m"])
    return out.reset_index(drop=True)


def cell(row: pd.Series, col: Column) -> str:
    """A metric cell: the median, and (min–max) when the ok repeats differ."""
    med = row[col.key]
    text = fmt_number(med, integer=col.integer)
    if col.key == "precond_iterations" and not row.get("precond_converged", True) \
            and not (isinstance(med, float) and math.isnan(med)):
        text = f">{GMRES_MAX}" if med >= GMRES_MAX else f"{text} (no conv.)"
    lo, hi = row[col.key + "_min"], row[col.key + "_max"]
    if row["n_ok"] > 1 and not (np.isnan(lo) or np.isnan(hi)) and lo != hi:
        lo_t, hi_t = fmt_number(lo, integer=col.integer), fmt_number(hi, integer=col.integer)
        if lo_t != hi_t:
            text += f" ({lo_t}–{hi_t})"
    return text


def status_text(row: pd.Series, limit: int = REASON_CHARS) -> str:
    """``ok``; ``timeout: reason``; ``2/3 ok; failed: reason`` for mixed repeats."""
    if row["status"] == OK:
        return OK
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


def summary_markdown(results: pd.DataFrame) -> str:
    """The Markdown table of a run (operator × n × method), as printed after ``lubench run``.

    Every configuration has a row, including those that failed; their metrics are ``–`` and
    the status column gives the reason. With repeats, cells are median (min–max).
    """
    if results is None or len(results) == 0:
        return "(no results)"
    table = summarize(results)
    headers = ["operator", "n", "method"] + [c.header for c in COLUMNS] + ["status"]
    lines = ["| " + " | ".join(headers) + " |",
             "|" + "|".join(["---"] * 3 + ["---:"] * len(COLUMNS) + ["---"]) + "|"]
    for _, row in table.iterrows():
        cells = [row["operator_label"], str(row["n"]), row["method_label"]]
        cells += [cell(row, c) for c in COLUMNS]
        cells.append(status_text(row))
        lines.append("| " + " | ".join(_md_escape(c) for c in cells) + " |")
    repeats = int(table["repeats"].max())
    if repeats > 1:
        lines.append(f"\nMedian over {repeats} repeats (min–max where they differ).")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# LaTeX
# --------------------------------------------------------------------------------------------
_TEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
                "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}",
                "^": r"\textasciicircum{}", "–": "--", "…": r"\dots{}",
                "|": r"\textbar{}", "<": r"\textless{}", ">": r"\textgreater{}"}


def tex_escape(text: str) -> str:
    """Text safe inside a LaTeX table cell."""
    return "".join(_TEX_SPECIAL.get(ch, ch) for ch in str(text))


def _tex_num(x: float, integer: bool = False) -> str:
    text = fmt_number(x, integer=integer)
    if text == "–":
        return "--"
    if text in ("inf", "-inf"):
        return r"$\infty$" if text == "inf" else r"$-\infty$"
    return rf"\num{{{text}}}"


def _tex_cell(row: pd.Series, col: Column) -> str:
    med = row[col.key]
    if col.key == "precond_iterations" and not row.get("precond_converged", True) \
            and not math.isnan(med):
        return rf"$>${GMRES_MAX}" if med >= GMRES_MAX else _tex_num(med, True) + r"$^\dagger$"
    text = _tex_num(med, col.integer)
    lo, hi = row[col.key + "_min"], row[col.key + "_max"]
    if row["n_ok"] > 1 and not (np.isnan(lo) or np.isnan(hi)) and \
            fmt_number(lo, integer=col.integer) != fmt_number(hi, integer=col.integer):
        text += (r" {\scriptsize(" + _tex_num(lo, col.integer) + "--"
                 + _tex_num(hi, col.integer) + ")}")
    return text


def latex_tables(results: pd.DataFrame) -> str:
    """One booktabs table per operator (needs ``\\usepackage{booktabs,siunitx,graphicx}``)."""
    table = summarize(results)
    repeats = int(table["repeats"].max()) if not table.empty else 1
    out = ["% lubench tables: \\usepackage{booktabs,siunitx,graphicx} in the preamble."]
    for op_label, t in table.groupby("operator_label", sort=False):
        spec = "rl" + "r" * len(COLUMNS) + "l"
        head = ["$n$", "method"] + [c.latex for c in COLUMNS] + ["status"]
        body = []
        notes = []
        prev_n = None
        for _, row in t.iterrows():
            if prev_n is not None and row["n"] != prev_n:
                body.append(r"\midrule")
            prev_n = row["n"]
            cells = [str(row["n"]), r"\texttt{" + tex_escape(row["method_label"]) + "}"]
            cells += [_tex_cell(row, c) for c in COLUMNS]
            if row["status"] == OK:
                cells.append("ok")
            else:
                notes.append(f"$n={row['n']}$, \\texttt{{{tex_escape(row['method_label'])}}}: "
                             f"{tex_escape(row['status'])} "
                             f"({tex_escape(short_reason(row['reason'], 90))})")
                cells.append(tex_escape(row["status"]) + (f" ({row['n_ok']}/{row['repeats']})"
                                                          if row["n_ok"] else ""))
            body.append(" & ".join(cells) + r" \\")
        meanings = "; ".join(f"{c.latex}: {c.latex_meaning}" for c in COLUMNS)
        rep = (f"Median over {repeats} repeats, (min--max) where they differ. "
               if repeats > 1 else "")
        caption = (f"Factorizations of \\texttt{{{tex_escape(op_label)}}}. {rep}"
                   f"Columns: {meanings}.")
        label = "tab:lubench-" + "".join(ch if ch.isalnum() else "-" for ch in op_label)
        out += [r"\begin{table}[t]", r"\centering", r"\caption{" + caption + "}",
                r"\label{" + label + "}", r"\resizebox{\linewidth}{!}{%",
                r"\begin{tabular}{" + spec + "}", r"\toprule",
                " & ".join(head) + r" \\", r"\midrule", *body, r"\bottomrule",
                r"\end{tabular}}"]
        if notes:
            out.append(r"\par\smallskip{\footnotesize Not ok: " + "; ".join(notes) + ".}")
        out += [r"\end{table}", ""]
    return "\n".join(out)


# --------------------------------------------------------------------------------------------
# HTML
# --------------------------------------------------------------------------------------------
def html_table(results: pd.DataFrame) -> str:
    """A ``<table>`` per operator (a fragment for ``report.html`` or a standalone file)."""
    table = summarize(results)
    parts = []
    for op_label, t in table.groupby("operator_label", sort=False):
        head = "".join(f'<th title="{html.escape(c.meaning)}">{html.escape(c.header)}</th>'
                       for c in COLUMNS)
        rows = []
        for _, row in t.iterrows():
            cls = "ok" if row["status"] == OK else "bad"
            cells = [f"<td>{row['n']}</td>", f"<td><code>{html.escape(row['method_label'])}"
                     f"</code></td>"]
            cells += [f'<td class="num">{html.escape(cell(row, c))}</td>' for c in COLUMNS]
            full = status_text(row, limit=10_000)
            cells.append(f'<td class="status" title="{html.escape(full)}">'
                         f"{html.escape(status_text(row))}</td>")
            rows.append(f'<tr class="{cls}">' + "".join(cells) + "</tr>")
        parts.append(f"<h3>{html.escape(op_label)}</h3>\n<table class=\"results\">"
                     f"<thead><tr><th>n</th><th>method</th>{head}<th>status</th></tr></thead>"
                     f"<tbody>{''.join(rows)}</tbody></table>")
    legend = "".join(f"<li><code>{html.escape(c.header)}</code>: {html.escape(c.meaning)}</li>"
                     for c in COLUMNS)
    parts.append(f'<ul class="legend">{legend}</ul>')
    return "\n".join(parts)
