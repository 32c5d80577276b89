"""``report.html``: one self-contained page (figures embedded as base64 PNG, no external file)
with the run's outcome counts, the figures, the tables, every case that did not finish ``ok``
with its reason, the environment from ``meta.json`` and the suite file."""

from __future__ import annotations

import base64
import html
import json
from collections import Counter

import pandas as pd

from lubench.report.load import OK, Run
from lubench.report.tables import html_table

__all__ = ["report_html", "standalone_table_html", "CSS"]

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto;
       max-width: 1300px; padding: 0 1em; color: #222; line-height: 1.4; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em;
     border-bottom: 1px solid #ccc; } h3 { font-size: 1em; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0 1em; }
th, td { padding: 0.25em 0.6em; border-bottom: 1px solid #e3e3e3; text-align: left;
         vertical-align: top; }
th { border-bottom: 2px solid #888; background: #fafafa; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr.bad td { background: #fff3f0; } td.status { max-width: 28em; }
.banner { padding: 0.8em 1em; background: #fff3cd; border: 1px solid #e0c36a; }
.counts span { margin-right: 1.2em; } figure { margin: 1em 0; }
figure img { max-width: 100%; border: 1px solid #eee; } figcaption { font-size: 0.9em; }
pre { background: #f6f6f6; padding: 0.8em; overflow-x: auto; font-size: 0.85em; }
ul.legend { font-size: 0.85em; color: #444; }
td code { white-space: pre-wrap; word-break: break-word; }
"""

CAPTIONS = {
    "error_vs_params": "Factor error against stored parameters: each point is one "
                       "configuration (median over repeats); marker shape = n; the dashed "
                       "staircase joins, for each n, the configurations no other beats on "
                       "both axes (the Pareto front).",
    "error_vs_time": "Factor error against setup time (factorization, training included), "
                     "same encoding.",
    "scaling": "Parameters, setup and solve time against n (log–log) with reference slopes; "
               "the legend gives each method's least-squares slope of log y on log n.",
    "training": "Training loss and relative error of the learned factors against step and "
                "against seconds (repeat 0 of each case).",
}


def _page(title: str, body: str) -> str:
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>{CSS}</style></head>"
            f"<body>\n{body}\n</body></html>\n")


def standalone_table_html(results: pd.DataFrame, title: str) -> str:
    """The tables as their own HTML page."""
    return _page(title, f"<h1>{html.escape(title)}</h1>\n{html_table(results)}")


def _counts(results: pd.DataFrame) -> str:
    counts = Counter(results["status"])
    order = [OK, "failed", "unsupported", "timeout", "diverged"]
    keys = order + sorted(k for k in counts if k not in order)
    return "".join(f"<span><b>{counts[k]}</b> {html.escape(k)}</span>" for k in keys
                   if counts.get(k))


def _not_ok(results: pd.DataFrame) -> str:
    bad = results[results["status"] != OK]
    if bad.empty:
        return "<p>Every case finished ok.</p>"
    rows = []
    for _, r in bad.iterrows():
        rows.append("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in (
            r["operator_label"], r["n"], r["method_label"], r["repeat"], r["status"]))
            + f"<td>{html.escape(r['error'] or '(no reason recorded)')}</td>"
            f"<td><code>{html.escape(str(r['case_id']))}</code></td></tr>")
    return ("<table><thead><tr><th>operator</th><th>n</th><th>method</th><th>repeat</th>"
            "<th>status</th><th>reason</th><th>case_id</th></tr></thead><tbody>"
            + "".join(rows) + "</tbody></table>")


def _environment(meta: dict) -> str:
    if not meta:
        return "<p>No meta.json in the run directory.</p>"
    rows = []
    for key, value in meta.items():
        text = value if isinstance(value, str) else json.dumps(value, indent=1, default=str)
        rows.append(f"<tr><th>{html.escape(str(key))}</th>"
                    f"<td><code>{html.escape(str(text))}</code></td></tr>")
    return "<table>" + "".join(rows) + "</table>"


def report_html(run: Run, figures: dict[str, bytes], notes: list[str] | None = None) -> str:
    """The page: ``figures`` maps a figure name to its PNG bytes (embedded as base64)."""
    res = run.results
    suite = str(res["suite"].dropna().iloc[0]) if res["suite"].notna().any() else run.path.name
    run_id = str(res["run_id"].dropna().iloc[0]) if res["run_id"].notna().any() else ""
    title = f"lubench report — {suite}"
    parts = [f"<h1>{html.escape(title)}</h1>",
             f"<p>Run <code>{html.escape(run_id)}</code> in <code>"
             f"{html.escape(str(run.path))}</code> (read from {html.escape(run.source)}); "
             f"{res['case_id'].nunique()} cases, {len(res)} rows.</p>",
             f'<p class="counts">{_counts(res)}</p>']
    if not (res["status"] == OK).any():
        parts.append('<p class="banner"><b>No case finished ok.</b> There is nothing to plot; '
                     "the tables and the list below say what happened to each case.</p>")
    for note in notes or []:
        parts.append(f'<p class="banner">{html.escape(note)}</p>')
    if figures:
        parts.append("<h2>Figures</h2>")
        for name, png in figures.items():
            data = base64.b64encode(png).decode("ascii")
            parts.append(f'<figure id="{name}"><img alt="{name}" '
                         f'src="data:image/png;base64,{data}"><figcaption><b>{name}</b>: '
                         f"{html.escape(CAPTIONS.get(name, ''))}</figcaption></figure>")
    parts.append("<h2>Results</h2><p>Per operator × n × method: median over the repeats that "
                 "finished ok, (min–max) where they differ. Hover a header for its "
                 "meaning.</p>")
    parts.append(html_table(res))
    parts.append("<h2>Cases that did not finish ok</h2>")
    parts.append(_not_ok(res))
    parts.append("<h2>Environment</h2>")
    parts.append(_environment(run.meta))
    if run.suite_text:
        parts.append(f"<h2>Suite</h2><pre>{html.escape(run.suite_text)}</pre>")
    return _page(title, "\n".join(parts))
