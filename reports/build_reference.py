"""Turn finished run directories into the committed reference reports under ``reports/``.

    python reports/build_reference.py RUN_DIR [RUN_DIR ...]

For each run directory (made by ``lubench run SUITE -o RUN_DIR``) this writes
``reports/reference/<suite name>/``: the results and histories Parquet files, the suite
and the run's ``meta.json`` (machine, versions, commit), the Markdown table and the PNG figures
(``lubench report --formats md,png``; no PDF/SVG/HTML duplicates). Caches, logs and records
stay in the run directory, out of git.

When one of the runs is the ``learn_lu_post`` suite it also writes
``reports/reference/learn_lu_post/ours_vs_post.md`` and the same table in
``reports/README.md`` (between its ``ours-vs-post`` markers): per operator of the post, the
post's own ‖Â − A‖₂ beside what lubench's rows reach on the same matrix — read from the
run's ``results.parquet``, nothing typed in but the post's figures themselves. A run of
``learned_vs_compressed(_quick)`` gives ``equal_numbers.md`` and the README's
``equal-numbers`` table the same way (the quick suite's folder is
``reference/learned_vs_compressed/``, ``FOLDER``).

For the ``preconditioners`` suite it writes ``ours_vs_neuralif.md`` (random_spd at
NeuralIF's setting: CG iterations and seconds of every method at 1e-4 — NeuralIF's "1e-8" on
the squared residual — and 1e-8, beside the published rerun) and ``learned_vs_ic0.md`` (the
example ``neural_ic`` against IC(0) per family: iterations, time to solution with and
without its training amortized), and both tables in ``reports/README.md`` (markers
``neuralif`` and ``learned-vs-ic0``).
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd

REPORTS = Path(__file__).resolve().parent

# The post's ‖Â − A‖₂ (absolute, spectral; float32 training on a GPU, its protocol), from
# its final table (n = 256, M = 8, P = 32; REFERENCE.md in the project seeds): operator → figure.
POST_SPECTRAL_ERROR = {
    "laplacian_1d": 9.6e-3,
    "convdiff_1d": 4.9e-3,
    "convdiff_2d": 1.6e-4,
    "biharmonic_1d": 9.5e-4,
    "biharmonic_2d": 0.078,
    "rbf_kernel": 0.243,
}

COPIED = ("results.parquet", "histories.parquet", "suite.yaml", "meta.json")

# Reference folders not named by their suite: the equal-numbers comparison's reference is
# the quick part of suites/learned_vs_compressed.yaml (n = 4096, shorter budgets)
FOLDER = {"learned_vs_compressed_quick": "learned_vs_compressed"}
# NeuralIF's synthetic setting as rerun independently (Yang et al., NeurIPS 2025, Table 4;
# REFERENCE.md): CG iterations at its rtol 1e-8 on ‖r‖²/‖b‖² and total CPU time [ms].
NEURALIF_RERUN = {"neural_ic": ("NeuralIF", 354, 1139), "ic0": ("IC(0)", 438, 1387),
                  "jacobi": ("Jacobi", 970, 799)}


def _render(run_dir: Path, out: Path) -> None:
    """``lubench report`` into ``out``: the Markdown table and PNG figures (every default
    figure that has something to show); the HTML page, which embeds the same figures
    again, is dropped."""
    exe = Path(sys.executable).with_name("lubench")
    cmd = [str(exe) if exe.exists() else "lubench", "report", str(run_dir), "-o", str(out),
           "--formats", "md,png"]
    subprocess.run(cmd, check=True)
    (out / "report.html").unlink(missing_ok=True)
    (out / ".lubench-report").unlink(missing_ok=True)


def _fmt(x: float, digits: int = 2) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    if isinstance(x, float) and math.isinf(x):
        return "∞"
    return f"{x:.{digits - 1}e}"


def _row_label(row: pd.Series) -> str:
    params = json.loads(row["method_params"] or "{}")
    if row["method"] != "gfmm_lu":
        return row["method"]
    if params.get("preset") == "post":
        return "gfmm_lu, post preset"
    if params.get("init") == "projected":
        return "gfmm_lu, init: projected"
    return "gfmm_lu, default (from scratch)"


def _gmres(row: pd.Series) -> str:
    pre = row["precond_iterations"]
    plain = row["gmres_iterations"]
    if pd.isna(pre):
        return "–"
    ok = "" if bool(row["precond_converged"]) else " ✗"
    base = "–" if pd.isna(plain) else f"{int(plain)}{'' if bool(row['gmres_converged']) else ' ✗'}"
    return f"{int(pre)}{ok} ({base})"


def ours_vs_post(results: pd.DataFrame) -> str:
    """The Markdown table of every row of the post's six operators against its figure."""
    info = results["info"].map(lambda s: json.loads(s) if isinstance(s, str) and s else {})
    lines = [
        "| operator | post ‖Â − A‖₂ | method | ‖Â − A‖₂ | vs post | rel. Frobenius error "
        "| solve residual | GMRES it. preconditioned (plain) | steps | training precision "
        "| setup s |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for op, post in POST_SPECTRAL_ERROR.items():
        rows = results[results["operator"] == op]
        for idx, row in rows.iterrows():
            err2 = float(row["factor_error_2"]) if row["status"] == "ok" else float("nan")
            ratio = err2 / post if math.isfinite(err2) else float("nan")
            verdict = "–" if not math.isfinite(ratio) else (
                f"{ratio:.2g}× ✓" if ratio < 1 else f"{ratio:.2g}× ✗")
            meta = info[idx]
            steps = meta.get("iterations", row["iterations"])
            dtype = meta.get("dtype", "float64 (classical)")
            status = "" if row["status"] == "ok" else f" ({row['status']})"
            lines.append(
                f"| {op} | {post:.2g} | {_row_label(row)}{status} | {_fmt(err2)} | {verdict} "
                f"| {_fmt(float(row['factor_error']))} | {_fmt(float(row['solve_residual']))} "
                f"| {_gmres(row)} | {'–' if pd.isna(steps) else int(steps)} | {dtype} "
                f"| {float(row['setup_seconds']):.1f} |")
    return "\n".join(lines) + "\n"


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2g}×" if math.isfinite(a / b) else "–"


def _params(row: pd.Series) -> dict:
    return json.loads(row["method_params"] or "{}")


def _num(v: object) -> float:
    """A number of a record's ``info`` (non-finite ones are written {"$float": "NaN"})."""
    if isinstance(v, dict):
        v = v.get("$float", "nan")
    return float(v) if v is not None else float("nan")


def _learned_error(row: pd.Series | None) -> tuple[float, str]:
    """A gfmm_lu row's factor error as shown: the graded one, or for a row that failed
    after training (its factors could not be taken out) the training's own probe error,
    marked †; NaN where neither exists."""
    if row is None:
        return float("nan"), "–"
    if row["status"] == "ok":
        e = float(row["factor_error"])
        return e, _fmt(e)
    info = json.loads(row["info"]) if row["info"] else {}
    e = _num(info.get("train_rel_error"))
    return e, (f"{_fmt(e)}†" if math.isfinite(e) else f"({row['status']})")


def equal_numbers(results: pd.DataFrame) -> str:
    """The Markdown table of the equal-numbers comparison (suites/learned_vs_compressed*):
    per operator, n and P, ``gfmm_compressed``'s stored numbers and factor error beside
    ``gfmm_lu`` in the same pattern from its factors (``init: projected``) and from the
    identity start, the ratio compressed / projected, the solve residuals and the trained
    ‖L⁻¹‖₁, ‖U⁻¹‖₁ estimates, and the best ``hodlr_lu`` row storing no more numbers."""
    lines = [
        "| operator | n | P | stored numbers | gfmm_compressed | gfmm_lu projected "
        "| compressed / projected | gfmm_lu from scratch | solve residual compressed → "
        "projected | trained ‖L⁻¹‖₁, ‖U⁻¹‖₁ est. | steps | hodlr_lu at ≤ the numbers "
        "(tol, numbers) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    failed = []
    for (op, n), rows in results.groupby(["operator", "n"], sort=False):
        comp = rows[(rows["method"] == "gfmm_compressed") & (rows["status"] == "ok")]
        learned = rows[rows["method"] == "gfmm_lu"]
        hodlr = rows[(rows["method"] == "hodlr_lu") & (rows["status"] == "ok")]
        for _, c in comp.sort_values("n_params").iterrows():
            P = _params(c)["P"]
            mine = {_params(r)["init"]: r for _, r in learned.iterrows() if _params(r)["P"] == P}
            proj, scratch = mine.get("projected"), mine.get("identity")
            for r in (proj, scratch):
                if r is not None and r["status"] != "ok":
                    failed.append(f"{op} P = {P} {_params(r)['init']}: {r['error']}")
            ec = float(c["factor_error"])
            ep, ep_s = _learned_error(proj)
            _, es_s = _learned_error(scratch)
            info = json.loads(proj["info"]) if proj is not None and proj["info"] else {}
            steps = info.get("iterations", "–")
            inv = "–" if proj is None or proj["status"] != "ok" else \
                f"{_fmt(_num(info.get('inv_norm1_L')))}, {_fmt(_num(info.get('inv_norm1_U')))}"
            fit = hodlr[hodlr["n_params"] <= c["n_params"]]
            if len(fit):
                h = fit.loc[fit["factor_error"].idxmin()]
                hod = f"{_fmt(float(h['factor_error']))} ({_params(h)['tol']:g}, " \
                      f"{int(h['n_params']):,})"
            else:
                hod = "–"
            res_p = _num(proj["solve_residual"]) if proj is not None else float("nan")
            res_s = "not finite" if proj is not None and proj["status"] == "ok" and \
                not math.isfinite(res_p) else _fmt(res_p)
            lines.append(
                f"| {op} | {n} | {P} | {int(c['n_params']):,} | {_fmt(ec)} | {ep_s} "
                f"| {_ratio(ec, ep)} | {es_s} | {_fmt(_num(c['solve_residual']))} → "
                f"{res_s} | {inv} | {steps} | {hod} |")
    if failed:
        lines.append("")
        lines.append("† the training's own probe error (‖(LU − A)Ω‖_F/‖AΩ‖_F on its 16 fixed "
                     "evaluation probes): the case failed after training, its factors could "
                     "not be taken out — " + "; ".join(failed) + ".")
    return "\n".join(lines) + "\n"


def _curve_at(text: object, tol: float) -> tuple[float, float]:
    """(iterations, seconds) of one ``cg_curve`` at ``tol`` (inf, nan where not reached)."""
    data = json.loads(text) if isinstance(text, str) and text else {}
    for t in data.get("tolerances", []):
        if float(t["tol"]) == tol:
            if t.get("iterations") is None:
                return math.inf, math.nan
            return float(t["iterations"]), float(t["seconds"])
    return math.nan, math.nan


def _median(values: list[float]) -> float:
    vals = sorted(values)
    return float(pd.Series(vals).median()) if vals else math.nan


def _cases(results: pd.DataFrame) -> pd.DataFrame:
    ok = results[(results["status"] == "ok") & (results.get("stage", "case") != "fit")]
    return ok.assign(label=[_method_label(r) for _, r in ok.iterrows()])


def _method_label(row: pd.Series) -> str:
    params = json.loads(row["method_params"] or "{}")
    return f"amg[{params['kind']}]" if row["method"] == "amg" else row["method"]


def _its(x: float) -> str:
    return "–" if math.isnan(x) else ("not reached" if math.isinf(x) else f"{x:.0f}")


def ours_vs_neuralif(results: pd.DataFrame) -> str:
    """CG on random_spd at NeuralIF's setting (n = 10 000, density 1e-3), every method,
    medians over the test instances, beside the published rerun."""
    rows = _cases(results)
    rows = rows[(rows["operator"] == "random_spd") & (rows["n"] == 10_000)]
    lines = ["| method | CG it. to 1e-4 (NeuralIF's \"1e-8\") | CG it. to 1e-8 | setup + CG "
             "to 1e-4 [ms] | published (Yang et al. 2025): it. / CPU ms | instances |",
             "|---|---:|---:|---:|---|---:|"]
    for label, g in rows.groupby("label", sort=False):
        at4 = [_curve_at(t, 1e-4) for t in g["cg_curve"]]
        at8 = [_curve_at(t, 1e-8)[0] for t in g["cg_curve"]]
        total = [float(s) + sec for s, (_, sec) in zip(g["setup_seconds"], at4)]
        pub = NEURALIF_RERUN.get(label)
        published = f"{pub[0]}: {pub[1]} / {pub[2]}" if pub else "–"
        lines.append(f"| {label} | {_its(_median([i for i, _ in at4]))} | "
                     f"{_its(_median(at8))} | {1e3 * _median(total):.0f} | {published} | "
                     f"{len(g)} |")
    plain = [_curve_at(t, 1e-4)[0] for t in rows.drop_duplicates("operator_params")
             .get("cg_plain_curve", [])]
    return "\n".join(lines) + "\n" + (f"\nPlain CG to 1e-4: {_its(_median(plain))}.\n"
                                       if plain else "")


def learned_vs_ic0(results: pd.DataFrame) -> str:
    """The example neural_ic against IC(0), per family and n: medians over the test
    instances of CG iterations to 1e-8 and of time to solution, with its training per test
    instance, and the fit itself."""
    rows = _cases(results)
    fits = results[results.get("stage", "case") == "fit"]
    lines = ["| family | n | IC(0) it. | neural_ic it. | IC(0) setup + CG [s] | neural_ic setup + "
             "CG [s] | + training per test instance [s] | training: instances, s, steps |",
             "|---|---:|---:|---:|---:|---:|---:|---|"]
    for (op, params, n), g in rows.groupby(["operator", "operator_params", "n"], sort=False):
        ic, nic = g[g["method"] == "ic0"], g[g["method"] == "neural_ic"]
        if nic.empty:
            continue
        fit = fits[(fits["operator"] == op) & (fits["operator_params"] == params)
                   & (fits["n"] == n)]
        fit_text = "–" if fit.empty else (
            f"{int(fit['train_instances'].iloc[0])}, {float(fit['train_seconds'].iloc[0]):.0f}"
            f" s, {int(fit['iterations'].iloc[0])} steps")

        def med(col: str, d: pd.DataFrame) -> float:
            return _median([float(v) for v in d[col] if pd.notna(v)])

        label = op + ("" if params in ("{}", "") else f" {params}")
        solve = med("setup_seconds", nic) + med("cg_seconds", nic)
        lines.append(
            f"| {label} | {n} | {_its(med('cg_iterations', ic))} | "
            f"{_its(med('cg_iterations', nic))} | "
            f"{med('setup_seconds', ic) + med('cg_seconds', ic):.3g} | {solve:.3g} | "
            f"{solve + med('train_share_seconds', nic):.3g} | {fit_text} |")
    return "\n".join(lines) + "\n"


def build(run_dir: Path) -> Path:
    results = pd.read_parquet(run_dir / "results.parquet")
    suite = str(results["suite"].iloc[0])
    out = REPORTS / "reference" / FOLDER.get(suite, suite)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    _render(run_dir, out)  # first: `lubench report -o` writes only into a folder of its own
    for name in COPIED:
        if (run_dir / name).exists():
            shutil.copy2(run_dir / name, out / name)
    if suite == "learn_lu_post":
        table = ours_vs_post(results)
        (out / "ours_vs_post.md").write_text(table, encoding="utf-8")
        _fill(REPORTS / "README.md", "ours-vs-post", table)
    if suite.startswith("learned_vs_compressed"):
        table = equal_numbers(results)
        (out / "equal_numbers.md").write_text(table, encoding="utf-8")
        _fill(REPORTS / "README.md", "equal-numbers", table)
    if suite == "preconditioners":
        for name, marker, make in (("ours_vs_neuralif.md", "neuralif", ours_vs_neuralif),
                                   ("learned_vs_ic0.md", "learned-vs-ic0", learned_vs_ic0)):
            table = make(results)
            (out / name).write_text(table, encoding="utf-8")
            _fill(REPORTS / "README.md", marker, table)
    return out


def _fill(readme: Path, marker: str, text: str) -> None:
    """Replace what lies between ``<!-- marker:begin -->`` and ``<!-- marker:end -->``."""
    begin, end = f"<!-- {marker}:begin -->", f"<!-- {marker}:end -->"
    doc = readme.read_text(encoding="utf-8")
    head, rest = doc.split(begin, 1)
    _, tail = rest.split(end, 1)
    readme.write_text(f"{head}{begin}\n{text}{end}{tail}", encoding="utf-8")


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    for arg in argv:
        print(build(Path(arg)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
