"""Read a run directory into DataFrames, and name its cases for tables and legends.

A run directory holds ``results.parquet`` (one row per case and repeat), ``histories.parquet``
(training curves), ``meta.json`` (the environment) and ``records.jsonl`` (the raw records,
appended as cases finish). When the parquet files are missing or older than the records — a
run that crashed before it could (re)write them, a run still going — the frames are rebuilt
from ``records.jsonl`` through the same functions the store uses (:mod:`lubench.rundir.records`): an
unreadable line (a truncated last line, the case being written when the process died) is
skipped with a warning.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from lubench.api import LubenchError
from lubench.rundir import records
from lubench.rundir.fsafe import read_json_object
from lubench.rundir.records import (
    FAILED,
    IDENTITY_COLUMNS,
    NOT_OK,
    NUMERIC_COLUMNS,
    OK,
    dedupe_records,
    records_to_frames,
)

__all__ = ["Run", "load_run", "read_records", "prepare_results", "add_labels", "OK", "NOT_OK"]


@dataclass
class Run:
    """One run directory, read: results, training histories, environment, suite text."""

    path: Path
    results: pd.DataFrame
    histories: pd.DataFrame
    meta: dict = field(default_factory=dict)
    suite_text: str = ""
    source: str = "results.parquet"


def read_records(path: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Results and histories rebuilt from ``records.jsonl``, read as the store reads it
    (:mod:`lubench.rundir.records`): an unreadable line is set aside with a warning, and later
    records of the same (case_id, repeat) replace earlier ones (a resumed run)."""
    return records_to_frames(dedupe_records(records.read_records(path)))


def prepare_results(results: pd.DataFrame) -> pd.DataFrame:
    """The result rows with every column a report reads (missing metrics as NaN), numeric
    metrics as floats, and the ``method_label`` / ``operator_label`` columns."""
    df = results.copy()
    for col in IDENTITY_COLUMNS:
        if col not in df.columns:
            df[col] = None
    for col in NUMERIC_COLUMNS:
        if col not in df.columns:
            df[col] = float("nan")
        df[col] = pd.to_numeric(df[col], errors="coerce").astype(float)
    df["status"] = df["status"].fillna(FAILED).replace("", FAILED).astype(str)
    df["error"] = df["error"].fillna("").astype(str)
    df["n"] = pd.to_numeric(df["n"], errors="coerce").astype("Int64")
    df["repeat"] = pd.to_numeric(df["repeat"], errors="coerce").fillna(0).astype(int)
    for col in ("operator_params", "method_params"):
        df[col] = df[col].map(_as_json_text)
    df["family"] = df["family"].fillna("").astype(str)
    return add_labels(df)


def _as_json_text(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "{}"
    if isinstance(value, str):
        return value or "{}"
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def _params(text: str) -> dict:
    try:
        value = json.loads(text)
    except (TypeError, ValueError, RecursionError):
        return {}
    return value if isinstance(value, dict) else {}


def _fmt_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e6:
        return f"{value:g}"
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def _label(name: str, params: dict) -> str:
    if not params:
        return name
    return f"{name}[{','.join(f'{k}={_fmt_value(v)}' for k, v in params.items())}]"


def _labels(names: pd.Series, params: pd.Series) -> pd.Series:
    """``name[k=v,...]`` with only the parameters whose value differs between rows of a name;
    a row that does not set such a parameter, or records it as None (either way it runs
    with the method's default), leaves it out, and one that sets none of them is plain
    ``name``."""
    parsed = params.map(_params)
    out = names.astype(str).copy()
    for name in names.dropna().unique():
        mask = names == name
        dicts = list(parsed[mask])
        keys = sorted({k for d in dicts for k in d})
        varying = [k for k in keys
                   if len({json.dumps(d.get(k), sort_keys=True, default=str) for d in dicts}) > 1]
        if not varying:
            continue
        out[mask] = [_label(name, {k: d[k] for k in varying if d.get(k) is not None})
                     for d in dicts]
    return out


def add_labels(df: pd.DataFrame) -> pd.DataFrame:
    """Add ``method_label`` and ``operator_label``: the name, plus the parameters that tell
    the configurations of that name apart (``gfmm_lu[P=16]``), nothing when there is one."""
    df = df.copy()
    df["method_label"] = _labels(df["method"], df["method_params"])
    df["operator_label"] = _labels(df["operator"], df["operator_params"])
    return df


def load_run(run_dir: str | Path) -> Run:
    """Read a run directory; :class:`~lubench.api.LubenchError` when there is nothing to read."""
    path = Path(run_dir)
    if not path.is_dir():
        raise LubenchError(f"run directory {path} does not exist")
    parquet, jsonl = path / "results.parquet", path / "records.jsonl"
    histories = pd.DataFrame()
    stale = parquet.is_file() and jsonl.is_file() and \
        jsonl.stat().st_mtime > parquet.stat().st_mtime + 1.0
    if parquet.is_file() and not stale:
        try:
            results = pd.read_parquet(parquet)
        except Exception as exc:  # a half-written parquet file: fall back on the records
            if not jsonl.is_file():
                raise LubenchError(f"cannot read {parquet}: {exc}") from None
            results, histories = read_records(jsonl)
            source = "records.jsonl"
        else:
            source = "results.parquet"
            hist_file = path / "histories.parquet"
            if hist_file.is_file():
                histories = pd.read_parquet(hist_file)
    elif jsonl.is_file():
        results, histories = read_records(jsonl)
        source = "records.jsonl"
    else:
        raise LubenchError(f"{path} holds no results.parquet or records.jsonl: not a run "
                           f"directory (make one with `lubench run SUITE -o {path}`)")
    if results.empty:
        raise LubenchError(f"{path} holds no records: the run finished no case")
    meta: dict = {}
    if (path / "meta.json").is_file():
        meta = read_json_object(path / "meta.json") or {"meta.json": "unreadable"}
    suite_text = ""
    if (path / "suite.yaml").is_file():
        suite_text = (path / "suite.yaml").read_text(encoding="utf-8", errors="replace")
    return Run(path=path, results=prepare_results(results), histories=histories, meta=meta,
               suite_text=suite_text, source=source)
