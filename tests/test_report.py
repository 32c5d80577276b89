"""Reports from a small real run: files produced, tables faithful to results.parquet, failures
listed, records.jsonl fallback, one-line errors for a run directory that holds nothing; the
report specification, paste-able LaTeX (compiled when pdflatex is installed), colours by
method name, the per-family Pareto fronts, the GMRES and time-to-solution figures, the
explorable report.html, several runs in one report.

The run is made here from real computations — SciPy's LU, Cholesky and incomplete LU (three
fill factors), and a small masked-LU fit by gradient descent in PyTorch — graded by
``lubench.metrics.grading.grade`` (plain GMRES ``gmres_iterations`` and the time of the
preconditioned solve ``precond_seconds`` included), and written in the run-directory format
(results.parquet, histories.parquet, meta.json, records.jsonl).
"""

from __future__ import annotations

import copy
import functools
import json
import math
import re
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.linalg as sla
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from lubench.api import Factorization, LubenchError, Operator, Unsupported
from lubench.metrics.grading import grade
from lubench.rundir.records import base_record
from lubench.suite.cases import Case, derive_seed

RUN_ID = "test-run"


# --------------------------------------------------------------------------------------------
# A small real run
# --------------------------------------------------------------------------------------------
def laplacian_1d(n: int) -> Operator:
    T = sp.diags([-np.ones(n - 1), 2 * np.ones(n), -np.ones(n - 1)], [-1, 0, 1], format="csr")
    return Operator("laplacian_1d", T, symmetric=True, spd=True)


def convdiff_1d(n: int, eps: float) -> Operator:
    h = 1.0 / (n - 1)
    main, lower = 2 * eps / h**2 + 1 / h, -eps / h**2 - 1 / h
    A = sp.diags([lower * np.ones(n - 1), main * np.ones(n), -eps / h**2 * np.ones(n - 1)],
                 [-1, 0, 1], format="csr")
    return Operator("convdiff_1d", A / abs(A).max(), symmetric=False, spd=False,
                    params={"eps": eps})


class DenseLU(Factorization):
    """A = P L U from the factors as dense arrays (P a permutation matrix)."""

    def __init__(self, P: np.ndarray, L: np.ndarray, U: np.ndarray, n_params: int):
        super().__init__()
        self.P, self.L, self.U, self.n_params = P, L, U, n_params

    def apply(self, X: np.ndarray) -> np.ndarray:
        return self.P @ (self.L @ (self.U @ X))

    def solve(self, B: np.ndarray) -> np.ndarray:
        y = sla.solve_triangular(self.L, self.P.T @ B, lower=True)
        return sla.solve_triangular(self.U, y, lower=False)


def plu(op: Operator) -> DenseLU:
    P, L, U = sla.lu(op.dense())
    return DenseLU(P, L, U, op.n**2)


def cholesky(op: Operator) -> DenseLU:
    if not op.spd:
        raise Unsupported(f"cholesky needs a symmetric positive definite operator, "
                          f"{op.name} is not")
    C = sla.cholesky(op.dense(), lower=True)
    return DenseLU(np.eye(op.n), C, C.T.copy(), op.n * (op.n + 1) // 2)


class ILU(Factorization):
    """SciPy's incomplete LU: Pr A Pc ≈ L U (its apply is the permuted product)."""

    def __init__(self, A: sp.csc_matrix, fill_factor: float):
        super().__init__()
        self.ilu = spla.spilu(A, drop_tol=1e-3, fill_factor=fill_factor)
        n = A.shape[0]
        self.Pr = sp.csc_matrix((np.ones(n), (self.ilu.perm_r, np.arange(n))))
        self.Pc = sp.csc_matrix((np.ones(n), (np.arange(n), self.ilu.perm_c)))
        self.n_params = int(self.ilu.L.nnz + self.ilu.U.nnz)

    def apply(self, X: np.ndarray) -> np.ndarray:
        return self.Pr.T @ (self.ilu.L @ (self.ilu.U @ (self.Pc.T @ X)))

    def solve(self, B: np.ndarray) -> np.ndarray:
        return self.ilu.solve(B)


def masked_gd(op: Operator, steps: int, seed: int) -> DenseLU:
    """Fit unit-lower L and upper U to A by Adam on ‖LU − A‖²_F (float64)."""
    import torch

    torch.manual_seed(seed)
    A = torch.tensor(op.dense())
    n = op.n
    lower = torch.tril(torch.ones(n, n, dtype=torch.float64), -1)
    upper = torch.triu(torch.ones(n, n, dtype=torch.float64))
    WL = torch.zeros(n, n, dtype=torch.float64, requires_grad=True)
    WU = (torch.eye(n, dtype=torch.float64) * A.diagonal()).clone().requires_grad_(True)
    opt = torch.optim.Adam([WL, WU], lr=1e-2)
    eye = torch.eye(n, dtype=torch.float64)
    history = []
    t0 = time.perf_counter()
    for step in range(steps):
        opt.zero_grad()
        LU = (eye + WL * lower) @ (WU * upper)
        loss = ((LU - A) ** 2).sum()
        loss.backward()
        opt.step()
        history.append({"step": step, "seconds": time.perf_counter() - t0,
                        "loss": loss.item(), "rel_error": (loss.detach().sqrt() / A.norm()).item()})
    with torch.no_grad():
        L = (eye + WL * lower).numpy().copy()
        U = (WU * upper).numpy().copy()
    fact = DenseLU(np.eye(n), L, U, n * n)
    fact.history = history
    fact.info = {"iterations": steps, "final_loss": history[-1]["loss"]}
    return fact


OPERATORS = [("laplacian_1d", {}, [16, 32, 64]), ("convdiff_1d", {"eps": 0.1}, [16, 32])]
METHODS = [("plu", {}, "classical"), ("cholesky", {}, "classical"),
           ("ilu", {"fill_factor": 1.0}, "classical"), ("ilu", {"fill_factor": 2.0}, "classical"),
           ("ilu", {"fill_factor": 4.0}, "classical"),
           ("masked_gd", {"steps": 20}, "learned"), ("masked_gd", {"steps": 60}, "learned")]


def make_case(operator: str, op_params: dict, n: int, method: str, m_params: dict,
              family: str) -> Case:
    return Case(suite="mini", operator=operator, operator_params=op_params, n=n,
                method=method, method_params=m_params, family=family, suite_seed=0,
                seed=derive_seed(0, operator, op_params, n, method, m_params),
                operator_seed=derive_seed(0, operator, op_params, n), repeats=2)


def run_one(case: Case, repeat: int) -> dict:
    rec = base_record(case, repeat, RUN_ID, device="cpu")
    op = (laplacian_1d(case.n) if case.operator == "laplacian_1d"
          else convdiff_1d(case.n, **case.operator_params))
    history: list[dict] = []
    try:
        t0 = time.perf_counter()
        if case.method == "plu":
            fact = plu(op)
        elif case.method == "cholesky":
            fact = cholesky(op)
        elif case.method == "ilu":
            fact = ILU(sp.csc_matrix(op.matrix), case.method_params["fill_factor"])
        else:
            fact = masked_gd(op, case.method_params["steps"], case.seed + repeat)
        setup = time.perf_counter() - t0
        rec.update(grade(op, fact, seed=case.operator_seed))  # gmres_iterations too
        rec["setup_seconds"] = setup
        rec["iterations"] = fact.info.get("iterations")
        rec["final_loss"] = fact.info.get("final_loss")
        rec["status"] = "ok"
        history = getattr(fact, "history", [])
    except Unsupported as exc:
        rec["status"], rec["error"] = "unsupported", exc.reason
    rec["info"] = "{}"
    rec["threads"] = 1
    rec["history"] = history
    return rec


def write_run(path: Path, records: list[dict], meta: dict | None = None,
              parquet: bool = True) -> Path:
    """Write ``records`` as a run directory (records.jsonl, and the parquet files)."""
    path.mkdir(parents=True, exist_ok=True)
    with open(path / "records.jsonl", "w") as fh:
        for rec in records:
            fh.write(json.dumps(rec) + "\n")
    rows = [{k: v for k, v in rec.items() if k != "history"} for rec in records]
    hist = [{"run_id": r["run_id"], "case_id": r["case_id"], "repeat": r["repeat"],
             "method": r["method"], "operator": r["operator"], "n": r["n"], **h}
            for r in records for h in r.get("history", [])]
    if parquet:
        pd.DataFrame(rows).to_parquet(path / "results.parquet")
        pd.DataFrame(hist).to_parquet(path / "histories.parquet")
    (path / "meta.json").write_text(json.dumps(meta or {
        "lubench_version": "0.1.0", "python": "3.x", "numpy": np.__version__,
        "cpu": "test CPU", "command": "pytest", "started_at": "2024-01-01T00:00:00"}))
    (path / "suite.yaml").write_text("name: mini\n")
    return path


def make_records() -> list[dict]:
    """The records of the mini run (computed once per test process; a fresh copy each call)."""
    return copy.deepcopy(_computed_records())


@functools.lru_cache(maxsize=1)
def _computed_records() -> list[dict]:
    records = []
    for operator, op_params, sizes in OPERATORS:
        for n in sizes:
            for method, m_params, family in METHODS:
                case = make_case(operator, op_params, n, method, m_params, family)
                for repeat in range(2):
                    records.append(run_one(case, repeat))
    # what the runner writes for a case it had to kill (no metrics, the reason)
    case = make_case("laplacian_1d", {}, 128, "masked_gd", {"steps": 60}, "learned")
    rec = base_record(case, 0, RUN_ID, device="cpu")
    rec.update(status="timeout", error="hard timeout: the case ran longer than 5 s",
               history=[])
    records.append(rec)
    return records


@pytest.fixture(scope="module")
def records() -> list[dict]:
    return make_records()


@pytest.fixture(scope="module")
def run_dir(records, tmp_path_factory) -> Path:
    return write_run(tmp_path_factory.mktemp("run") / "mini", records)


# --------------------------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------------------------
def _md_rows(text: str) -> list[list[str]]:
    lines = [ln for ln in text.splitlines() if ln.startswith("| ")]
    return [[c.strip() for c in ln.strip("|").split(" | ")] for ln in lines]


def _label_params(label: str) -> dict:
    """``ilu[fill_factor=2]`` -> {"fill_factor": 2.0}."""
    if "[" not in label:
        return {}
    inner = label.split("[", 1)[1].rstrip("]")
    return {k: float(v) for k, v in (kv.split("=") for kv in inner.split(","))}


def test_summary_markdown_holds_the_medians_of_results_parquet(run_dir):
    from lubench.report.cells import fmt_number
    from lubench.report.columns import BY_KEY
    from lubench.report.markdown import summary_markdown

    results = pd.read_parquet(run_dir / "results.parquet")
    text = summary_markdown(results)
    header, *rows = _md_rows(text)
    assert header[:3] == ["operator", "n", "method"] and header[-1] == "status"
    # the new columns are there when the run recorded them
    assert {"gmres_iterations", "precond_seconds"} <= set(header)
    # one row per operator × n × method configuration, none dropped
    assert len(rows) == results.groupby(["operator", "operator_params", "n", "method",
                                         "method_params"]).ngroups
    labels = {r[2] for r in rows}
    assert labels == {"plu", "cholesky", "ilu[fill_factor=1]", "ilu[fill_factor=2]",
                      "ilu[fill_factor=4]", "masked_gd[steps=20]", "masked_gd[steps=60]"}
    ok = results[results["status"] == "ok"]
    checked = 0
    for row in rows:
        cells = dict(zip(header, row))
        method = cells["method"].split("[")[0]
        sel = ok[(ok["operator"] == cells["operator"].split("[")[0])
                 & (ok["n"] == int(cells["n"])) & (ok["method"] == method)]
        params = _label_params(cells["method"])
        if params:
            sel = sel[[json.loads(p) == {k: (int(v) if method == "masked_gd" else v)
                                         for k, v in params.items()}
                       for p in sel["method_params"]]]
        if sel.empty:
            continue
        for key in header[3:-1]:
            m = BY_KEY[key]
            median = float(sel[key].median())
            shown = cells[key].strip("*").split(" (")[0]
            if m.converged and not sel[m.converged].all():
                assert shown.startswith(">") or "no conv" in cells[key]
                continue
            assert shown == fmt_number(median, integer=m.integer), (cells, key)
        checked += 1
    assert checked == len(ok.groupby(["operator", "n", "method", "method_params"]))


def test_summary_markdown_keeps_failed_and_unsupported_rows_with_their_reason(run_dir):
    from lubench.report.markdown import summary_markdown

    rows = _md_rows(summary_markdown(pd.read_parquet(run_dir / "results.parquet")))
    status = {(r[0], r[1], r[2]): r[-1] for r in rows[1:]}
    assert status[("convdiff_1d", "16", "cholesky")].startswith("unsupported: cholesky needs")
    assert status[("laplacian_1d", "128", "masked_gd[steps=60]")].startswith("timeout: hard")
    assert status[("laplacian_1d", "16", "plu")] == "ok"
    # unsupported rows carry no numbers
    unsupported = next(r for r in rows if r[0] == "convdiff_1d" and r[2] == "cholesky")
    assert set(unsupported[3:-1]) == {"–"}


def test_min_max_shown_when_repeats_differ():
    from lubench.report.markdown import summary_markdown

    base = {"operator": "op", "operator_params": "{}", "n": 8, "method": "m",
            "method_params": "{}", "family": "classical", "status": "ok", "error": ""}
    df = pd.DataFrame([{**base, "case_id": "c", "repeat": r, "setup_seconds": t}
                       for r, t in enumerate([1e-3, 2e-3, 4e-3])])
    rows = _md_rows(summary_markdown(df))
    cells = dict(zip(rows[0], rows[1]))
    assert cells["setup_seconds"] == "2.00e-3 (1.00e-3–4.00e-3)"


def test_fmt_number():
    from lubench.report.cells import fmt_number

    assert fmt_number(1.234567e-4) == "1.23e-4"
    assert fmt_number(65536, integer=True) == "65536"
    assert fmt_number(float("nan")) == "–"
    assert fmt_number(None) == "–"
    assert fmt_number(0.0) == "0"
    assert fmt_number(3.4412) == "3.44" and fmt_number(-0.5) == "-5.00e-1"
    assert fmt_number(float("inf")) == "∞"
    assert math.isclose(float(fmt_number(98765.4321)), 9.88e4)


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------
def test_missing_or_empty_run_directory_is_a_one_line_error(tmp_path):
    from lubench.report.load import load_run

    with pytest.raises(LubenchError, match="does not exist"):
        load_run(tmp_path / "nope")
    with pytest.raises(LubenchError, match="no results.parquet or records.jsonl"):
        load_run(tmp_path)
    (tmp_path / "records.jsonl").write_text("")
    with pytest.raises(LubenchError, match="no records") as info:
        load_run(tmp_path)
    assert "\n" not in str(info.value)


def test_records_jsonl_rebuilds_the_frames_and_skips_a_truncated_last_line(records, tmp_path):
    from lubench.report.load import load_run

    run = write_run(tmp_path / "crashed", records, parquet=False)
    with open(run / "records.jsonl", "a") as fh:
        fh.write('{"case_id": "half-writ')
    loaded = load_run(run)
    assert loaded.source == "records.jsonl"
    assert len(loaded.results) == len(records)
    n_hist = sum(len(r["history"]) for r in records)
    assert len(loaded.histories) == n_hist > 0
    ref = pd.DataFrame([{k: v for k, v in r.items() if k != "history"} for r in records])
    np.testing.assert_allclose(loaded.results["factor_error"].to_numpy(),
                               ref["factor_error"].astype(float).to_numpy())


# --------------------------------------------------------------------------------------------
# The whole report
# --------------------------------------------------------------------------------------------
FIGURES = ["error_vs_params", "error_vs_time", "gmres_vs_params", "time_to_solution",
           "cg_vs_tolerance", "cg_time_to_solution", "scaling", "training"]
MAGIC = {"png": b"\x89PNG", "pdf": b"%PDF", "svg": b"<?xml"}
DEFAULT_FIGURE_FORMATS = ("png", "pdf")


def spec(**kw):
    from lubench.suite.report_spec import parse_spec

    return parse_spec(kw, "test")


@pytest.fixture(scope="module")
def report_dir(run_dir) -> Path:
    from lubench.report import render_report

    lines: list[str] = []
    out = render_report(run_dir, echo=lines.append)
    assert out == run_dir / "report"
    assert any(line.startswith("figures:") for line in lines)
    return out


def test_every_file_is_produced(report_dir, run_dir, tmp_path):
    from lubench.report import render_report

    for name in FIGURES:
        for fmt in DEFAULT_FIGURE_FORMATS:  # vector PDF (and PNG) by default, no SVG
            data = (report_dir / f"{name}.{fmt}").read_bytes()
            assert data.startswith(MAGIC[fmt]), f"{name}.{fmt}"
        assert not (report_dir / f"{name}.svg").exists()
    for name in ("results.md", "results.tex", "results.html", "report.html"):
        assert (report_dir / name).stat().st_size > 0
    # asked for: SVG keeps text as text (not paths)
    out = render_report(run_dir, tmp_path / "svg", spec=spec(formats="svg", figures="scaling"),
                        echo=lambda _l: None)
    svg = (out / "scaling.svg").read_text()
    assert "<text" in svg and "stored numbers" in svg
    assert sorted(p.name for p in out.iterdir()) == [".lubench-report", "report.html",
                                                     "scaling.svg"]


def test_report_html_is_self_contained_and_explorable(report_dir):
    import re

    page = (report_dir / "report.html").read_text()
    sources = re.findall(r'src="([^"]*)"', page)
    assert len(sources) == len(FIGURES)
    assert all(s.startswith("data:image/png;base64,") for s in sources)
    # one inline script, nothing fetched: no <link>, no script src, no URL
    assert "<link" not in page and "<script src" not in page and page.count("<script>") == 1
    assert "http://" not in page and "https://" not in page
    for name in FIGURES:
        assert f'id="{name}"' in page
    assert "test CPU" in page  # the environment from meta.json
    # the table carries what the script sorts and filters by
    table = page[page.index('<table class="results" id="results">'):]
    table = table[:table.index("</table>")]
    rows = re.findall(r'<tr class="(ok|bad)" data-operator="([^"]*)" data-method="([^"]*)" '
                      r'data-status="([^"]*)"', table)
    assert len(rows) == (3 + 2) * 7 + 1  # (operator, n) × method configurations, + 1 timeout
    assert {r[3] for r in rows} == {"ok", "unsupported", "timeout"}
    heads = re.findall(r'<th data-kind="(num|text)" data-key="([^"]*)"', table)
    assert ("num", "factor_error") in heads and ("text", "method") in heads
    # numeric cells sort by their number; not measured sorts last (empty)
    values = re.findall(r'data-v="([^"]*)"', table)
    assert all(v == "" or v == "Infinity" or math.isfinite(float(v)) for v in values)
    assert '<div class="filters" id="filters">' in page


def test_latex_and_html_tables_hold_the_values_of_results_parquet(report_dir, run_dir):
    from lubench.report.cells import fmt_number

    results = pd.read_parquet(run_dir / "results.parquet")
    tex = (report_dir / "results.tex").read_text()
    page = (report_dir / "results.html").read_text()
    assert tex.count(r"\begin{table}") == results["operator"].nunique()
    assert tex.count(r"\toprule") == tex.count(r"\bottomrule") == results["operator"].nunique()
    assert r"\resizebox" not in tex and r"\num{" not in tex
    ok = results[results["status"] == "ok"]
    for _, g in ok.groupby(["operator", "n", "method", "method_params"]):
        for key in ("factor_error", "solve_residual", "setup_seconds"):
            text = fmt_number(float(g[key].median()))
            assert f"& {text} " in tex or rf"& \bfseries {text} " in tex, (key, text)
            assert text in page
    assert r"\caption{" in tex and "relative residual" in tex
    # siunitx S columns, the unit in the header and not in the cells
    assert "S[table-format=" in tex and r"{setup (\si{\second})}" in tex


def _tex_rows(tex: str) -> list[list[str]]:
    rows = []
    for line in tex.splitlines():
        if line.endswith(r"\\") and r"\texttt{" in line and "&" in line:
            rows.append([c.strip() for c in line[:-2].split("&")])
    return rows


def test_latex_bold_marks_the_best_value_of_each_operator_and_size(run_dir):
    from lubench.report.cells import fmt_number
    from lubench.report.columns import BY_KEY
    from lubench.report.latex import latex_tables
    from lubench.report.summary import select, summarize

    cols = ["factor_error", "precond_iterations", "n_params", "setup_seconds"]
    s = spec(columns=cols)
    tex = latex_tables(pd.read_parquet(run_dir / "results.parquet"), s)
    summary = summarize(select(pd.read_parquet(run_dir / "results.parquet"), s)[0])
    rows = _tex_rows(tex)
    assert len(rows) == len(summary)
    for k, key in enumerate(cols):
        m = BY_KEY[key]
        for (_op, _n), g in summary.groupby(["operator_label", "n"], sort=False):
            idx = list(g.index)
            cand = g[(g[key + "_state"] == "ok") & (g["n_ok"] > 0)]
            if m.converged:
                cand = cand[cand[m.converged].map(lambda v: v is not False)]
            bold = [i for i in idx if rows[i][1 + k].startswith(r"\bfseries")]
            if len(cand) < 2:
                assert not bold
                continue
            # the best as printed (ties are values that print the same; at or below the
            # metric's round-off floor they are equal): every bold cell prints it, no other
            # competing cell does — tolerances on the raw values flake on timings that
            # differ by less than a printed digit
            shown = {i: fmt_number(max(float(summary.loc[i, key]), m.floor), integer=m.integer)
                     for i in cand.index}
            best = fmt_number(max(cand[key].min(), m.floor), integer=m.integer)
            assert bold, (key, _op, _n)
            for i in bold:
                assert shown[i] == best, (key, i)
            for i in cand.index:
                if i not in bold:
                    assert shown[i] != best, (key, i)


PREAMBLE = r"""\documentclass{article}
\usepackage{booktabs,siunitx}
\begin{document}
Text at the document's font size.
\input{results.tex}
\end{document}
"""


@pytest.mark.skipif(__import__("shutil").which("pdflatex") is None,
                    reason="pdflatex is not installed (.ci/run installs TeX Live when it can)")
@pytest.mark.parametrize("group", ["operator", "blocks"])
def test_latex_compiles_in_a_one_column_article_without_overfull_boxes(run_dir, tmp_path, group):
    import shutil
    import subprocess

    from lubench.report import render_report

    out = render_report(run_dir, tmp_path / "paper", echo=lambda _l: None, spec=spec(
        columns="factor_error,precond_iterations,n_params,setup_seconds", formats="tex",
        figures="none", group=group))
    (out / "doc.tex").write_text(PREAMBLE)
    proc = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "doc.tex"],
                          cwd=out, capture_output=True, text=True, timeout=120)
    log = (out / "doc.log").read_text(errors="replace")
    assert proc.returncode == 0, log[-3000:]
    assert (out / "doc.pdf").read_bytes().startswith(b"%PDF")
    assert "Overfull \\hbox" not in log, log[log.index("Overfull"):][:500]
    if shutil.which("pdffonts"):  # vector fonts only (no bitmap Type 3 fallback)
        fonts = subprocess.run(["pdffonts", "doc.pdf"], cwd=out, capture_output=True,
                               text=True, check=True).stdout
        assert "Type 3" not in fonts, fonts


def test_report_lists_the_cases_that_failed(report_dir):
    page = (report_dir / "report.html").read_text()
    section = page[page.index("Cases that did not finish ok"):]
    assert "hard timeout: the case ran longer than 5 s" in section
    assert "cholesky needs a symmetric positive definite operator" in section
    assert section.count("<td>unsupported</td>") == 4  # 2 sizes × 2 repeats
    tex = (report_dir / "results.tex").read_text()
    mark = re.search(r"\$\^\{(\d+)\}\$\\,timeout: hard timeout", tex)
    assert mark and rf"\texttt{{masked\_gd}} (steps${{=}}$60)$^{{{mark.group(1)}}}$" in tex


def test_a_run_with_only_failures_still_renders_and_says_so(records, tmp_path):
    from lubench.report import render_report

    bad = [r for r in records if r["status"] != "ok"]
    run = write_run(tmp_path / "bad", bad)
    lines: list[str] = []
    out = render_report(run, spec=spec(formats="png,md"), echo=lines.append)
    page = (out / "report.html").read_text()
    assert "No case finished ok" in page
    assert "hard timeout" in page
    assert not list(out.glob("*.png"))
    assert "unsupported" in (out / "results.md").read_text()
    assert any("no case finished ok" in line for line in lines)


def test_cli_report_and_its_errors(run_dir, tmp_path):
    from click.testing import CliRunner

    from lubench.cli import main

    runner = CliRunner()
    out = tmp_path / "rep"
    res = runner.invoke(main, ["report", str(run_dir), "-o", str(out), "--formats", "svg,md",
                               "--figures", "scaling"])
    assert res.exit_code == 0, res.output
    assert (out / "scaling.svg").is_file() and (out / "results.md").is_file()
    assert not (out / "scaling.png").exists() and not (out / "results.tex").exists()
    # the older spelling still works
    res = runner.invoke(main, ["report", str(run_dir), "-o", str(tmp_path / "old"), "--format",
                               "svg", "--tables", "md", "--figures", "none"])
    assert res.exit_code == 0 and (tmp_path / "old" / "results.md").is_file()
    for args, message in ((["--formats", "gif"], "--formats: unknown format 'gif'"),
                          (["--columns", "factor_eror"],
                           "--columns: unknown column 'factor_eror'; did you mean "
                           "'factor_error'?"),
                          (["--methods", "nope"], "methods: 'nope'")):
        res = runner.invoke(main, ["report", str(run_dir), "-o", str(out), *args])
        assert res.exit_code == 2, res.output
        assert message in res.output and "Traceback" not in res.output
    empty = tmp_path / "empty"
    empty.mkdir()
    res = runner.invoke(main, ["report", str(empty)])
    assert res.exit_code == 2 and "not a run directory" in res.output
    res = runner.invoke(main, ["report", str(run_dir), str(run_dir)])
    assert res.exit_code == 2 and "needs -o OUTPUT" in res.output
    # a folder of the user's is not a report's: its files are never replaced (issue 25)
    mine = tmp_path / "paper"
    mine.mkdir()
    (mine / "results.md").write_text("my own results\n")
    res = runner.invoke(main, ["report", str(run_dir), "-o", str(mine), "--formats", "md",
                               "--figures", "none"])
    assert res.exit_code == 2 and "holds files lubench did not write (results.md)" in res.output
    assert (mine / "results.md").read_text() == "my own results\n"
    # ... while a folder a report was written into takes the next one
    res = runner.invoke(main, ["report", str(run_dir), "-o", str(out), "--formats", "md",
                               "--figures", "none"])
    assert res.exit_code == 0, res.output


# --------------------------------------------------------------------------------------------
# End to end: `lubench run` (classical and learned methods), then its report
# --------------------------------------------------------------------------------------------
E2E_SUITE = """\
name: e2e
seed: 0
repeats: 1
timeout: 120
operators:
  - name: laplacian_1d
    sizes: [16, 32]
  - name: convdiff_1d
    sizes: [16]
methods:
  - name: plu
  - name: cholesky
  - name: gfmm_lu
    params: {P: 8}
    budget: {max_steps: 30}
"""


@pytest.mark.slow
def test_lubench_run_then_report(tmp_path):
    from click.testing import CliRunner

    from lubench.cli import main

    suite = tmp_path / "e2e.yaml"
    suite.write_text(E2E_SUITE)
    run = tmp_path / "run"
    res = CliRunner().invoke(main, ["run", str(suite), "-o", str(run), "--executor", "inline",
                                    "--no-progress"])
    assert res.exit_code == 0, res.output
    report = run / "report"
    for name in FIGURES:
        for fmt in DEFAULT_FIGURE_FORMATS:
            assert (report / f"{name}.{fmt}").is_file(), f"{name}.{fmt}"
    results = pd.read_parquet(run / "results.parquet")
    assert set(results["status"]) == {"ok", "unsupported"}  # cholesky on convdiff_1d
    assert (results.loc[results["method"] == "gfmm_lu", "n_params"] > 0).all()
    # results.md holds the parquet's values, and so does the table printed after the run
    md = (report / "results.md").read_text()
    from lubench.report.cells import fmt_number

    for _, row in results[results["status"] == "ok"].iterrows():
        assert fmt_number(row["factor_error"]) in md
        assert fmt_number(row["factor_error"]) in res.output
    page = (report / "report.html").read_text()
    assert "cholesky" in page[page.index("Cases that did not finish ok"):]
    # re-rendering the finished run from the command line gives the same tables
    res = CliRunner().invoke(main, ["report", str(run), "-o", str(tmp_path / "again"),
                                    "--formats", "png,md"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "again" / "results.md").read_text() == md


def test_records_newer_than_the_parquet_files_win(records, tmp_path):
    """A resumed run that crashed leaves results.parquet from before: the records are read."""
    import os

    from lubench.report.load import load_run

    run = write_run(tmp_path / "resumed", records[:10])
    assert load_run(run).source == "results.parquet"
    with open(run / "records.jsonl", "a") as fh:
        fh.write(json.dumps(records[10]) + "\n")
    later = (run / "results.parquet").stat().st_mtime + 5
    os.utime(run / "records.jsonl", (later, later))
    loaded = load_run(run)
    assert loaded.source == "records.jsonl" and len(loaded.results) == 11


def test_method_labels_name_only_what_a_row_sets():
    """Labels tell configurations apart by the parameters that vary; a row that leaves one
    unset runs the method's default and does not print it as ``None``."""
    from lubench.report.load import add_labels
    df = pd.DataFrame({
        "method": ["gfmm_lu", "gfmm_lu", "gfmm_lu", "plu"],
        "method_params": ['{"P": 32, "preset": "post", "init": null}', '{"P": 32}',
                          '{"P": 32, "init": "projected"}', "{}"],
        "operator": ["laplacian_1d"] * 4, "operator_params": ["{}"] * 4})
    labels = add_labels(df)["method_label"].tolist()
    assert labels == ["gfmm_lu[preset=post]", "gfmm_lu", "gfmm_lu[init=projected]", "plu"]
    assert len(set(labels)) == len(labels)


def test_scaling_is_not_drawn_for_a_run_at_one_size(tmp_path):
    """A run where every operator has one size has no scaling to show: no scaling file, a
    note in the report instead, and no matplotlib layout warning on the way."""
    import warnings

    from lubench.report import render_report

    recs = make_records()
    first = {}
    for r in recs:
        first.setdefault(r["operator"], r["n"])
    run = write_run(tmp_path / "one", [r for r in recs if r["n"] == first[r["operator"]]])
    lines: list[str] = []
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        out = render_report(run, tmp_path / "rep", spec=spec(formats="png,html",
                            figures="scaling,error_vs_params"), echo=lines.append)
    assert not (out / "scaling.png").exists() and (out / "error_vs_params.png").is_file()
    assert "every operator ran at one size" in (out / "report.html").read_text()


def test_a_figure_too_crowded_to_lay_out_is_one_line_not_a_warning(run_dir, tmp_path,
                                                                     monkeypatch):
    """matplotlib's 'constrained_layout not applied' becomes one lubench line naming the
    figure and what to select; the figure is still written."""
    import warnings

    import matplotlib.pyplot as plt

    from lubench.report import figures as F
    from lubench.report import render_report

    def crowded(summary, style):  # 9 panels of 16 long tick labels on a 2-inch figure
        fig, axes = plt.subplots(3, 3, figsize=(2, 2), layout="constrained")
        for ax in axes.flat:
            ax.set_yticks(range(16), ["gfmm_compressed[P=32,rank=16,tol=1e-16]"] * 16)
            ax.set_title("t\n" * 5)
        return fig

    monkeypatch.setitem(F.FIGURES, "error_vs_params", crowded)
    lines: list[str] = []
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        out = render_report(run_dir, tmp_path / "crowded",
                            spec=spec(formats="png", figures="error_vs_params"),
                            echo=lines.append)
    assert (out / "error_vs_params.png").is_file()
    assert [line for line in lines if "warning" in line] == [
        "lubench: warning: figure error_vs_params: too many configurations or labels for its "
        "panels to lay out cleanly; select fewer (--methods, --operators)"]
