"""The Markdown table of a run (or of several), as printed after ``lubench run``."""

from __future__ import annotations

import pandas as pd

from lubench.report.cells import best_flags, cell, status_text
from lubench.report.summary import select, summarize, table_columns
from lubench.suite.report_spec import ReportSpec

__all__ = ["summary_markdown"]


def _md_escape(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def md_lines(headers: list[str], rows: list[list[str]], numeric: list[bool]) -> list[str]:
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
    lines = md_lines(headers, rows, numeric)
    notes = [median_note(df, table)] if median_note(df, table) else []
    notes.append("Bold: best value per operator and n. –: not measured; NaN/∞: not finite.")
    return "\n".join(lines + [""] + notes + training_markdown(df))


def median_note(rows: pd.DataFrame, table: pd.DataFrame) -> str:
    """What a cell is the median of: the repeats of a case and the test instances of a
    family (a table row holds both), "" when every row is one record."""
    per_row = int(table["repeats"].max()) if len(table) else 1
    reps = int(rows.groupby("case_id")["repeat"].nunique().max()) if len(rows) else 1
    instances = per_row // max(reps, 1)
    parts = ([f"{reps} repeats"] if reps > 1 else []) + \
        ([f"the {instances} test instances of a family"] if instances > 1 else [])
    return f"Median over {' and '.join(parts)} (min–max where they differ)." if parts else ""


def training_markdown(df: pd.DataFrame) -> list[str]:
    """The methods trained across instances (the fits), one line each: where, on how many
    instances, how long, how far, how it ended. [] when there is none."""
    if "stage" not in df.columns:
        return []
    fits = df[df["stage"] == "fit"]
    if fits.empty:
        return []
    rows = []
    for _, r in fits.iterrows():
        seconds = r.get("train_seconds")
        loss = r.get("final_loss")
        count = r.get("train_instances")
        rows.append([r["operator_label"], str(r["n"]), r["method_label"],
                     "–" if pd.isna(count) else str(int(count)),
                     "–" if pd.isna(seconds) else f"{float(seconds):.3g}",
                     "–" if pd.isna(r.get("iterations")) else str(int(r["iterations"])),
                     "–" if pd.isna(loss) else f"{float(loss):.3g}",
                     r["status"] + (f": {r['error']}" if r["status"] != "ok" and r["error"]
                                    else "")])
    headers = ["operator", "n", "method", "train instances", "train_seconds", "steps",
               "final loss", "status"]
    return ["", "Training across instances (one fit per method and family; its test rows "
            "above use it):", ""] + md_lines(headers, rows, [False, True, False, True, True,
                                                              True, True, False])
