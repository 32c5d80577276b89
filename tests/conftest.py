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
