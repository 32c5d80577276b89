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
def read_records(path: str | Path) -> Iterator[dict]:
    """The records of ``records.jsonl`` in file order.

    A line that is not a JSON object (a crash mid-write leaves a truncated last line) is
    skipped with a warning naming the file and the line; it never stops the reader.
    """
    path = Path(path)
    if path.is_dir():
        path = path / RECORDS
    if not path.exists():
        return
    with open(path, "rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            if not raw.strip():
                continue
            try:
                rec = decode_json(raw)
            except (ValueError, UnicodeDecodeError):
                rec = None
            if not isinstance(rec, dict) or "case_id" not in rec:
                tail = "" if raw.endswith(b"\n") else " (truncated last line: a crash mid-write)"
                log.warning("lubench: warning: %s:%d: skipping an unreadable record%s",
                            path, lineno, tail)
                continue
            yield rec


def dedupe_records(records: Iterable[dict]) -> list[dict]:
    """One record per (case_id, repeat), the last one written, in order of first appearance."""
    last: dict[tuple[str, int], dict] = {}
    for rec in records:
        last[(rec["case_id"], int(rec.get("repeat", 0)))] = rec
    return list(last.values())


def _typed(df: pd.DataFrame) -> pd.DataFrame:
    for col in _INT_COLUMNS:
        if col in df:
            df[col] = pd.to_numeric(df[col], errors="coerce").astype("Int64")
    for col in _FLOAT_COLUMNS:
        if col in df:
            df[col] = pd.to_numeric(df[col], errors="coerce").astype("float64")
    for col in ("precond_converged", "gmres_converged"):
        if col in df:
            df[col] = df[col].astype("boolean")
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
