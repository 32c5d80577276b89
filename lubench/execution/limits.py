"""Limits of a worker process: its threads, its memory message, how it is started and
that it dies with its parent."""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import signal
import sys
from typing import Any

from lubench.rundir.environment import available_cores

THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
              "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")


def format_bytes(n: float) -> str:
    """``2.0 GiB``, ``512.0 MiB``, ``900 B``."""
    for unit, size in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} B"


def oom_message(limit: int, peak: int | None = None) -> str:
    extra = f"; peak {format_bytes(peak)}" if peak else ""
    return f"out of memory (limit {format_bytes(limit)}{extra})"


def threads_per_worker(jobs: int) -> int:
    """``max(1, cores // jobs)``, cores being those this process may run on."""
    return max(1, available_cores() // max(1, jobs))


def limit_threads(threads: int) -> Any:
    """Set BLAS, OpenMP and PyTorch threads of this process to ``threads``.

    Environment variables first (read by an OpenMP runtime or PyTorch loaded later), then
    threadpoolctl for the libraries already loaded, then ``torch.set_num_threads`` when
    PyTorch is already imported (it is not imported here otherwise: that takes seconds).
    Returns the threadpoolctl limiter (keep it alive).
    """
    for var in THREAD_ENV:
        os.environ[var] = str(threads)
    limiter = thread_controller().limit(limits=threads)
    torch = sys.modules.get("torch")
    if torch is not None:
        with contextlib.suppress(Exception):
            torch.set_num_threads(threads)
    return limiter


_CONTROLLER: Any = None


def thread_controller() -> Any:
    """threadpoolctl's view of the loaded thread pools. Built once in the parent, before the
    first fork, so that a worker does not rescan the loaded libraries (~5 ms per case)."""
    global _CONTROLLER
    if _CONTROLLER is None:
        from threadpoolctl import ThreadpoolController

        _CONTROLLER = ThreadpoolController()
    return _CONTROLLER


def mp_context() -> mp.context.BaseContext:
    if sys.platform.startswith("linux"):
        return mp.get_context("fork")
    return mp.get_context("spawn")


def die_with_parent(parent_pid: int) -> None:
    """Ask Linux to SIGKILL this process when its parent dies (no orphans after kill -9)."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"
