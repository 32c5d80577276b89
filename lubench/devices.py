"""Is the device a run asks for there? Answered before any case runs, CUDA left untouched.

``lubench run --device cuda`` on a machine without a usable GPU is bad input (exit status 2),
not a run whose every learned case fails. The question is asked in a child process: importing
PyTorch and initialising CUDA in the parent would slow every command down and, worse, a
CUDA context does not survive the ``fork`` that starts each case's worker.
"""

from __future__ import annotations

import os
import subprocess
import sys

__all__ = ["cuda_problem", "PROBE_TIMEOUT"]

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


def cuda_problem() -> str | None:
    """Why CUDA cannot be used here (one line, with what to do), or None when it can.

    Runs PyTorch's own answer (``torch.cuda.device_count()`` with the NVML-based check, which
    creates no CUDA context) in a child Python.
    """
    env = {**os.environ, "PYTORCH_NVML_BASED_CUDA_CHECK": "1"}
    try:
        proc = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True,
                              timeout=PROBE_TIMEOUT, env=env)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"--device cuda: could not ask PyTorch whether CUDA is usable ({exc})"
    answer = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
    if answer == "notorch":
        return ('--device cuda: PyTorch is not installed (pip install "lubench[learned]", '
                'with the CUDA build of PyTorch for this machine)')
    if answer == "notbuilt":
        return ("--device cuda: this PyTorch is built without CUDA; install a CUDA build, or "
                "use --device cpu")
    if proc.returncode != 0 or not answer.isdigit():
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return f"--device cuda: asking PyTorch about CUDA failed: {tail}"
    if int(answer) == 0:
        return "--device cuda: PyTorch sees no CUDA device here; use --device cpu (or auto)"
    return None
