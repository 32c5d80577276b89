"""lubench without PyTorch: a fresh virtual environment, ``pip install -e .``, then a run.

The core, the classical methods and the reports install and run without torch; the learned
methods are listed as unavailable with the command that installs them, and their cases are
recorded ``unavailable`` while the rest of the suite runs (exit status 0).

Slow (it builds a virtual environment: about half a minute with pip's cache and the local
package index); skipped when the environment cannot be built here (no index, no network).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pandas as pd
import pytest
from conftest import REPO

pytestmark = pytest.mark.slow

HINT = 'pip install "lubench[learned]"'


@pytest.fixture(scope="module")
def light_env(tmp_path_factory) -> dict:
    """A venv holding ``pip install -e`` of a copy of this checkout (no torch, no submitit)."""
    root = tmp_path_factory.mktemp("light")
    src = root / "src"
    shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(
        ".git", ".venv", "reports", "*.egg-info", "__pycache__", ".pytest_cache", "tests",
        "benchmarks", "docs", "examples"))
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet",
           "--disable-pip-version-check", "-e", str(src)]
    try:
        proc = subprocess.run(pip, capture_output=True, text=True, timeout=600)
    except subprocess.TimeoutExpired:
        pytest.skip("pip install -e . took over 10 minutes here")
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-5:])
        pytest.skip(f"cannot build a fresh environment here (pip: {tail})")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}", OMP_NUM_THREADS="1")
    return {"exe": str(venv / "bin" / "lubench"), "python": str(venv / "bin" / "python"),
            "env": env, "src": src, "root": root}


def _lubench(light_env: dict, *args: object) -> subprocess.CompletedProcess:
    return subprocess.run([light_env["exe"], *map(str, args)], capture_output=True, text=True,
                          env=light_env["env"], cwd=light_env["src"], timeout=600)


def test_no_torch_and_no_submitit_were_installed(light_env):
    probe = subprocess.run([light_env["python"], "-c",
                            "import importlib.util as u; "
                            "print(u.find_spec('torch'), u.find_spec('submitit'))"],
                           capture_output=True, text=True, env=light_env["env"], timeout=60)
    assert probe.stdout.split() == ["None", "None"], probe.stdout + probe.stderr


def test_plugins_and_list_show_the_learned_plugin_unavailable(light_env):
    plugins = _lubench(light_env, "plugins")
    assert plugins.returncode == 0, plugins.stderr
    assert f"learned: unavailable: needs torch: {HINT}" in plugins.stdout
    assert plugins.stderr == ""  # no warning on every command
    listed = _lubench(light_env, "list")
    assert listed.returncode == 0 and listed.stderr == ""
    assert "gfmm_lu [learned]" in listed.stdout and f"unavailable: needs torch: {HINT}" in \
        listed.stdout


def test_run_pde_without_torch_exits_0_with_learned_cases_unavailable(light_env):
    run_dir = light_env["root"] / "run"
    out = _lubench(light_env, "run", "suites/pde.yaml", "-k", "laplacian_1d[n=256]",
                   "-k", "plu[n=256]", "-o", run_dir)
    assert out.returncode == 0, out.stdout + out.stderr
    df = pd.read_parquet(run_dir / "results.parquet")
    learned = df[df.family == "learned"]
    assert set(learned["method"]) == {"gfmm_lu", "dense_masked_lu"}
    assert set(learned["status"]) == {"unavailable"}
    assert set(learned["error"]) == {f"needs torch: {HINT}"}
    classical = df[df.family != "learned"]
    assert set(classical["status"]) == {"ok"}, classical[["method", "error"]]
    assert (classical["method"] == "plu").sum() == 6  # -k plu[n=256]: every operator
    assert "unavailable [1]" in out.stdout and HINT in out.stdout  # the summary says why
    assert (run_dir / "report" / "report.html").exists()  # the report needs no torch either


def test_slurm_without_submitit_is_bad_input_with_the_install_command(light_env):
    run_dir = light_env["root"] / "slurm-run"
    out = _lubench(light_env, "run", "suites/smoke.yaml", "-k", "plu", "--executor", "slurm",
                   "-o", run_dir)
    assert out.returncode == 2
    assert out.stderr.strip() == ('lubench: error: --executor slurm needs submitit: '
                                  'pip install "lubench[slurm]"')
    assert not run_dir.exists()
