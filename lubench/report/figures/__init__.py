"""The figures of a report, one function per figure, each returning a matplotlib Figure.

Every figure plots the per-configuration medians of :func:`lubench.report.summary.summarize`
(a cell that is not finite or not measured has no point; the tables show it). A method's
colour and marker come from its name (:mod:`lubench.report.palette`): the same in every
figure and every run. Configurations of one method share them (and are joined by a thin line
in a panel: ILU over its fill factors draws its accuracy/numbers curve); hollow markers are
errors estimated with probes or GMRES counts that did not converge. Axis labels say the norm
and whether a quantity is absolute or relative (:mod:`lubench.metrics.table`). Sizes follow
the report's :class:`~lubench.suite.report_spec.Preset`: a figure is drawn at the width it will be
printed at.

Panels: one per (operator, n) — and per run in a report of several runs — for the accuracy,
GMRES and time-to-solution figures; the Pareto front of each family (classical, compressed,
learned) is drawn in grey, one line style per family, so that "method X beats ILU at equal
numbers" is visible, or visibly false.
"""


from lubench.report.figures.accuracy import error_vs_params, error_vs_time
from lubench.report.figures.axes import fitted_slope, log_span, pareto_front
from lubench.report.figures.cg import cg_vs_tolerance
from lubench.report.figures.scaling import scaling
from lubench.report.figures.solvers import cg_time_to_solution, gmres_vs_params, time_to_solution
from lubench.report.figures.style import Style, make_style, rc
from lubench.report.figures.training import training

__all__ = ["Style", "make_style", "error_vs_params", "error_vs_time", "gmres_vs_params",
           "time_to_solution", "cg_vs_tolerance", "cg_time_to_solution", "scaling", "training",
           "pareto_front", "fitted_slope", "log_span", "rc", "FIGURES", "ROW_FIGURES"]

#: figure kind -> function of the summary (``training`` takes the rows and histories,
#: ``cg_vs_tolerance`` the rows: :data:`ROW_FIGURES`)
FIGURES = {"error_vs_params": error_vs_params, "error_vs_time": error_vs_time,
           "gmres_vs_params": gmres_vs_params, "time_to_solution": time_to_solution,
           "cg_time_to_solution": cg_time_to_solution, "scaling": scaling}
#: figure kind -> function of the result rows (each instance's curve, not a median)
ROW_FIGURES = {"cg_vs_tolerance": cg_vs_tolerance}
