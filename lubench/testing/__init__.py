"""Contract checks for plugin authors: run them in your own CI, or with ``lubench check-plugin``.

::

    from lubench.testing import check_method, check_operator

    def test_my_lu_keeps_the_contract():
        check_method(MyLU)                       # raises ContractError listing what failed
        check_method(MyLU, pivot_tol=0.0)        # keyword arguments are the class's parameters

    def test_my_operator_keeps_the_contract():
        check_operator(MyGenerator, eps=0.1)

Each rule is a small function ``check_<property>(cls, params)`` that raises
:class:`CheckFailed` (an ``AssertionError``, so pytest shows its message) saying what was
expected and what came, or :class:`CheckSkipped` when it does not apply (the residual of a
learned method). :func:`method_checks` / :func:`operator_checks` return them bound to a class,
one callable per check, for ``pytest.mark.parametrize``.

Methods are checked on three tiny operators built here (n = 16, NumPy and SciPy only), for
which LU without pivoting exists on the first two:

* ``diag_dominant``: nonsymmetric, strictly diagonally dominant by rows, a SciPy sparse CSR
  matrix;
* ``spd``: dense symmetric positive definite, A = Q diag(λ) Qᵀ with λ evenly spaced in [1, 10];
* ``needs_pivoting``: dense nonsymmetric, well conditioned, with a₁₁ = 0 — elimination without
  row exchanges breaks down at step 0, so a method may raise
  :class:`~lubench.api.FactorizationError` there (the runner records ``failed``) but must not
  return a wrong answer silently. Partial pivoting permutes its rows by a 3-cycle (P ≠ Pᵀ), so
  a factorization that applies P where Pᵀ belongs fails the exactness check.

An exact method (family ``classical``) must reach ‖A x̂ − b‖₂/‖b‖₂ ≤ 1e-10 and
‖A − PLU‖_F/‖A‖_F ≤ 1e-10 on every tiny operator it accepts: far above round-off
(≈ 1e-16·κ(A), κ ≤ 30 here) and far below what any approximation reaches by chance.

Modules: ``results`` (what a check reports), ``tiny`` (the tiny operators), ``common`` (checks of
every class), ``methods`` and ``operators`` (the checks of each kind), ``run`` (checks bound to
a class and run), ``plugin`` (``lubench check-plugin``). Import from ``lubench.testing``.
"""

from lubench.testing.common import check_init_stores_params, check_name, check_params_documented
from lubench.testing.methods import (
    CHECK_BUDGET,
    check_check_raises_unsupported,
    check_exact_residual,
    check_factorize_tiny,
    check_fit,
    check_n_params,
    check_pickle,
    check_runner_records,
    check_same_seed,
)
from lubench.testing.operators import (
    check_action,
    check_build,
    check_matrix_free_memory,
    check_operator_pickle,
    check_operator_same_seed,
    check_size_validation,
)
from lubench.testing.plugin import run_checks
from lubench.testing.results import CheckFailed, CheckResult, CheckSkipped, ContractError
from lubench.testing.run import (
    FIT_CHECKS,
    METHOD_CHECKS,
    OPERATOR_CHECKS,
    check_method,
    check_operator,
    method_checks,
    operator_checks,
)
from lubench.testing.tiny import TINY_KINDS, TinyOperator, tiny_operator

__all__ = [
    "CHECK_BUDGET", "CheckFailed", "CheckResult", "CheckSkipped", "ContractError",
    "TINY_KINDS", "TinyOperator", "check_method", "check_operator", "method_checks",
    "operator_checks", "run_checks", "tiny_operator", "METHOD_CHECKS", "FIT_CHECKS",
    "OPERATOR_CHECKS",
    # the checks themselves
    "check_name", "check_params_documented", "check_init_stores_params",
    "check_check_raises_unsupported", "check_factorize_tiny", "check_n_params",
    "check_exact_residual", "check_same_seed", "check_pickle", "check_runner_records",
    "check_fit", "check_build", "check_action", "check_operator_same_seed",
    "check_size_validation", "check_operator_pickle", "check_matrix_free_memory",
]
