"""Why ``gfmm_lu`` trained from the projected start stops solving where the GFMM pattern
truncates (issue 27, reports/reference/learned_vs_compressed/): the factor error, U's pivots
at the floor, cond(L), cond(U) and the solve residual after a few sketch steps, formed
densely at a small n.

For ``rbf_kernel`` dim 2 (n points, leaf size P) and each pivot floor δ/max|A| given, the
projected start (``gfmm_compressed``'s factors) and the factors after each step count:
relative ‖LU − A[perm]‖_F, how many |U_ii| lie at the floor, the 2-norm condition numbers of
L and U, and ‖A x̂ − b‖/‖b‖ for x̂ by the structured solve (NaN: the solve overflowed).

    OMP_NUM_THREADS=1 python benchmarks/projected_conditioning.py               # n 1024, P 8
    python benchmarks/projected_conditioning.py --n 2048 --P 16 --floors 1e-8 1e-4
"""

from __future__ import annotations

import argparse

import numpy as np


def main() -> None:
    from lubench_learned.gfmm_lu import GfmmLU
    from lubench_operators.kernels import RBFKernel

    from lubench.api import Budget, RunContext

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1024)
    ap.add_argument("--P", type=int, default=8)
    ap.add_argument("--floors", type=float, nargs="+", default=[1e-8, 5e-5])
    ap.add_argument("--steps", type=int, nargs="+", default=[0, 2, 10, 30])
    args = ap.parse_args()
    op = RBFKernel(dim=2).build(args.n, 0)
    A = op.form().dense()
    b = np.random.default_rng(0).standard_normal(args.n)
    print(f"rbf_kernel dim 2, n = {args.n}, P = {args.P}; the exact LU's smallest pivot "
          f"{np.diag(np.linalg.cholesky(A)).min() ** 2:.2e}")
    print("floor     steps  factor error  pivots at floor  cond(L)   cond(U)   solve residual")
    for floor in args.floors:
        for steps in args.steps:
            m = GfmmLU(P=args.P, init="projected", optimizer="sketch", keep="last",
                       watch_patience=0, eval_every=10**6, pivot_floor=floor)
            f = m.factorize(op, RunContext(device="cpu", seed=0, budget=Budget(max_steps=steps)))
            L, U = f.L.dense(), f.U.dense()
            err = np.linalg.norm(L @ U - A[f.perm[:args.n]]) / np.linalg.norm(A)
            at_floor = int((np.abs(np.diag(U)) < 1.01 * floor * np.abs(A).max()).sum())
            with np.errstate(all="ignore"):
                x = f.solve(b)
                res = np.linalg.norm(A @ x - b) / np.linalg.norm(b)
            print(f"{floor:<9.0e} {steps:>5}  {err:12.2e}  {at_floor:>15}  "
                  f"{np.linalg.cond(L):8.1e}  {np.linalg.cond(U):8.1e}  {res:14.1e}", flush=True)


if __name__ == "__main__":
    main()
