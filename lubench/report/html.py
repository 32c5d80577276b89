"""``report.html``: one self-contained page (figures embedded as base64 PNG, a small inline
script, no external file, no network) with the run's outcome counts, the figures, the results
table — sortable by any column and filterable by operator, method, status (and run) —, every
case that did not finish ``ok`` with its full reason, the environment from ``meta.json`` and
the suite file. Several runs give one page with a ``run`` column.

The table's state can be set from the address: ``report.html#sort=factor_error&method=plu``
(``sort=-key`` descending; ``operator=``, ``method=``, ``status=``, ``run=``, ``q=`` text),
and the address follows what the reader chooses, so a view can be linked.
"""

from __future__ import annotations

import base64
import html
import json
from collections import Counter

import pandas as pd

from lubench.report.htmltable import html_table
from lubench.report.load import Run
from lubench.rundir.records import OK
from lubench.suite.report_spec import ReportSpec

__all__ = ["report_html", "standalone_table_html", "CSS", "SCRIPT"]

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
#results th { cursor: pointer; user-select: none; white-space: nowrap; }
#results th[aria-sort=ascending]::after { content: " ▲"; }
#results th[aria-sort=descending]::after { content: " ▼"; }
td.best { background: #eef6ee; } #results td code { white-space: nowrap; }
.filters { font-size: 0.9em; margin: 0.5em 0; } .filters label { margin-right: 1em; }
"""

#: Sorting (click a header; numbers by ``data-v``, unmeasured last) and filtering (the
#: ``data-*`` of each row). Plain ES5, no library.
SCRIPT = r"""
(function () {
  var table = document.getElementById("results");
  if (!table) return;
  var body = table.tBodies[0], rows = [].slice.call(body.rows);
  var heads = [].slice.call(table.tHead.rows[0].cells);
  var box = document.getElementById("filters"), keys = ["operator", "method", "status", "run"];
  var selects = {}, search = null, count = null, state = {sort: ""};
  function values(key) {
    var seen = [];
    rows.forEach(function (r) {
      var v = r.getAttribute("data-" + key);
      if (v !== null && seen.indexOf(v) < 0) seen.push(v);
    });
    return seen;
  }
  keys.forEach(function (key) {
    var vals = values(key);
    if (!vals.length) return;
    var label = document.createElement("label"), sel = document.createElement("select");
    sel.id = "filter-" + key;
    sel.appendChild(new Option("all", ""));
    vals.forEach(function (v) { sel.appendChild(new Option(v, v)); });
    sel.onchange = apply;
    label.appendChild(document.createTextNode(key + " "));
    label.appendChild(sel);
    box.appendChild(label);
    selects[key] = sel;
  });
  search = document.createElement("input");
  search.type = "search"; search.id = "filter-q"; search.placeholder = "text in a row";
  search.oninput = apply;
  box.appendChild(search);
  count = document.createElement("span");
  count.id = "filter-count";
  box.appendChild(count);
  function sortBy(index, dir) {
    var num = heads[index].getAttribute("data-kind") === "num";
    function key(r) {
      var c = r.cells[index];
      if (!num) return c.textContent;
      var v = c.getAttribute("data-v");
      return v === null || v === "" ? null : parseFloat(v);
    }
    rows.sort(function (a, b) {
      var x = key(a), y = key(b);
      if (x === null || y === null) return x === y ? 0 : (x === null ? 1 : -1);
      return (num ? (x < y ? -1 : x > y ? 1 : 0) : x.localeCompare(y)) * dir;
    });
    heads.forEach(function (h) { h.removeAttribute("aria-sort"); });
    heads[index].setAttribute("aria-sort", dir > 0 ? "ascending" : "descending");
    rows.forEach(function (r) { body.appendChild(r); });
    state.sort = (dir > 0 ? "" : "-") + heads[index].getAttribute("data-key");
  }
  heads.forEach(function (h, i) {
    h.onclick = function () {
      sortBy(i, h.getAttribute("aria-sort") === "ascending" ? -1 : 1);
      remember();
    };
  });
  function apply() {
    var q = search.value.toLowerCase(), shown = 0;
    rows.forEach(function (r) {
      var ok = keys.every(function (k) {
        return !selects[k] || !selects[k].value || r.getAttribute("data-" + k) === selects[k].value;
      }) && (!q || r.textContent.toLowerCase().indexOf(q) >= 0);
      r.style.display = ok ? "" : "none";
      if (ok) shown += 1;
    });
    count.textContent = " " + shown + " of " + rows.length + " rows";
    remember();
  }
  function remember() {
    var parts = [];
    if (state.sort) parts.push("sort=" + encodeURIComponent(state.sort));
    keys.forEach(function (k) {
      var sel = selects[k];
      if (sel && sel.value) parts.push(k + "=" + encodeURIComponent(sel.value));
    });
    if (search.value) parts.push("q=" + encodeURIComponent(search.value));
    var hash = "#" + parts.join("&");
    if (window.history && history.replaceState) history.replaceState(null, "", hash);
  }
  (location.hash || "").replace(/^#/, "").split("&").forEach(function (part) {
    var kv = part.split("="), k = kv[0], v = decodeURIComponent(kv.slice(1).join("="));
    if (!k) return;
    if (k === "sort") {
      var dir = v.charAt(0) === "-" ? -1 : 1, name = v.replace(/^-/, "");
      heads.forEach(function (h, i) { if (h.getAttribute("data-key") === name) sortBy(i, dir); });
    } else if (k === "q") { search.value = v; }
    else if (selects[k]) { selects[k].value = v; }
  });
  apply();
})();
"""

CAPTIONS = {
    "error_vs_params": "Relative factor error against stored numbers, a panel per operator "
                       "and n: each point is one configuration (median over repeats); the "
                       "grey staircases join, per family, the configurations no other of the "
                       "family beats on both axes (Pareto fronts).",
    "error_vs_time": "Factor error against setup time (factorization, training included), "
                     "same encoding.",
    "scaling": "Parameters, setup and solve time against n (log–log) with reference slopes; "
               "the legend gives each method's least-squares slope of log y on log n.",
    "training": "Training loss and relative error of the learned factors against step and "
                "against seconds (repeat 0 of each case).",
    "gmres_vs_params": "Preconditioned GMRES iterations against stored numbers; the dashed "
                       "line is plain GMRES on the same system; hollow: did not converge.",
    "time_to_solution": "Setup time (hollow) and time to solution, setup plus the "
                        "preconditioned GMRES solve (filled), per method.",
}


def _page(title: str, body: str, script: bool = False) -> str:
    tail = f"<script>{SCRIPT}</script>" if script else ""
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>{CSS}</style></head>"
            f"<body>\n{body}\n{tail}</body></html>\n")


def _explorable(results: pd.DataFrame, spec: ReportSpec | None) -> str:
    return ('<div class="filters" id="filters"></div>\n' + html_table(results, spec))


def standalone_table_html(results: pd.DataFrame, title: str,
                          spec: ReportSpec | None = None) -> str:
    """The results table as its own page (sortable and filterable, like ``report.html``)."""
    return _page(title, f"<h1>{html.escape(title)}</h1>\n{_explorable(results, spec)}",
                 script=True)


def _counts(results: pd.DataFrame) -> str:
    counts = Counter(results["status"])
    order = [OK, "failed", "unsupported", "timeout", "diverged"]
    keys = order + sorted(k for k in counts if k not in order)
    return "".join(f"<span><b>{counts[k]}</b> {html.escape(k)}</span>" for k in keys
                   if counts.get(k))


def _not_ok(results: pd.DataFrame) -> str:
    """Every row that did not finish ok, with its full reason (never cut)."""
    bad = results[results["status"] != OK]
    if bad.empty:
        return "<p>Every case finished ok.</p>"
    multi = "run" in bad.columns
    rows = []
    for _, r in bad.iterrows():
        lead = [r["operator_label"], r["n"], r["method_label"]] + ([r["run"]] if multi else [])
        rows.append("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in (
            *lead, r["repeat"], r["status"]))
            + f"<td><code>{html.escape(r['error'] or '(no reason recorded)')}</code></td>"
            f"<td><code>{html.escape(str(r['case_id']))}</code></td></tr>")
    run_head = "<th>run</th>" if multi else ""
    return ("<table><thead><tr><th>operator</th><th>n</th><th>method</th>" + run_head
            + "<th>repeat</th><th>status</th><th>reason</th><th>case_id</th></tr></thead>"
            "<tbody>" + "".join(rows) + "</tbody></table>")


def _environment(meta: dict) -> str:
    if not meta:
        return "<p>No meta.json in the run directory.</p>"
    rows = []
    for key, value in meta.items():
        text = value if isinstance(value, str) else json.dumps(value, indent=1, default=str)
        rows.append(f"<tr><th>{html.escape(str(key))}</th>"
                    f"<td><code>{html.escape(str(text))}</code></td></tr>")
    return "<table>" + "".join(rows) + "</table>"


def report_html(runs: list[tuple[str, Run]], results: pd.DataFrame, figures: dict[str, bytes],
                notes: list[str] | None = None, spec: ReportSpec | None = None) -> str:
    """The page. ``runs``: (label, run) of every run directory read; ``results``: their rows
    (with a ``run`` column when there are several); ``figures``: figure name -> PNG bytes
    (embedded as base64)."""
    res = results
    suites = list(dict.fromkeys(str(s) for s in res["suite"].dropna())) or \
        [runs[0][1].path.name]
    title = f"lubench report — {', '.join(suites)}"
    parts = [f"<h1>{html.escape(title)}</h1>"]
    for label, run in runs:
        rr = run.results
        run_id = str(rr["run_id"].dropna().iloc[0]) if rr["run_id"].notna().any() else ""
        name = f"<b>{html.escape(label)}</b>: " if len(runs) > 1 else "Run "
        parts.append(f"<p>{name}<code>{html.escape(run_id)}</code> in <code>"
                     f"{html.escape(str(run.path))}</code> (read from "
                     f"{html.escape(run.source)}); {rr['case_id'].nunique()} cases, "
                     f"{len(rr)} rows.</p>")
    parts.append(f'<p class="counts">{_counts(res)}</p>')
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
    parts.append("<h2>Results</h2><p>Per operator × n × method"
                 + (" × run" if len(runs) > 1 else "") + ": median over the repeats that "
                 "finished ok, (min–max) where they differ. Click a header to sort; choose "
                 "values to filter. Hover a header for its meaning, a status for its full "
                 "reason.</p>")
    parts.append(_explorable(res, spec))
    parts.append("<h2>Cases that did not finish ok</h2>")
    parts.append(_not_ok(res))
    for label, run in runs:
        suffix = f" — {html.escape(label)}" if len(runs) > 1 else ""
        parts.append(f"<h2>Environment{suffix}</h2>")
        parts.append(_environment(run.meta))
        if run.suite_text:
            parts.append(f"<h2>Suite{suffix}</h2><pre>{html.escape(run.suite_text)}</pre>")
    return _page(title, "\n".join(parts), script=True)
