"""``lubench compare RUN_A RUN_B``: per case, how B differs from A; regressions flagged.

Cases are matched by ``case_id`` (the hash of operator, parameters, n, method and seed), each
run's repeats reduced to the median of those that finished ``ok``. For setup and solve time,
factor error and solve residual the ratio B/A is reported; a case is flagged when

* a time got slower by more than ``threshold`` (B/A > threshold) **and** B's time is at least
  :data:`TIME_FLOOR` (1 ms): below that, timings are dominated by noise of the machine;
* an error grew by more than ``threshold`` **and** B's error is at least :data:`ERROR_FLOOR`
  (1e-13): below that, both errors are round-off and their ratio means nothing;
* the case finished ``ok`` in A but not in B (failed, timeout, diverged, unsupported).

Cases found in one run only are listed, not flagged. Improvements are shown, never flagged.
"""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import pandas as pd

from lubench.report.load import OK, load_run
from lubench.report.tables import fmt_number, short_reason

__all__ = ["compare_runs", "compare_frames", "TIME_FLOOR", "ERROR_FLOOR", "METRICS"]

TIME_FLOOR = 1e-3     # seconds: a slower time below this is not flagged
ERROR_FLOOR = 1e-13   # a larger error below this is not flagged (round-off level)
METRICS = [("setup_seconds", "time"), ("solve_seconds", "time"),
           ("factor_error", "error"), ("solve_residual", "error")]


def _per_case(results: pd.DataFrame) -> pd.DataFrame:
    """One row per case_id: medians over ok repeats, overall status and reason, label."""
    rows = []
    for case_id, g in results.groupby("case_id", sort=False):
        ok = g[g["status"] == OK]
        bad = g[g["status"] != OK]
        if bad.empty:
            status, reason = OK, ""
        else:
            status = Counter(bad["status"]).most_common(1)[0][0]
            reason = next((e for e in bad.loc[bad["status"] == status, "error"] if e), "")
        row = {"case_id": case_id, "status": status, "reason": reason,
               "label": f"{g['operator_label'].iloc[0]} n={g['n'].iloc[0]} "
                        f"{g['method_label'].iloc[0]}"}
        for key, _kind in METRICS:
            vals = ok[key].dropna()
            row[key] = float(vals.median()) if len(vals) else float("nan")
        rows.append(row)
    return pd.DataFrame(rows).set_index("case_id")


def _ratio(a: float, b: float) -> float:
    if math.isnan(a) or math.isnan(b):
        return float("nan")
    if a == 0:
        return 1.0 if b == 0 else float("inf")
    return b / a


def compare_frames(results_a: pd.DataFrame, results_b: pd.DataFrame,
                   threshold: float = 1.5) -> tuple[pd.DataFrame, list[str], list[str]]:
    """The comparison as data: one row per common case (ratios ``<metric>_ratio``, ``flags``),
    and the labels of the cases only in A and only in B."""
    a, b = _per_case(results_a), _per_case(results_b)
    common = [c for c in a.index if c in b.index]
    rows = []
    for case_id in common:
        ra, rb = a.loc[case_id], b.loc[case_id]
        row = {"case_id": case_id, "label": ra["label"], "status_a": ra["status"],
               "status_b": rb["status"]}
        flags = []
        if ra["status"] == OK and rb["status"] != OK:
            flags.append(f"{rb['status']} in B" + (f" ({short_reason(rb['reason'], 50)})"
                                                   if rb["reason"] else ""))
        for key, kind in METRICS:
            ratio = _ratio(ra[key], rb[key])
            row[key + "_ratio"] = ratio
            floor = TIME_FLOOR if kind == "time" else ERROR_FLOOR
            if ratio > threshold and rb[key] >= floor:
                what = "slower" if kind == "time" else "less accurate"
                flags.append(f"{key} ×{_fmt_ratio(ratio)} {what}")
        row["flags"] = flags
        rows.append(row)
    table = pd.DataFrame(rows)
    only_a = [a.loc[c, "label"] for c in a.index if c not in b.index]
    only_b = [b.loc[c, "label"] for c in b.index if c not in a.index]
    return table, only_a, only_b


def _fmt_ratio(r: float) -> str:
    if math.isnan(r):
        return "–"
    if math.isinf(r):
        return "inf"
    return f"{r:.2f}" if 0.01 <= r < 1000 else fmt_number(r, digits=2)


def compare_runs(run_a: Path, run_b: Path, threshold: float = 1.5) -> tuple[str, int]:
    """A Markdown table of B/A per common case and the number of flagged regressions."""
    if not threshold > 1:
        from lubench.api import LubenchError

        raise LubenchError(f"--threshold must be greater than 1, got {threshold}")
    A, B = load_run(run_a), load_run(run_b)
    table, only_a, only_b = compare_frames(A.results, B.results, threshold)
    lines = [f"A: {run_a}", f"B: {run_b}", ""]
    if not table.empty:
        head = ["case", "status A → B"] + [f"{k} B/A" for k, _ in METRICS] + ["flag"]
        lines += ["| " + " | ".join(head) + " |",
                  "|" + "|".join(["---", "---"] + ["---:"] * len(METRICS) + ["---"]) + "|"]
        for _, r in table.iterrows():
            status = r["status_a"] if r["status_a"] == r["status_b"] else \
                f"{r['status_a']} → {r['status_b']}"
            cells = [r["label"], status] + [_fmt_ratio(r[k + "_ratio"]) for k, _ in METRICS]
            cells.append("REGRESSION: " + "; ".join(r["flags"]) if r["flags"] else "")
            lines.append("| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |")
    for title, labels in (("only in A", only_a), ("only in B", only_b)):
        if labels:
            lines += ["", f"{len(labels)} case(s) {title}:"] + [f"  {x}" for x in labels]
    n_flagged = int(sum(bool(f) for f in table["flags"])) if not table.empty else 0
    lines += ["", f"{len(table)} common case(s), {n_flagged} flagged (threshold ×{threshold:g};"
                  f" times under {TIME_FLOOR * 1e3:g} ms and errors under {ERROR_FLOOR:g} are"
                  f" round-off or noise and never flagged)."]
    return "\n".join(lines), n_flagged
