"""The run directory: an append-only record log, its meta.json, and the tables built from it.

A run directory holds

* ``records.jsonl``     one JSON object per finished case and repeat, appended, flushed and
  fsync'd before the next case is reported: the only file the results are rebuilt from;
* ``suite.yaml``        a copy of the suite file as it was run;
* ``meta.json``         the environment (versions, BLAS and threads, CPU, GPU), the suite hash,
  the command line, start and end times (one entry per session when a run is resumed);
* ``results.parquet``   one row per (case_id, repeat): the identity columns, the status and
  error, then the metrics (docs/reference/results.md; rebuilt by :meth:`RunStore.finalize`);
* ``histories.parquet`` the training curves, one row per history row of a record;
* ``logs/``             the stdout and stderr of each case that printed something
  (``logs/<case_id>-<repeat>.log``, named by the record's ``log`` field).

The run directory is the only place lubench writes (its report goes to ``report/`` inside it
unless told otherwise). ``-o DIR`` must be a new or empty directory, or a run directory (which
then needs ``--resume`` when it holds records). No file of a run directory is written through
a symbolic link: files are opened with ``O_NOFOLLOW`` and replaced by rename
(:mod:`lubench.rundir.fsafe`), and a link planted in place of one of them is refused with its name.
A write that fails (a full disk) raises :class:`~lubench.rundir.fsafe.FsError`; the record being
written is truncated away, every record written before stays, and the run can be resumed.

Crash safety rests on three habits: a record is written in one ``write`` and fsync'd; a last
line left truncated by a crash is detected, set aside in ``records.jsonl.partial`` with a
warning, and never stops a reader; rows are deduplicated by (case_id, repeat), keeping the
last, so a case recorded twice (a resume racing a crash) appears once in the tables.

``--resume`` may be given a suite whose text changed since the run started. That is allowed
with a warning: a ``case_id`` hashes the case's whole identity, so a record stays valid for
exactly the cases it was made for, and only cases without a record run.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import uuid
from collections.abc import Collection, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

import pandas as pd

from lubench.errors import LubenchError
from lubench.rundir.environment import environment
from lubench.rundir.fsafe import (
    FsError,
    atomic_write,
    check_output_dir,
    describe,
    is_run_dir,
    no_link,
    open_append,
    read_json_object,
    real_dir,
    regular_file,
)
from lubench.rundir.records import (
    NOT_RUN,
    RECORDS,
    UNAVAILABLE,
    dedupe_records,
    read_records,
    record_line,
    records_to_frames,
)

__all__ = ["RunStore", "SuiteFile", "run_directory", "logs_dir", "write_parquet"]

log = logging.getLogger("lubench")

PARTIAL = "records.jsonl.partial"
META = "meta.json"
SUITE_COPY = "suite.yaml"
RESULTS = "results.parquet"
HISTORIES = "histories.parquet"
LOCK = ".lock"
LOGS = "logs"
CACHE = "cache"


def _now() -> str:
    return datetime.now(timezone.utc).astimezone().isoformat(timespec="seconds")


class SuiteFile(Protocol):
    """What a run directory keeps of the suite it runs (:class:`lubench.suite.cases.Suite`
    has it): its name, file, text and hash (``suite.yaml``, ``meta.json``), and its cases,
    whose order is the order of the results' rows."""

    name: str
    path: Path | None
    text: str
    cases: Sequence[Any]  # each with a ``case_id``

    @property
    def sha256(self) -> str: ...


# --------------------------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------------------------
def write_parquet(df: pd.DataFrame, path: Path) -> None:
    """Write atomically (temp file + rename); object columns that Arrow cannot type (mixed
    values) become JSON strings rather than failing the whole table."""
    import pyarrow as pa

    df = df.copy()
    for col in df.columns:
        if df[col].dtype != object:
            continue
        try:
            pa.array(df[col], from_pandas=True)
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, TypeError):
            df[col] = [None if v is None else (v if isinstance(v, str) else
                                               json.dumps(v, default=str)) for v in df[col]]
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)  # never write through a link planted there
    df.to_parquet(tmp, index=False)
    os.replace(tmp, path)


# --------------------------------------------------------------------------------------------
# The store
# --------------------------------------------------------------------------------------------
class RunStore:
    """One run directory, opened by the single process that writes it.

    Use :meth:`open`; then :meth:`done` to know what is finished, :meth:`append` for each
    finished case, and :meth:`finalize` to (re)build the parquet tables. The directory is
    locked (``flock`` on ``.lock``) while open, so that two runs cannot interleave records;
    the lock goes away with the process, even when it is killed.
    """

    def __init__(self, run_dir: Path, suite: SuiteFile | None, meta: dict, lock_fd: int):
        self.run_dir = run_dir
        self.suite = suite
        self.meta = meta
        self._lock_fd = lock_fd
        self._fd: int | None = None
        # (case_id, repeat) -> status of its latest record
        self._done: dict[tuple[str, int], str] = {
            (r["case_id"], int(r.get("repeat", 0))): str(r.get("status", ""))
            for r in read_records(self.records_path)}

    # -- paths -----------------------------------------------------------------------------
    @property
    def records_path(self) -> Path:
        return self.run_dir / RECORDS

    @property
    def run_id(self) -> str:
        return str(self.meta["run_id"])

    def logs_dir(self) -> Path:
        """``logs/`` of the run directory (created; never a link)."""
        return logs_dir(self.run_dir)

    @property
    def cache_dir(self) -> Path:
        """``cache/`` of the run directory: what grading computes once per operator
        (:mod:`lubench.rundir.cache`; created by its first entry)."""
        return self.run_dir / CACHE

    # -- opening -----------------------------------------------------------------------------
    @classmethod
    def open(cls, run_dir: str | Path, suite: SuiteFile, command_line: str = "",
             resume: bool = False) -> RunStore:
        """Create (or, with ``resume``, reopen) the run directory for ``suite``.

        Raises :class:`LubenchError` when ``run_dir`` already holds records and ``resume`` is
        False, when ``resume`` is True and ``run_dir`` is not a run directory, and when
        another process holds the directory. A resumed run whose suite file changed (another
        hash) or names another suite is allowed with a warning: finished cases are recognised
        by their ``case_id``, which does not depend on the rest of the file.
        """
        run_dir = Path(run_dir)
        records = run_dir / RECORDS
        no_link(run_dir)
        for name in (RECORDS, META, SUITE_COPY, LOCK, PARTIAL, RESULTS, HISTORIES, LOGS,
                     CACHE, "report"):
            no_link(run_dir / name)
        is_run = is_run_dir(run_dir)
        if resume:
            if not run_dir.is_dir():
                raise LubenchError(f"--resume {run_dir}: no such run directory")
            if not is_run:
                raise LubenchError(f"--resume {run_dir}: not a run directory (its {META} was "
                                   f"not written by lubench); nothing in it was changed")
        elif is_run and regular_file(records) and records.stat().st_size > 0:
            raise LubenchError(f"{run_dir} already holds records ({RECORDS}); continue it "
                               f"with --resume {run_dir}, or choose another -o DIR")
        else:
            check_output_dir(run_dir, is_run_dir=is_run)
        regular_file(records)
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise FsError(describe(exc, "cannot create the run directory", run_dir),
                          run_dir) from None
        lock_fd = cls._lock(run_dir)
        real_dir(run_dir / CACHE)

        session = {"command_line": command_line, "started_at": _now(), "ended_at": None,
                   "suite_sha256": suite.sha256}
        old = cls._read_meta(run_dir) if resume else {}
        if old:
            if old.get("suite_sha256") and old["suite_sha256"] != suite.sha256:
                log.warning("lubench: warning: %s was started from another version of the "
                            "suite (sha256 %s…, now %s…); finished cases are kept by case_id, "
                            "missing ones run", run_dir, old["suite_sha256"][:12],
                            suite.sha256[:12])
            if old.get("suite") and old["suite"] != suite.name:
                log.warning("lubench: warning: %s holds a run of suite '%s', resuming with "
                            "suite '%s'", run_dir, old["suite"], suite.name)
            session["environment"] = environment()
            meta = old
            meta.setdefault("sessions", []).append(session)
            meta["ended_at"] = None
        else:
            meta = {
                "run_id": f"{suite.name}-{datetime.now():%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}",
                "suite": suite.name,
                "suite_path": str(suite.path) if suite.path else None,
                "suite_sha256": suite.sha256,
                "command_line": command_line,
                "started_at": session["started_at"],
                "ended_at": None,
                **environment(),
                "sessions": [session],
            }
        suite_copy = run_dir / SUITE_COPY
        if not suite_copy.exists() or suite_copy.read_text() != suite.text:
            if suite_copy.exists():  # keep what the earlier sessions ran
                suite_copy.replace(run_dir / f"suite.{old.get('suite_sha256', 'old')[:12]}.yaml")
            atomic_write(suite_copy, suite.text)
        store = cls(run_dir, suite, meta, lock_fd)
        store._repair_tail()
        store.write_meta()
        return store

    @staticmethod
    def _lock(run_dir: Path) -> int:
        try:
            fd = os.open(run_dir / LOCK, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC,
                         0o644)
        except OSError as exc:
            raise FsError(describe(exc, "cannot write", run_dir / LOCK), run_dir) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise LubenchError(f"{run_dir} is being written by another lubench process") from None
        return fd

    @staticmethod
    def _read_meta(run_dir: Path) -> dict:
        return read_json_object(run_dir / META) or {}

    def _repair_tail(self) -> None:
        """Move a truncated last line (a crash mid-write) to ``records.jsonl.partial``, so
        that the next append starts on a line of its own."""
        path = self.records_path
        if not path.exists() or path.stat().st_size == 0:
            return
        with open(os.open(path, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC), "rb+") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 1))
            if fh.read(1) == b"\n":
                return
            # find the start of the last line
            pos, chunk = size, 65536
            start = 0
            while pos > 0:
                lo = max(0, pos - chunk)
                fh.seek(lo)
                block = fh.read(pos - lo)
                nl = block.rfind(b"\n")
                if nl >= 0:
                    start = lo + nl + 1
                    break
                pos = lo
            fh.seek(start)
            fragment = fh.read()
            with open(open_append(self.run_dir / PARTIAL), "ab") as out:
                out.write(fragment + b"\n")
            fh.truncate(start)
            fh.flush()
            os.fsync(fh.fileno())
        log.warning("lubench: warning: %s ended in a truncated record (%d bytes, a crash "
                    "mid-write); moved it to %s", path, len(fragment), PARTIAL)

    # -- writing -----------------------------------------------------------------------------
    def done(self, retry: Collection[str] = ()) -> set[tuple[str, int]]:
        """(case_id, repeat) pairs that already have a record, except those whose latest
        record has a status in ``retry`` (``--retry failed,timeout``) or is ``unavailable``
        (its plugin may be installed now) or ``not_run`` (its fit may have run since): those
        run again, and their new record supersedes the old one."""
        again = set(retry) | {UNAVAILABLE, NOT_RUN}
        return {key for key, status in self._done.items() if status not in again}

    def append(self, record: dict) -> None:
        """Append one record as one line, fsync'd before returning.

        Raises :class:`FsError` when the write fails (a full disk): the part of the line
        that was written is cut off again, so the file holds exactly the records before."""
        if self._fd is None:
            self._fd = open_append(self.records_path)
        line = record_line(record)
        size = os.fstat(self._fd).st_size
        try:
            view = memoryview(line)
            while view:
                view = view[os.write(self._fd, view):]
            os.fsync(self._fd)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, size)
            raise FsError(describe(exc, "cannot write", self.records_path),
                          self.records_path) from None
        self._done[(record["case_id"], int(record.get("repeat", 0)))] = \
            str(record.get("status", ""))

    def update_meta(self, **fields: Any) -> None:
        """Add fields to this session's entry in ``meta.json`` (executor, jobs, ...)."""
        self.meta["sessions"][-1].update(fields)
        self.write_meta()

    def write_meta(self) -> None:
        atomic_write(self.run_dir / META, json.dumps(self.meta, indent=2, default=str) + "\n")

    # -- tables ------------------------------------------------------------------------------
    def records(self) -> list[dict]:
        """Every readable record, deduplicated by (case_id, repeat) keeping the last."""
        return dedupe_records(read_records(self.records_path))

    def finalize(self) -> pd.DataFrame:
        """(Re)build ``results.parquet`` and ``histories.parquet`` from ``records.jsonl``,
        stamp the end time in ``meta.json``, and return the results."""
        self._close_records()
        order = {c.case_id: i for i, c in enumerate(self.suite.cases)} if self.suite else None
        results, histories = records_to_frames(self.records(), order)
        for frame, name in ((results, RESULTS), (histories, HISTORIES)):
            try:
                write_parquet(frame, self.run_dir / name)
            except OSError as exc:
                raise FsError(describe(exc, "cannot write", self.run_dir / name),
                              self.run_dir / name) from None
        ended = _now()
        self.meta["ended_at"] = ended
        self.meta["sessions"][-1]["ended_at"] = ended
        self.meta["n_records"] = len(results)
        self.write_meta()
        return results

    def _close_records(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None

    def close(self) -> None:
        """Release the file handle and the directory lock (finalize does not release it)."""
        self._close_records()
        if self._lock_fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._lock_fd)
            self._lock_fd = None

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()


def logs_dir(run_dir: Path) -> Path:
    """``RUN_DIR/logs/``, where each case's output goes (created; never a link)."""
    return real_dir(Path(run_dir) / LOGS)


def run_directory(suite_name: str, output: Path | None = None,
                  resume: Path | None = None) -> Path:
    """Where a run goes: ``--resume DIR``, else ``-o DIR``, else
    ``reports/<suite name>/<timestamp>/``. Both given must name the same folder."""
    if resume is not None:
        if output is not None and Path(output).resolve() != Path(resume).resolve():
            raise LubenchError("give either -o DIR or --resume DIR, not two different folders")
        return Path(resume)
    if output is not None:
        return Path(output)
    return Path("reports") / suite_name / datetime.now().strftime("%Y%m%d-%H%M%S")
