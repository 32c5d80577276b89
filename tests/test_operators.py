"""The built-in operator generators (plugins/lubench_operators), with real SciPy matrices."""

from __future__ import annotations

import bz2
import doctest
import gzip
from pathlib import Path

import lubench_operators
import numpy as np
import pytest
import scipy.io as sio
import scipy.linalg as sla
import scipy.sparse as sp
import scipy.sparse.linalg as spla
from lubench_operators import (
    Biharmonic1D,
    Biharmonic2D,
    ConvDiff1D,
    ConvDiff2D,
    ExponentialKernel,
    Laplacian1D,
    Laplacian2D,
    MaternKernel,
    MatrixMarket,
    RBFKernel,
    files,
    kernels,
    pde,
)

from lubench.api import InvalidParameter, Operator
from lubench.params import param_specs, validate_params

DATA = Path(__file__).resolve().parent / "data"
N = 64  # a perfect square, so that every generator takes it

GENERATORS = {
    "laplacian_1d": Laplacian1D(),
    "laplacian_1d[h2]": Laplacian1D(scale="h2"),
    "laplacian_2d": Laplacian2D(),
    "convdiff_1d": ConvDiff1D(),
    "convdiff_1d[dirichlet_rows]": ConvDiff1D(boundary="dirichlet_rows"),
    "convdiff_2d": ConvDiff2D(),
    "convdiff_2d[dirichlet_rows]": ConvDiff2D(boundary="dirichlet_rows"),
    "biharmonic_1d": Biharmonic1D(),
    "biharmonic_1d[dirichlet_rows]": Biharmonic1D(boundary="dirichlet_rows"),
    "biharmonic_2d": Biharmonic2D(),
    "biharmonic_2d[normalize]": Biharmonic2D(normalize=True),
    "rbf_kernel": RBFKernel(),
    "rbf_kernel[dim=2]": RBFKernel(dim=2),
    "matern_kernel": MaternKernel(),
    "matern_kernel[nu=0.5]": MaternKernel(nu=0.5),
    "matern_kernel[nu=2.5, dim=3]": MaternKernel(nu=2.5, dim=3),
    "exponential_kernel": ExponentialKernel(),
    "exponential_kernel[random]": ExponentialKernel(points="random"),
}


def dense(op: Operator) -> np.ndarray:
    """A as an array: formed operators' matrix, kernels formed from their entries."""
    return op.dense()


@pytest.mark.parametrize("key", list(GENERATORS))
def test_shape_dtype_and_flags_are_truthful(key):
    op = GENERATORS[key].build(N, seed=3)
    A = dense(op)
    assert A.shape == (N, N) and A.dtype == np.float64
    assert np.all(np.isfinite(A))
    assert op.symmetric == bool(np.array_equal(A, A.T))
    if op.spd:
        assert op.symmetric
        assert np.linalg.eigvalsh(A).min() > 0
    if op.spd is False and op.symmetric:
        assert np.linalg.eigvalsh(A).min() <= 0
    assert op.coords is not None and op.coords.ndim == 2 and op.coords.shape[0] == N
    assert op.params == GENERATORS[key].get_params()


@pytest.mark.parametrize("key", list(GENERATORS))
def test_same_seed_same_matrix(key):
    a, b = (dense(GENERATORS[key].build(N, seed=11)) for _ in range(2))
    np.testing.assert_array_equal(a, b)


def test_rbf_points_depend_on_the_seed_and_are_ordered():
    a, b = RBFKernel().build(N, seed=0), RBFKernel().build(N, seed=1)
    assert not np.array_equal(a.dense(), b.dense())
    assert np.all(np.diff(a.coords[:, 0]) >= 0)
    assert np.all((a.coords >= 0) & (a.coords <= 1))
    # A_ij = exp(−|x_i − x_j|²/(2ℓ²)) + nugget δ_ij, recomputed from the returned points
    x = a.coords[:, 0]
    expected = np.exp(-((x[:, None] - x[None, :]) ** 2) / (2 * 0.2**2)) + 1e-4 * np.eye(N)
    np.testing.assert_allclose(a.dense(), expected, rtol=1e-14, atol=0)


def test_rbf_2d_ordering_is_hierarchical():
    op = RBFKernel(dim=2).build(N, seed=0)
    pts = op.coords
    halves = [pts[: N // 2], pts[N // 2:]]
    # the first split is along one axis: the two halves do not interleave along it
    axis = [ax for ax in (0, 1) if halves[0][:, ax].max() <= halves[1][:, ax].min()]
    assert axis, "the first half of the ordering should lie on one side of a median plane"


def test_perfect_square_required():
    with pytest.raises(InvalidParameter) as exc:
        Laplacian2D().check_size(250)
    assert str(exc.value) == ("laplacian_2d needs n to be a perfect square (e.g. 256 = 16²), "
                              "got 250")
    for gen in (Laplacian2D(), ConvDiff2D(), Biharmonic2D()):
        with pytest.raises(InvalidParameter, match="perfect square"):
            gen.build(250, seed=0)


@pytest.mark.parametrize("gen, message", [
    (ConvDiff1D(eps=-1.0), "eps must be a positive number, got -1.0"),
    (ConvDiff2D(boundary="periodic"), "boundary must be one of"),
    (ExponentialKernel(rho=1.5), "rho must lie strictly between 0 and 1, got 1.5"),
    (RBFKernel(length_scale=0.0), "length_scale must be a positive number, got 0.0"),
    (RBFKernel(nugget=-1e-3), "nugget must be a number >= 0"),
    (RBFKernel(dim=4), "rbf_kernel: dim must be 1, 2 or 3 (the dimension of the points), got 4"),
    (MaternKernel(nu=2.0), "matern_kernel: nu must be 0.5, 1.5 or 2.5"),
    (MaternKernel(length_scale=-1.0), "matern_kernel: length_scale must be a positive number"),
    (MaternKernel(dim=0), "matern_kernel: dim must be 1, 2 or 3"),
    (ExponentialKernel(points="sobol"), "points must be 'grid' or 'random', got 'sobol'"),
    (Biharmonic2D(shift=-1.0), "shift must be >= 0"),
    (Laplacian1D(scale="h3"), "scale must be one of"),
])
def test_bad_parameters_name_the_value(gen, message):
    with pytest.raises(InvalidParameter, match=message.replace("(", r"\(").replace(")", r"\)")):
        gen.check_size(16)
    with pytest.raises(InvalidParameter):
        gen.build(16, seed=0)


@pytest.mark.parametrize("cls, params, param", [
    (ConvDiff1D, {"eps": -1.0}, "eps"), (ConvDiff2D, {"eps": 0.0, "beta": 3.0}, "eps"),
    (Biharmonic2D, {"shift": -1.0}, "shift"), (RBFKernel, {"length_scale": 0.0}, "length_scale"),
    (RBFKernel, {"dim": 4}, "dim"), (MaternKernel, {"nu": 2.0}, "nu"),
    (ExponentialKernel, {"rho": 1.5}, "rho"), (ExponentialKernel, {"points": "sobol"}, "points"),
])
def test_a_bad_value_is_refused_at_load_naming_its_parameter(cls, params, param):
    """check_params (run when the suite loads) names the parameter, so the suite's error says
    `operators[0].params.eps` once — not `sizes[0]`, once per size, as check_size did."""
    with pytest.raises(InvalidParameter) as info:
        cls.check_params(params)
    assert info.value.param == param and param in str(info.value)


def test_suite_values_are_coerced_and_checked():
    params = validate_params(ConvDiff1D, {"eps": "1e-2", "boundary": "dirichlet_rows"}, "s")
    assert params == {"eps": 0.01, "boundary": "dirichlet_rows"}
    with pytest.raises(InvalidParameter, match="boundary"):
        validate_params(ConvDiff1D, {"boundary": "dirichlet"}, "s")


def test_every_parameter_is_documented():
    for cls in lubench_operators.lubench_operators():
        assert cls.describe(), cls
        for spec in param_specs(cls).values():
            assert spec.doc, f"{cls.name}.{spec.name} has no description"


def test_docstring_examples_hold():
    for module in (pde, kernels, files):
        result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
        assert result.failed == 0


def test_laplacian_1d_closed_form_lu():
    """REFERENCE.md: L[i+1, i] = −(i+1)/(i+2), U[i, i] = (i+2)/(i+1), U[i, i+1] = −1."""
    n = 32
    P, L, U = sla.lu(dense(Laplacian1D().build(n, seed=0)))
    np.testing.assert_array_equal(P, np.eye(n))  # partial pivoting never swaps here
    i = np.arange(n - 1)
    np.testing.assert_allclose(np.diag(L, -1), -(i + 1) / (i + 2), rtol=1e-14)
    np.testing.assert_allclose(np.diag(U), (np.arange(n) + 2) / (np.arange(n) + 1), rtol=1e-14)
    np.testing.assert_allclose(np.diag(U, 1), -1.0, rtol=1e-14)
    np.testing.assert_allclose(np.tril(L, -2), 0, atol=1e-15)
    np.testing.assert_allclose(np.triu(U, 2), 0, atol=1e-15)


def test_exponential_kernel_closed_form_lu():
    """REFERENCE.md: L_ij = ρ^(i−j); U_0j = ρ^j, U_ij = (1 − ρ²) ρ^(j−i) for 1 ≤ i ≤ j."""
    n, rho = 12, 0.3
    P, L, U = sla.lu(dense(ExponentialKernel(rho=rho).build(n, seed=0)))
    np.testing.assert_array_equal(P, np.eye(n))
    i, j = np.indices((n, n))
    np.testing.assert_allclose(L, np.where(i >= j, rho ** np.abs(i - j), 0.0), atol=1e-15)
    U_exact = np.where(i <= j, (1 - rho**2) * rho ** np.abs(j - i), 0.0)
    U_exact[0] = rho ** np.arange(n)
    np.testing.assert_allclose(U, U_exact, atol=1e-15)


def test_convdiff_1d_dirichlet_rows_boundary_pivot():
    """The post's variant at n = 256: identity boundary rows scaled by 1/max|A|.

    h = 1/255, ε = 0.1, β = 1: max|A| = 2ε/h² + β/h = 13 260 (the upwind diagonal), so the
    boundary pivots are 1/13 260 ≈ 7.54e-5 and LU without pivoting has L[1, 0] =
    −(ε/h² + β/h) = −6757.5 ≈ −6.8e3. (REFERENCE.md quotes ≈ 7.7e-5 = 1/(2ε/h²): the
    diffusion diagonal alone; its ≈ 6.8e3 in L matches the upwind value.)
    """
    n, eps, beta = 256, 0.1, 1.0
    h = 1 / (n - 1)
    op = ConvDiff1D(eps=eps, beta=beta, boundary="dirichlet_rows").build(n, seed=0)
    A = op.matrix
    assert np.abs(A).max() == 1.0
    pivot = 1 / (2 * eps / h**2 + beta / h)
    assert A[0, 0] == pytest.approx(pivot, rel=1e-14)
    assert A[n - 1, n - 1] == pytest.approx(pivot, rel=1e-14)
    assert 7.5e-5 < pivot < 7.6e-5
    # LU without pivoting (SuperLU with the natural order and no row exchanges)
    lu = spla.splu(sp.csc_matrix(A), permc_spec="NATURAL", diag_pivot_thresh=0.0)
    np.testing.assert_array_equal(lu.perm_r, np.arange(n))
    np.testing.assert_array_equal(lu.perm_c, np.arange(n))
    assert lu.U[0, 0] == pytest.approx(pivot, rel=1e-14)
    assert lu.L[1, 0] == pytest.approx(-(eps / h**2 + beta / h), rel=1e-12)
    assert abs(lu.L).max() == pytest.approx(6757.5, rel=1e-12)


def test_convdiff_eliminate_stencil():
    n, eps, beta = 8, 0.05, -2.0  # β < 0: the upstream neighbour is on the right
    h = 1 / (n + 1)
    A = dense(ConvDiff1D(eps=eps, beta=beta).build(n, seed=0))
    np.testing.assert_allclose(np.diag(A), 2 * eps / h**2 + 2 / h)
    np.testing.assert_allclose(np.diag(A, -1), -eps / h**2)
    np.testing.assert_allclose(np.diag(A, 1), -eps / h**2 - 2 / h)


def test_convdiff_2d_post_variant():
    m = 16  # the post's 16 × 16 grid, h = 1/15
    op = ConvDiff2D(boundary="dirichlet_rows").build(m * m, seed=0)
    A, h = dense(op), 1 / (m - 1)
    scale = 4 * 0.1 / h**2 + 1 / h
    k = 5 * m + 7  # an interior node (i, j) = (5, 7)
    row = A[k] * scale
    assert row[k] == pytest.approx(scale)
    assert row[k - 1] == pytest.approx(-0.1 / h**2 - 1 / h)  # upwind: the x-neighbour behind
    assert row[k + 1] == pytest.approx(-0.1 / h**2)
    assert row[k - m] == pytest.approx(-0.1 / h**2) == row[k + m]
    boundary = [0, m - 1, m, 2 * m - 1, m * m - 1]
    for b in boundary:
        np.testing.assert_array_equal(A[b] * scale, np.eye(m * m)[b])


def test_biharmonic_2d_13_point_stencil():
    m = 7
    A = dense(Biharmonic2D(shift=0.0).build(m * m, seed=0))
    k = 3 * m + 3  # the centre node: its whole stencil is interior
    stencil = A[k].reshape(m, m)[1:6, 1:6]
    expected = np.array([[0, 0, 1, 0, 0],
                         [0, 2, -8, 2, 0],
                         [1, -8, 20, -8, 1],
                         [0, 2, -8, 2, 0],
                         [0, 0, 1, 0, 0]], dtype=float)
    np.testing.assert_array_equal(stencil, expected)
    assert np.count_nonzero(A[k]) == 13
    A_post = dense(Biharmonic2D(normalize=True).build(m * m, seed=0))
    np.testing.assert_allclose(A_post, (A + 1e-6 * np.eye(m * m)) / (20 + 1e-6), rtol=1e-15)


def test_biharmonic_1d_dirichlet_rows():
    """TᵀT with rows 0 and n−1 replaced by identity rows, then divided by max|A| = 6."""
    n = 10
    A = dense(Biharmonic1D(boundary="dirichlet_rows").build(n, seed=0))
    T = dense(Laplacian1D().build(n, seed=0))
    expected = T.T @ T
    expected[[0, -1]] = np.eye(n)[[0, -1]]
    np.testing.assert_allclose(A, expected / 6, rtol=1e-15)


# --------------------------------------------------------------------------------------------
# matrix_market
# --------------------------------------------------------------------------------------------
def test_matrix_market_reads_the_seed_system():
    gen = MatrixMarket(path=DATA / "seed_system_4x4.mtx")
    assert gen.sizes() == [4]
    op = gen.build(4, seed=0)
    A = dense(op)
    np.testing.assert_array_equal(A, [[3, -7, -2, 2], [-3, 5, 1, 0], [6, -4, 0, -5],
                                      [-9, 5, -5, 12]])
    assert op.matrix.dtype == np.float64 and sp.issparse(op.matrix)
    assert op.symmetric is False and op.spd is False


def test_matrix_market_symmetric_file_and_spd_detection(tmp_path):
    op = MatrixMarket(path=str(DATA / "spd_symmetric_3x3.mtx")).build(3, seed=0)  # a str works
    np.testing.assert_array_equal(dense(op), [[2, -1, 0], [-1, 2, -1], [0, -1, 2]])
    assert op.symmetric is True and op.spd is True
    indefinite = tmp_path / "indefinite.mtx"
    sio.mmwrite(indefinite, np.array([[1.0, 2.0], [2.0, 1.0]]))
    op = MatrixMarket(path=indefinite).build(2, seed=0)
    assert op.symmetric is True and op.spd is False
    assert isinstance(op.matrix, np.ndarray)


@pytest.mark.parametrize("suffix, compress", [(".gz", gzip.compress), (".bz2", bz2.compress)])
def test_matrix_market_reads_a_compressed_file(tmp_path, suffix, compress):
    """mmread opens .gz and .bz2 files itself; the load-time checks read them decompressed
    too, so such a file gives the same operator as the plain one."""
    plain = DATA / "seed_system_4x4.mtx"
    packed = tmp_path / f"seed.mtx{suffix}"
    packed.write_bytes(compress(plain.read_bytes()))
    gen = MatrixMarket(path=packed)
    assert gen.sizes() == [4]
    np.testing.assert_array_equal(dense(gen.build(4, seed=0)),
                                  dense(MatrixMarket(path=plain).build(4, seed=0)))
    bad = tmp_path / f"bad.mtx{suffix}"
    bad.write_bytes(compress(b"%%MatrixMarket matrix coordinate real general\n2 2 2\n"
                             b"1 1 1,5\n2 2 1\n"))
    with pytest.raises(InvalidParameter, match="'1 1 1,5' is not an entry of numbers"):
        MatrixMarket(path=bad).sizes()


def test_matrix_market_path_is_relative_to_the_suite(tmp_path):
    params = validate_params(MatrixMarket, {"path": "seed_plu_3x3.mtx"}, "suite", DATA)
    assert params["path"] == DATA / "seed_plu_3x3.mtx"
    assert MatrixMarket(**params).sizes() == [3]


def test_matrix_market_errors(tmp_path):
    missing = tmp_path / "nope.mtx"
    with pytest.raises(InvalidParameter, match=f"matrix file not found: {missing}"):
        MatrixMarket(path=missing).sizes()
    with pytest.raises(InvalidParameter, match="needs a 'path'"):
        MatrixMarket().sizes()
    rect = tmp_path / "rect.mtx"
    sio.mmwrite(rect, np.ones((2, 3)))
    with pytest.raises(InvalidParameter, match="2×3 matrix; matrix_market needs a square one"):
        MatrixMarket(path=rect).sizes()
    junk = tmp_path / "junk.mtx"
    junk.write_text("this is not a matrix\n")
    with pytest.raises(InvalidParameter, match="not a readable Matrix Market file"):
        MatrixMarket(path=junk).sizes()
    with pytest.raises(InvalidParameter, match="is 4×4, got n = 5"):
        MatrixMarket(path=DATA / "seed_system_4x4.mtx").check_size(5)


def test_registered_through_the_entry_point(registry):
    for cls in lubench_operators.OPERATORS:
        assert registry.operator(cls.name) is cls
        assert registry.provider[("operator", cls.name)] == "operators"


HEAD = "%%MatrixMarket matrix coordinate real general\n"


@pytest.mark.parametrize("content, message", [
    (HEAD + "0 0 0\n", "holds a 0×0 matrix: nothing to factor"),
    ("%%MatrixMarket matrix array real general\n0 0\n", "holds a 0×0 matrix"),
    (HEAD + "2 2 2\n1 1 nan\n2 2 1\n", "holds 1 value(s) that are not finite (NaN)"),
    ("%%MatrixMarket matrix array real general\n2 2\n1\ninf\n0\n-inf\n",
     "holds 2 value(s) that are not finite (Inf)"),
    (HEAD + "2 2 2\n1 1 1e999\n2 2 1\n", "not finite (Inf)"),
    (HEAD + "2 2 2\n1 1 1,5\n2 2 1\n", "'1 1 1,5' is not an entry of numbers"),
    (HEAD + "3 3 3\n1 1 1\n", "not a readable Matrix Market file"),  # fewer entries
    (HEAD + "2 2 2\n1 1 1\n5 2 1\n", "not a readable Matrix Market file"),
    (HEAD + "2 2 2\n0 1 1\n2 2 1\n", "not a readable Matrix Market file"),
    ("%%MatrixMarket matrix array real general\n100000 100000\n1\n2\n3\n4\n",
     "declares 10,000,000,000 values but holds"),
    (HEAD + "18446744073709551616 18446744073709551616 1\n1 1 1\n", "m.mtx: "),
    ("", "not a readable Matrix Market file"),
])
def test_matrix_market_refuses_at_load_what_no_case_could_use(tmp_path, content, message):
    """Issue 25, item 7: checked when the suite loads (sizes()), not one failed case per
    method; a truncated file is refused before anything is allocated for it."""
    path = tmp_path / "m.mtx"
    path.write_text(content)
    with pytest.raises(InvalidParameter) as err:
        MatrixMarket(path=path).sizes()
    assert str(err.value).startswith(f"{path}: ") and message in str(err.value)
    assert err.value.param == "path"


def test_matrix_market_refuses_what_is_no_file(tmp_path):
    with pytest.raises(InvalidParameter, match="is not a regular file"):
        MatrixMarket(path=tmp_path).sizes()
    with pytest.raises(InvalidParameter, match="is not a regular file"):
        MatrixMarket(path="/dev/zero").sizes()
