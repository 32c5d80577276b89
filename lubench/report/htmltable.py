"""The sortable, filterable results table of ``report.html`` (and ``results.html``)."""

from __future__ import annotations

import html

import pandas as pd

from lubench.report.cells import best_flags, cell, not_converged, status_text
from lubench.report.columns import Metric
from lubench.report.summary import select, summarize, table_columns
from lubench.rundir.records import OK
from lubench.suite.report_spec import ReportSpec

__all__ = ["html_table"]


def _sort_value(row: pd.Series, m: Metric) -> str:
    state = row[m.key + "_state"]
    if state == "ok" and not not_converged(row, m):
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
