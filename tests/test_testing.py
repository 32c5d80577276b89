"""lubench.testing: every check passes a good class and names the defect of a bad one.

Each bad class below breaks exactly one rule; the test asserts that the check for that rule
fails with what was expected and what came, and that the other checks do not cry wolf.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg as sla

from lubench.api import (
    Factorization,
    InvalidParameter,
    LubenchError,
    MatrixFreeOperator,
    Method,
    Operator,
    OperatorGenerator,
    Unsupported,
)
from lubench.registry import Registry, load_registry
from lubench.testing import (
    TINY_KINDS,
    CheckFailed,
    CheckResult,
    ContractError,
    TinyOperator,
    check_method,
    check_operator,
    method_checks,
    run_checks,
    tiny_operator,
)


# --------------------------------------------------------------------------------------------
# A good method, and bad ones that each break one rule
# --------------------------------------------------------------------------------------------
class DenseLU(Factorization):
    def __init__(self, A: np.ndarray, perturb: float = 0.0):
        super().__init__()
        self.lu, self.piv = sla.lu_factor(A)
        self.A = A
        self.n_params = A.size
        self.perturb = perturb

    def solve(self, B):
        return sla.lu_solve((self.lu, self.piv), B)

    def apply(self, X):
        return self.A @ X + self.perturb * X


class GoodLU(Method):
    """Dense LU with partial pivoting: A = P L U."""

    name = "good_lu"
    family = "classical"

    def factorize(self, op, ctx):
        return DenseLU(op.dense().copy())


class Nameless(GoodLU):
    """Dense LU without a name."""

    name = ""


class Undocumented(GoodLU):
    """Dense LU with parameters the docstring does not describe."""

    name = "undocumented"

    def __init__(self, tol=1e-3, level: int = 2):
        self.tol, self.level = tol, level


class Transforms(GoodLU):
    """Dense LU whose constructor changes its parameter.

    Parameters
    ----------
    overwrite : bool
        Stored negated (wrong).
    """

    name = "transforms"

    def __init__(self, overwrite: bool = False):
        self.overwrite = not overwrite


class ReturnsFalse(GoodLU):
    """Dense LU whose check() answers False instead of raising Unsupported."""

    name = "returns_false"

    def check(self, op):
        return False


class RefusesAll(GoodLU):
    """Dense LU that applies to nothing."""

    name = "refuses_all"

    def check(self, op):
        raise Unsupported("never")


class RefusesNonsymmetric(GoodLU):
    """Dense LU for symmetric operators only (a legitimate refusal)."""

    name = "refuses_nonsym"

    def check(self, op):
        if not op.symmetric:
            raise Unsupported("refuses_nonsym needs a symmetric operator")


class FlatSolve(DenseLU):
    def solve(self, B):
        return np.asarray(super().solve(B)).reshape(len(B), -1)  # (n,) comes back as (n, 1)


class WrongShape(GoodLU):
    """Dense LU whose solve returns (n, 1) for a vector."""

    name = "wrong_shape"

    def factorize(self, op, ctx):
        return FlatSolve(op.dense().copy())


class InPlace(GoodLU):
    """Dense LU that overwrites the operator's matrix."""

    name = "in_place"

    def factorize(self, op, ctx):
        A = op.dense()
        fact = DenseLU(A.copy())
        A *= 2.0  # op.dense() of a dense operator is op.matrix itself
        return fact


class ZeroParams(GoodLU):
    """Dense LU that claims to store nothing."""

    name = "zero_params"

    def factorize(self, op, ctx):
        fact = super().factorize(op, ctx)
        fact.n_params = 0
        return fact


class Jacobi(Factorization):
    def __init__(self, A):
        super().__init__()
        self.d = np.diag(A).copy()
        self.n_params = len(self.d)

    def solve(self, B):
        return B / (self.d if B.ndim == 1 else self.d[:, None])

    def apply(self, X):
        return X * (self.d if X.ndim == 1 else self.d[:, None])


class Inexact(GoodLU):
    """Diagonal (Jacobi) "factorization" that claims to be exact."""

    name = "inexact"

    def check(self, op):
        if not op.symmetric:
            raise Unsupported("inexact: SPD only")

    def factorize(self, op, ctx):
        return Jacobi(op.dense())


class InexactCompressed(Inexact):
    """The same diagonal approximation, honestly declared approximate."""

    name = "inexact_compressed"
    family = "compressed"


class Unseeded(GoodLU):
    """Dense LU of a randomly perturbed A, with an unseeded generator."""

    name = "unseeded"
    family = "learned"

    def factorize(self, op, ctx):
        A = op.dense() + 1e-3 * np.random.default_rng().standard_normal((op.n, op.n))
        return DenseLU(A)


class Unpicklable(DenseLU):
    def __init__(self, A):
        super().__init__(A)
        self.callback = lambda x: x  # lambdas do not pickle


class NoPickle(GoodLU):
    """Dense LU whose factorization holds a lambda."""

    name = "no_pickle"

    def factorize(self, op, ctx):
        return Unpicklable(op.dense().copy())


class TransposedP(Factorization):
    """A = (L U)[p], but apply permutes by p⁻¹: P and Pᵀ confused."""

    def __init__(self, A):
        super().__init__()
        self.p, self.L, self.U = sla.lu(A, p_indices=True)
        self.n_params = A.size

    def solve(self, B):
        y = sla.solve_triangular(self.L, B[self.p.argsort()], lower=True, unit_diagonal=True)
        return sla.solve_triangular(self.U, y)

    def apply(self, X):
        return (self.L @ (self.U @ X))[self.p.argsort()]


class ConfusesP(GoodLU):
    """Dense LU whose product of factors uses Pᵀ for P."""

    name = "confuses_p"

    def factorize(self, op, ctx):
        return TransposedP(op.dense())


def failed(cls: type, **params) -> dict[str, CheckResult]:
    """The failed checks of check_method, by name (asserting it raised ContractError)."""
    with pytest.raises(ContractError) as info:
        check_method(cls, **params)
    assert isinstance(info.value, AssertionError)  # pytest shows it like a failed assert
    return {f.check: f for f in info.value.failures}


# --------------------------------------------------------------------------------------------
# Methods
# --------------------------------------------------------------------------------------------
def test_good_method_passes_every_check():
    results = check_method(GoodLU)
    assert {r.check: r.status for r in results} == {
        "check_name": "pass", "check_params_documented": "pass",
        "check_init_stores_params": "pass", "check_params_accepted": "pass",
        "check_check_raises_unsupported": "pass",
        "check_factorize_tiny": "pass", "check_n_params": "pass",
        "check_exact_residual": "pass", "check_same_seed": "pass", "check_pickle": "pass",
        "check_runner_records": "pass"}


def test_toy_method_from_a_plugin_file(toy_registry):
    assert all(r.passed for r in check_method(toy_registry.method("toy_lu")))
    assert all(r.passed for r in check_method(toy_registry.method("toy_lu"),
                                              mode="refuse_nonsym"))


@pytest.mark.parametrize("cls, check, expected, got", [
    (Nameless, "check_name", "a class attribute 'name'", "name = ''"),
    (Undocumented, "check_params_documented", "every parameter with a default",
     "'tol' has no type annotation and no description under 'Parameters'"),
    (Transforms, "check_init_stores_params", "each parameter stored unchanged",
     "overwrite = True (given False)"),
    (ReturnsFalse, "check_check_raises_unsupported", "raise lubench.api.Unsupported(reason)",
     "on the diag_dominant operator it returned False"),
    (RefusesAll, "check_check_raises_unsupported", "at least one of the tiny operators",
     "all refused (diag_dominant: never; spd: never; needs_pivoting: never)"),
    (WrongShape, "check_factorize_tiny", "solve(B) of shape (16,) for B of shape (16,)",
     "shape (16, 1) on the diag_dominant operator"),
    (InPlace, "check_factorize_tiny", "factorize() to leave op.matrix unchanged",
     "op.matrix modified on the spd operator"),
    (ZeroParams, "check_n_params", "n_params a positive integer",
     "n_params = 0 on the diag_dominant operator"),
    (Inexact, "check_exact_residual", "‖A x̂ − b‖/‖b‖ ≤ 1e-10 (an exact method)",
     "on the spd operator"),
    (Inexact, "check_runner_records", "graded solve_residual ≤ 1e-10", "on the spd operator"),
    (ConfusesP, "check_exact_residual", "‖A − apply(I)‖_F/‖A‖_F ≤ 1e-10",
     "on the needs_pivoting operator"),
    (Unseeded, "check_same_seed", "the same solve(B) with the same seed",
     "relative difference"),
    (NoPickle, "check_pickle", "the factorization to pickle",
     "on the diag_dominant operator"),
])
def test_bad_method_fails_the_check_for_its_defect(cls, check, expected, got):
    failures = failed(cls)
    assert check in failures, failures
    assert expected in failures[check].expected
    assert got in failures[check].got
    assert f"{check}: expected {failures[check].expected}; got {failures[check].got}" == \
        failures[check].message


def test_one_defect_fails_only_its_checks():
    assert set(failed(ZeroParams)) == {"check_n_params"}
    assert set(failed(NoPickle)) == {"check_pickle"}
    assert set(failed(Nameless)) == {"check_name"}
    # the runner grades the zero-n_params factorization too: n_params ≥ 0 is all it asks


def test_contract_error_message_lists_every_failure():
    with pytest.raises(AssertionError) as info:
        check_method(Inexact)
    text = str(info.value)
    assert text.splitlines()[0] == "method inexact breaks 2 contract check(s):"
    assert "  check_exact_residual: expected ‖A x̂ − b‖/‖b‖ ≤ 1e-10" in text
    assert "  check_runner_records: expected graded solve_residual ≤ 1e-10; got " in text


def test_approximate_methods_are_not_held_to_exactness():
    results = {r.check: r for r in check_method(InexactCompressed)}
    assert results["check_exact_residual"].status == "skip"
    assert results["check_exact_residual"].reason == \
        "family is 'compressed', not 'classical' (not exact)"
    assert all(r.passed for r in results.values())


def test_unsupported_is_recorded_by_the_runner():
    """Where check() refuses, the worker records status unsupported with the reason."""
    from lubench.execution.plan import RunPlan
    from lubench.execution.worker import run_case
    from lubench.suite.cases import Case
    from lubench.testing.methods import _CheckPlugin

    results = {r.check: r.status for r in check_method(RefusesNonsymmetric)}
    assert results["check_runner_records"] == "pass"
    reg = Registry()
    reg.register(_CheckPlugin(RefusesNonsymmetric), "t")
    case = Case(suite="t", operator=TinyOperator.name, operator_params={"kind": "needs_pivoting"},
                n=16, method="refuses_nonsym", method_params={}, family="classical",
                suite_seed=0, seed=1, operator_seed=0)
    rec = run_case(case, plan=RunPlan(registry=reg))
    assert (rec["status"], rec["error"]) == ("unsupported",
                                             "refuses_nonsym needs a symmetric operator")


def test_method_checks_for_parametrize():
    checks = method_checks(GoodLU)
    assert [c.__name__ for c in checks][:3] == ["check_name", "check_params_documented",
                                                "check_init_stores_params"]
    for check in checks:
        check()  # raises CheckFailed (an AssertionError) on failure
    bad = {c.__name__: c for c in method_checks(ZeroParams)}
    with pytest.raises(CheckFailed, match="expected n_params a positive integer; got "
                                          "n_params = 0"):
        bad["check_n_params"]()


def test_check_method_refuses_what_is_not_a_method():
    with pytest.raises(TypeError, match="takes a lubench.api.Method subclass"):
        check_method(TinyOperator)


# --------------------------------------------------------------------------------------------
# The tiny operators
# --------------------------------------------------------------------------------------------
def test_tiny_operators_have_the_stated_properties():
    dd = tiny_operator("diag_dominant")
    A = dd.dense()
    off = np.abs(A).sum(axis=1) - np.abs(np.diag(A))
    assert dd.is_sparse and not dd.symmetric and np.all(np.abs(np.diag(A)) > off)
    spd = tiny_operator("spd").dense()
    np.testing.assert_array_equal(spd, spd.T)
    np.testing.assert_allclose(np.linalg.eigvalsh(spd), np.linspace(1, 10, 16), rtol=1e-12)
    piv = tiny_operator("needs_pivoting").dense()
    assert piv[0, 0] == 0.0 and np.linalg.cond(piv) < 30
    p = sla.lu(piv, p_indices=True)[0]  # partial pivoting rotates rows 0, 1, 2: P ≠ Pᵀ
    np.testing.assert_array_equal(p, [1, 2, 0, *range(3, 16)])
    for kind in TINY_KINDS:
        np.testing.assert_array_equal(tiny_operator(kind).dense(), tiny_operator(kind).dense())


@pytest.mark.parametrize("kind", TINY_KINDS)
def test_tiny_operator_generator_keeps_its_own_contract(kind):
    assert all(r.passed for r in check_operator(TinyOperator, kind=kind))


# --------------------------------------------------------------------------------------------
# Operator generators
# --------------------------------------------------------------------------------------------
class Shifted(OperatorGenerator):
    """A = tridiag(−1, 2 + shift, −1), dense.

    Parameters
    ----------
    shift : float
        Added to the diagonal.
    """

    name = "shifted"
    symmetric_flag = True
    spd_flag: bool | None = True

    def __init__(self, shift: float = 0.0):
        self.shift = shift

    def matrix(self, n: int, seed: int) -> np.ndarray:
        return (2 + self.shift) * np.eye(n) - np.eye(n, k=1) - np.eye(n, k=-1)

    def build(self, n, seed):
        return Operator(self.name, self.matrix(n, seed), symmetric=self.symmetric_flag,
                        spd=self.spd_flag, params=self.get_params())


class LiesSymmetric(Shifted):
    """Upper bidiagonal, flagged symmetric.

    Parameters
    ----------
    shift : float
        Added to the diagonal.
    """

    name = "lies_symmetric"

    def matrix(self, n, seed):
        return np.eye(n) + np.eye(n, k=1)


class LiesSPD(Shifted):
    """tridiag(−1, 2 + shift, −1) with a shift that makes it indefinite, flagged SPD.

    Parameters
    ----------
    shift : float
        Added to the diagonal.
    """

    name = "lies_spd"

    def __init__(self, shift: float = -3.0):
        self.shift = shift


class RandomBuild(Shifted):
    """Random matrix that ignores the seed.

    Parameters
    ----------
    shift : float
        Added to the diagonal.
    """

    name = "random_build"
    symmetric_flag = False
    spd_flag = None

    def matrix(self, n, seed):
        return np.random.default_rng().standard_normal((n, n))


class Float32(Shifted):
    """Single precision matrix.

    Parameters
    ----------
    shift : float
        Added to the diagonal.
    """

    name = "float32"

    def matrix(self, n, seed):
        return super().matrix(n, seed).astype(np.float32)


class AcceptsZero(Shifted):
    """Accepts any size.

    Parameters
    ----------
    shift : float
        Added to the diagonal.
    """

    name = "accepts_zero"

    def check_size(self, n):
        return None


def test_good_operator_passes():
    results = {r.check: r for r in check_operator(Shifted)}
    assert results.pop("check_matrix_free_memory").reason == \
        "a formed operator (op.matrix holds A)"
    assert all(r.status == "pass" for r in results.values())


class LowRankPlusTri(MatrixFreeOperator):
    """A = tridiag(−1, 3, −1) + u wᵀ, u_i = 1/(1 + i), w_j = u_j (1 + skew·j/n): entries, and
    an O(n) action."""

    has_entries = True

    def __init__(self, name, n, skew, params, bad=""):
        super().__init__(name, n, symmetric=skew == 0, spd=None, params=params)
        self.u = 1.0 / (1.0 + np.arange(n))
        self.w = self.u * (1.0 + skew * np.arange(n) / n)
        self.bad = bad

    def entries(self, rows, cols):
        i, j = np.asarray(rows)[:, None], np.asarray(cols)[None, :]
        tri = np.where(i == j, 3.0, np.where(np.abs(i - j) == 1, -1.0, 0.0))
        return tri + self.u[i] * self.w[j]

    def _tri(self, X):
        Y = 3.0 * X
        Y[1:] -= X[:-1]
        Y[:-1] -= X[1:]
        return Y

    def matmat(self, X):
        X = np.asarray(X, dtype=float)
        Y = self._tri(X) + np.multiply.outer(self.u, self.w @ X)
        return Y * (1.001 if self.bad == "action" else 1.0)

    def rmatmat(self, X):
        if self.bad == "rmatmat":
            return self.matmat(X)
        X = np.asarray(X, dtype=float)
        return self._tri(X) + np.multiply.outer(self.w, self.u @ X)


class MatrixFree(OperatorGenerator):
    """Tridiagonal plus rank one, never formed.

    Parameters
    ----------
    skew : float
        Added below the diagonal (0: symmetric).
    """

    name = "matrix_free"
    bad = ""

    def __init__(self, skew: float = 0.5):
        self.skew = skew

    def build(self, n, seed):
        return LowRankPlusTri(self.name, n, self.skew, self.get_params(), self.bad)


class WrongAction(MatrixFree):
    """matmat off by 0.1 %.

    Parameters
    ----------
    skew : float
        Added below the diagonal.
    """

    name = "wrong_action"
    bad = "action"


class WrongTranspose(MatrixFree):
    """rmatmat returns A X.

    Parameters
    ----------
    skew : float
        Added below the diagonal.
    """

    name = "wrong_transpose"
    bad = "rmatmat"


class FormsRows(MatrixFree):
    """Forms 1024 rows of A in build.

    Parameters
    ----------
    skew : float
        Added below the diagonal.
    """

    name = "forms_rows"

    def build(self, n, seed):
        op = super().build(n, seed)
        op.rows = op.entries(np.arange(min(n, 1024)), np.arange(n))  # 256 MiB at 32 768
        return op


def test_good_matrix_free_operator_passes():
    for skew in (0.5, 0.0):
        assert all(r.status == "pass" for r in check_operator(MatrixFree, skew=skew))


@pytest.mark.parametrize("cls, check, expected, got", [
    (WrongAction, "check_action", "op.matmat(X) = A·X to 1e-12 relative (A from entries)",
     "relative error 0.000"),
    (WrongTranspose, "check_action", "op.rmatmat(X) = Aᵀ·X", "relative error"),
    (FormsRows, "check_matrix_free_memory", "within 64 MiB (A itself: 8 GiB)", "peak 5"),
])
def test_bad_matrix_free_operator_fails_the_check_for_its_defect(cls, check, expected, got):
    with pytest.raises(ContractError) as info:
        check_operator(cls)
    failures = {f.check: f for f in info.value.failures}
    assert set(failures) == {check}
    assert expected in failures[check].expected and got in failures[check].got


@pytest.mark.parametrize("cls, check, expected, got", [
    (LiesSymmetric, "check_build", "symmetric=False (A != Aᵀ exactly)", "symmetric=True"),
    (LiesSPD, "check_build", "spd=False (Cholesky fails)", "spd=True"),
    (RandomBuild, "check_operator_same_seed", "the same matrix from the same seed",
     "max |difference|"),
    (Float32, "check_build", "op.matrix float64 of shape (16, 16)", "float32 (16, 16)"),
    (AcceptsZero, "check_size_validation", "check_size(0) to raise", "no error"),
])
def test_bad_operator_fails_the_check_for_its_defect(cls, check, expected, got):
    with pytest.raises(ContractError) as info:
        check_operator(cls)
    failures = {f.check: f for f in info.value.failures}
    assert set(failures) == {check}
    assert expected in failures[check].expected and got in failures[check].got


def test_operator_needing_parameters_is_skipped_with_a_hint(tmp_path):
    class NeedsPath(Shifted):
        """Needs a path.

        Parameters
        ----------
        shift : float
            Added to the diagonal.
        """

        name = "needs_path"

        def sizes(self):
            raise InvalidParameter("needs_path needs a 'path' parameter")

    results = {r.check: r for r in check_operator(NeedsPath)}
    assert results["check_build"].status == "skip"
    assert "InvalidParameter: needs_path needs a 'path' parameter" in results["check_build"].reason
    assert "check-plugin 'needs_path[key=value]'" in results["check_build"].reason


# --------------------------------------------------------------------------------------------
# run_checks: what `lubench check-plugin` prints and returns
# --------------------------------------------------------------------------------------------
def test_run_checks_by_method_operator_and_plugin_name(toy_registry):
    lines: list[str] = []
    failures = run_checks(toy_registry, ["toy_lu[mode=raise]", "toy_plugin"], echo=lines.append)
    assert lines[0] == ("method toy_lu[mode='raise'] (plugin toy_plugin — file "
                        f"{toy_registry.plugins['toy_plugin'].target})")
    assert [f.check for f in failures] == ["check_factorize_tiny", "check_runner_records"]
    assert failures[0].target == "method toy_lu[mode='raise']"
    assert "  FAIL  check_factorize_tiny: expected factorize() to succeed on the " \
           "diag_dominant operator (LU without pivoting exists there); got RuntimeError: " \
           "planted failure" in lines
    assert "  FAIL  check_runner_records: expected status 'ok'; got status 'failed', error " \
           "'RuntimeError: planted failure' on the diag_dominant operator" in lines
    headers = [line for line in lines if not line.startswith("  ")]
    assert [h.split(" (")[0] for h in headers[1:3]] == ["operator toy_tridiag", "method toy_lu"]
    # toy_lu[mode=raise] factorizes nothing: the 4 checks that need a factorization skip;
    # toy_tridiag is formed: check_matrix_free_memory skips
    assert lines[-1] == "25 passed, 2 failed, 5 skipped"


def test_run_checks_on_a_broken_plugin_and_typos(tmp_path):
    bad = tmp_path / "half.py"
    bad.write_text("import not_a_module_for_lubench_tests\n")
    reg = load_registry([str(bad)], entry_points=False)
    lines: list[str] = []
    failures = run_checks(reg, ["half"], echo=lines.append)
    assert [(f.target, f.check) for f in failures] == [("plugin half", "check_plugin_loads")]
    assert failures[0].got == ("broken: ModuleNotFoundError: No module named "
                               "'not_a_module_for_lubench_tests'")
    with pytest.raises(LubenchError, match="'halff' is no method, operator or plugin; did you "
                                           "mean 'half'"):
        run_checks(reg, ["halff"], echo=lines.append)


def test_run_checks_validates_parameters(toy_registry):
    with pytest.raises(LubenchError, match="'toy_lu' takes no parameter 'mod'; did you mean "
                                           "'mode'"):
        run_checks(toy_registry, ["toy_lu[mod=ok]"], echo=lambda s: None)
    with pytest.raises(LubenchError, match="expected one of 'ok', 'raise', 'refuse_nonsym', "
                                           "got 'fast'"):
        run_checks(toy_registry, ["toy_lu[mode=fast]"], echo=lambda s: None)


# --------------------------------------------------------------------------------------------
# The built-ins keep the contract they ask of others
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("plugin", [
    "operators", "classical", pytest.param("learned", marks=pytest.mark.slow)])
def test_builtin_plugins_pass_every_check(registry, plugin):
    lines: list[str] = []
    failures = run_checks(registry, [plugin], echo=lines.append)
    assert failures == [], "\n".join(lines)
    assert registry.plugins[plugin].status == "ok"
