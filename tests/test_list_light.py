"""``lubench list`` stays light: registering every installed plugin imports neither SciPy,
PyTorch, pandas nor matplotlib (issue 11: ≤ 0.5 s; the time itself is measured, not
tested — a heavy import is what would break it), and a reader closing the pipe early
ends the command quietly with 141."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

HEAVY = ("scipy", "torch", "pandas", "matplotlib", "submitit", "numba")


def _lubench() -> str:
    exe = Path(sys.executable).with_name("lubench")
    return str(exe) if exe.exists() else (shutil.which("lubench") or "lubench")


def test_installed_lubench_list_imports_nothing_heavy():
    """The installed command, with Python's import log on: no heavy top-level package
    appears among the modules it imports to register and list every plugin."""
    env = dict(os.environ, PYTHONPROFILEIMPORTTIME="1")
    out = subprocess.run([_lubench(), "list"], capture_output=True, text=True, env=env,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert "gfmm_lu" in out.stdout and "laplacian_1d" in out.stdout
    imported = {line.rsplit("|", 1)[-1].strip().split(".")[0]
                for line in out.stderr.splitlines() if line.startswith("import time:")}
    assert "lubench_classical" in imported and "lubench_learned" in imported
    assert sorted(imported & set(HEAVY)) == []


def test_lazy_module_imports_on_first_use():
    code = ("import sys; from lubench.lazy import lazy_module; "
            "m = lazy_module('json.decoder'); assert 'json.decoder' not in sys.modules; "
            "assert m.JSONDecodeError.__name__ == 'JSONDecodeError'; "
            "assert 'json.decoder' in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_a_closed_pipe_ends_lubench_list_quietly_with_141():
    r, w = os.pipe()
    os.close(r)                                   # the reader is gone before anything is written
    proc = subprocess.run([_lubench(), "list"], stdout=w, stderr=subprocess.PIPE, text=True,
                          timeout=120)
    os.close(w)
    assert proc.returncode == 141, proc.stderr
    assert proc.stderr == ""
