"""Issue 28's targets for the preconditioner baselines, measured outside the runner.

    OMP_NUM_THREADS=1 python benchmarks/preconditioner_targets.py [--instances 5]

1. ``random_spd`` at NeuralIF's setting (n = 10 000, density 10⁻³, α = 10⁻³: A about 1 %
   dense): CG iterations and seconds of ``jacobi``, ``ic0``, ``ict`` (and plain CG) at
   relative residuals 10⁻⁴ (NeuralIF's harness stops on ‖r‖²/‖b‖² < 10⁻⁸, i.e. at 10⁻⁴)
   and 10⁻⁸, median over instances; the target is IC(0) at about half Jacobi's iterations.
2. ``amg`` on ``diffusion_2d`` at n = 65 536 (256², variance 1, ℓ = 0.1): CG iterations
   to 10⁻⁸, target ≤ 30.

Every method is graded by the one CG (:func:`lubench.metrics.cg.pcg`) on the grading's
right-hand side (:func:`lubench.metrics.cg.cg_rhs`: b uniform on [0, 1), NeuralIF's), from
x₀ = 0 — what ``lubench run suites/preconditioners.yaml`` records, for the two targets alone
(minutes instead of the suite's hour). Prints Markdown tables.
"""

from __future__ import annotations

import argparse
import statistics
import time

from lubench_operators.families import Diffusion2D, RandomSPD
from lubench_preconditioners import AMG, IC0, ICT, Jacobi
from lubench_preconditioners.triangular import warm_up

from lubench.api import RunContext
from lubench.metrics.cg import cg_rhs, pcg

TOLS = (1e-3, 1e-4, 1e-6, 1e-8, 1e-12)


def run(gen, n: int, seeds: list[int], methods: dict, tols=TOLS) -> dict:
    rows: dict[str, list] = {name: [] for name in methods}
    for seed in seeds:
        op = gen.build(n, seed)
        b = cg_rhs(op, seed)
        for name, method in methods.items():
            t0 = time.perf_counter()
            fact = method.factorize(op, RunContext(seed=seed)) if method else None
            setup = time.perf_counter() - t0
            out = pcg(op.matrix, b, fact.solve if fact else None, tolerances=tols)
            rows[name].append((setup, out, (fact.info if fact else {})))
    return rows


def table(rows: dict, tols=TOLS) -> str:
    head = "| method | setup s | " + " | ".join(f"its / s @ {t:g}" for t in tols) + " | info |"
    lines = [head, "|" + "---|" * (len(tols) + 3)]
    for name, runs in rows.items():
        cells = []
        for t in tols:
            its = [r.at(t).iterations for _, r, _ in runs]
            secs = [r.at(t).seconds for _, r, _ in runs]
            if any(i is None for i in its):
                cells.append("not reached")
            else:
                cells.append(f"{statistics.median(its):g} / {statistics.median(secs):.3f}")
        setup = statistics.median(s for s, _, _ in runs)
        info = runs[0][2]
        lines.append(f"| {name} | {setup:.3f} | " + " | ".join(cells) + f" | {info} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--instances", type=int, default=5)
    args = ap.parse_args()
    warm_up()
    seeds = list(range(args.instances))
    print(f"## random_spd, n = 10 000, density 1e-3, alpha 1e-3 ({len(seeds)} instances)\n")
    print(table(run(RandomSPD(), 10_000, seeds,
                    {"none": None, "jacobi": Jacobi(), "ic0": IC0(), "ict": ICT()})))
    print(f"\n## diffusion_2d, n = 65 536, variance 1, l = 0.1 ({len(seeds)} instances)\n")
    print(table(run(Diffusion2D(), 65_536, seeds,
                    {"jacobi": Jacobi(), "ic0": IC0(), "amg[sa]": AMG(),
                     "amg[rs]": AMG(kind="rs")})))


if __name__ == "__main__":
    main()
