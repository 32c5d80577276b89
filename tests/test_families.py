"""The operator families of the preconditioner benchmark: random_spd and diffusion_2d
(lubench_operators.families), fem_poisson and pyamg_example (lubench_preconditioners)."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
import scipy.sparse as sp
import yaml
from lubench_operators.families import Diffusion2D, RandomSPD, gaussian_random_field
from lubench_operators.pde import Laplacian2D
from lubench_preconditioners.fem import FEMPoisson, square_mesh
from lubench_preconditioners.gallery import EXAMPLES, PyAMGExample

from lubench.api import InvalidParameter
from lubench.testing import check_operator

FAMILIES = [(RandomSPD, {}), (Diffusion2D, {}), (Diffusion2D, {"variance": 0.0}),
            (FEMPoisson, {}), (PyAMGExample, {"example": "bar"}),
            (PyAMGExample, {"example": "unit_square"}),
            (PyAMGExample, {"example": "local_disc_galerkin_diffusion"}),
            (PyAMGExample, {"example": "recirc_flow"})]


@pytest.mark.parametrize("cls, params", FAMILIES,
                         ids=[f"{c.name}-{p}" for c, p in FAMILIES])
def test_every_family_keeps_the_operator_contract(cls, params):
    check_operator(cls, **params)  # name, params, sizes, build, flags, same seed, pickle


@pytest.mark.parametrize("cls, n", [(RandomSPD, 400), (Diffusion2D, 400), (FEMPoisson, 300)])
def test_seeds_are_instances(cls, n):
    gen = cls()
    a, b, a2 = gen.build(n, 1).matrix, gen.build(n, 2).matrix, gen.build(n, 1).matrix
    assert abs(a - b).max() > 0 and abs(a - a2).max() == 0


def test_random_spd_density_and_spectrum():
    n, density, alpha = 2000, 0.01, 0.5
    A = RandomSPD(density=density, alpha=alpha).build(n, 0).matrix
    expected = 1 - math.exp(-n * density ** 2)  # the docstring's formula
    assert abs(A.nnz / n ** 2 - expected) < 0.1 * expected
    small = RandomSPD(density=0.05, alpha=alpha).build(200, 3).matrix.toarray()
    assert np.linalg.eigvalsh(small).min() >= alpha * (1 - 1e-9)


def test_diffusion_without_variance_is_the_laplacian():
    A = Diffusion2D(variance=0.0).build(100, 7).matrix
    assert abs(A - Laplacian2D().build(100, 0).matrix).max() == 0


def test_diffusion_is_an_m_matrix_with_the_harmonic_face_coefficients():
    op = Diffusion2D(variance=2.0, correlation_length=0.2).build(36, 4)
    A = op.matrix.toarray()
    off = A - np.diag(np.diag(A))
    assert (off <= 0).all() and (A.sum(axis=1) >= -1e-12).all()
    # interior node (i, j) = (2, 2): its diagonal is the sum of its four face coefficients
    k = 2 * 6 + 2
    assert A[k, k] == pytest.approx(-(A[k, k - 1] + A[k, k + 1] + A[k, k - 6] + A[k, k + 6]))


def test_the_random_field_has_the_asked_covariance():
    var, ell, m = 2.0, 0.15, 16
    g = np.array([gaussian_random_field(m, var, ell, np.random.default_rng(s))
                  for s in range(600)])
    assert g.shape == (600, m + 2, m + 2)
    assert g.var() == pytest.approx(var, rel=0.1)
    h = 1 / (m + 1)
    lag = 3
    cov = np.mean(g[:, 5:12, 4] * g[:, 5:12, 4 + lag])
    assert cov == pytest.approx(var * math.exp(-(lag * h) ** 2 / (2 * ell ** 2)), rel=0.15)


def test_fem_mesh_has_n_interior_nodes_and_a_sound_stiffness_matrix():
    n = 500
    points, tri, b = square_mesh(n, 5, np.random.default_rng(0))
    assert points.shape == (b + n, 2) and b == 4 * math.ceil(math.sqrt(n))
    assert ((points[b:] > 0) & (points[b:] < 1)).all()
    op = FEMPoisson().build(n, 0)
    A = op.matrix
    assert A.shape == (n, n) and op.coords.shape == (n, 2)
    assert np.allclose(A.sum(axis=1)[A.sum(axis=1) < -1e-12], 0)  # row sums ≥ 0
    assert 5 <= A.nnz / n <= 8  # P1 on a Delaunay mesh: ~6 neighbours
    assert np.linalg.eigvalsh(A.toarray()).min() > 0
    # RCM ordering: the bandwidth is a small multiple of √n, not n
    rows, cols = A.nonzero()
    assert np.abs(rows - cols).max() < 6 * math.sqrt(n)


def test_pyamg_examples_have_their_fixed_sizes():
    for name, n in EXAMPLES.items():
        assert PyAMGExample(example=name).sizes() == [n]
    with pytest.raises(InvalidParameter, match="airfoil has n = 260, got 100"):
        PyAMGExample().check_size(100)
    A = PyAMGExample(example="local_disc_galerkin_diffusion").build(966, 0).matrix
    assert (A != A.T).nnz == 0  # symmetrized: the file is symmetric to round-off only


BAD = [
    ({"name": "random_spd", "sizes": [100], "params": {"density": 0.0}},
     "density must lie in (0, 1], got 0.0"),
    ({"name": "random_spd", "sizes": [100], "params": {"alpha": -1.0}},
     "alpha must lie in (0, 1e+06], got -1.0"),
    ({"name": "diffusion_2d", "sizes": [64], "params": {"variance": 20.0}},
     "variance must lie in [0, 16], got 20.0"),
    ({"name": "diffusion_2d", "sizes": [64], "params": {"correlation_length": 0.0}},
     "correlation_length must lie in (0, 0.5], got 0.0"),
    ({"name": "diffusion_2d", "sizes": [60]}, "diffusion_2d needs n to be a perfect square"),
    ({"name": "fem_poisson", "sizes": [100], "params": {"lloyd_iterations": -1}},
     "lloyd_iterations must be an integer in [0, 50], got -1"),
    ({"name": "pyamg_example", "params": {"example": "helmholtz_2D"}}, "example"),
]


@pytest.mark.parametrize("entry, message", BAD, ids=[str(e["params"] if "params" in e else
                                                          e["sizes"]) for e, _ in BAD])
def test_a_parameter_out_of_range_is_a_load_error(tmp_path, entry, message):
    suite = {"name": "bad", "operators": [entry], "methods": [{"name": "jacobi"}]}
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(suite))
    out = subprocess.run([sys.executable, "-m", "lubench.cli", "run", str(path), "--dry-run"],
                         capture_output=True, text=True)
    assert out.returncode == 2, out.stdout + out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in out.stderr, out.stderr
    assert "operators[0]" in lines[0] and message in lines[0]


def test_random_spd_refuses_a_size_it_cannot_hold():
    with pytest.raises(InvalidParameter, match="nonzeros"):
        RandomSPD(density=0.01).check_size(1_000_000)


def test_sparse_output_is_csr_float64():
    for gen, n in [(RandomSPD(), 100), (Diffusion2D(), 100), (FEMPoisson(), 100)]:
        A = gen.build(n, 0).matrix
        assert sp.issparse(A) and A.format == "csr" and A.dtype == np.float64
