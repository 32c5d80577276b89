"""The report specification and what follows from it: the parser (command line and a suite's
``report:`` section), the non-finite cells, colours by name, the figures' content (Pareto
fronts per family, plain GMRES, time to solution), several runs in one report, any frame in
any table format, and report.html's sorting and filtering in a real headless browser.

The run directory comes from tests/test_report.py (real SciPy/PyTorch factorizations)."""

from __future__ import annotations

import math
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lubench.api import LubenchError

sys.path.insert(0, str(Path(__file__).parent))
from test_report import make_records, write_run  # noqa: E402


@pytest.fixture(scope="module")
def records() -> list[dict]:
    return make_records()


@pytest.fixture(scope="module")
def run_dir(records, tmp_path_factory) -> Path:
    return write_run(tmp_path_factory.mktemp("run") / "mini", records)


def spec(**kw):
    from lubench.suite.report_spec import parse_spec

    return parse_spec(kw, "test")


# --------------------------------------------------------------------------------------------
# The specification
# --------------------------------------------------------------------------------------------
def test_parse_spec_reads_lists_and_comma_strings_alike():
    from lubench.suite.report_spec import parse_spec

    a = parse_spec({"columns": "factor_error, n_params", "methods": ["plu", "gfmm_lu[P=32]"],
                    "sizes": "256,1024", "formats": "PDF,latex", "preset": "paper-2col",
                    "group": "blocks", "figures": ["gmres_vs_params"]})
    assert a.columns == ("factor_error", "n_params")
    assert a.methods == ("plu", "gfmm_lu[P=32]") and a.sizes == (256, 1024)
    assert a.figure_formats == ("pdf",) and a.table_formats == ("tex",)
    assert a.size.width < 3.6 and a.group == "blocks" and a.figures == ("gmres_vs_params",)
    assert parse_spec({"figures": "none"}).figures == ()
    default = parse_spec(None)
    assert default.figure_formats == ("png", "pdf") and "svg" not in default.formats


@pytest.mark.parametrize("mapping, message", [
    ({"colums": "x"}, "s.yaml: report: unknown key 'colums'; did you mean 'columns'?"),
    ({"columns": "factor_eror"}, "s.yaml: report.columns: unknown column 'factor_eror'"),
    ({"formats": "gif"}, "s.yaml: report.formats: unknown format 'gif'"),
    ({"preset": "poster"}, "s.yaml: report.preset: unknown preset 'poster'"),
    ({"sizes": "large"}, "s.yaml: report.sizes: expected integers"),
    ({"panel_sizes": "large"}, "s.yaml: report.panel_sizes: expected integers or 'largest'"),
    ({"panel_sizes": 0}, "s.yaml: report.panel_sizes: expected integers or 'largest' "
                         "(sizes n ≥ 1), got 0"),
    ({"panel_sizes": [16, True]}, "s.yaml: report.panel_sizes: expected integers"),
    ({"panel_sizes": ["largest", 4]}, "s.yaml: report.panel_sizes: expected integers"),
    ({"panel_sizes": 1.5}, "s.yaml: report.panel_sizes: expected a list"),
    ({"sizes": [-3]}, "s.yaml: report.sizes: expected integers (sizes n ≥ 1), got [-3]"),
    ({"group": "method"}, "s.yaml: report.group: unknown grouping 'method'"),
    ({"methods": {"plu": 1}}, "s.yaml: report.methods: expected a list"),
])
def test_parse_spec_names_the_file_and_the_key(mapping, message):
    from lubench.suite.report_spec import parse_spec

    with pytest.raises(LubenchError) as info:
        parse_spec(mapping, "s.yaml: report")
    assert str(info.value).startswith(message) and "\n" not in str(info.value)


def test_a_key_the_run_copy_holds_badly_can_be_replaced_by_its_option(tmp_path):
    """A run made when a report value was accepted (panel_sizes: 0 by an older lubench) still
    renders: the option replaces the key, which is then not read; without it the error names
    the file, the key and the way out."""
    from lubench.report.render import resolve_spec

    (tmp_path / "suite.yaml").write_text("name: t\nreport: {panel_sizes: 0, sizes: 16}\n")
    spec = resolve_spec([tmp_path], {"panel_sizes": "largest", "sizes": None})
    assert spec.panel_sizes == "largest" and spec.sizes == (16,)
    with pytest.raises(LubenchError) as info:
        resolve_spec([tmp_path], {"panel_sizes": None})
    assert str(info.value).startswith(f"{tmp_path / 'suite.yaml'}: report.panel_sizes: ")
    assert "--spec FILE" in str(info.value)


def test_an_option_is_named_as_the_command_line_spells_it():
    from lubench.suite.report_spec import parse_spec

    with pytest.raises(LubenchError, match="^--panel-sizes: expected integers"):
        parse_spec({"panel_sizes": "x"}, "--")


def test_command_line_options_replace_the_suite_keys(run_dir):
    from lubench.report.render import resolve_spec

    (run_dir / "suite.yaml").write_text(
        "name: mini\nreport:\n  columns: [factor_error, n_params]\n  preset: slides\n")
    try:
        s = resolve_spec([run_dir], {"columns": "setup_seconds", "methods": None})
        assert s.columns == ("setup_seconds",) and s.preset == "slides"
        (run_dir / "suite.yaml").write_text("name: mini\nreport: {columns: [nope]}\n")
        with pytest.raises(LubenchError, match=r"suite.yaml: report.columns: unknown column"):
            resolve_spec([run_dir], {})
    finally:
        (run_dir / "suite.yaml").write_text("name: mini\n")


SUITE = """\
name: paper
operators: [{name: laplacian_1d, sizes: [16]}]
methods: [plu, cholesky]
report:
  columns: [factor_error, n_params]
  methods: [cholesky, plu]
  formats: [tex, md]
"""


def test_a_suite_report_section_is_validated_and_drives_the_run_report(tmp_path):
    """`lubench run` of a suite with a report: section writes what it says (subprocess)."""
    suite = tmp_path / "paper.yaml"
    suite.write_text(SUITE)
    proc = subprocess.run([sys.executable, "-m", "lubench.cli", "run", str(suite), "-o",
                           str(tmp_path / "run"), "--executor", "inline", "--no-progress"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    report = tmp_path / "run" / "report"
    assert sorted(p.name for p in report.iterdir()) == ["report.html", "results.md",
                                                        "results.tex"]
    md = (report / "results.md").read_text()
    header = md.splitlines()[0]
    assert header == "| operator | n | method | factor_error | n_params | status |"
    assert md.index("| cholesky |") < md.index("| plu |")  # the spec's order
    bad = tmp_path / "bad.yaml"
    bad.write_text(SUITE.replace("n_params", "n_parms"))
    proc = subprocess.run([sys.executable, "-m", "lubench.cli", "run", str(bad), "--dry-run"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert f"{bad}: report.columns: unknown column 'n_parms'; did you mean 'n_params'?" \
        in proc.stderr and "Traceback" not in proc.stderr


def test_selection_orders_and_filters_and_warns(run_dir):
    from lubench.report.summary import select

    df, unmatched = select(pd.read_parquet(run_dir / "results.parquet"),
                           spec(methods="ilu,plu,nope", operators="convdiff_*", sizes="32,99"))
    assert list(dict.fromkeys(df["method"])) == ["ilu", "plu"]
    assert set(df["operator"]) == {"convdiff_1d"} and set(df["n"]) == {32}
    assert unmatched == ["methods: 'nope'", "sizes: 99"]
    # -k syntax: parameters and n, whether or not the label shows them
    df, unmatched = select(pd.read_parquet(run_dir / "results.parquet"),
                           spec(methods="ilu[fill_factor=2],plu[n=32]",
                                operators="laplacian_1d[n=32]"))
    assert set(df["method_label"]) == {"ilu[fill_factor=2]", "plu"} and set(df["n"]) == {32}
    assert not unmatched
    with pytest.raises(LubenchError, match="keeps no result row"):
        select(pd.read_parquet(run_dir / "results.parquet"), spec(methods="nope"))


# --------------------------------------------------------------------------------------------
# Non-finite and not measured
# --------------------------------------------------------------------------------------------
def _rows(values: list[dict]) -> pd.DataFrame:
    base = {"operator": "op", "operator_params": "{}", "n": 8, "method": "m",
            "method_params": "{}", "family": "learned", "status": "ok", "error": "",
            "case_id": "c", "suite": "s"}
    return pd.DataFrame([{**base, "repeat": i, **v} for i, v in enumerate(values)])


def test_not_finite_is_nan_or_infinity_and_not_measured_is_a_dash():
    from lubench.report.latex import latex_tables
    from lubench.report.markdown import summary_markdown

    note = "not finite (NaN): factor_error, precond_iterations"
    df = pd.concat([
        _rows([{"factor_error": float("nan"), "precond_iterations": float("nan"),
                "precond_converged": False, "solve_residual": 1e-3, "error": note}]),
        _rows([{"method": "inf_method", "case_id": "d", "factor_error": float("inf"),
                "solve_residual": 2e-3}]),
        # one repeat of three is not finite: the median is NaN, not the median of the others
        _rows([{"method": "mixed", "case_id": "e", "factor_error": v, "solve_residual": 1e-3,
                "error": note if math.isnan(v) else ""} for v in (1e-2, float("nan"), 3e-2)]),
    ], ignore_index=True)
    header, *rows = [[c.strip() for c in ln.strip("|").split(" | ")]
                     for ln in summary_markdown(df).splitlines() if ln.startswith("| ")]
    cells = {r[2]: dict(zip(header, r)) for r in rows}
    assert cells["m"]["factor_error"] == "NaN" and cells["m"]["precond_iterations"] == "NaN"
    assert cells["inf_method"]["factor_error"] == "∞"
    assert cells["inf_method"]["precond_iterations"] == "–"  # not measured
    assert cells["mixed"]["factor_error"] == "NaN"
    assert cells["m"]["status"].startswith("ok (not finite (NaN): factor_error")
    tex = latex_tables(df, spec(columns="factor_error,precond_iterations,solve_residual"))
    assert "{NaN}" in tex and r"{$\infty$}" in tex and "{--}" in tex


# --------------------------------------------------------------------------------------------
# Colours and figures
# --------------------------------------------------------------------------------------------
def test_a_method_has_the_same_colour_and_marker_in_every_run_and_figure(run_dir, records):
    from lubench.report.figures.style import make_style
    from lubench.report.palette import KNOWN, method_color, method_marker
    from lubench.report.summary import summarize

    full = summarize(pd.read_parquet(run_dir / "results.parquet"))
    # another run: other methods, another order
    other = full[full["method"].isin(["masked_gd", "ilu"])].iloc[::-1]
    a, b = make_style(full), make_style(other)
    for label in set(other["method_label"]):
        assert a.color(label) == b.color(label) and a.marker(label) == b.marker(label)
    assert len({v for v in KNOWN.values()}) == len(KNOWN)  # built-ins: distinct pairs
    # distinct colours among the methods one suite compares: the factorizations, and the
    # preconditioner baselines with the learned preconditioner they meet (neural_ic)
    lu = ["plu", "cholesky", "sparse_lu", "ilu", "gfmm_compressed", "gfmm_lu",
          "dense_masked_lu"]
    pre = ["jacobi", "ic0", "ict", "ilu0", "amg", "neural_ic"]
    for group in (lu, pre):
        assert len({method_color(m) for m in group}) == len(group), group
    assert set(lu + pre) - {"neural_ic"} == set(KNOWN)
    # a plugin's name: a function of the name (SHA-256), the same in a fresh interpreter
    code = ("from lubench.report.palette import method_color, method_marker;"
            "print(method_color('my_plugin_lu'), method_marker('my_plugin_lu'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={"PYTHONHASHSEED": "123", "PATH": "/usr/bin"}, check=True).stdout
    assert out.split() == [method_color("my_plugin_lu"), method_marker("my_plugin_lu")]


def test_error_vs_params_draws_one_pareto_front_per_family(run_dir):
    import matplotlib.pyplot as plt

    from lubench.report.figures.accuracy import error_vs_params
    from lubench.report.figures.axes import pareto_front
    from lubench.report.figures.style import make_style
    from lubench.report.summary import summarize

    summary = summarize(pd.read_parquet(run_dir / "results.parquet"))
    fig = error_vs_params(summary, make_style(summary))
    try:
        ax = next(a for a in fig.axes if a.get_title() == "laplacian_1d, n = 64")
        fronts = [ln for ln in ax.get_lines() if ln.get_color() == "0.35"]
        d = summary[(summary["operator_label"] == "laplacian_1d") & (summary["n"] == 64)]
        cls = d[d["family"] == "classical"]
        # values at round-off level (<= 1e-13) tie: none dominates another
        idx = pareto_front(cls["n_params"].to_numpy(float),
                           np.maximum(cls["factor_error"].to_numpy(float), 1e-13))
        assert len(idx) >= 2  # ILU's fill factors and the exact methods
        # the classical front is the staircase through exactly those points
        xs = sorted(cls["n_params"].to_numpy(float)[idx])
        assert any(sorted(set(np.asarray(ln.get_xdata(), float))) == xs for ln in fronts)
        legend = [t.get_text() for t in fig.legends[0].get_texts()]
        assert "Pareto front: classical" in legend and "ilu" in legend
    finally:
        plt.close(fig)


def test_panel_sizes_keep_the_panels_of_some_sizes_and_every_size_elsewhere(run_dir):
    """panel_sizes: largest draws one accuracy panel per operator, at its largest n; the
    scaling figure still shows every size."""
    import matplotlib.pyplot as plt

    from lubench.report.figures.accuracy import error_vs_params
    from lubench.report.figures.scaling import scaling
    from lubench.report.figures.style import make_style
    from lubench.report.render import panel_misses, panel_summary
    from lubench.report.summary import summarize
    from lubench.suite.report_spec import parse_spec

    summary = summarize(pd.read_parquet(run_dir / "results.parquet"))
    largest = summary.groupby("operator_label")["n"].max()
    kept = panel_summary(summary, parse_spec({"panel_sizes": "largest"}))
    assert dict(kept.groupby("operator_label")["n"].unique().map(list)) == \
        {op: [n] for op, n in largest.items()}
    assert panel_summary(summary, parse_spec({})) is summary
    one = int(summary["n"].min())
    assert set(panel_summary(summary, parse_spec({"panel_sizes": [one]}))["n"]) == {one}
    assert panel_misses(summary, parse_spec({"panel_sizes": [one, 10**9]})) == [10**9]
    assert panel_misses(summary, parse_spec({"panel_sizes": "largest"})) == []
    style = make_style(summary)
    figs = [error_vs_params(kept, style), scaling(summary, style)]
    try:
        titles = [a.get_title() for a in figs[0].axes if a.get_title()]
        assert titles and set(titles) <= {f"{op}, n = {n}" for op, n in largest.items()}
        assert len({t.split(",")[0] for t in titles}) == len(titles)  # one per operator
        texts = [t.get_text() for a in figs[1].axes for t in a.texts]
        assert "O(n log²n)" in texts
        assert any("peak_memory_bytes" in a.get_title() for a in figs[1].axes)
    finally:
        for fig in figs:
            plt.close(fig)


def test_gmres_figure_draws_plain_gmres_and_time_figure_sums_setup_and_gmres(run_dir):
    import matplotlib.pyplot as plt

    from lubench.report.figures.solvers import gmres_vs_params, time_to_solution
    from lubench.report.figures.style import make_style
    from lubench.report.summary import summarize

    results = pd.read_parquet(run_dir / "results.parquet")
    summary = summarize(results)
    style = make_style(summary)
    fig = gmres_vs_params(summary, style)
    try:
        ax = next(a for a in fig.axes if a.get_title() == "laplacian_1d, n = 64")
        plain = results[(results["operator"] == "laplacian_1d") & (results["n"] == 64)
                        & (results["status"] == "ok")]["gmres_iterations"]
        assert plain.nunique() == 1
        levels = [ln.get_ydata()[0] for ln in ax.get_lines() if ln.get_linestyle() == "--"]
        assert float(plain.iloc[0]) in levels
        assert any(t.get_text() == f"plain GMRES: {int(plain.iloc[0])}" for t in ax.texts)
    finally:
        plt.close(fig)
    fig = time_to_solution(summary, style)
    try:
        ax = next(a for a in fig.axes if a.get_title() == "convdiff_1d, n = 32")
        row = summary[(summary["operator_label"] == "convdiff_1d") & (summary["n"] == 32)
                      & (summary["method_label"] == "plu")].iloc[0]
        bars = [ln.get_xdata() for ln in ax.get_lines() if len(ln.get_xdata()) == 2]
        ok = results[(results["operator"] == "convdiff_1d") & (results["n"] == 32)
                     & (results["method"] == "plu")]
        total = float(np.median(ok["setup_seconds"] + ok["precond_seconds"]))
        assert row["time_to_solution"] == pytest.approx(total)
        assert any(b[1] == pytest.approx(total) for b in bars)
    finally:
        plt.close(fig)


def test_an_older_run_without_the_new_columns_still_renders(records, tmp_path):
    from lubench.report import render_report

    old = [{k: v for k, v in r.items() if k not in ("gmres_iterations", "gmres_converged",
                                                    "precond_seconds")} for r in records]
    out = render_report(write_run(tmp_path / "old", old), echo=lambda _l: None,
                        spec=spec(figures="gmres_vs_params,time_to_solution", formats="pdf,md"))
    md = (out / "results.md").read_text()
    assert "gmres_iterations" not in md.splitlines()[0]  # absent columns are not shown
    for name in ("gmres_vs_params", "time_to_solution"):
        assert (out / f"{name}.pdf").read_bytes().startswith(b"%PDF")
    # the figure says what is missing (SVG: its text is text)
    svg = render_report(write_run(tmp_path / "old2", old), tmp_path / "o2", echo=lambda _l: None,
                        spec=spec(figures="time_to_solution", formats="svg"))
    assert "precond_seconds not recorded" in (svg / "time_to_solution.svg").read_text()


# --------------------------------------------------------------------------------------------
# Several runs, any frame, the browser
# --------------------------------------------------------------------------------------------
def test_two_runs_in_one_report(records, tmp_path):
    from lubench.report import render_report

    a = write_run(tmp_path / "main" / "run", records)
    b = write_run(tmp_path / "branch" / "run", [r for r in records if r["method"] != "cholesky"])
    out = render_report([a, b], tmp_path / "both", echo=lambda _l: None,
                        spec=spec(formats="md,tex,html,svg", figures="error_vs_params"))
    md = (out / "results.md").read_text()
    header = md.splitlines()[0]
    assert header.startswith("| operator | n | method | run |")
    runs = {ln.split(" | ")[3] for ln in md.splitlines()[2:] if ln.startswith("| ")}
    assert runs == {"main/run", "branch/run"}
    # plu at laplacian_1d n=16: a row per run, next to each other
    plu = [ln for ln in md.splitlines() if ln.startswith("| laplacian_1d | 16 | plu |")]
    assert [ln.split(" | ")[3] for ln in plu] == ["main/run", "branch/run"]
    assert r"\texttt{main/run}" in (out / "results.tex").read_text()
    svg = (out / "error_vs_params.svg").read_text()
    assert "(main/run)" in svg and "(branch/run)" in svg  # a panel per run
    page = (out / "report.html").read_text()
    assert 'data-run="branch/run"' in page and "Environment — main/run" in page


@pytest.mark.parametrize("fmt, marker", [("md", "| a | b |"), ("tex", r"\toprule"),
                                         ("html", "<th>a</th>")])
def test_frame_text_writes_any_frame(fmt, marker):
    from lubench.report.frame_text import frame_text

    df = pd.DataFrame({"a": ["x_1", "y"], "b": [1.23456e-5, float("inf")]})
    text = frame_text(df, fmt)
    assert marker in text and ("1.23e-5" in text)
    if fmt == "tex":
        assert r"x\_1" in text and r"$\infty$" in text
    with pytest.raises(LubenchError):
        frame_text(df, "xls")


BROWSER = shutil.which("chromium-headless-shell") or shutil.which("chromium") or \
    shutil.which("google-chrome")


@pytest.mark.skipif(BROWSER is None, reason="no headless Chromium installed")
def test_report_html_sorts_and_filters_in_a_browser(run_dir, tmp_path):
    """The page's own script, run by Chromium: the state in the address sorts the table by
    factor_error descending and keeps method plu only."""
    from lubench.report import render_report

    out = render_report(run_dir, tmp_path / "r", echo=lambda _l: None,
                        spec=spec(formats="png", figures="none"))
    url = (out / "report.html").resolve().as_uri() + "#sort=-factor_error&method=plu"
    dom = subprocess.run([BROWSER, "--headless", "--no-sandbox", "--disable-gpu",
                          "--dump-dom", url], capture_output=True, text=True, timeout=120).stdout
    table = dom[dom.index('id="results"'):]
    table = table[:table.index("</table>")]
    rows = re.findall(r'<tr class="\w+" data-operator="[^"]*" data-method="([^"]*)"[^>]*?'
                      r'(style="display: none;")?>(.*?)</tr>', table, re.S)
    shown = [(m, cells) for m, hidden, cells in rows if not hidden]
    assert {m for m, _ in shown} == {"plu"} and len(shown) == 5
    errors = [float(re.findall(r'data-v="([^"]*)"', cells)[1]) for _, cells in shown]
    assert errors == sorted(errors, reverse=True)
    assert re.search(r'id="filter-count"> 5 of 36 rows<', dom)
