"""Records: what one finished case (one repeat) leaves behind, and the tables built from them.

The one place that knows the result schema. A *record* is a dict: the identity columns
(:data:`IDENTITY`, the status and error among them), the metrics (the metric table,
:mod:`lubench.metrics.table`; ``None`` until measured), then the fields every executor adds
(:data:`FIELDS`), ``history`` (the training curve, a list of dicts) and, for a failure inside
a plugin, ``traceback``. Records are appended to ``records.jsonl``, one JSON object per line
(:func:`record_line`); the store, the runner and the report read them back through
:func:`read_records`, :func:`dedupe_records` and :func:`records_to_frames`. The statuses and
what each means: :data:`STATUS_MEANINGS`. (``docs/reference/results.md`` is generated from
these and the metric table.)
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

from lubench.metrics.table import METRICS

__all__ = ["OK", "UNSUPPORTED", "DIVERGED", "FAILED", "TIMEOUT", "UNAVAILABLE", "NOT_RUN",
           "STATUSES",
           "STATUS_MEANINGS", "NOT_OK", "OUTCOMES", "IDENTITY", "FIELDS",
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
NOT_RUN = "not_run"
#: Every status and what it means, in the order summaries list them.
STATUS_MEANINGS = {
    OK: "factorized and graded",
    UNSUPPORTED: "the method declined the operator: its `check` or `factorize` raised "
                 "`Unsupported`, or it needs what the operator cannot give (`Method.needs`)",
    DIVERGED: "training reached NaN/Inf (`Diverged`)",
    FAILED: "anything else: a numerical breakdown, an exception from a plugin or the core, out "
            "of memory, a dead worker (`lubench run` exits 1)",
    TIMEOUT: "killed at the case's hard `timeout`",
    UNAVAILABLE: "not run: the plugin of its method lacks a module it `requires` (e.g. "
                 "PyTorch); the error says how to install it",
    NOT_RUN: "not run: the fit its method trains across instances with did not end ok (the "
             "error names the fit's status and reason, counted once in the fit's own row)",
}
STATUSES = tuple(STATUS_MEANINGS)
NOT_OK = (FAILED, UNSUPPORTED, TIMEOUT, DIVERGED, UNAVAILABLE, NOT_RUN)
#: The statuses that are outcomes of a method (exit status 0); ``failed`` is not (exit 1).
OUTCOMES = (OK, UNSUPPORTED, UNAVAILABLE, DIVERGED, TIMEOUT, NOT_RUN)

# -- columns ----------------------------------------------------------------------------------
#: The columns that say which case a row is and how it ended, in order, and what each holds.
IDENTITY = {
    "run_id": "the run's id (suite name, start time, a random suffix)",
    "suite": "the suite's name",
    "case_id": "a stable hash of (operator + params, n, method + params, suite seed): how "
               "`--resume` knows what is done",
    "operator": "the operator generator's name",
    "operator_params": "its parameters, every default filled in (JSON)",
    "n": "the size",
    "method": "the method's name",
    "family": "`classical`, `learned` or `compressed`",
    "method_params": "its parameters, every default filled in (JSON)",
    "seed": "the case's seed: derived from the suite seed and the case's identity, not its "
            "position (the operator's own seed derives from the operator side alone, so every "
            "method sees the same random operator)",
    "stage": "`case` (factorized and graded) or `fit` (a method trained across a family's "
             "training instances: its row holds `train_seconds`, its curve and what it "
             "learned in `info`)",
    "instance": "the family's instance a test case ran on (empty for a single operator and "
                "for a fit)",
    "repeat": "the timed repeat, from 0",
    "device": "where the case ran, resolved (`cpu` or `cuda`, never `auto`)",
    "status": "how it ended (the statuses below)",
    "error": "the reason, untruncated; for an `ok` row, the metrics that were not finite",
}
IDENTITY_COLUMNS = list(IDENTITY)
#: The fields every record adds after the metrics, and what each holds.
FIELDS = {
    "threads": "the BLAS/OpenMP/PyTorch threads of the case's worker",
    "pid": "the worker's process id",
    "host": "the machine that ran it",
    "executor": "`local`, `inline` or `slurm`",
    "job_id": "the SLURM job id (executor `slurm`)",
    "started_at": "when it started (seconds since the epoch)",
    "wall_seconds": "its wall time, start to record",
    "plugin": "the plugin that provides the method",
    "plugin_version": "that plugin's distribution version (resuming with another warns)",
    "info": "what the method reported (`Factorization.info`; a fit's `fit_info_`), strict "
            "JSON text",
    "fit_id": "a test case of a method that trains across instances: the `case_id` of its fit",
    "train_instances": "a fit: how many training instances it trained on",
    "log": "its output in the run directory (`logs/<case_id>-<repeat>.log`), when it printed "
           "anything",
}
#: The metrics every row records, in the order of the metric table (lubench.metrics.table).
METRIC_COLUMNS = [m.key for m in METRICS if m.recorded]
#: The metrics that are numbers (the others: ``factor_error_kind`` text, the ``*_converged``
#: flags).
NUMERIC_COLUMNS = [m.key for m in METRICS if m.recorded and m.number]
RESULT_COLUMNS = IDENTITY_COLUMNS + METRIC_COLUMNS
HISTORY_KEY_COLUMNS = ["run_id", "case_id", "repeat", "method", "operator", "n"]
# Fields of a record that are not result columns: the curve goes to histories.parquet, the
# traceback stays in records.jsonl (for --debug).
NOT_COLUMNS = {"history", "traceback"}
RECORDS = "records.jsonl"


def _metrics_of(dtype: str) -> list[str]:
    return [m.key for m in METRICS if m.recorded and m.dtype == dtype]


# The type of each column in the frames: the metrics' from the table, the others' here.
_INT_COLUMNS = ["n", "seed", "instance", "repeat", *_metrics_of("int"), "threads", "pid"]
_FLOAT_COLUMNS = [*_metrics_of("float"), "started_at", "wall_seconds"]
_BOOL_COLUMNS = _metrics_of("bool")
_TEXT_COLUMNS = ["stage", "status", "error", *_metrics_of("text"), "device"]


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
        "stage": getattr(case, "stage", "case"),
        "instance": getattr(case, "instance", None),
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
    for col in _BOOL_COLUMNS:
        if col in df:
            df[col] = pd.array([bool(v) if isinstance(v, (bool, np.bool_)) else pd.NA
                                for v in df[col]], dtype="boolean")
    for col in _TEXT_COLUMNS:
        if col in df:
            df[col] = df[col].astype(object).where(df[col].notna(), None)
    return df


def records_to_frames(records: list[dict],
                      order: dict[str, int] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(results, histories)`` from deduplicated records.

    ``results`` has the result columns first (identity, status, error, metrics), then any
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
