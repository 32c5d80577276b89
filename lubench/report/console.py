"""What ``lubench run`` prints for people at the end: the summary table and the reasons.

* :func:`summary_table` — an aligned plain-text table (operator × n × method, the metric
  columns asked for with ``--columns``, status), readable in a terminal and in a log;
* :func:`reason_notes` — the full reason of every case that did not end ``ok``, untruncated,
  grouped when many cases share one reason (e.g. a plugin that is not installed).

(The line printed per finished case while a run goes is
:func:`lubench.execution.progress.case_line`; ``lubench list``'s plain text,
:func:`lubench.cli.listing.plain_text`.)
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pandas as pd

from lubench.errors import printable
from lubench.report.cells import cell
from lubench.report.columns import BY_KEY, METRICS
from lubench.report.load import prepare_results
from lubench.report.markdown import median_note
from lubench.report.summary import summarize
from lubench.rundir.records import OK

__all__ = ["DEFAULT_COLUMNS", "column_choices", "parse_columns", "summary_table",
           "reason_notes"]

DEFAULT_COLUMNS = ("factor_error", "solve_residual", "n_params", "setup_seconds")


# --------------------------------------------------------------------------------------------
# Columns
# --------------------------------------------------------------------------------------------
def column_choices() -> list[str]:
    """The metric columns a summary can show (the report's, :mod:`lubench.metrics.table`)."""
    return [m.key for m in METRICS]


def parse_columns(text: str | None) -> list[str]:
    """``--columns factor_error,n_params`` (or ``all``) → the column keys; ValueError naming
    the unknown ones and the choices."""
    choices = column_choices()
    if text is None or not text.strip():
        return [c for c in DEFAULT_COLUMNS if c in choices]
    wanted = [t.strip() for t in text.split(",") if t.strip()]
    if wanted == ["all"]:
        return choices
    unknown = [w for w in wanted if w not in choices]
    if unknown:
        raise ValueError(f"--columns: unknown column {', '.join(map(repr, unknown))} "
                         f"(choose from {', '.join(choices)}, or 'all')")
    return wanted


# --------------------------------------------------------------------------------------------
# The summary
# --------------------------------------------------------------------------------------------
def _align(rows: list[list[str]], right: set[int]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    out = []
    for row in rows:
        cells = [c.rjust(w) if i in right else c.ljust(w)
                 for i, (c, w) in enumerate(zip(row, widths))]
        out.append("  ".join(cells).rstrip())
    return out


def _non_ok(results: pd.DataFrame) -> pd.DataFrame:
    df = prepare_results(results)
    return df[df["status"] != OK]


def reason_notes(results: pd.DataFrame) -> tuple[list[str], dict[tuple[str, str], int]]:
    """The notes under the table, and (status, reason) → note number.

    One note per distinct (status, reason), in order of appearance, with the cases it
    concerns (their labels; for more than three, the methods and the count) and the whole
    reason, however long.
    """
    if results is None or len(results) == 0:
        return [], {}
    bad = _non_ok(results)
    notes: list[str] = []
    numbers: dict[tuple[str, str], int] = {}
    groups: dict[tuple[str, str], list[pd.Series]] = {}
    for _, row in bad.iterrows():
        key = (str(row["status"]), _text(row.get("error")))
        groups.setdefault(key, []).append(row)
    for i, ((status, reason), rows) in enumerate(groups.items(), 1):
        numbers[(status, reason)] = i
        labels = list(dict.fromkeys(
            f"{r['operator_label']}[n={r['n']}] × {r['method_label']}" for r in rows))
        if len(labels) <= 3:
            which = "; ".join(labels)
        else:
            methods = ", ".join(dict.fromkeys(str(r["method_label"]) for r in rows))
            which = f"{len(labels)} cases of {methods}"
        body = reason if reason else "(no reason recorded)"
        notes.append(f"[{i}] {status}: {which}\n    {body}")
    return notes, numbers


def _text(value: object) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value).strip()


def summary_table(results: pd.DataFrame, columns: Sequence[str] | None = None) -> str:
    """The run as an aligned text table, one row per operator × n × method (median over the
    ``ok`` repeats), then the notes giving the full reason of every row not ``ok``."""
    if results is None or len(results) == 0:
        return "(no results)"
    chosen = [BY_KEY[k] for k in (columns or parse_columns(None)) if k in BY_KEY]
    table = summarize(results)
    notes, numbers = reason_notes(results)
    header = ["operator", "n", "method"] + [c.header for c in chosen] + ["status"]
    rows = [header]
    for _, row in table.iterrows():
        status = str(row["status"])
        if status != "ok":
            note = numbers.get((status, _text(row.get("reason"))))
            status += f" [{note}]" if note else ""
            if row["n_ok"]:
                status = f"{row['n_ok']}/{row['repeats']} ok; {status}"
        rows.append([str(row["operator_label"]), str(row["n"]), str(row["method_label"])]
                    + [cell(row, c) for c in chosen] + [status])
    right = {1} | set(range(3, 3 + len(chosen)))
    lines = _align(rows, right)
    lines.insert(1, "-" * max(len(line) for line in lines))
    note = median_note(results[results.get("stage", "case") != "fit"]
                       if "stage" in results.columns else results, table)
    if note:
        lines.append(note[0].lower() + note[1:].rstrip("."))
    if notes:
        lines += [""] + notes
    return printable("\n".join(lines))  # reasons are a plugin's text: no terminal escapes
