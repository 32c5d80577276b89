"""Is the device a run asks for there, and what does ``auto`` mean here? Answered once,
before any case runs, with CUDA left untouched in this process.

``lubench run --device cuda`` on a machine without a usable GPU is bad input (exit status 2),
not a run whose every learned case fails. The question is asked in a child process: importing
PyTorch and initialising CUDA in the parent would slow every command down and, worse, a
CUDA context does not survive the ``fork`` that starts each case's worker.

``device: auto`` is resolved the same way, once per run (:func:`resolve_auto`, before any
case): every case, and every row (synthetic ``timeout`` rows too), carries the real device.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lubench.suite.cases import Case

__all__ = ["cuda_problem", "cuda_device_count", "auto_device", "needs_auto", "resolve_auto",
           "PROBE_TIMEOUT"]

PROBE_TIMEOUT = 120.0  # seconds: importing PyTorch on a cold, busy machine can take a while

_PROBE = (
    "import sys\n"
    "try:\n"
    "    import torch\n"
    "except ImportError:\n"
    "    print('notorch'); sys.exit(0)\n"
    "if not torch.backends.cuda.is_built():\n"
    "    print('notbuilt'); sys.exit(0)\n"
    "print(torch.cuda.device_count())\n"
)


def _ask() -> tuple[str, str]:
    """The probe's answer (``notorch``, ``notbuilt``, a device count, or '') and a problem."""
    env = {**os.environ, "PYTORCH_NVML_BASED_CUDA_CHECK": "1"}
    try:
        proc = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True,
                              timeout=PROBE_TIMEOUT, env=env)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return "", f"could not ask PyTorch whether CUDA is usable ({exc})"
    answer = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
    if answer in ("notorch", "notbuilt"):
        return answer, ""
    if proc.returncode != 0 or not answer.isdigit():
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return "", f"asking PyTorch about CUDA failed: {tail}"
    return answer, ""


def cuda_problem() -> str | None:
    """Why CUDA cannot be used here (one line, with what to do), or None when it can.

    Runs PyTorch's own answer (``torch.cuda.device_count()`` with the NVML-based check, which
    creates no CUDA context) in a child Python.
    """
    answer, problem = _ask()
    if problem:
        return f"--device cuda: {problem}"
    if answer == "notorch":
        return ('--device cuda: PyTorch is not installed (pip install "lubench[learned]", '
                'with the CUDA build of PyTorch for this machine)')
    if answer == "notbuilt":
        return ("--device cuda: this PyTorch is built without CUDA; install a CUDA build, or "
                "use --device cpu")
    if int(answer) == 0:
        return "--device cuda: PyTorch sees no CUDA device here; use --device cpu (or auto)"
    return None


# Device nodes of a GPU driver PyTorch's "cuda" device runs on (NVIDIA; ROCm's /dev/kfd; WSL2's
# /dev/dxg).
# Without any of them no CUDA device can exist, and the probe (an interpreter importing
# PyTorch, seconds) is skipped.
_DRIVER_NODES = ("/dev/nvidiactl", "/dev/nvidia0", "/proc/driver/nvidia", "/dev/kfd",
                 "/dev/dxg")


def cuda_device_count() -> int:
    """CUDA devices PyTorch would see here (0 when it cannot run, or without PyTorch), asked in
    a child process; this process's CUDA stays untouched."""
    if not any(Path(p).exists() for p in _DRIVER_NODES):
        return 0
    answer, _ = _ask()
    return int(answer) if answer.isdigit() else 0


@functools.lru_cache(maxsize=1)
def auto_device() -> str:
    """What ``device: auto`` means here: ``cuda`` when PyTorch sees a CUDA device, else
    ``cpu`` (asked once per process)."""
    return "cuda" if cuda_device_count() > 0 else "cpu"


def needs_auto(cases: Sequence[Case]) -> bool:
    """Whether a case that uses the device (not classical) asks for ``auto``."""
    return any(c.device == "auto" and c.family != "classical" for c in cases)


def resolve_auto(cases: Sequence[Case], device: str | None = None) -> list[Case]:
    """The cases with ``device: auto`` replaced by ``device`` (None: :func:`auto_device`,
    asked only when :func:`needs_auto`); classical cases run on the CPU whatever is asked.
    The device is not part of a case's identity (``case_id``), so resuming is unaffected."""
    if not needs_auto(cases):
        return list(cases)
    device = device or auto_device()
    return [dataclasses.replace(c, device="cpu" if c.family == "classical" else device)
            if c.device == "auto" else c for c in cases]
