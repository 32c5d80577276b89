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
run's ``results.parquet``, nothing typed in but the post's figures themselves.
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


def build(run_dir: Path) -> Path:
    results = pd.read_parquet(run_dir / "results.parquet")
    suite = str(results["suite"].iloc[0])
    out = REPORTS / "reference" / suite
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
