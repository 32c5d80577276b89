"""The aggregate every table and figure shows: the rows a report specification keeps
(:func:`select`), one row per operator × n × method (× run) with the median over the repeats
that finished ``ok`` (:func:`summarize`), and the metric columns of a table
(:func:`table_columns`).

The same aggregate feeds three renderings: Markdown (:mod:`lubench.report.markdown`, printed
after a run), LaTeX (:mod:`lubench.report.latex`) and HTML (:mod:`lubench.report.htmltable`,
the table of ``report.html``); a cell is written by :mod:`lubench.report.cells`. The columns,
their units and the direction in which a value is better come from
:mod:`lubench.metrics.table`. A configuration that did not finish ``ok`` keeps its row: its
status says what happened.
"""

from __future__ import annotations

import fnmatch
import json
import math
from collections import Counter
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from lubench.api import LubenchError
from lubench.report.cells import nonfinite_keys
from lubench.report.columns import BY_KEY, DEFAULT_COLUMNS, DERIVED, METRICS, Metric
from lubench.report.load import prepare_results
from lubench.rundir.records import OK
from lubench.suite.report_spec import ReportSpec
from lubench.suite.selection import parse_selector, value_matches

__all__ = ["select", "summarize", "table_columns"]


def _ordered(values: pd.Series) -> list:
    return list(dict.fromkeys(values.tolist()))


def _matches(pattern: str, name: str, label: str, params: str, n: object) -> bool:
    """A pattern names a row: its label or name (globs), or ``name[key=value,...]`` as
    ``-k`` reads it (:func:`lubench.suite.selection.parse_selector`), the values compared with the
    row's parameters (``n`` its size) — so ``gfmm_lu[P=32]`` matches whether or not the
    label shows ``P``."""
    if fnmatch.fnmatchcase(label, pattern) or label == pattern:
        return True
    try:
        glob, constraints = parse_selector(pattern)
    except LubenchError:
        return False
    if not fnmatch.fnmatchcase(name, glob):
        return False
    try:
        values = json.loads(params) if params else {}
    except ValueError:
        values = {}
    for key, wanted in constraints.items():
        actual = n if key == "n" else values.get(key, _MISSING)
        if actual is _MISSING or not value_matches(actual, wanted):
            return False
    return True


_MISSING = object()


def _match_index(name: str, label: str, params: str, n: object,
                 patterns: Sequence[str]) -> int:
    """The index of the first pattern naming the row (:func:`_matches`), -1 for none."""
    for i, p in enumerate(patterns):
        if _matches(p, name, label, params, n):
            return i
    return -1


def select(results: pd.DataFrame, spec: ReportSpec | None) -> tuple[pd.DataFrame, list[str]]:
    """The prepared rows the specification keeps, in its order of operators and methods
    (given patterns first, in the order given; otherwise the suite's order), and the patterns
    that matched nothing (to warn about). LubenchError when nothing is left."""
    df = _prepare(results)
    if spec is None:
        return df, []
    unmatched: list[str] = []
    for key, name, label in (("operators", "operator", "operator_label"),
                             ("methods", "method", "method_label")):
        patterns = getattr(spec, key)
        if not patterns:
            continue
        idx = [_match_index(str(a), str(b), str(p), nn, patterns) for a, b, p, nn in
               zip(df[name], df[label], df[name + "_params"], df["n"])]
        df = df.assign(**{f"_{key}": idx})
        hit = set(df[f"_{key}"])
        unmatched += [f"{key}: '{p}'" for i, p in enumerate(patterns) if i not in hit]
        df = df[df[f"_{key}"] >= 0]
    if spec.sizes:
        missing = [n for n in spec.sizes if n not in set(df["n"].dropna().astype(int))]
        unmatched += [f"sizes: {n}" for n in missing]
        df = df[df["n"].isin(spec.sizes)]
    order = [c for c in ("_operators", "_methods") if c in df.columns]
    if order:
        df = df.sort_values(order, kind="stable").drop(columns=order)
    if df.empty:
        raise LubenchError("the report specification keeps no result row ("
                           + "; ".join(unmatched or ["check --methods/--operators/--sizes"])
                           + " matched nothing)")
    return df.reset_index(drop=True), unmatched


def _prepare(results: pd.DataFrame) -> pd.DataFrame:
    """Prepared rows (see :func:`lubench.report.load.prepare_results`) with the derived
    columns and ``_nonfinite``, the set of metrics each row names as not finite."""
    if "_nonfinite" in results.columns:
        return results
    df = prepare_results(results)
    for col in {p for parts in DERIVED.values() for p in parts} - set(df.columns):
        df[col] = float("nan")  # a run recorded before the column existed
    for col in ("precond_seconds", "gmres_iterations", "precond_converged", "gmres_converged"):
        if col not in df.columns:
            df[col] = float("nan") if not col.endswith("converged") else None
    for col in ("precond_seconds", "gmres_iterations"):
        df[col] = pd.to_numeric(df[col], errors="coerce").astype(float)
    nonfinite = [nonfinite_keys(e) if s == OK else set()
                 for e, s in zip(df["error"], df["status"])]
    for key, parts in DERIVED.items():
        df[key] = sum(df[p] for p in parts)
        for bad in nonfinite:
            if bad & set(parts):
                bad.add(key)
    df["_nonfinite"] = nonfinite
    return df


def _aggregate(ok: pd.DataFrame, key: str) -> tuple[float, float, float, str]:
    """(median, min, max, state) of one metric over the ok repeats: state ``ok``,
    ``missing`` (no repeat measured it), ``nan`` / ``inf`` (a repeat was not finite: the
    median is NaN then, never the median of the others)."""
    finite, bad = [], []
    for v, flagged in zip(ok[key], ok["_nonfinite"]):
        v = float(v) if v is not None else float("nan")
        if math.isinf(v):
            bad.append(v)
        elif math.isnan(v):
            if key in flagged:
                bad.append(v)
        else:
            finite.append(v)
    nan = float("nan")
    if bad:
        state = "inf" if all(b == math.inf for b in bad) else "nan"
        return (math.inf if state == "inf" else nan), nan, nan, state
    if not finite:
        return nan, nan, nan, "missing"
    return float(np.median(finite)), min(finite), max(finite), "ok"


def _all_true(values: Iterable) -> bool | None:
    """True when every value is true, False when one is false, None when none is known
    (None, NaN, or pandas' NA of a nullable flag column: a flag that was not measured)."""
    known = [v for v in values if not pd.isna(v)]
    if not known:
        return None
    return all(bool(v) for v in known)  # numpy.bool_ from parquet: test truth, not identity


def summarize(results: pd.DataFrame) -> pd.DataFrame:
    """One row per (operator_label, n, method_label[, run]) — the instances of a family and
    the repeats together, fits left out: for every metric of
    :data:`~lubench.metrics.table.METRICS` its median, min and max over the ``ok`` repeats
    (``<key>``, ``<key>_min``, ``<key>_max``) and ``<key>_state`` (``ok``, ``missing``,
    ``nan``, ``inf``); the repeat counts; the status (``ok``, or the most frequent other
    status with its first reason).

    Rows keep the order of the frame (the suite's, or the specification's) of operators and
    methods, n ascending, runs in the order given.
    """
    df = _prepare(results)
    if "stage" in df.columns:  # a fit is not a case: the training table lists it
        df = df[df["stage"].fillna("case") != "fit"]
    multi = "run" in df.columns
    keys = ["operator_label", "n", "method_label"] + (["run"] if multi else [])
    orders = {k: {v: i for i, v in enumerate(_ordered(df[k]))} for k in keys if k != "n"}
    rows = []
    for _key, g in df.groupby(keys, sort=False, dropna=False):
        ok = g[g["status"] == OK]
        first = g.iloc[0]
        row: dict = {k: first[k] for k in keys}
        row.update(operator=first["operator"], method=first["method"], family=first["family"],
                   repeats=len(g), n_ok=len(ok))
        for m in METRICS:
            med, lo, hi, state = _aggregate(ok, m.key)
            row.update({m.key: med, m.key + "_min": lo, m.key + "_max": hi,
                        m.key + "_state": state})
            if m.converged:
                row[m.converged] = _all_true(ok[m.converged]) if m.converged in ok else None
        kinds = ok["factor_error_kind"] if "factor_error_kind" in ok.columns else pd.Series()
        row["probe"] = bool(any(isinstance(k, str) and k.startswith("probe") for k in kinds))
        bad = g[g["status"] != OK]
        if bad.empty:
            row["status"], row["reason"] = OK, ""
            row["note"] = next((e for e in ok["error"] if e), "")
        else:
            status = Counter(bad["status"]).most_common(1)[0][0]
            reasons = bad.loc[bad["status"] == status, "error"]
            row["status"] = status
            row["reason"] = next((r for r in reasons if r), "")
            row["note"] = ""
        rows.append(row)
    out = pd.DataFrame(rows)
    if out.empty:
        return out
    sort = []
    for k in keys:
        if k == "n":
            sort.append("n")
            continue
        out["_" + k] = out[k].map(orders[k])
        sort.append("_" + k)
    out = out.sort_values(sort, kind="stable").drop(columns=[s for s in sort if s != "n"])
    return out.reset_index(drop=True)


def table_columns(summary: pd.DataFrame, spec: ReportSpec | None = None) -> list[Metric]:
    """The metric columns of a table: the specification's, in its order (a column no row
    measured stays, as ``–``); else :data:`DEFAULT_COLUMNS` that some row measured."""
    if spec is not None and spec.columns:
        return [BY_KEY[k] for k in spec.columns]
    return [BY_KEY[k] for k in DEFAULT_COLUMNS
            if summary.empty or (summary[k + "_state"] != "missing").any()]
