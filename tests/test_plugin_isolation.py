"""Each built-in plugin stands alone (issue 24): with one disabled and not even importable, as
if it were not installed, every other built-in still loads, and the GFMM method of the other
GFMM plugin keeps its contract (``lubench check-plugin``). ``gfmm_lu`` and ``gfmm_compressed``
share :mod:`lubench_structured.gfmm`, never each other."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

BUILTINS = {"operators": "lubench_operators", "classical": "lubench_classical",
            "learned": "lubench_learned", "compressed": "lubench_compressed",
            "preconditioners": "lubench_preconditioners"}


def _lubench(*args: str, gone: str, tmp_path: Path, block: tuple[str, ...] = ()
             ) -> subprocess.CompletedProcess:
    """The installed command with plugin ``gone`` disabled and its module (and ``block``)
    unimportable: a package of that name first on the path that raises ImportError."""
    for module in (BUILTINS[gone], *block):
        (tmp_path / module).mkdir()
        (tmp_path / module / "__init__.py").write_text(
            f"raise ImportError('{module} is not installed here')\n")
    exe = Path(sys.executable).with_name("lubench")
    env = {k: v for k, v in os.environ.items() if k != "LUBENCH_STRICT_PLUGINS"}
    env.update({"LUBENCH_DISABLE_PLUGINS": gone, "PYTHONPATH": str(tmp_path),
                "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"})
    return subprocess.run([str(exe) if exe.exists() else shutil.which("lubench"), *args],
                          capture_output=True, text=True, env=env, timeout=300)


@pytest.mark.parametrize("gone", sorted(BUILTINS))
def test_every_other_builtin_loads_without_one(gone, tmp_path):
    proc = _lubench("plugins", "--json", gone=gone, tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr
    status = {p["name"]: p["status"] for p in json.loads(proc.stdout)}
    assert status[gone].startswith("disabled")
    assert {name: s for name, s in status.items() if name != gone} == \
        {name: "ok" for name in BUILTINS if name != gone}


@pytest.mark.parametrize("gone, method, block", [
    pytest.param("compressed", "gfmm_lu", (), marks=pytest.mark.slow),  # it trains
    ("learned", "gfmm_compressed", ("torch",)),   # and without PyTorch at all
])
def test_a_gfmm_method_keeps_its_contract_without_the_other_plugin(gone, method, block,
                                                                  tmp_path):
    proc = _lubench("check-plugin", method, gone=gone, tmp_path=tmp_path, block=block)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"method {method} " in proc.stdout
    assert " 0 failed" in proc.stdout
