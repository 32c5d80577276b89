"""The kernel operators never formed (plugins/lubench_operators/kernels.py, kernel_action.py):
the same matrices as when they were formed, an action that agrees with their entries, the
exact O(n) action of the 1D exponential kernel, and bad parameters refused at load."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from lubench_operators import ExponentialKernel, MaternKernel, RBFKernel
from lubench_operators import kernel_action as action
from lubench_operators.kernels import KernelOperator, hierarchical_order

from lubench.api import MatrixFreeOperator
from lubench.errors import SuiteError
from lubench.suite.load import load_suite


def formed_rbf(n, seed, length_scale=0.2, nugget=1e-4, dim=1, normalize=False):
    """The dense matrix rbf_kernel built before it became matrix-free (its code, verbatim)."""
    points = np.random.default_rng(seed).uniform(0.0, 1.0, size=(n, dim))
    points = points[hierarchical_order(points)]
    sq = np.zeros((n, n))
    for k in range(dim):
        diff = points[:, k, None] - points[None, :, k]
        sq += diff * diff
    A = np.exp(sq * (-0.5 / length_scale**2), out=sq)
    A[np.diag_indices(n)] += nugget
    if normalize:
        A /= np.abs(A).max()
    return A


@pytest.mark.parametrize("params", [{}, {"dim": 2}, {"dim": 3, "normalize": True, "nugget": 0.1},
                                    {"length_scale": 0.05, "dim": 2, "normalize": True}])
def test_rbf_kernel_forms_the_same_matrix_bit_for_bit(params):
    op = RBFKernel(**params).build(300, seed=3)
    assert isinstance(op, MatrixFreeOperator) and not op.formed and op.has_entries
    A = formed_rbf(300, 3, **params)
    np.testing.assert_array_equal(op.dense(), A)
    np.testing.assert_array_equal(op.diagonal(), np.diag(A))


@pytest.mark.parametrize("rho", [0.5, 0.9, 0.999])
def test_exponential_kernel_grid_forms_the_same_matrix_bit_for_bit(rho):
    i = np.arange(200)
    A = float(rho) ** np.abs(i[:, None] - i[None, :]).astype(np.float64)
    np.testing.assert_array_equal(ExponentialKernel(rho=rho).build(200, seed=0).dense(), A)


KERNELS = {
    "rbf[dim=1]": RBFKernel(),
    "rbf[dim=2, normalize]": RBFKernel(dim=2, normalize=True),
    "matern[0.5, dim=2]": MaternKernel(nu=0.5, dim=2),
    "matern[1.5, dim=3]": MaternKernel(nu=1.5, dim=3),
    "matern[2.5, dim=2]": MaternKernel(nu=2.5, dim=2, nugget=0.0),
    "matern[0.5, dim=1] (chain)": MaternKernel(nu=0.5),
    "exponential[grid] (chain)": ExponentialKernel(rho=0.9),
    "exponential[random] (chain)": ExponentialKernel(rho=0.7, points="random"),
}


@pytest.mark.parametrize("key", list(KERNELS))
def test_action_agrees_with_the_entries(key):
    """n = 600 spans three tiles (and five restarts of the recurrences); 70 columns span two
    column chunks. One vector and a block, against the matrix formed from the entries."""
    op = KERNELS[key].build(600, seed=1)
    assert op.chain == key.endswith("(chain)")
    A = op.dense()
    X = np.random.default_rng(0).standard_normal((600, 70))
    for arg in (X, X[:, 5]):
        Y = op.matmat(arg)
        assert Y.shape == arg.shape
        ref = A @ arg
        assert np.linalg.norm(Y - ref) <= 1e-14 * np.linalg.norm(np.abs(A) @ np.abs(arg))
    np.testing.assert_array_equal(op.rmatmat(X), op.matmat(X))


def test_the_recurrences_stay_exact_over_many_steps_per_length_scale():
    """Matérn 1/2 on 2¹⁵ random points with ℓ = 0.2: 6500 steps per length scale. Restarted
    every CHAIN_BLOCK points, the recurrences stay at round-off (the plain ones lose
    ~√steps·ε and more); checked against 64 rows evaluated directly from the entries."""
    n = 2**15
    op = MaternKernel(nu=0.5, nugget=0.0).build(n, seed=0)
    X = np.random.default_rng(1).standard_normal((n, 4))
    rows = np.random.default_rng(2).choice(n, 64, replace=False)
    ref = op.entries(rows, np.arange(n)) @ X
    assert np.linalg.norm(op.matmat(X)[rows] - ref) <= 1e-14 * np.linalg.norm(ref)


def test_the_exponential_is_within_one_ulp_of_numpy():
    x = -np.linspace(0.0, 708.0, 200_001)
    got, want = action.exp_array(x), np.exp(x)
    assert np.max(np.abs(got - want) / want) <= 2.3e-16
    np.testing.assert_array_equal(action.exp_array(np.array([-708.5, -1e300])), 0.0)


def test_the_operator_pickles_without_its_cached_factors():
    op = ExponentialKernel(points="random").build(1000, seed=4)
    x = np.ones(1000)
    y = op.matmat(x)
    again = pickle.loads(pickle.dumps(op))
    assert again._factors is None and isinstance(again, KernelOperator)
    np.testing.assert_array_equal(again.matmat(x), y)


def test_matern_shares_the_points_of_rbf_and_random_exponential_points_are_sorted():
    a, b = RBFKernel(dim=2).build(100, seed=7), MaternKernel(dim=2).build(100, seed=7)
    np.testing.assert_array_equal(a.coords, b.coords)
    x = ExponentialKernel(points="random").build(100, seed=7).coords[:, 0]
    assert np.all(np.diff(x) > 0) and 0 <= x[0] and x[-1] < 100


@pytest.mark.parametrize("operator, message", [
    ("{name: rbf_kernel, sizes: [64], params: {dim: 4}}",
     "rbf_kernel: dim must be 1, 2 or 3 (the dimension of the points), got 4"),
    ("{name: matern_kernel, sizes: [64], params: {nu: 2.0}}",
     "operators[0].params.nu: expected one of 0.5, 1.5, 2.5, got 2.0"),
    ("{name: matern_kernel, sizes: [64], params: {length_scale: 0}}",
     "matern_kernel: length_scale must be a positive number, got 0"),
    ("{name: exponential_kernel, sizes: [0]}",
     "operators[0].sizes[0]: must be at least 1, got 0"),
])
def test_bad_parameters_are_load_errors_naming_the_field(tmp_path, registry, operator, message):
    suite = tmp_path / "s.yaml"
    suite.write_text(f"name: s\noperators:\n  - {operator}\nmethods:\n  - name: plu\n")
    with pytest.raises(SuiteError) as info:
        load_suite(suite, registry)
    assert message in str(info.value)
