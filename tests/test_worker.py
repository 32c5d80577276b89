"""One case inside a worker: every outcome becomes a record, nothing raises."""

from __future__ import annotations

import json

from conftest import TOY_PLUGIN

from lubench.execution.plan import RunPlan
from lubench.execution.worker import run_case
from lubench.suite.load import build_suite

SUITE = {
    "name": "w",
    "operators": [{"name": "toy_tridiag", "sizes": [16], "params": {"skew": [0.0, 0.5]}}],
    "methods": [{"name": "toy_lu", "params": {"mode": ["ok", "raise", "refuse_nonsym"]}}],
}


def _records(registry):
    suite = build_suite(SUITE, registry)
    out = {}
    for case in suite.cases:
        rec = run_case(case, 0, plan=RunPlan(run_id="r1", plugin_specs=(str(TOY_PLUGIN),)))
        out[(case.operator_params["skew"], case.method_params["mode"])] = rec
    return out


def test_outcomes(registry):
    recs = _records(registry)
    ok = recs[(0.0, "ok")]
    assert ok["status"] == "ok" and ok["error"] == ""
    assert ok["factor_error"] < 1e-15 and ok["precond_iterations"] == 1
    assert ok["n_params"] == 256 and ok["setup_seconds"] > 0 and ok["peak_memory_bytes"] >= 0
    assert json.loads(ok["operator_params"]) == {"d": 2.0, "skew": 0.0}
    assert ok["run_id"] == "r1" and ok["device"] == "cpu" and ok["history"] == []

    failed = recs[(0.0, "raise")]
    assert failed["status"] == "failed"
    assert failed["error"] == "RuntimeError: planted failure"
    assert "Traceback" in failed["traceback"]
    assert failed["factor_error"] is None

    assert recs[(0.0, "refuse_nonsym")]["status"] == "ok"
    refused = recs[(0.5, "refuse_nonsym")]
    assert refused["status"] == "unsupported"
    assert refused["error"] == "toy_lu(refuse_nonsym) needs a symmetric operator"
