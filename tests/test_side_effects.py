"""Importing lubench changes nothing outside lubench; running a learned method leaves torch's
global random state alone (its randomness comes from the generators it is given)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest


def test_importing_lubench_leaves_the_matplotlib_backend_and_sys_path_alone(tmp_path):
    """A notebook that imports lubench.report keeps its backend (no ``matplotlib.use`` on
    import); the backend is asked for in the environment so that a change shows."""
    code = textwrap.dedent("""
        import importlib, pkgutil, sys
        import matplotlib
        before_backend, before_path = matplotlib.get_backend(), list(sys.path)
        import lubench, lubench.report
        names = [m.name for m in pkgutil.walk_packages(lubench.__path__, "lubench.")
                 if m.name != "lubench.__main__"]
        for name in names:
            importlib.import_module(name)
        assert "lubench.report.figures" in sys.modules and "lubench.cli" in sys.modules
        after = matplotlib.get_backend()
        assert after == before_backend, (before_backend, after)
        assert sys.path == before_path
        print("ok", after, len(names))
    """)
    env = {"MPLBACKEND": "pdf", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path),
           "MPLCONFIGDIR": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, cwd=tmp_path, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("ok pdf")


@pytest.mark.parametrize("method", ["gfmm_lu", "dense_masked_lu"])
def test_a_learned_method_leaves_the_global_torch_seed_alone(registry, method):
    torch = pytest.importorskip("torch")
    from lubench.api import Budget, RunContext
    from lubench.testing import tiny_operator

    op = tiny_operator("spd")
    torch.manual_seed(1234)
    state = torch.random.get_rng_state()
    fact = registry.method(method)().factorize(op, RunContext(seed=7, budget=Budget(max_steps=3)))
    assert fact is not None
    assert torch.equal(torch.random.get_rng_state(), state)
