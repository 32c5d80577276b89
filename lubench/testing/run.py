"""Checks bound to a class, run and collected: what ``check_method`` and ``check_operator``
do, and what ``pytest.mark.parametrize`` receives."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import Any

from lubench.api import (
    Method,
    OperatorGenerator,
    has_fit,
)
from lubench.errors import one_line
from lubench.testing.common import (
    check_init_stores_params,
    check_name,
    check_params_accepted,
    check_params_documented,
)
from lubench.testing.methods import (
    Fits,
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
    Built,
    check_action,
    check_build,
    check_matrix_free_memory,
    check_operator_pickle,
    check_operator_same_seed,
    check_size_validation,
)
from lubench.testing.results import CheckFailed, CheckResult, CheckSkipped, ContractError

METHOD_CHECKS: tuple[Callable[..., None], ...] = (
    check_name, check_params_documented, check_init_stores_params, check_params_accepted,
    check_check_raises_unsupported, check_factorize_tiny, check_n_params,
    check_exact_residual, check_same_seed, check_pickle, check_runner_records,
)
#: The checks of a method that trains across instances (:func:`lubench.api.has_fit`), added
#: to :data:`METHOD_CHECKS` for it.
FIT_CHECKS: tuple[Callable[..., None], ...] = (check_fit,)
OPERATOR_CHECKS: tuple[Callable[..., None], ...] = (
    check_name, check_params_documented, check_init_stores_params, check_params_accepted,
    check_size_validation, check_build, check_action, check_operator_same_seed,
    check_operator_pickle, check_matrix_free_memory,
)


def _bound(cls: type, params: dict, checks: Iterable[Callable[..., None]],
           cache: Any) -> list[Callable[[], None]]:
    out = []
    for check in checks:
        fn = functools.partial(check, cls, params, cache=cache)
        fn.__name__ = check.__name__  # type: ignore[attr-defined]
        fn.__doc__ = check.__doc__
        out.append(fn)
    return out


def method_checks(cls: type[Method], **params: Any) -> list[Callable[[], None]]:
    """Every method check bound to ``cls(**params)``, for ``pytest.mark.parametrize``::

        @pytest.mark.parametrize("check", method_checks(MyLU), ids=lambda c: c.__name__)
        def test_contract(check):
            check()
    """
    checks = METHOD_CHECKS + (FIT_CHECKS if has_fit(cls) else ())
    return _bound(cls, params, checks, Fits(cls, dict(params)))


def operator_checks(cls: type[OperatorGenerator], **params: Any) -> list[Callable[[], None]]:
    """Every operator generator check bound to ``cls(**params)`` (see :func:`method_checks`)."""
    return _bound(cls, params, OPERATOR_CHECKS, Built(cls, dict(params)))


def run_bound(target: str, checks: list[Callable[[], None]]) -> list[CheckResult]:
    results = []
    for check in checks:
        name = check.__name__  # type: ignore[attr-defined]
        try:
            check()
        except CheckFailed as exc:
            results.append(CheckResult(target, name, "fail", exc.expected, exc.got))
        except CheckSkipped as exc:
            results.append(CheckResult(target, name, "skip", reason=str(exc)))
        except Exception as exc:  # the check could not even run: that is a failure too
            results.append(CheckResult(target, name, "fail", "the check to run", one_line(exc)))
        else:
            results.append(CheckResult(target, name, "pass"))
    return results


def _target(cls: type) -> str:
    kind = "method" if issubclass(cls, Method) else "operator"
    return f"{kind} {getattr(cls, 'name', '') or cls.__name__}"


def _raise_failures(target: str, results: list[CheckResult]) -> list[CheckResult]:
    failures = [r for r in results if r.status == "fail"]
    if failures:
        raise ContractError(target, failures)
    return results


def check_method(cls: type[Method], **params: Any) -> list[CheckResult]:
    """Run every method check on ``cls(**params)``; raise :class:`ContractError` (an
    AssertionError) listing each failed check, else return the results (passed, skipped)."""
    if not (isinstance(cls, type) and issubclass(cls, Method)):
        raise TypeError(f"check_method() takes a lubench.api.Method subclass, got {cls!r}")
    target = _target(cls)
    return _raise_failures(target, run_bound(target, method_checks(cls, **params)))


def check_operator(cls: type[OperatorGenerator], **params: Any) -> list[CheckResult]:
    """Run every generator check on ``cls(**params)``; raise :class:`ContractError` listing
    each failed check, else return the results."""
    if not (isinstance(cls, type) and issubclass(cls, OperatorGenerator)):
        raise TypeError(f"check_operator() takes a lubench.api.OperatorGenerator subclass, "
                        f"got {cls!r}")
    target = _target(cls)
    return _raise_failures(target, run_bound(target, operator_checks(cls, **params)))
