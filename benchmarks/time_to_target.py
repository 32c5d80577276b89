"""Seconds for ``gfmm_lu`` (its default, ``optimizer: auto``) to reach a probe factor error
from scratch at n = 65 536 (issue 27's targets), on the CPU or a GPU.

Two measurements per operator (``laplacian_1d``, ``convdiff_1d``; P = 32, the default's
configuration at that size — the sketch optimizer, here its near-field Newton phase):

* *to the target*: the method's model, target and trainer (:mod:`lubench_learned.training`,
  as ``factorize`` builds them, the watch left out), stepped until the relative error on the
  trainer's fixed probes is ≤ ``--target``; the seconds include building the target (A's
  near field) and the model;
* *the method*: ``GfmmLU().factorize`` with a ``--seconds`` budget, as a suite runs it (the
  watch included; training stops at round-off): its wall seconds, steps, why it stopped, and
  the probe factor error of the result on 32 fresh probes.

    OMP_NUM_THREADS=1 python benchmarks/time_to_target.py                # 1e-6, 600 s
    python benchmarks/time_to_target.py --device cuda --json out.json    # on a GPU
    python benchmarks/time_to_target.py --operators laplacian_1d --n 262144
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np


def _operator(name: str, n: int):
    from lubench_operators.pde import ConvDiff1D, Laplacian1D

    return {"laplacian_1d": Laplacian1D, "convdiff_1d": ConvDiff1D}[name]().build(n, 0)


def to_target(name: str, n: int, target: float, seconds: float, device: str) -> dict:
    import torch
    from lubench_learned import GfmmLU
    from lubench_learned.training import LossSpec, Target, Trainer, torch_dtype

    op = _operator(name, n)
    method = GfmmLU(P=32)
    cfg = method.resolved(n)
    t0 = time.perf_counter()
    net = method.build_model(op, cfg, seed=0).to(device)
    M, P = method.shape_for(n)
    target_ = Target(op, M * P, torch_dtype(cfg["dtype"]), device,
                     dense=cfg["loss"] == "identity")
    spec = LossSpec(kind=cfg["loss"], probes=int(cfg["probes"]), transpose=False)
    tr = Trainer(net, target_, spec, method._schedule(cfg), seed=0,
                 edge_groups=net.edge_views(), block_size=P)
    tr.start_block(None)
    steps, err = 0, tr.probe_rel_error()
    while err > target and time.perf_counter() - t0 < seconds:
        tr.step()
        steps += 1
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        err = tr.probe_rel_error()
        if getattr(tr.opt, "converged", False):
            break
    return {"seconds": time.perf_counter() - t0, "steps": steps, "error": err,
            "reached": err <= target, "optimizer": cfg["optimizer"]}


def method_run(name: str, n: int, seconds: float, device: str) -> dict:
    from lubench_learned import GfmmLU

    from lubench.api import Budget, RunContext

    op = _operator(name, n)
    method = GfmmLU(P=32)
    ctx = RunContext(device=device, seed=0, budget=Budget(max_seconds=seconds))
    method.prepare(ctx)
    t0 = time.perf_counter()
    fact = method.factorize(op, ctx)
    wall = time.perf_counter() - t0
    Z = np.random.default_rng(5).standard_normal((n, 32))
    AZ = op.matmat(Z)
    return {"seconds": wall, "steps": fact.info["iterations"],
            "stopped_because": fact.info["stopped_because"],
            "optimizer": fact.info["config"]["optimizer"],
            "fresh_probe_error": float(np.linalg.norm(fact.apply(Z) - AZ)
                                       / np.linalg.norm(AZ))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--operators", nargs="+", default=["laplacian_1d", "convdiff_1d"])
    ap.add_argument("--n", type=int, default=65536)
    ap.add_argument("--target", type=float, default=1e-6)
    ap.add_argument("--seconds", type=float, default=600.0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    rows = []
    for name in args.operators:
        t = to_target(name, args.n, args.target, args.seconds, args.device)
        m = method_run(name, args.n, args.seconds, args.device)
        rows.append({"operator": name, "n": args.n, "device": args.device,
                     "target": args.target, "to_target": t, "method": m})
        state = "reached" if t["reached"] else "NOT reached"
        print(f"{name} n={args.n} {args.device} ({t['optimizer']}): {args.target:g} {state} "
              f"in {t['seconds']:.1f} s, {t['steps']} steps (probe error {t['error']:.1e}); "
              f"factorize: {m['seconds']:.1f} s, {m['steps']} steps, "
              f"{m['stopped_because']}, fresh-probe error {m['fresh_probe_error']:.1e}",
              flush=True)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=1)


if __name__ == "__main__":
    main()
