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


def test_a_method_that_needs_the_matrix_is_refused_above_the_suite_form_limit(registry):
    """rbf_kernel is never formed: plu gets it formed within the form limit and is refused
    with the reason above it; 'none' forms it whatever the size."""
    from lubench.execution.worker import run_case
    from lubench.suite.load import build_suite

    suite = build_suite({
        "name": "form", "form_limit": "16KiB",
        "operators": [{"name": "rbf_kernel", "sizes": [32, 64]},
                      {"name": "rbf_kernel", "sizes": [128], "form_limit": "none"}],
        "methods": ["plu"],
    }, registry)
    recs = {c.n: run_case(c) for c in suite.cases}
    assert recs[32]["status"] == "ok" and recs[128]["status"] == "ok"     # 8 KiB; no limit
    # grading's own cost is a column beside setup's, and nothing was left ungraded
    assert 0 < recs[32]["grade_seconds"] < recs[32]["wall_seconds"]
    assert recs[32]["not_graded"] == "" and recs[32]["factor_error_2_kind"] == "exact"
    assert recs[64]["status"] == "unsupported"
    assert recs[64]["error"] == ("plu needs the formed matrix; operator 'rbf_kernel' at n = 64 "
                                 "is not formed (dense A: 32.0 KiB > form_limit 16.0 KiB)")


def test_every_method_on_a_kernel_is_graded_against_the_operator_as_built(tmp_path):
    """plu gets rbf_kernel formed, a method that needs only the action gets it as built; both
    are graded against the operator as built, so they see the same products and share one
    plain GMRES (one entry in the run's cache)."""
    import numpy as np
    import scipy.linalg as sla
    from lubench_classical import PLU
    from lubench_operators import RBFKernel

    from lubench.api import Factorization, Method
    from lubench.execution.plan import RunPlan
    from lubench.execution.worker import run_case
    from lubench.registry import Registry
    from lubench.suite.cases import Case

    class Dense(Factorization):
        def __init__(self, A):
            super().__init__()
            self.A, self.lu, self.n_params = A, sla.lu_factor(A), A.size

        def solve(self, B):
            return sla.lu_solve(self.lu, B)

        def apply(self, X):
            return self.A @ X

    class ActionLU(Method):
        """LU of A formed from the action by the method itself."""

        name = "action_lu"
        needs = "action"

        def factorize(self, op, ctx):
            return Dense(op.matmat(np.eye(op.n)))

    from types import SimpleNamespace

    from lubench.hookspecs import hookimpl

    plugin = SimpleNamespace(lubench_operators=hookimpl(lambda: [RBFKernel]),
                             lubench_methods=hookimpl(lambda: [PLU, ActionLU]))
    reg = Registry()
    assert reg.register(plugin, "t", origin="test").status == "ok"
    plan = RunPlan(registry=reg, cache_dir=tmp_path / "cache")
    recs = [run_case(Case(suite="s", operator="rbf_kernel", operator_params={"dim": 2}, n=300,
                          method=m, method_params={}, family="classical", suite_seed=0,
                          seed=1, operator_seed=5, exact_limit=100), plan=plan)
            for m in ("plu", "action_lu")]
    assert [r["status"] for r in recs] == ["ok", "ok"], [r["error"] for r in recs]
    assert recs[0]["gmres_iterations"] == recs[1]["gmres_iterations"]
    assert len(list((tmp_path / "cache").glob("gmres-*.json"))) == 1
