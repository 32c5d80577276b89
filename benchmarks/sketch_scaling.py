"""Time and memory of one step of ``gfmm_lu``'s sketch optimizer against n (issue 27).

Each size runs in a child process of its own (its peak memory is its own), on
``laplacian_1d`` with the far field switched on (every bridge ~1e-3, so that the near-field
Newton phase is off and each step runs all four block least-squares proposals — the step
that training at scale repeats); P = 32, k = 128 probes. Prints one row per n: the median
and the minimum of ``--steps`` steps after one warm-up, the process's peak RSS, and
``gfmm_lu``'s memory estimate for the case; then the slope of log(step) against log(n) by
least squares (target: ≤ 1.15 from 4096 to 262 144) and the largest ratio of estimate to
peak (target: within 2× either way).

    OMP_NUM_THREADS=1 python benchmarks/sketch_scaling.py                    # 4096 … 262144
    OMP_NUM_THREADS=1 python benchmarks/sketch_scaling.py --sizes 4096 16384 --steps 3
    python benchmarks/sketch_scaling.py --device cuda --sizes 65536 1048576  # on a GPU

``--json FILE`` writes the rows and the fit.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import time

P, K = 32, 128


def one(n: int, steps: int, device: str) -> dict:
    """Run in the child: the step times, peak RSS and the memory estimate at size n."""
    import numpy as np
    import scipy.sparse as sp
    import torch
    from lubench_learned import GfmmLU
    from lubench_learned.optim.sketch import SketchOptimizer
    from lubench_learned.training.target import Target

    from lubench.api import Operator

    A = sp.diags([-np.ones(n - 1), 2 * np.ones(n), -np.ones(n - 1)], [-1, 0, 1],
                 format="csr")
    op = Operator("laplacian_1d", A, symmetric=True, spd=True)
    method = GfmmLU(P=P, optimizer="sketch", probes=K)
    net = method.build_model(op, method.resolved(n), seed=0).to(device)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for f in (net.L, net.U):
            for b in f.bridge:
                b.copy_(1e-3 * torch.randn(b.shape, generator=g, dtype=b.dtype))
    target = Target(op, n, torch.float64, device, dense=False)
    om = torch.randn(n, 16, generator=g, dtype=torch.float64).to(device)
    opt = SketchOptimizer(net, target.mm, lambda Y: target.mm(Y, True), probes=K, omega=om,
                          a_omega=target.mm(om), near=None, seed=0)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    times = []
    for i in range(steps + 1):
        sync()
        t0 = time.perf_counter()
        opt.step()
        sync()
        if i:  # the first step warms up (allocations, kernels)
            times.append(time.perf_counter() - t0)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024.0
    if device.startswith("cuda"):
        peak = float(torch.cuda.max_memory_allocated())
    return {"n": n, "median_s": statistics.median(times), "min_s": min(times),
            "peak_gib": peak / 2**30, "estimate_gib": method.memory_estimate(op) / 2**30,
            "device": device, "threads": torch.get_num_threads()}


def slope(rows: list[dict], key: str = "median_s") -> float:
    """The least-squares slope of log(time) against log(n)."""
    x = [math.log(r["n"]) for r in rows]
    y = [math.log(r[key]) for r in rows]
    mx, my = sum(x) / len(x), sum(y) / len(y)
    return sum((a - mx) * (b - my) for a, b in zip(x, y)) / sum((a - mx) ** 2 for a in x)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[4096, 16384, 65536, 262144])
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", default=None)
    ap.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child is not None:
        print(json.dumps(one(args.child, args.steps, args.device)))
        return
    rows = []
    print(f"{'n':>8} {'median s':>9} {'min s':>8} {'peak GiB':>9} {'estimate GiB':>13}")
    for n in args.sizes:
        out = subprocess.run([sys.executable, __file__, "--child", str(n), "--steps",
                              str(args.steps), "--device", args.device],
                             capture_output=True, text=True, env=os.environ)
        if out.returncode:
            print(f"{n:>8} failed: {out.stderr.strip().splitlines()[-1:]}")
            continue
        r = json.loads(out.stdout.strip().splitlines()[-1])
        rows.append(r)
        print(f"{n:>8} {r['median_s']:9.3f} {r['min_s']:8.3f} {r['peak_gib']:9.2f} "
              f"{r['estimate_gib']:13.2f}", flush=True)
    fit = {}
    if len(rows) >= 2:
        fit = {"slope_median": slope(rows), "slope_min": slope(rows, "min_s"),
               "estimate_over_peak": [r["estimate_gib"] / r["peak_gib"] for r in rows]}
        print(f"slope of log(step) on log(n): {fit['slope_median']:.3f} (medians), "
              f"{fit['slope_min']:.3f} (minima); target ≤ 1.15")
        print("estimate / peak: " + ", ".join(f"{x:.2f}" for x in fit["estimate_over_peak"])
              + " (target within 0.5 … 2)")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"rows": rows, "fit": fit, "P": P, "k": K}, fh, indent=1)


if __name__ == "__main__":
    main()
