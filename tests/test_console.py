"""What lubench prints for people (console) and whether a plugin can run (availability)."""

from __future__ import annotations

import types

import pytest

from lubench.cli.listing import plain_text
from lubench.execution.progress import case_line
from lubench.registry.availability import install_hint, missing_modules, unavailable_reason
from lubench.report.console import parse_columns


@pytest.mark.parametrize("rst, plain", [
    ("``loss``: ``identity`` or ``probes``", "loss: identity or probes"),
    ("see :class:`~lubench_learned.gfmm.GFMMFactor`", "see GFMMFactor"),
    ("see :func:`lubench.metrics.grading.grade`", "see lubench.metrics.grading.grade"),
    (":func:`the loop <lubench_learned.training.train>` trains", "the loop trains"),
    ("*identity* and **probes**", "identity and probes"),
    ("An example::", "An example:"),
    ("b = A x*, x* ~ N(0, I); ‖LU − A‖²_F", "b = A x*, x* ~ N(0, I); ‖LU − A‖²_F"),
    ("2*n*m stays", "2*n*m stays"),
])
def test_plain_text(rst, plain):
    assert plain_text(rst) == plain


def test_case_line_has_status_case_seconds_and_error():
    line = case_line({"status": "failed", "wall_seconds": 1.234,
                      "error": "ValueError: bad\nsecond line"}, "laplacian_1d[n=16] × plu")
    assert line.split()[0] == "failed"
    assert "laplacian_1d[n=16] × plu" in line and "1.2s" in line
    assert line.endswith("ValueError: bad second line")
    assert "\n" not in line
    ok = case_line({"status": "ok", "wall_seconds": 0.5}, "c")
    assert ok.split() == ["ok", "c", "0.5s"]


def test_columns_choice():
    assert parse_columns(None) == ["factor_error", "solve_residual", "n_params",
                                   "setup_seconds"]
    assert parse_columns("n_params, solve_seconds") == ["n_params", "solve_seconds"]
    assert "forward_error" in parse_columns("all")
    with pytest.raises(ValueError, match="unknown column 'eror'"):
        parse_columns("eror")


def _module(**attrs):
    mod = types.ModuleType("plugin_under_test")
    for key, value in attrs.items():
        setattr(mod, key, value)
    return mod


def test_available_when_requirements_import():
    assert unavailable_reason(_module(requires=["json", "os.path"])) is None
    assert unavailable_reason(_module()) is None


def test_unavailable_names_the_module_and_the_command():
    missing = "lubench_no_such_module_xyz"
    assert missing_modules(["json", missing]) == [missing]
    assert unavailable_reason(_module(requires=[missing])) == \
        f"needs {missing}: pip install {missing}"
    hinted = _module(requires=[missing], install_hint='pip install "x[y]"')
    assert unavailable_reason(hinted) == f'needs {missing}: pip install "x[y]"'
    assert install_hint(hinted, [missing]) == 'pip install "x[y]"'


@pytest.mark.parametrize("bad", ["torch", [1], [""]])
def test_requires_must_be_a_list_of_names(bad):
    with pytest.raises(TypeError, match="list of module names"):
        unavailable_reason(_module(requires=bad))
