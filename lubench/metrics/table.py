"""The metric columns a report knows: one table of facts, used by every table and figure.

For each result column: its headers (Markdown/HTML, LaTeX), its unit (siunitx macro, shown in
the header, never in the cells), the direction in which it is better (``"lower"``; ``None``
when neither is: training steps, final loss), whether it is a count, the axis label of a
figure (which norm, absolute or relative), and its definition (one sentence, as the tables'
legend and the LaTeX note give it).

``time_to_solution`` is the one derived column: ``setup_seconds + precond_seconds`` per
repeat (the time to factorize and then solve to GMRES tolerance with the factorization as
preconditioner), NaN when either is missing.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Metric", "METRICS", "BY_KEY", "DEFAULT_COLUMNS", "DERIVED", "metric"]


@dataclass(frozen=True)
class Metric:
    """Facts about one metric column (see the module docstring)."""

    key: str
    header: str           # Markdown / HTML header
    latex: str            # LaTeX header, without the unit
    meaning: str          # plain-text definition (HTML legend, Markdown)
    latex_meaning: str    # the same in LaTeX (the note under a table)
    axis: str             # figure axis label: the norm and absolute vs relative, the unit
    better: str | None = "lower"
    unit: str = ""        # siunitx unit macro, e.g. r"\second"; "" for a pure number
    integer: bool = False
    converged: str | None = None   # the boolean column that says whether a count converged
    floor: float = 0.0    # values at or below this tie for "best" (round-off level)


ROUNDOFF = 1e-13  # relative errors below this are round-off: they tie for the best value

METRICS: list[Metric] = [
    Metric("factor_error", "factor_error", r"$\|A-\hat A\|_F/\|A\|_F$",
           "relative Frobenius error of the factors ‖A − Â‖_F / ‖A‖_F, Â = PLU (estimated with "
           "32 Gaussian probes above the suite's exact limit)",
           r"relative Frobenius error of the factors, $\hat A = PLU$",
           r"relative factor error $\|A-\hat A\|_F\,/\,\|A\|_F$", floor=ROUNDOFF),
    Metric("factor_error_2", "factor_error_2", r"$\|A-\hat A\|_2$",
           "absolute spectral error ‖A − Â‖₂ (exact sizes only)",
           r"absolute spectral error (exact sizes only)",
           r"absolute factor error $\|A-\hat A\|_2$"),
    Metric("solve_residual", "solve_residual", r"$\|A\hat x-b\|/\|b\|$",
           "relative residual ‖A x̂ − b‖₂ / ‖b‖₂ of one solve x̂ = Â⁻¹b, b = A x*, x* ~ N(0, I)",
           r"relative residual of one solve $\hat x = \hat A^{-1}b$, $b = Ax^*$, "
           r"$x^* \sim N(0, I)$",
           r"relative residual $\|A\hat x-b\|_2\,/\,\|b\|_2$", floor=ROUNDOFF),
    Metric("forward_error", "forward_error", r"$\|\hat x-x^*\|/\|x^*\|$",
           "relative forward error ‖x̂ − x*‖₂ / ‖x*‖₂ of that solve",
           r"relative forward error of that solve",
           r"relative forward error $\|\hat x-x^*\|_2\,/\,\|x^*\|_2$", floor=ROUNDOFF),
    Metric("precond_iterations", "precond_iterations", "GMRES it.",
           "GMRES iterations (restart 50, rtol 1e-8, at most 500) with the factorization as "
           "preconditioner; '>500' or '(no conv.)' when it stopped without converging",
           r"GMRES iterations (restart 50, rtol $10^{-8}$) preconditioned by the "
           r"factorization ($>$500 or $^\dagger$: stopped without converging)",
           "GMRES iterations, preconditioned", integer=True,
           converged="precond_converged"),
    Metric("gmres_iterations", "gmres_iterations", "plain it.",
           "iterations of plain (unpreconditioned) GMRES on the same system, restart and "
           "tolerance",
           r"iterations of unpreconditioned GMRES on the same system",
           "GMRES iterations (rtol 1e-8)", better=None, integer=True,
           converged="gmres_converged"),  # the same in every row of an operator: a reference
    Metric("n_params", "n_params", "numbers", "numbers stored by the factorization",
           r"numbers stored by the factorization",
           "stored numbers (absolute count)", integer=True),
    Metric("setup_seconds", "setup_seconds", "setup",
           "wall time of the factorization, training included, seconds",
           r"wall time of the factorization, training included",
           "setup time [s] (training included)", unit=r"\second"),
    Metric("solve_seconds", "solve_seconds", "solve",
           "median wall time of one solve with one right-hand side, seconds",
           r"median wall time of one solve with one right-hand side",
           "solve time [s] (one right-hand side)", unit=r"\second"),
    Metric("precond_seconds", "precond_seconds", "GMRES",
           "wall time of the preconditioned GMRES solve, seconds",
           r"wall time of the preconditioned GMRES solve",
           "preconditioned GMRES time [s]", unit=r"\second"),
    Metric("time_to_solution", "time_to_solution", "total",
           "time to solution: setup_seconds + precond_seconds, seconds",
           r"time to solution, setup plus preconditioned GMRES",
           "time to solution [s] (setup + preconditioned GMRES)", unit=r"\second"),
    Metric("peak_memory_bytes", "peak_memory_bytes", "memory",
           "peak resident memory the case added to its worker, bytes",
           r"peak resident memory added by the case",
           "peak memory [bytes]", unit=r"\byte", integer=True),
    Metric("iterations", "iterations", "steps", "training steps of a learned method",
           r"training steps", "training steps", better=None, integer=True),
    Metric("final_loss", "final_loss", "loss", "final training loss of a learned method",
           r"final training loss", "training loss (as minimised)", better=None),
]
BY_KEY: dict[str, Metric] = {m.key: m for m in METRICS}

#: Derived columns: key -> the result columns summed per repeat.
DERIVED: dict[str, tuple[str, ...]] = {"time_to_solution": ("setup_seconds", "precond_seconds")}

#: The columns of a table when none are asked for (those absent from every row are dropped).
DEFAULT_COLUMNS: list[str] = [
    "factor_error", "factor_error_2", "solve_residual", "forward_error", "precond_iterations",
    "gmres_iterations", "n_params", "setup_seconds", "solve_seconds", "precond_seconds",
]


def metric(key: str) -> Metric:
    """The facts of ``key`` (KeyError when the report does not know it)."""
    return BY_KEY[key]
