"""The user reference in docs/reference/ is generated from the code (lubench.cli.reference):
the suite format from the schema, the result columns from the record schema and the metric
table. A change to either that is not regenerated fails here."""

from __future__ import annotations

from pathlib import Path

import pytest

from lubench.cli.reference import REFERENCE

DOCS = Path(__file__).resolve().parents[1] / "docs" / "reference"


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_the_committed_reference_is_what_the_code_generates(name):
    committed = (DOCS / name).read_text()
    assert committed == REFERENCE[name](), (
        f"docs/reference/{name} differs from the code: run `python -m lubench.cli.reference`")


def test_every_metric_and_every_suite_key_is_in_the_reference():
    from lubench.metrics.table import METRICS
    from lubench.suite.schema import SuiteModel

    results, suite = REFERENCE["results.md"](), REFERENCE["suite.md"]()
    assert all(f"| `{m.key}` |" in results for m in METRICS)
    assert all(f"| `{key}` |" in suite for key in SuiteModel.model_fields)
