"""The example learned preconditioner (examples/lubench-neural-ic), installed as a third party
installs it: pip from a copy of its folder into a target directory put on sys.path /
PYTHONPATH (conftest's ``neural_ic_site``; test_third_party.py says why a target
directory). Then: it is listed, keeps the contract, its network is what its docstring says,
and training across instances gives a better preconditioner on held-out ones than its
untrained start."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from lubench_operators.families import Diffusion2D

from lubench.api import RunContext
from lubench.metrics.cg import pcg, spd_probe
from lubench.testing import CheckSkipped, method_checks


@pytest.fixture
def neural_ic(neural_ic_site, monkeypatch):
    """The installed package, importable here (entry points scan sys.path)."""
    monkeypatch.syspath_prepend(str(neural_ic_site))
    import lubench_neural_ic

    yield lubench_neural_ic
    for name in [m for m in sys.modules if m.split(".")[0] == "lubench_neural_ic"]:
        del sys.modules[name]


def test_the_installed_plugin_is_listed(neural_ic_site):
    env = {**os.environ, "PYTHONPATH": str(neural_ic_site), "LUBENCH_DISABLE_PLUGINS": "learned"}
    exe = Path(sys.executable).parent / "lubench"
    proc = subprocess.run([str(exe), "plugins", "--json"], capture_output=True, text=True,
                          env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    row = {p["name"]: p for p in json.loads(proc.stdout)}["neural_ic"]
    assert row["status"] == "ok" and row["methods"] == ["neural_ic"]
    assert row["distribution"] == "lubench-neural-ic"


def test_contract(neural_ic):
    for check in method_checks(neural_ic.NeuralIC, hidden=4, layers=1):
        try:
            check()
        except CheckSkipped as exc:
            assert "not exact" in str(exc)


def test_untrained_it_is_symmetric_gauss_seidel(neural_ic):
    op = Diffusion2D().build(64, 0)
    A = op.matrix
    s = 1 / np.sqrt(A.diagonal())
    A_hat = sp.diags_array(s) @ A @ sp.diags_array(s)
    expected = sp.diags_array(1 / s) @ (sp.eye_array(64) + sp.tril(A_hat, k=-1))
    L = neural_ic.NeuralIC().factorize(op, RunContext()).L
    assert abs(L - expected).max() < 1e-6  # float32 network


def test_any_weights_give_a_positive_diagonal_and_an_spd_preconditioner(neural_ic):
    import torch

    op = Diffusion2D().build(64, 1)
    method = neural_ic.NeuralIC(hidden=8, layers=2)
    net = method._network(0)
    gen = torch.Generator().manual_seed(5)
    method.weights_ = {k: (torch.randn(v.shape, generator=gen) * 3).numpy()
                       for k, v in net.state_dict().items()}
    fact = method.factorize(op, RunContext())
    assert fact.L.diagonal().min() > 0
    assert spd_probe(fact.solve, op.n) is None


def test_the_substitution_gradients(neural_ic):
    import torch
    from lubench_neural_ic.model import _Substitute, graph_of

    g = graph_of(Diffusion2D().build(16, 0).matrix, dtype=torch.float64)
    vals = np.random.default_rng(0).random(len(g.indices)) * 0.1
    vals[g.indptr[1:] - 1] += 2.0  # the diagonal, last in each row
    vals = torch.tensor(vals, requires_grad=True)
    B = torch.randn(16, 2, dtype=torch.float64, requires_grad=True)
    for transposed in (False, True):
        assert torch.autograd.gradcheck(
            lambda v, b, t=transposed: _Substitute.apply(v, b, g.indptr, g.indices, t),
            (vals, B))


def test_fit_across_instances_beats_the_untrained_start_on_held_out_ones(neural_ic):
    gen = Diffusion2D()
    train = [gen.build(256, seed) for seed in range(8)]
    test = [gen.build(256, seed) for seed in (100, 101)]
    method = neural_ic.NeuralIC(epochs=6)
    method.fit(train, RunContext(seed=0))
    info = method.fit_info_
    assert info["steps"] == 48 and info["instances"] == 8 and info["final_loss"] < \
        info["first_loss"]
    assert [r["step"] for r in method.history_] == list(range(1, 49))
    untrained = neural_ic.NeuralIC()
    for op in test:
        b = np.ones(op.n)
        its = [pcg(op.matrix, b, m.factorize(op, RunContext()).solve).at(1e-8).iterations
               for m in (untrained, method)]
        assert its[1] < its[0], its
    copy = pickle.loads(pickle.dumps(method))  # what was learned travels with the method
    X = np.ones((256, 2))
    op = test[0]
    assert np.array_equal(copy.factorize(op, RunContext()).solve(X),
                          method.factorize(op, RunContext()).solve(X))


def test_fit_stops_at_the_budget(neural_ic):
    from lubench.api import Budget

    train = [Diffusion2D().build(64, s) for s in range(3)]
    method = neural_ic.NeuralIC(epochs=100)
    method.fit(train, RunContext(budget=Budget(max_steps=5)))
    assert method.fit_info_["steps"] == 5 and method.fit_info_["stopped_because"] == "max_steps"
