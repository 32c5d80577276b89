"""hodlr_lu's cost against n: factor time, peak memory, storage and error, one process per size.

Not part of the test suite. Run, for instance (the issue 26 targets)::

    OMP_NUM_THREADS=1 python benchmarks/hodlr_scaling.py exponential_kernel rho=0.5
    OMP_NUM_THREADS=1 python benchmarks/hodlr_scaling.py matern_kernel nu=0.5 dim=1 \\
        length_scale=0.2 nugget=1e-4
    OMP_NUM_THREADS=1 python benchmarks/hodlr_scaling.py rbf_kernel dim=1 --min 12 --max 16

Each size n = 2^min … 2^max runs in a fresh Python process (so its peak memory is its own):
the operator is built by its lubench generator (seed 0), factored by ``hodlr_lu``
(``--tol``, ``--leaf-size``, ``--max-rank``, ``--compression``), then measured:

* ``factor_s`` / ``factor_cpu_s``: wall and CPU seconds of ``factorize`` (the CPU time is
  steadier on a shared machine: the factorization runs one BLAS thread);
* ``peak_mib``: peak resident memory the factorization added to the process (``ru_maxrss``
  after it, minus the resident memory before it: what lubench's ``peak_memory_bytes``
  measures for a case run alone);
* ``probe_err``: ‖A Ω − Â Ω‖_F / ‖A Ω‖_F for 8 Gaussian columns Ω (A's action: exact in O(n)
  for the exponential kernels), ``solve_ms``: one right-hand side, CPU;
* ``numbers/n``: what the factors store per unknown.

The fitted slope s of log(factor time) and of log(peak memory) against log n is printed
beside the slope n log² n has over the same sizes (1.18 from 2^12 to 2^20): the targets ask
s ≤ that, and ``t / (n log² n)`` (printed per size) not growing. ``--json PATH`` keeps the
rows.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import time

import numpy as np


def _value(text: str):
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


def _rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def one(args: argparse.Namespace) -> dict:
    """Build, factor and measure at n = args.one (in this process)."""
    from lubench_compressed.hodlr_lu import HodlrLU

    from lubench.api import Budget, RunContext
    from lubench.registry import load_registry

    n = args.one
    gen = load_registry(entry_points=True).operator(args.operator)(**dict(args.params))
    op = gen.build(n, 0)
    method = HodlrLU(tol=args.tol, leaf_size=args.leaf_size, max_rank=args.max_rank,
                     compression=args.compression)
    ctx = RunContext(device="cpu", seed=0, budget=Budget())
    method.prepare(ctx)               # the compiled parts loaded (or compiled) before timing
    base = _rss_bytes()
    t0, c0 = time.perf_counter(), time.process_time()
    fact = method.factorize(op, ctx)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base
    omega = np.random.default_rng(1).standard_normal((n, 8))
    A_omega = op.matmat(omega)
    err = float(np.linalg.norm(A_omega - fact.apply(omega)) / np.linalg.norm(A_omega))
    b = A_omega[:, 0]
    fact.solve(b)
    c1 = time.process_time()
    fact.solve(b)
    solve = time.process_time() - c1
    return {"n": n, "factor_s": wall, "factor_cpu_s": cpu, "peak_mib": peak / 2**20,
            "probe_err": err, "solve_ms": 1e3 * solve, "numbers_per_n": fact.n_params / n,
            "ranks_L": fact.info["ranks_L"], "compression": fact.info["compression"]}


def slope(ns: list[int], ys: list[float]) -> float:
    """Least-squares slope of log y against log n."""
    x, y = np.log(np.asarray(ns, float)), np.log(np.maximum(np.asarray(ys, float), 1e-300))
    return float(np.polyfit(x, y, 1)[0])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("operator", help="a lubench operator generator, e.g. exponential_kernel")
    p.add_argument("params", nargs="*", help="generator parameters, name=value")
    p.add_argument("--min", type=int, default=12, help="smallest size, as log2 n")
    p.add_argument("--max", type=int, default=20, help="largest size, as log2 n")
    p.add_argument("--tol", type=float, default=1e-10)
    p.add_argument("--leaf-size", type=int, default=64)
    p.add_argument("--max-rank", type=int, default=256)
    p.add_argument("--compression", default="auto")
    p.add_argument("--json", help="write the rows here")
    p.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.params = [(k, _value(v)) for k, v in (s.split("=", 1) for s in args.params)]
    if args.one:
        print(json.dumps(one(args)))
        return 0
    rows = []
    fixed = [a for a in (argv if argv is not None else sys.argv[1:])]
    print(f"{'n':>8} {'factor s':>9} {'cpu s':>8} {'peak MiB':>9} {'probe err':>10} "
          f"{'solve ms':>9} {'nums/n':>7} {'cpu/(n log²n) ns':>17}  ranks (root first)")
    for e in range(args.min, args.max + 1):
        out = subprocess.run([sys.executable, __file__, *fixed, "--one", str(2**e)],
                             capture_output=True, text=True)
        if out.returncode != 0:
            print(f"n = 2^{e}: failed\n{out.stderr.strip()[-2000:]}", file=sys.stderr)
            return 1
        r = json.loads(out.stdout.strip().splitlines()[-1])
        rows.append(r)
        norm = r["factor_cpu_s"] / (r["n"] * math.log2(r["n"]) ** 2) * 1e9
        print(f"{r['n']:>8} {r['factor_s']:>9.2f} {r['factor_cpu_s']:>8.2f} "
              f"{r['peak_mib']:>9.1f} {r['probe_err']:>10.2e} {r['solve_ms']:>9.1f} "
              f"{r['numbers_per_n']:>7.1f} {norm:>17.2f}  {r['ranks_L'][:6]}", flush=True)
    ns = [r["n"] for r in rows]
    ref = slope(ns, [n * math.log2(n) ** 2 for n in ns])
    print(f"fitted slopes, 2^{args.min} … 2^{args.max}: factor wall "
          f"{slope(ns, [r['factor_s'] for r in rows]):.3f}, cpu "
          f"{slope(ns, [r['factor_cpu_s'] for r in rows]):.3f}, peak memory "
          f"{slope(ns, [r['peak_mib'] for r in rows]):.3f}, stored numbers "
          f"{slope(ns, [r['numbers_per_n'] * r['n'] for r in rows]):.3f}; "
          f"n log² n: {ref:.3f}, n: 1")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"argv": fixed, "rows": rows}, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
