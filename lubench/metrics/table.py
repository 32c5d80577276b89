"""The metric table: every metric a result row holds, once, with everything known about it.

One :class:`Metric` per metric, in the order of the result columns. Everything that lists
metrics reads this table: the record schema (:mod:`lubench.rundir.records`: the metric
columns and their types), grading (:data:`lubench.metrics.grading.GRADED`: what
:func:`~lubench.metrics.grading.grade` computes and checks for non-finite values), the
reports (:mod:`lubench.report.columns`: headers, units, better direction, axis labels,
legends) and the reference ``docs/reference/results.md`` (generated from it, tested to
match). Adding a metric is one row here and its computation: in ``grade`` for a ``graded``
metric, in the worker (:mod:`lubench.execution.worker`) for one it times or reads.

The derived metrics are sums per repeat computed by the report, never recorded:
``time_to_solution`` = ``setup_seconds + precond_seconds`` (factorize, then solve to GMRES
tolerance with the factorization as preconditioner), ``cg_time_to_solution`` = ``setup_seconds
+ cg_seconds`` and ``cg_time_with_training`` (the same plus the training across instances
amortized over the test instances).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Metric", "METRICS", "BY_KEY", "ROUNDOFF", "DTYPES"]

#: A metric's type in ``results.parquet``: a float, an integer count, a flag, a word.
DTYPES = ("float", "int", "bool", "text")
ROUNDOFF = 1e-13  # relative errors below this are round-off: they tie for the best value


@dataclass(frozen=True)
class Metric:
    """Everything known about one metric.

    Attributes
    ----------
    key : str
        The result column.
    dtype : str
        Its type (:data:`DTYPES`); an ``int`` is a count, printed without decimals.
    definition : str
        What it measures, exactly (which norm, which problem, which cap): the reference.
    graded : bool
        Computed by :func:`lubench.metrics.grading.grade` from the factorization's ``apply``
        and ``solve`` (else timed or read by the worker, or derived).
    norm : str
        The norm it is measured in and whether relative or absolute ("" for counts, times).
    better : str or None
        ``"lower"``, ``"higher"`` or None when neither is (a reference value, training
        steps): which value a table marks as the best.
    unit : str
        siunitx unit macro (``\\second``), shown in a header, never in a cell; "" for none.
    header, latex : str
        The column's header in Markdown/HTML, and in LaTeX (without the unit).
    meaning, latex_meaning : str
        One sentence for a table's legend, in plain text and in LaTeX.
    axis : str
        A figure's axis label: the norm, absolute or relative, the unit.
    converged : str or None
        The flag that says whether a count converged (``precond_converged``).
    floor : float
        Values at or below it tie for the best (round-off).
    derived_from : tuple of str
        A derived metric: the sum of these columns per repeat (computed by the report, not
        recorded).
    """

    key: str
    dtype: str
    definition: str
    graded: bool = False
    norm: str = ""
    better: str | None = "lower"
    unit: str = ""
    header: str = ""
    latex: str = ""
    meaning: str = ""
    latex_meaning: str = ""
    axis: str = ""
    converged: str | None = None
    floor: float = 0.0
    derived_from: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise ValueError(f"metric {self.key}: dtype {self.dtype!r} not in {DTYPES}")
        if self.better not in ("lower", "higher", None):
            raise ValueError(f"metric {self.key}: better {self.better!r}")

    @property
    def integer(self) -> bool:
        """A count (printed without decimals)."""
        return self.dtype == "int"

    @property
    def number(self) -> bool:
        """A number a table can show, a median can summarize (not a flag or a word)."""
        return self.dtype in ("float", "int")

    @property
    def recorded(self) -> bool:
        """A column of every result row (a derived metric is not)."""
        return not self.derived_from


_GMRES = "GMRES (restart 50, rtol 1e-8, at most 500 inner iterations)"
_CG = ("iterations of conjugate gradients (lubench.metrics.cg: from x₀ = 0, at most "
       "`cg_maxiter` = 10 000 iterations) on A x = b, b uniform on [0, 1) seeded,")

METRICS: list[Metric] = [
    Metric(
        "factor_error", "float", graded=True, norm="relative Frobenius", floor=ROUNDOFF,
        definition="‖A − PLU‖_F / ‖A‖_F; exact when n ≤ `exact_limit` (suite option), else "
        "estimated with a Gaussian probe block Ω (n×32, seeded): ‖(A − PLU)Ω‖_F / ‖AΩ‖_F; "
        "`factor_error_kind` says which",
        header="factor_error", latex=r"$\|A-\hat A\|_F/\|A\|_F$",
        meaning="relative Frobenius error of the factors ‖A − Â‖_F / ‖A‖_F, Â = PLU "
        "(estimated with 32 Gaussian probes above the suite's exact limit)",
        latex_meaning=r"relative Frobenius error of the factors, $\hat A = PLU$",
        axis=r"relative factor error $\|A-\hat A\|_F\,/\,\|A\|_F$"),
    Metric(
        "factor_error_kind", "text", graded=True, better=None,
        definition="how `factor_error` was computed: `exact`, or `probe32` (the probe "
        "estimate)",
        meaning="exact, or probe32 (estimated)"),
    Metric(
        "factor_error_2", "float", graded=True, norm="absolute spectral",
        definition="‖A − PLU‖₂ (spectral, absolute — the figure the \"Learn LU\" post "
        "reports). Exact when n ≤ `exact_limit`: full SVD up to n = 1024, above √λ_max(EᵀE) "
        "of the scaled Gram matrix (LAPACK `syevr`, top eigenvalue only). Above, estimated "
        "from products only where the factorization gives `apply_transpose`: block power "
        "iteration on EᵀE, E = A − PLU (a block of 8 seeded Gaussian vectors, at most 10 "
        "steps, stopped when two estimates agree to 1 %; each estimate is a lower bound that "
        "converges to ‖E‖₂); `factor_error_2_kind` says which. NaN (\"not measured\") "
        "otherwise, with the reason in `not_graded`",
        header="factor_error_2", latex=r"$\|A-\hat A\|_2$",
        meaning="absolute spectral error ‖A − Â‖₂ (estimated by power iteration above the "
        "exact limit)",
        latex_meaning=r"absolute spectral error (power-iteration estimate above the exact "
        r"limit)",
        axis=r"absolute factor error $\|A-\hat A\|_2$"),
    Metric(
        "factor_error_2_kind", "text", graded=True, better=None,
        definition="how `factor_error_2` was computed: `exact`, `power{k}` (k steps of the "
        "block power iteration), or empty (not measured)",
        meaning="exact, or power{k} (estimated in k power steps)"),
    Metric(
        "solve_residual", "float", graded=True, norm="relative 2-norm", floor=ROUNDOFF,
        definition="‖A x̂ − b‖₂ / ‖b‖₂ with b = A x*, x* ~ N(0, I) seeded, x̂ the "
        "factorization's solve",
        header="solve_residual", latex=r"$\|A\hat x-b\|/\|b\|$",
        meaning="relative residual ‖A x̂ − b‖₂ / ‖b‖₂ of one solve x̂ = Â⁻¹b, b = A x*, "
        "x* ~ N(0, I)",
        latex_meaning=r"relative residual of one solve $\hat x = \hat A^{-1}b$, "
        r"$b = Ax^*$, $x^* \sim N(0, I)$",
        axis=r"relative residual $\|A\hat x-b\|_2\,/\,\|b\|_2$"),
    Metric(
        "forward_error", "float", graded=True, norm="relative 2-norm", floor=ROUNDOFF,
        definition="‖x̂ − x*‖₂ / ‖x*‖₂ of that solve",
        header="forward_error", latex=r"$\|\hat x-x^*\|/\|x^*\|$",
        meaning="relative forward error ‖x̂ − x*‖₂ / ‖x*‖₂ of that solve",
        latex_meaning=r"relative forward error of that solve",
        axis=r"relative forward error $\|\hat x-x^*\|_2\,/\,\|x^*\|_2$"),
    Metric(
        "precond_iterations", "int", graded=True, converged="precond_converged",
        definition=f"inner iterations of {_GMRES} on A x = b, b = A z with z ~ N(0, I) "
        "seeded, with the factorization's `solve` as (left) preconditioner; 1 for an exact "
        "method. Stopped, not converged, when the case's grading reaches `grade_limit` "
        "(`not_graded` says so)",
        header="precond_iterations", latex="GMRES it.",
        meaning="GMRES iterations (restart 50, rtol 1e-8, at most 500) with the "
        "factorization as preconditioner; '>500' or '(no conv.)' when it stopped without "
        "converging",
        latex_meaning=r"GMRES iterations (restart 50, rtol $10^{-8}$) preconditioned by the "
        r"factorization ($>$500 or $^\dagger$: stopped without converging)",
        axis="GMRES iterations, preconditioned"),
    Metric(
        "precond_converged", "bool", graded=True, better=None,
        definition="whether that GMRES reached ‖A x − b‖₂ ≤ 1e-8·‖b‖₂ within 500 iterations "
        "(a count of 500 alone cannot say; a count below 500 that did not converge is a "
        "GMRES breakdown)",
        meaning="whether the preconditioned GMRES converged"),
    Metric(
        "precond_seconds", "float", graded=True, unit=r"\second",
        definition="wall time of that preconditioned GMRES solve (time to solution = "
        "`setup_seconds` + `precond_seconds`)",
        header="precond_seconds", latex="GMRES",
        meaning="wall time of the preconditioned GMRES solve, seconds",
        latex_meaning=r"wall time of the preconditioned GMRES solve",
        axis="preconditioned GMRES time [s]"),
    Metric(
        "gmres_iterations", "int", graded=True, better=None, converged="gmres_converged",
        definition="the same GMRES — same A, b, restart, tolerance and cap — without a "
        "preconditioner: what the preconditioner saved. It depends on the operator only: "
        "every row of an operator holds the same value. Computed once per operator: keyed on "
        "a digest of A's action (A·z, A·w for two Gaussian vectors) and the seed, memoized in "
        "the process and kept in the run directory's `cache/`, where the freshly forked "
        "worker of every later case of that operator reads it",
        header="gmres_iterations", latex="plain it.",
        meaning="iterations of plain (unpreconditioned) GMRES on the same system, restart "
        "and tolerance",
        latex_meaning=r"iterations of unpreconditioned GMRES on the same system",
        axis="GMRES iterations (rtol 1e-8)"),
    Metric(
        "gmres_converged", "bool", graded=True, better=None,
        definition="whether that plain GMRES converged within 500 iterations",
        meaning="whether plain GMRES converged"),
    Metric(
        "cg_iterations", "int", graded=True, converged="cg_converged",
        definition=f"{_CG} preconditioned by the factorization's `solve` (M⁻¹), until "
        "‖b − A x‖₂ ≤ 1e-8·‖b‖₂ on the true residual; the iterations run when it stopped at "
        "the cap or at `grade_limit` (`not_graded` says so). Not measured (–) on an "
        "operator that is not symmetric or is known not to be SPD, and where the "
        "preconditioner is not SPD: a symmetry and positivity probe of "
        "M⁻¹, or rᵀM⁻¹r ≤ 0 during the iteration, stops CG, and the row's `error` says why",
        header="cg_iterations", latex="CG it.",
        meaning="CG iterations to 1e-8 (relative residual) with the factorization as "
        "preconditioner; '(no conv.)' when it stopped at the cap",
        latex_meaning=r"CG iterations to $10^{-8}$ preconditioned by the factorization "
        r"($^\dagger$: stopped without converging)",
        axis="CG iterations to 1e-8, preconditioned"),
    Metric(
        "cg_converged", "bool", graded=True, better=None,
        definition="whether that CG reached 1e-8 within the cap",
        meaning="whether the preconditioned CG converged"),
    Metric(
        "cg_seconds", "float", graded=True, unit=r"\second",
        definition="wall time of that CG from its start to the iterate that reached 1e-8 "
        "(the whole run when it did not; time to solution with CG = `setup_seconds` + "
        "`cg_seconds`)",
        header="cg_seconds", latex="CG",
        meaning="wall time of the preconditioned CG to 1e-8, seconds",
        latex_meaning=r"wall time of the preconditioned CG to $10^{-8}$",
        axis="preconditioned CG time to 1e-8 [s]"),
    Metric(
        "cg_plain_iterations", "int", graded=True, better=None,
        converged="cg_plain_converged",
        definition="the same CG — same A, b, tolerances and cap — without a preconditioner; "
        "it depends on the operator only (computed once per operator, shared through the "
        "run directory's `cache/`, as plain GMRES)",
        header="cg_plain_iterations", latex="plain CG",
        meaning="iterations of plain (unpreconditioned) CG to 1e-8 on the same system",
        latex_meaning=r"iterations of unpreconditioned CG on the same system",
        axis="CG iterations to 1e-8 (plain)"),
    Metric(
        "cg_plain_converged", "bool", graded=True, better=None,
        definition="whether that plain CG reached 1e-8 within the cap",
        meaning="whether plain CG converged"),
    Metric(
        "cg_curve", "text", graded=True, better=None,
        definition="the preconditioned CG at every tolerance the suite lists (`cg_tolerances`"
        ", 1e-8 always among them), as JSON: how it ended (`status`: converged, maxiter, "
        "preconditioner_not_spd, operator_not_spd, nonfinite, deadline (stopped at "
        "`grade_limit`), stagnated (the true residual stalled above a tolerance: float64's "
        "floor for this operator and preconditioner); `message`) and per tolerance "
        "`tol`, `iterations`, `seconds` (from the start of CG) and the true relative "
        "`residual` (null where not reached)",
        meaning="preconditioned CG per tolerance (JSON)"),
    Metric(
        "cg_plain_curve", "text", graded=True, better=None,
        definition="the same for plain CG",
        meaning="plain CG per tolerance (JSON)"),
    Metric(
        "n_params", "int", graded=True,
        definition="numbers stored by the factorization (its `n_params`): dense PLU n², "
        "Cholesky n(n+1)/2, sparse LU and ILU nnz(L)+nnz(U), dense masked learned LU n², "
        "GFMM its trainable parameters",
        header="n_params", latex="numbers", meaning="numbers stored by the factorization",
        latex_meaning=r"numbers stored by the factorization",
        axis="stored numbers (absolute count)"),
    Metric(
        "setup_seconds", "float", unit=r"\second",
        definition="wall time of `factorize` (training included), device synchronized",
        header="setup_seconds", latex="setup",
        meaning="wall time of the factorization, training included, seconds",
        latex_meaning=r"wall time of the factorization, training included",
        axis="setup time [s] (training included)"),
    Metric(
        "grade_seconds", "float", better=None, unit=r"\second",
        definition="wall time of grading the case — every graded metric: the products with "
        "A (the operator's action), the solves, both GMRES runs and, on a symmetric "
        "operator, both CG runs — beside `setup_seconds`: what measuring the factorization "
        "cost",
        header="grade_seconds", latex="grading",
        meaning="wall time of grading the case (products with A, solves, GMRES, CG), seconds",
        latex_meaning=r"wall time of grading the case",
        axis="grading time [s]"),
    Metric(
        "train_seconds", "float", unit=r"\second",
        definition="wall time of the method's `fit` across its family's training instances "
        "(the fit's row, and every test row of that fit); 0 for a method that does not "
        "train across instances",
        header="train_seconds", latex="train",
        meaning="wall time of training across the family's training instances, seconds",
        latex_meaning=r"wall time of training across the training instances",
        axis="training time [s] (across instances)"),
    Metric(
        "train_share_seconds", "float", unit=r"\second",
        definition="`train_seconds` divided by the number of the family's test instances: "
        "the training amortized over the operators it is used on",
        header="train_share_seconds", latex="train/inst.",
        meaning="training time per test instance (amortized), seconds",
        latex_meaning=r"training time per test instance",
        axis="training time per test instance [s]"),
    Metric(
        "solve_seconds", "float", graded=True, unit=r"\second",
        definition="median wall time of one `solve` of one right-hand side, after a warm-up "
        "call",
        header="solve_seconds", latex="solve",
        meaning="median wall time of one solve with one right-hand side, seconds",
        latex_meaning=r"median wall time of one solve with one right-hand side",
        axis="solve time [s] (one right-hand side)"),
    Metric(
        "not_graded", "text", graded=True, better=None,
        definition="the graded metrics this case did not compute, or not to the end, each "
        "with why: the factorization gives no `apply_transpose` (`factor_error_2` above "
        "`exact_limit`); the predicted cost of plain GMRES (500 products with A) or of the "
        "spectral estimate exceeds what is left of the suite's `grade_limit` (grading time "
        "per case, default 10 min); the preconditioned GMRES reached that limit before it "
        "converged — so a size where the operator's action is too costly says so instead of "
        "leaving a silent gap; empty when every metric was computed",
        meaning="the metrics not computed for this case, and why"),
    Metric(
        "time_to_solution", "float", unit=r"\second",
        derived_from=("setup_seconds", "precond_seconds"),
        definition="`setup_seconds` + `precond_seconds` per repeat: factorize, then solve to "
        "GMRES tolerance with the factorization as preconditioner (derived by the report, "
        "not a result column)",
        header="time_to_solution", latex="total",
        meaning="time to solution: setup_seconds + precond_seconds, seconds",
        latex_meaning=r"time to solution, setup plus preconditioned GMRES",
        axis="time to solution [s] (setup + preconditioned GMRES)"),
    Metric(
        "cg_time_to_solution", "float", unit=r"\second",
        derived_from=("setup_seconds", "cg_seconds"),
        definition="`setup_seconds` + `cg_seconds` per repeat: factorize, then solve to 1e-8 "
        "with CG preconditioned by the factorization (derived by the report)",
        header="cg_time_to_solution", latex="CG total",
        meaning="time to solution with CG: setup_seconds + cg_seconds, seconds",
        latex_meaning=r"time to solution, setup plus preconditioned CG",
        axis="time to solution [s] (setup + CG)"),
    Metric(
        "cg_time_with_training", "float", unit=r"\second",
        derived_from=("setup_seconds", "cg_seconds", "train_share_seconds"),
        definition="`cg_time_to_solution` + `train_share_seconds`: the same with the "
        "training across instances amortized over the family's test instances (derived by "
        "the report)",
        header="cg_time_with_training", latex="CG total + train",
        meaning="time to solution with CG, training amortized over the test instances "
        "included, seconds",
        latex_meaning=r"time to solution with CG, amortized training included",
        axis="time to solution [s] (training/instance + setup + CG)"),
    Metric(
        "peak_memory_bytes", "int", unit=r"\byte",
        definition="peak resident memory the case added to its worker: peak RSS minus the "
        "RSS the forked worker started with (its parent's pages), plus peak device memory "
        "on a GPU; the case's `memory_limit` applies to it and to its whole process tree",
        header="peak_memory_bytes", latex="memory",
        meaning="peak resident memory the case added to its worker, bytes",
        latex_meaning=r"peak resident memory added by the case",
        axis="peak memory [bytes]"),
    Metric(
        "iterations", "int", better=None,
        definition="training steps of a learned method (its `info[\"iterations\"]`)",
        header="iterations", latex="steps", meaning="training steps of a learned method",
        latex_meaning=r"training steps", axis="training steps"),
    Metric(
        "final_loss", "float", better=None,
        definition="the final training loss of a learned method, as minimised (its "
        "`info[\"final_loss\"]`)",
        header="final_loss", latex="loss", meaning="final training loss of a learned method",
        latex_meaning=r"final training loss", axis="training loss (as minimised)"),
]

#: Every metric by key.
BY_KEY: dict[str, Metric] = {m.key: m for m in METRICS}
