"""One table cell: numbers as the tables print them, what a cell says instead of a number,
the best value of a group, the status column.

A cell holds the median over the repeats that finished ``ok`` — (min–max) follows in Markdown
and HTML when they differ. Three things a cell can say instead of a number:

* ``–``   not measured (the column is absent from the row: an older run, a probe-only size);
* ``NaN`` the metric was computed and is not finite (the row's ``error`` names it, by the
  non-finite rule of DESIGN.md) — a median over repeats with one such repeat is NaN too;
* ``∞``   an infinite value (runs older than that rule stored inf).
"""

from __future__ import annotations

import math
import re

import pandas as pd

from lubench.metrics.grading import GMRES_MAXITER as GMRES_MAX
from lubench.report.columns import Metric
from lubench.rundir.records import OK

__all__ = ["fmt_number", "short_reason", "nonfinite_keys", "cell", "best_flags", "status_text",
           "not_converged", "NOT_MEASURED", "NAN_TEXT", "INF_TEXT", "REASON_CHARS", "GMRES_MAX"]

REASON_CHARS = 60
NOT_MEASURED = "–"
NAN_TEXT = "NaN"
INF_TEXT = "∞"


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



def not_converged(row: pd.Series, m: Metric) -> bool:
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
    if not_converged(row, m):
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
                if r["n_ok"] > 0 and r[m.key + "_state"] == "ok" and not not_converged(r, m)}
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
