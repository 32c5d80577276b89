"""``lubench compare RUN_A RUN_B``: per case, how B differs from A; regressions flagged.

Cases are matched by ``case_id`` (the hash of operator, parameters, n, method and seed), each
run's repeats reduced to the median of those that finished ``ok`` — a median that keeps a
non-finite value (:func:`lubench.metrics.grading.repeat_median`: one NaN repeat makes it NaN). The
ratio B/A is reported for setup, solve and preconditioned-GMRES time, factor error and solve
residual. A case is a **regression** (listed, and ``lubench compare`` exits 1) when

* its status got worse: ``ok`` in A, not in B (``failed``, ``timeout``, ``diverged``,
  ``unsupported``);
* a metric blew up: finite in A, NaN or ±inf in B (any metric of
  :data:`BLOWUP_METRICS`; ``factor_error_2`` only where B measured it);
* ``precond_iterations`` grew (where A converged), or ``precond_converged`` went from true
  to false;
* a time got slower by more than ``threshold`` (median B/A > threshold) **and** B's median is
  at least :data:`TIME_FLOOR` (1 ms; below that, timings are noise of the machine) **and**
  the slowdown is judged to be real:

  - when both runs have more than one repeat, a one-sided Mann–Whitney U test of B's repeats
    against A's gives p ≤ :data:`ALPHA` (0.05). With two repeats on each side no slowdown
    can be significant (the smallest p is 1/6); three against three can (p = 0.05 when
    every B is slower than every A). A slowdown that is not significant is a note;
  - when a run has a single repeat, no test is possible and one timing on a shared machine
    says little (a 0.7 ms → 4.9 ms jump of ``precond_seconds`` is ×7 of noise): the slowdown
    is **not judged** — a note — unless it is gross, B/A ≥ :data:`GROSS_FACTOR` (10) **and**
    B − A ≥ :data:`GROSS_FLOOR` (1 s), which no machine's noise makes;
* an error grew by more than ``threshold`` **and** B's error is at least :data:`ERROR_FLOOR`
  (1e-13): below that, both errors are round-off and their ratio means nothing.

Cases found in one run only are listed, not flagged. Improvements are shown, never flagged.
"""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import pandas as pd

from lubench.api import LubenchError
from lubench.metrics.grading import repeat_median
from lubench.report.cells import fmt_number, short_reason
from lubench.report.frame_text import frame_text
from lubench.report.load import load_run
from lubench.rundir.records import OK

__all__ = ["compare_runs", "compare_frames", "TIME_FLOOR", "ERROR_FLOOR", "ALPHA", "METRICS",
           "BLOWUP_METRICS", "GROSS_FACTOR", "GROSS_FLOOR"]

TIME_FLOOR = 1e-3     # seconds: a slower time below this is not flagged
GROSS_FACTOR = 10.0   # one repeat: only a slowdown of at least this factor ...
GROSS_FLOOR = 1.0     # ... and this many seconds is judged (flagged)
ERROR_FLOOR = 1e-13   # a larger error below this is not flagged (round-off level)
ALPHA = 0.05          # significance level of the rank test on times
#: The ratios B/A shown per case, and how each is judged.
METRICS = [("setup_seconds", "time"), ("solve_seconds", "time"), ("precond_seconds", "time"),
           ("factor_error", "error"), ("solve_residual", "error")]
#: The metrics whose turning non-finite (finite in A, NaN/inf in B) is a regression.
BLOWUP_METRICS = ["factor_error", "factor_error_2", "solve_residual", "forward_error",
                  "precond_iterations", "precond_seconds", "gmres_iterations", "setup_seconds",
                  "solve_seconds"]
_ALL = list(dict.fromkeys([k for k, _ in METRICS] + BLOWUP_METRICS))


def _finite(x: float) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def _truth(value: object) -> bool | None:
    """A flag read back from a frame (bool, numpy.bool_, None, NaN or pd.NA) as True, False or
    None (not recorded)."""
    return None if value is None or pd.isna(value) else bool(value)


def _converged(values: pd.Series) -> bool | None:
    """True when every ok repeat converged, False when one did not, None when not recorded."""
    vals = [v for v in values if not pd.isna(v)]
    if not vals:
        return None
    return all(bool(v) for v in vals)


def _per_case(results: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, dict[str, list]]]:
    """One row per case_id (medians over ok repeats, overall status and reason, label), and
    per case the ok repeats' finite times (for the rank test)."""
    rows, times = [], {}
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
                        f"{g['method_label'].iloc[0]}",
               "n_ok": len(ok)}
        for key in _ALL:
            vals = pd.to_numeric(ok[key], errors="coerce").astype(float) \
                if key in ok.columns else pd.Series(dtype=float)
            row[key] = repeat_median(vals)
        row["precond_converged"] = _converged(ok["precond_converged"]) \
            if "precond_converged" in ok.columns else None
        kinds = ok["factor_error_kind"] if "factor_error_kind" in ok.columns else pd.Series()
        row["exact"] = any(k == "exact" for k in kinds)
        times[case_id] = {k: [float(v) for v in ok[k] if _finite(v)]
                          for k, kind in METRICS if kind == "time" and k in ok.columns}
        rows.append(row)
    return pd.DataFrame(rows).set_index("case_id"), times


def _ratio(a: float, b: float) -> float:
    if math.isnan(a) or math.isnan(b):
        return float("nan")
    if a == 0:
        return 1.0 if b == 0 else float("inf")
    return b / a


def _slowdown_p(a: list[float], b: list[float]) -> float | None:
    """One-sided Mann–Whitney p-value of "B's times are larger than A's", or None when a run
    has a single repeat (no test possible: judged only when gross)."""
    if len(a) < 2 or len(b) < 2:
        return None
    from scipy.stats import mannwhitneyu

    return float(mannwhitneyu(b, a, alternative="greater").pvalue)


def _fmt_its(x: float) -> str:
    return fmt_number(x, integer=True) if _finite(x) else "NaN"


def _case_flags(ra: pd.Series, rb: pd.Series, ta: dict, tb: dict,
                threshold: float) -> tuple[dict, list[str], list[str]]:
    """The ratios, the regressions and the notes of one case found in both runs."""
    ratios: dict = {}
    flags: list[str] = []
    notes: list[str] = []
    if ra["status"] == OK and rb["status"] != OK:
        flags.append(f"{rb['status']} in B" + (f" ({short_reason(rb['reason'], 50)})"
                                               if rb["reason"] else ""))
    both_ok = ra["status"] == OK and rb["status"] == OK
    if both_ok:
        for key in BLOWUP_METRICS:
            if key == "factor_error_2" and not rb["exact"]:
                continue  # not measured in B (a probe estimate), not a blow-up
            if _finite(ra[key]) and not _finite(rb[key]):
                flags.append(f"{key} finite → NaN/inf")
        a_it, b_it = ra["precond_iterations"], rb["precond_iterations"]
        # counts of two runs that both failed to converge measure nothing comparable
        if _finite(a_it) and _finite(b_it) and b_it > a_it \
                and _truth(ra["precond_converged"]) is not False:
            flags.append(f"precond_iterations {_fmt_its(a_it)} → {_fmt_its(b_it)}")
        if _truth(ra["precond_converged"]) is True and _truth(rb["precond_converged"]) is False:
            flags.append("precond_converged true → false")
    for key, kind in METRICS:
        ratio = _ratio(ra[key], rb[key])
        ratios[key + "_ratio"] = ratio
        if not both_ok:
            continue
        floor = TIME_FLOOR if kind == "time" else ERROR_FLOOR
        if not (ratio > threshold and rb[key] >= floor):
            continue
        if kind == "error":
            flags.append(f"{key} ×{_fmt_ratio(ratio)} less accurate")
            continue
        a_t, b_t = ta.get(key, []), tb.get(key, [])
        p = _slowdown_p(a_t, b_t)
        if p is None and ratio >= GROSS_FACTOR and rb[key] - ra[key] >= GROSS_FLOOR:
            flags.append(f"{key} ×{_fmt_ratio(ratio)} slower (beyond ×{GROSS_FACTOR:g} and "
                         f"+{GROSS_FLOOR:g} s; {len(b_t)} vs {len(a_t)} repeats)")
        elif p is None:
            notes.append(f"{key} ×{_fmt_ratio(ratio)} slower, not judged ({len(b_t)} vs "
                         f"{len(a_t)} repeats: too few for a test)")
        elif p <= ALPHA:
            flags.append(f"{key} ×{_fmt_ratio(ratio)} slower (Mann–Whitney p = {p:.2g}, "
                         f"{len(b_t)} vs {len(a_t)} repeats)")
        else:
            notes.append(f"{key} ×{_fmt_ratio(ratio)} slower, not significant "
                         f"(p = {p:.2g}, {len(b_t)} vs {len(a_t)} repeats)")
    return ratios, flags, notes


def compare_frames(results_a: pd.DataFrame, results_b: pd.DataFrame,
                   threshold: float = 1.5) -> tuple[pd.DataFrame, list[str], list[str]]:
    """The comparison as data: one row per common case (ratios ``<metric>_ratio``,
    ``precond_iterations_a`` / ``_b``, ``flags``, ``notes``), and the labels of the cases only
    in A and only in B."""
    (a, times_a), (b, times_b) = _per_case(results_a), _per_case(results_b)
    common = [c for c in a.index if c in b.index]
    rows = []
    for case_id in common:
        ra, rb = a.loc[case_id], b.loc[case_id]
        ratios, flags, notes = _case_flags(ra, rb, times_a[case_id], times_b[case_id],
                                           threshold)
        rows.append({"case_id": case_id, "label": ra["label"], "status_a": ra["status"],
                     "status_b": rb["status"], **ratios,
                     "precond_iterations_a": ra["precond_iterations"],
                     "precond_iterations_b": rb["precond_iterations"],
                     "flags": flags, "notes": notes})
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


def _fmt_iterations(a: float, b: float) -> str:
    if not (_finite(a) or _finite(b)):
        return "–"
    return _fmt_its(a) if a == b else f"{_fmt_its(a)} → {_fmt_its(b)}"


def display_table(table: pd.DataFrame) -> pd.DataFrame:
    """The comparison as the rows a reader sees: case, status A → B, the ratios B/A, the
    preconditioned GMRES iterations A → B, and the regression flags (or notes)."""
    rows = []
    for _, r in table.iterrows():
        status = r["status_a"] if r["status_a"] == r["status_b"] else \
            f"{r['status_a']} → {r['status_b']}"
        row = {"case": r["label"], "status A → B": status}
        row.update({f"{k} B/A": _fmt_ratio(r[k + "_ratio"]) for k, _ in METRICS})
        row["precond_iterations A → B"] = _fmt_iterations(r["precond_iterations_a"],
                                                          r["precond_iterations_b"])
        row["flag"] = ("REGRESSION: " + "; ".join(r["flags"]) if r["flags"]
                       else "; ".join(r["notes"]))
        rows.append(row)
    return pd.DataFrame(rows)


def compare_runs(run_a: Path, run_b: Path, threshold: float = 1.5,
                 fmt: str = "md") -> tuple[str, int]:
    """The table of B/A per common case, in ``fmt`` (``md`` with the lists of unmatched
    and flagged cases around it, or ``tex``/``html``: the table alone, for a report), and the
    number of cases with a regression."""
    if not (threshold > 1 and math.isfinite(threshold)):
        raise LubenchError(f"--threshold must be a finite number greater than 1, got "
                           f"{threshold}")
    A, B = load_run(run_a), load_run(run_b)
    table, only_a, only_b = compare_frames(A.results, B.results, threshold)
    flagged = table[[bool(f) for f in table["flags"]]] if not table.empty else table
    shown = display_table(table)
    footer = (f"{len(table)} common case(s), {len(flagged)} flagged (threshold "
              f"×{threshold:g}; times under {TIME_FLOOR * 1e3:g} ms and errors under "
              f"{ERROR_FLOOR:g} are noise or round-off and never flagged; with repeats, "
              f"a slowdown must be significant, Mann–Whitney p ≤ {ALPHA:g}; with one "
              f"repeat it is not judged unless beyond ×{GROSS_FACTOR:g} and "
              f"+{GROSS_FLOOR:g} s).")
    if fmt != "md":
        caption = f"B = {run_b} against A = {run_a}. {footer}"
        return frame_text(shown, fmt, caption=caption), len(flagged)
    lines = [f"A: {run_a}", f"B: {run_b}", ""]
    if not table.empty:
        lines.append(frame_text(shown, "md").rstrip("\n"))
    for title, labels in (("only in A", only_a), ("only in B", only_b)):
        if labels:
            lines += ["", f"{len(labels)} case(s) {title}:"] + [f"  {x}" for x in labels]
    if len(flagged):
        lines += ["", f"Regressions ({len(flagged)} case(s)):"]
        lines += [f"  {r['label']}: {'; '.join(r['flags'])}" for _, r in flagged.iterrows()]
    lines += ["", footer]
    return "\n".join(lines), len(flagged)
