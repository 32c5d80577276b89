"""One run directory from several: ``lubench merge DIR... -o OUT``.

Parts of one suite run on different machines (``-k`` slices, a SLURM partition and a
workstation) become one run that ``lubench report`` reads like any other. Every record of
every source is kept once per (case_id, repeat): when several sources hold one, the newest
(``started_at``; a later source breaks a tie) wins. A duplicate whose status or plugin version
differs from the kept one is a *conflict*: it is reported, never silently dropped.

OUT is a new run directory: ``records.jsonl`` (the kept records), ``results.parquet`` and
``histories.parquet`` built from them, ``meta.json`` naming the sources (run ids, folders,
environments) and the suite file of each distinct suite (``suite.yaml`` is the first).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from lubench.errors import LubenchError
from lubench.rundir.fsafe import no_link, read_json_object
from lubench.rundir.records import RECORDS, read_records, record_line, records_to_frames
from lubench.rundir.store import write_parquet

__all__ = ["MergeOutcome", "merge_runs"]

META = "meta.json"
SUITE_COPY = "suite.yaml"


@dataclass
class MergeOutcome:
    """What :func:`merge_runs` wrote and what it had to choose."""

    out: Path
    records: int = 0  # records written (one per case and repeat)
    duplicates: int = 0  # records of the sources not written (a newer one was kept)
    conflicts: list[str] = field(default_factory=list)  # one line each


def _started(rec: dict) -> float:
    value = rec.get("started_at")
    try:
        t = float(value)
    except (TypeError, ValueError):
        return -math.inf
    return t if math.isfinite(t) else -math.inf


def _label(rec: dict) -> str:
    return f"{rec.get('operator')}[n={rec.get('n')}] × {rec.get('method')} " \
           f"(case {rec.get('case_id')}, repeat {rec.get('repeat', 0)})"


def _check_sources(sources: list[Path], out: Path) -> None:
    if not sources:
        raise LubenchError("merge: name at least one run directory")
    seen: set[Path] = set()
    for src in sources:
        if not src.is_dir():
            raise LubenchError(f"merge: {src}: no such run directory")
        if not (src / RECORDS).is_file():
            raise LubenchError(f"merge: {src}: not a run directory (no {RECORDS})")
        real = src.resolve()
        if real in seen:
            raise LubenchError(f"merge: {src} is named twice")
        seen.add(real)
    no_link(out)
    if out.resolve() in seen:
        raise LubenchError(f"merge: -o {out} is one of the sources; choose a new folder")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise LubenchError(f"merge: -o {out} exists and is not an empty folder; choose a new "
                           f"one")


def _conflict(kept: tuple[Path, dict], other: tuple[Path, dict]) -> str | None:
    (kdir, krec), (odir, orec) = kept, other
    diffs = []
    for key in ("status", "plugin_version"):
        if krec.get(key) != orec.get(key):
            diffs.append(f"{key} {orec.get(key)!r} in {odir}, {krec.get(key)!r} in {kdir}")
    if not diffs:
        return None
    return f"{_label(krec)}: {'; '.join(diffs)}; kept the newest, from {kdir}"


def merge_runs(sources: list[Path], out: Path) -> MergeOutcome:
    """Merge the run directories ``sources`` into the new run directory ``out``.

    Raises :class:`LubenchError` (one line) for a source that is not a run directory and for
    an ``out`` that exists and is not empty (nothing is overwritten).
    """
    sources = [Path(s) for s in sources]
    out = Path(out)
    _check_sources(sources, out)

    chosen: dict[tuple[str, int], tuple[Path, dict]] = {}
    order: list[tuple[str, int]] = []
    duplicates: dict[tuple[str, int], list[tuple[Path, dict]]] = {}
    for src in sources:
        for rec in read_records(src / RECORDS):
            key = (str(rec["case_id"]), int(rec.get("repeat", 0) or 0))
            if key not in chosen:
                chosen[key] = (src, rec)
                order.append(key)
                continue
            if chosen[key][0] == src:  # a resumed run's own rewrite: the later line wins
                chosen[key] = (src, rec)
                continue
            old = chosen[key]
            if _started(rec) >= _started(old[1]):
                chosen[key] = (src, rec)
                duplicates.setdefault(key, []).append(old)
            else:
                duplicates.setdefault(key, []).append((src, rec))

    outcome = MergeOutcome(out=out, records=len(order))
    outcome.duplicates = sum(len(v) for v in duplicates.values())
    for key, others in duplicates.items():
        for other in others:
            line = _conflict(chosen[key], other)
            if line:
                outcome.conflicts.append(line)

    out.mkdir(parents=True, exist_ok=True)
    records = [chosen[key][1] for key in order]
    _write(out / RECORDS, b"".join(record_line(r) for r in records))
    results, histories = records_to_frames(records)
    write_parquet(results, out / "results.parquet")
    write_parquet(histories, out / "histories.parquet")
    suites = _copy_suites(sources, out)
    metas = [_read_meta(src) for src in sources]
    now = datetime.now(timezone.utc).astimezone().isoformat(timespec="seconds")
    names = sorted({str(m.get("suite")) for m in metas if m.get("suite")})
    meta = {
        "run_id": f"merged-{datetime.now():%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}",
        "suite": names[0] if len(names) == 1 else names,
        "merged_at": now,
        "started_at": min((m["started_at"] for m in metas if m.get("started_at")),
                          default=None),
        "ended_at": now,
        "n_records": len(records),
        "merged_from": [
            {"dir": str(src.resolve()), "run_id": m.get("run_id"), "suite": m.get("suite"),
             "suite_sha256": m.get("suite_sha256"),
             "records": sum(1 for key in order if chosen[key][0] == src), "meta": m}
            for src, m in zip(sources, metas)],
        "suite_files": suites,
        "conflicts": outcome.conflicts,
    }
    _write(out / META, (json.dumps(meta, indent=2, default=str) + "\n").encode())
    return outcome


def _read_meta(run_dir: Path) -> dict:
    return read_json_object(run_dir / META) or {}


def _copy_suites(sources: list[Path], out: Path) -> list[str]:
    """Each distinct suite file of the sources as ``suite.<sha12>.yaml``; the first also as
    ``suite.yaml``. Returns the names written."""
    written: list[str] = []
    for src in sources:
        path = src / SUITE_COPY
        if not path.is_file():
            continue
        text = path.read_bytes()
        if not written:
            _write(out / SUITE_COPY, text)
            written.append(SUITE_COPY)
        name = f"suite.{hashlib.sha256(text).hexdigest()[:12]}.yaml"
        if name not in written:
            _write(out / name, text)
            written.append(name)
    return written


def _write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


