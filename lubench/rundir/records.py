"""Records: what one finished case (one repeat) leaves behind, and the tables built from them.

The one place that knows the result schema. A *record* is a dict: the identity columns, the
status and error, the metrics (``None`` until measured), then free fields (``threads``,
``pid``, ``wall_seconds``, ``info``, ...), ``history`` (the training curve, a list of dicts)
and, for a failure inside a plugin, ``traceback``. Records are appended to ``records.jsonl``,
one JSON object per line (:func:`record_line`); the store, the runner and the report read them
back through :func:`read_records`, :func:`dedupe_records` and :func:`records_to_frames`.

Statuses (DESIGN.md "Result rows"): ``ok`` factorized and graded; ``unsupported`` the method
declined the operator; ``diverged`` training reached NaN/Inf; ``failed`` anything else (a
breakdown, an exception, out of memory, a dead worker); ``timeout`` killed at the deadline;
``unavailable`` not run, the method's plugin lacks a module it requires (e.g. PyTorch).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
from collections.abc import Iterable, Iterator
from pathlib import Path, PurePath
from typing import Any, Protocol

import numpy as np
import pandas as pd

__all__ = ["OK", "UNSUPPORTED", "DIVERGED", "FAILED", "TIMEOUT", "UNAVAILABLE", "STATUSES",
           "NOT_OK", "OUTCOMES",
           "IDENTITY_COLUMNS", "METRIC_COLUMNS", "NUMERIC_COLUMNS", "RESULT_COLUMNS",
           "HISTORY_KEY_COLUMNS", "RECORDS", "base_record", "canonical_json", "jsonable",
           "record_line", "json_text", "decode_json", "read_records", "dedupe_records",
           "records_to_frames"]

log = logging.getLogger("lubench")

# -- statuses ---------------------------------------------------------------------------------
OK = "ok"
UNSUPPORTED = "unsupported"
DIVERGED = "diverged"
FAILED = "failed"
TIMEOUT = "timeout"
UNAVAILABLE = "unavailable"
#: Every status, in the order summaries list them.
STATUSES = (OK, UNSUPPORTED, DIVERGED, FAILED, TIMEOUT, UNAVAILABLE)
NOT_OK = (FAILED, UNSUPPORTED, TIMEOUT, DIVERGED, UNAVAILABLE)
#: The statuses that are outcomes of a method (exit status 0); ``failed`` is not (exit 1).
OUTCOMES = (OK, UNSUPPORTED, UNAVAILABLE, DIVERGED, TIMEOUT)

# -- columns ----------------------------------------------------------------------------------
IDENTITY_COLUMNS = ["run_id", "suite", "case_id", "operator", "operator_params", "n", "method",
                    "family", "method_params", "seed", "repeat", "device", "status", "error"]
METRIC_COLUMNS = [
    "factor_error", "factor_error_kind", "factor_error_2", "solve_residual", "forward_error",
    "precond_iterations", "precond_converged", "precond_seconds", "gmres_iterations",
    "gmres_converged", "n_params", "setup_seconds", "solve_seconds",
    "peak_memory_bytes", "iterations", "final_loss",
]
#: The metrics that are numbers (the others: ``factor_error_kind`` text, ``precond_converged``
#: a boolean).
NUMERIC_COLUMNS = [c for c in METRIC_COLUMNS
                   if c not in ("factor_error_kind", "precond_converged", "gmres_converged")]
RESULT_COLUMNS = IDENTITY_COLUMNS + METRIC_COLUMNS
HISTORY_KEY_COLUMNS = ["run_id", "case_id", "repeat", "method", "operator", "n"]
# Fields of a record that are not result columns: the curve goes to histories.parquet, the
# traceback stays in records.jsonl (for --debug).
NOT_COLUMNS = {"history", "traceback"}
RECORDS = "records.jsonl"

_INT_COLUMNS = ["n", "seed", "repeat", "n_params", "peak_memory_bytes", "iterations",
                "precond_iterations", "gmres_iterations", "threads", "pid"]
_FLOAT_COLUMNS = ["factor_error", "factor_error_2", "solve_residual", "forward_error",
                  "setup_seconds", "solve_seconds", "precond_seconds", "final_loss",
                  "started_at", "wall_seconds"]


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------
class CaseIdentity(Protocol):
    """What a record needs of a case (:class:`lubench.suite.cases.Case` has it)."""

    suite: str
    case_id: str
    operator: str
    operator_params: dict
    n: int
    method: str
    family: str
    method_params: dict
    seed: int
    device: str


def jsonable(value: Any) -> Any:
    """Paths as text, tuples as lists: a value JSON can write the same way every time."""
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, list):
        return [jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    return value


def canonical_json(value: Any) -> str:
    """Compact, key-sorted JSON: the form hashed into case ids and stored in results."""
    return json.dumps(jsonable(value), sort_keys=True, separators=(",", ":"))


def base_record(case: CaseIdentity, repeat: int, run_id: str = "", device: str = "") -> dict:
    """The identity columns of a result row, metrics empty."""
    rec: dict[str, Any] = {
        "run_id": run_id,
        "suite": case.suite,
        "case_id": case.case_id,
        "operator": case.operator,
        "operator_params": canonical_json(case.operator_params),
        "n": case.n,
        "method": case.method,
        "family": case.family,
        "method_params": canonical_json(case.method_params),
        "seed": case.seed,
        "repeat": repeat,
        "device": device or ("cpu" if case.family == "classical" else case.device),
        "status": "",
        "error": "",
    }
    for col in METRIC_COLUMNS:
        rec[col] = None
    return rec


FLOAT_TAG = "$float"
_NON_FINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def _strict(value: Any) -> Any:
    """``value`` with NumPy scalars as Python numbers and every non-finite float as
    ``{"$float": "NaN" | "Infinity" | "-Infinity"}``: what standard JSON can hold."""
    if isinstance(value, dict):
        return {str(k): _strict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict(v) for v in value]
    if type(value).__module__ == "numpy" and hasattr(value, "item"):  # a NumPy scalar
        with contextlib.suppress(TypeError, ValueError):
            value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return {FLOAT_TAG: "NaN" if math.isnan(value) else
                ("Infinity" if value > 0 else "-Infinity")}
    return value


def _untag(obj: dict) -> Any:
    if len(obj) == 1 and FLOAT_TAG in obj and obj[FLOAT_TAG] in _NON_FINITE:
        return _NON_FINITE[obj[FLOAT_TAG]]
    return obj


def json_text(value: Any) -> str:
    """Strict, compact JSON (RFC 8259: no ``NaN``/``Infinity`` tokens); non-finite numbers
    are written as ``{"$float": "NaN"}`` and the like, and read back as floats by
    :func:`decode_json`. Values JSON cannot hold are written as their ``str``."""
    return json.dumps(_strict(value), default=str, separators=(",", ":"), allow_nan=False)


def decode_json(text: str | bytes) -> Any:
    """The inverse of :func:`json_text` (also reads the bare ``NaN`` of older files)."""
    return json.loads(text, object_hook=_untag)


def record_line(record: dict) -> bytes:
    """One record as one line of ``records.jsonl`` (strict JSON, newline-terminated)."""
    return (json_text(record) + "\n").encode()


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------
_TEXT_FIELDS = ("run_id", "suite", "operator", "operator_params", "method", "family",
                "method_params", "device", "status", "error", "factor_error_kind")
_INT64 = 2 ** 63


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and -_INT64 < value < _INT64


def record_problem(rec: Any) -> str | None:
    """Why a decoded line of ``records.jsonl`` is no record (None when it is one): a record
    is a JSON object with a non-empty text ``case_id``, an integer ``repeat`` ≥ 0 (absent:
    0), an integer ``n`` ≥ 1 when present, text (or null) identity fields, a list (or null)
    ``history``. Metrics of any other type are read as missing (:func:`records_to_frames`)."""
    if not isinstance(rec, dict):
        return "not a JSON object"
    if not isinstance(rec.get("case_id"), str) or not rec["case_id"]:
        return "no case_id"
    repeat = rec.get("repeat", 0)
    if not (_is_int(repeat) and repeat >= 0):
        return f"repeat is {_short(repeat)}"
    n = rec.get("n")
    if n is not None and not (_is_int(n) and n >= 1):
        return f"n is {_short(n)}"
    for key in _TEXT_FIELDS:
        if rec.get(key) is not None and not isinstance(rec[key], str):
            return f"{key} is {_short(rec[key])}"
    if rec.get("history") is not None and not isinstance(rec["history"], list):
        return f"history is {_short(rec['history'])}"
    return None


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def read_records(path: str | Path) -> Iterator[dict]:
    """The records of ``records.jsonl`` in file order.

    A line that is no record (:func:`record_problem`: a crash mid-write leaves a truncated
    last line; a foreign or corrupt line) is skipped with a warning naming the file, the
    line and why; it never stops the reader. A ``records.jsonl`` that is not a regular file
    (a directory, a FIFO) is an :class:`~lubench.rundir.fsafe.FsError`.
    """
    from lubench.rundir.fsafe import FsError, describe, regular_file

    path = Path(path)
    if path.is_dir() and path.name != RECORDS:
        path = path / RECORDS
    if not regular_file(path):
        return
    try:
        fh = open(path, "rb")  # noqa: SIM115 - closed below, also when the caller stops early
    except OSError as exc:
        raise FsError(describe(exc, "cannot read", path), path) from None
    with fh:
        for lineno, raw in enumerate(fh, 1):
            if not raw.strip():
                continue
            try:
                rec = decode_json(raw)
            except (ValueError, UnicodeDecodeError, RecursionError):
                rec, why = None, "not JSON"
            else:
                why = record_problem(rec)
            if why is not None:
                tail = "" if raw.endswith(b"\n") else " (truncated last line: a crash mid-write)"
                log.warning("lubench: warning: %s:%d: skipping an unreadable record (%s)%s",
                            path, lineno, why, tail)
                continue
            yield rec


def dedupe_records(records: Iterable[dict]) -> list[dict]:
    """One record per (case_id, repeat), the last one written, in order of first appearance."""
    last: dict[tuple[str, int], dict] = {}
    for rec in records:
        last[(rec["case_id"], int(rec.get("repeat", 0)))] = rec
    return list(last.values())


def _int_or_na(value: Any) -> Any:
    """An integer column's cell: an int within int64, an integral float within it, else NA."""
    if _is_int(value):
        return value
    if isinstance(value, float) and value.is_integer() and abs(value) < _INT64:
        return int(value)
    if type(value).__module__ == "numpy" and hasattr(value, "item"):
        return _int_or_na(value.item())
    return pd.NA


def _float_or_nan(value: Any) -> float:
    if isinstance(value, bool) or value is None:
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError, OverflowError):
        return math.nan


def _typed(df: pd.DataFrame) -> pd.DataFrame:
    """Each column in its type; a cell that is not of it (a foreign or corrupt record) reads
    as missing, never as an error."""
    for col in _INT_COLUMNS:
        if col in df:
            df[col] = pd.array([_int_or_na(v) for v in df[col]], dtype="Int64")
    for col in _FLOAT_COLUMNS:
        if col in df:
            df[col] = pd.array([_float_or_nan(v) for v in df[col]], dtype="float64")
    for col in ("precond_converged", "gmres_converged"):
        if col in df:
            df[col] = pd.array([bool(v) if isinstance(v, (bool, np.bool_)) else pd.NA
                                for v in df[col]], dtype="boolean")
    for col in ("status", "error", "factor_error_kind", "device"):
        if col in df:
            df[col] = df[col].astype(object).where(df[col].notna(), None)
    return df


def records_to_frames(records: list[dict],
                      order: dict[str, int] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(results, histories)`` from deduplicated records.

    ``results`` has the DESIGN.md columns first (identity, status, error, metrics), then any
    other field of the records (``threads``, ``pid``, ``wall_seconds``, ``info``, ...).
    ``order`` (case_id → position) sorts the rows like the suite; unknown cases go last.
    """
    if order is not None:
        records = sorted(records, key=lambda r: (order.get(r["case_id"], math.inf),
                                                 int(r.get("repeat", 0))))
    rows = [{k: v for k, v in rec.items() if k not in NOT_COLUMNS} for rec in records]
    extra: list[str] = []
    for row in rows:
        extra.extend(k for k in row if k not in RESULT_COLUMNS and k not in extra)
    results = _typed(pd.DataFrame(rows, columns=RESULT_COLUMNS + extra))

    hist_rows = []
    for rec in records:
        key = {k: rec.get(k) for k in HISTORY_KEY_COLUMNS}
        for h in rec.get("history") or []:
            if isinstance(h, dict):
                hist_rows.append({**key, **{k: v for k, v in h.items()
                                            if k not in HISTORY_KEY_COLUMNS}})
    hist_extra: list[str] = []
    for row in hist_rows:
        hist_extra.extend(k for k in row if k not in HISTORY_KEY_COLUMNS and k not in hist_extra)
    histories = pd.DataFrame(hist_rows, columns=HISTORY_KEY_COLUMNS + hist_extra)
    for col in ("n", "repeat"):
        histories[col] = pd.to_numeric(histories[col], errors="coerce").astype("Int64")
    return results, histories
