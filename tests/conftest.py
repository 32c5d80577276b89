"""Shared fixtures: a registry with the toy plugin, paths, and a quiet thread setting."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
TOY_PLUGIN = TESTS / "fixtures" / "toy_plugin.py"

# Two cores shared by the test process and the workers it starts: one BLAS thread each keeps
# the timings of parallel tests from collapsing (threads waiting on each other).
for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")


@pytest.fixture(scope="session")
def toy_registry():
    """A registry holding only the toy plugin (no entry points)."""
    from lubench.registry import load_registry

    return load_registry([str(TOY_PLUGIN)], entry_points=False)


@pytest.fixture(scope="session")
def registry():
    """The installed plugins (built-ins through their entry points) plus the toy plugin."""
    from lubench.registry import load_registry

    return load_registry([str(TOY_PLUGIN)])


EXAMPLE_NEURAL_IC = REPO / "examples" / "lubench-neural-ic"


@pytest.fixture(scope="session")
def neural_ic_site(tmp_path_factory) -> Path:
    """examples/lubench-neural-ic pip-installed from a copy of its folder into a target
    directory, as a third party installs it (put it on sys.path / PYTHONPATH to use it):
    the environment the tests run in is left as it was."""
    import shutil
    import subprocess
    import sys

    src = tmp_path_factory.mktemp("neural-ic-src") / "lubench-neural-ic"
    shutil.copytree(EXAMPLE_NEURAL_IC, src, ignore=shutil.ignore_patterns(
        "build", "*.egg-info", "__pycache__", ".pytest_cache"))
    site = tmp_path_factory.mktemp("neural-ic-site")
    cmd = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-input",
           "--disable-pip-version-check", "--quiet", "--no-build-isolation",
           "--target", str(site), str(src)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"pip install failed:\n{proc.stdout}\n{proc.stderr}"
    return site
