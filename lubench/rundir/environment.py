"""The environment of a run, as ``meta.json`` keeps it: versions, BLAS and threads, CPU, GPU.

What a reader needs to trust or reproduce the timings (docs/running.md, the run directory).
Nothing here imports PyTorch or touches CUDA: a GPU is named by ``nvidia-smi`` (or NVML
through ``pynvml`` when it is installed). The parent of ``lubench run`` calls this before it
forks the workers, and a CUDA context (even the one ``torch.cuda.is_available()`` may
create) does not survive a ``fork``: every learned case on a GPU host would fail with
"Cannot re-initialize CUDA in forked subprocess".
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from lubench import __version__

__all__ = ["environment", "available_cores"]


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _git_commit() -> tuple[str | None, bool | None]:
    here = Path(__file__).resolve().parent
    if shutil.which("git") is None:
        return None, None
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True,
                                text=True, timeout=5)
        if commit.returncode != 0:
            return None, None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=here, capture_output=True, text=True, timeout=5)
        return commit.stdout.strip(), bool(dirty.stdout.strip())
    except (OSError, subprocess.SubprocessError):
        return None, None


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def available_cores() -> int:
    """Cores this process may run on (the affinity mask, e.g. a SLURM allocation)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _gpus() -> list[str]:
    """GPU names from ``nvidia-smi``, else from NVML (``pynvml``); never through PyTorch,
    never creating a CUDA context ([] when neither is there)."""
    if shutil.which("nvidia-smi"):
        try:
            out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                                 capture_output=True, text=True, timeout=10)
            if out.returncode == 0:
                return [line.strip() for line in out.stdout.splitlines() if line.strip()]
        except (OSError, subprocess.SubprocessError):
            pass
    try:
        import pynvml  # nvidia-ml-py: the driver's management library, no CUDA context
    except ImportError:
        return []
    try:
        pynvml.nvmlInit()
        try:
            names = [pynvml.nvmlDeviceGetName(pynvml.nvmlDeviceGetHandleByIndex(i))
                     for i in range(pynvml.nvmlDeviceGetCount())]
        finally:
            pynvml.nvmlShutdown()
    except Exception:
        return []
    return [n.decode() if isinstance(n, bytes) else str(n) for n in names]


def environment() -> dict[str, Any]:
    """What a reader needs to trust or reproduce the timings (docs/running.md)."""
    import numpy as np
    from threadpoolctl import threadpool_info

    commit, dirty = _git_commit()
    try:
        import psutil

        physical = psutil.cpu_count(logical=False)
        memory = int(psutil.virtual_memory().total)
    except Exception:
        physical, memory = None, None
    blas = [{k: p.get(k) for k in ("user_api", "internal_api", "version", "num_threads",
                                   "threading_layer", "architecture", "filepath")}
            for p in threadpool_info()]
    return {
        "lubench_version": __version__,
        "git_commit": commit,
        "git_dirty": dirty,
        "python": platform.python_version(),
        "python_executable": sys.executable,
        "numpy": np.__version__,
        "scipy": _version("scipy"),
        "pandas": _version("pandas"),
        "pytorch": _version("torch"),
        "submitit": _version("submitit"),
        "blas": blas,
        "thread_env": {v: os.environ.get(v) for v in (
            "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")},
        "cpu_model": _cpu_model(),
        "cpu_cores_logical": os.cpu_count(),
        "cpu_cores_physical": physical,
        "cpu_cores_available": available_cores(),
        "memory_bytes": memory,
        "gpu": _gpus(),
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
    }
