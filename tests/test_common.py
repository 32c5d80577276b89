"""Every built-in method and operator through every contract check (``lubench.testing``).

The checks ``lubench check-plugin`` asks of third parties, run on what lubench ships, one test
per (class, check) with ids such as ``plu-check_pickle`` (scikit-learn's
``parametrize_with_checks``). A check that does not apply skips with the check's own reason;
every such skip is declared below with why, and a skip that is not declared (or a declared
one that no longer happens) fails, so the list stays true. The learned methods train, so their
checks are marked ``slow``.
"""

from __future__ import annotations

import pytest
from conftest import TESTS

from lubench.registry import load_registry
from lubench.testing import CheckSkipped, method_checks, operator_checks

BUILTIN_PLUGINS = ("operators", "classical", "learned", "compressed", "preconditioners")

#: Parameters a built-in cannot do without (everything else runs on its defaults).
PARAMS = {"matrix_market": {"path": TESTS / "fixtures" / "tridiag16.mtx"}}

#: (name, check) → why the check does not apply to that built-in.
SKIPS = {
    ("dense_masked_lu", "check_exact_residual"): "a learned method approximates A: not exact",
    ("gfmm_lu", "check_exact_residual"): "a learned method approximates A: not exact",
    ("ilu", "check_exact_residual"): "an incomplete LU approximates A: not exact",
    **{(name, "check_exact_residual"): "a preconditioner approximates A⁻¹: not exact"
       for name in ("jacobi", "ic0", "ict", "ilu0", "amg")},
    **{(name, "check_matrix_free_memory"): "a formed (sparse) operator holds A"
       for name in ("laplacian_1d", "laplacian_2d", "convdiff_1d", "convdiff_2d",
                    "biharmonic_1d", "biharmonic_2d", "matrix_market", "random_spd",
                    "diffusion_2d", "fem_poisson", "pyamg_example")},
    ("gfmm_compressed", "check_exact_residual"): "its far field is truncated: not exact",
    ("hodlr_lu", "check_exact_residual"): "its off-diagonal blocks are truncated: not exact",
}


def _cases() -> list:
    registry = load_registry(entry_points=True)
    cases = []
    for plugin in BUILTIN_PLUGINS:
        info = registry.plugins[plugin]
        assert info.status == "ok", f"built-in plugin {plugin} did not load: {info.status}"
        for name in info.operators:
            for check in operator_checks(registry.operators[name], **PARAMS.get(name, {})):
                cases.append(pytest.param(name, check, id=f"{name}-{check.__name__}"))
        for name in info.methods:
            cls = registry.methods[name]
            marks = [pytest.mark.slow] if cls.family == "learned" else []
            for check in method_checks(cls, **PARAMS.get(name, {})):
                cases.append(pytest.param(name, check, id=f"{name}-{check.__name__}",
                                          marks=marks))
    return cases


@pytest.mark.parametrize("name, check", _cases())
def test_builtin_keeps_the_contract(name, check):
    declared = SKIPS.get((name, check.__name__))
    try:
        check()
    except CheckSkipped as exc:
        if declared is None:
            pytest.fail(f"{name}: {check.__name__} skipped without a declared reason: {exc}")
        pytest.skip(f"{declared} ({exc})")
    assert declared is None, f"{name}: {check.__name__} is declared skipped ({declared}) " \
                             f"but ran and passed: remove it from SKIPS"
