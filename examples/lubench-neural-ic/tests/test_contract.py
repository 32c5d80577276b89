"""This package's own CI: the lubench contract checks, and a fit on a few instances."""

import numpy as np
import pytest
from lubench_neural_ic import NeuralIC
from lubench_operators.families import Diffusion2D

from lubench.api import Budget, RunContext
from lubench.testing import CheckSkipped, method_checks


@pytest.mark.parametrize("check", method_checks(NeuralIC, hidden=4, layers=1),
                         ids=lambda c: c.__name__)
def test_contract(check):
    try:
        check()
    except CheckSkipped as exc:  # check_exact_residual: a learned method is not exact
        assert "not exact" in str(exc)


def test_fit_keeps_what_it_learned():
    train = [Diffusion2D().build(64, seed) for seed in range(3)]
    method = NeuralIC(hidden=4, layers=1).fit(train, RunContext(budget=Budget(max_steps=6)))
    assert method.fit_info_["steps"] == 6 and len(method.history_) == 6
    fact = method.factorize(Diffusion2D().build(64, 9), RunContext())
    assert fact.info["trained"] and np.all(fact.L.diagonal() > 0)
