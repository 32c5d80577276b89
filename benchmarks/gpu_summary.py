"""Write ``OUT/summary.md`` from what ``benchmarks/gpu_check.sh`` left in OUT: the machine
and versions, each step's exit status and seconds, the tests' counts, the CUDA benchmarks,
the sketch optimizer's step against n, the time to the target error and the suite's rows
(device, status, error). Missing pieces are named as missing, never invented.

    python benchmarks/gpu_summary.py OUT
"""

from __future__ import annotations

import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path


def _load(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def environment(out: Path) -> list[str]:
    env = _load(out / "environment.json")
    if env is None:
        return ["## Machine", "", "environment.json missing: the environment check did not run."]
    lines = ["## Machine", ""]
    lines += [f"- {k}: {v}" for k, v in env.items()]
    if not env.get("cuda_available"):
        lines += ["", "**No CUDA device: PyTorch sees none here. Nothing was run on a GPU.**"]
    return lines


def steps(out: Path) -> list[str]:
    try:
        rows = [line.split() for line in (out / "status.txt").read_text().splitlines() if line]
    except OSError:
        return []
    lines = ["## Steps", "", "| step | exit | seconds |", "|---|---:|---:|"]
    lines += [f"| {name} | {rc}{' ✗' if rc != '0' else ''} | {sec} |" for name, rc, sec in rows]
    return lines


def tests(out: Path) -> list[str]:
    try:
        root = ET.parse(out / "tests.xml").getroot()
    except (OSError, ET.ParseError):
        return []
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    a = suite.attrib
    lines = ["## CUDA tests", "", f"{a.get('tests')} tests: {a.get('failures')} failed, "
             f"{a.get('errors')} errors, {a.get('skipped')} skipped ({a.get('time')} s)."]
    bad = [c for c in suite.iter("testcase") if c.find("failure") is not None
           or c.find("error") is not None]
    lines += [f"- ✗ {c.get('classname')}::{c.get('name')}" for c in bad]
    return lines


def bench(out: Path) -> list[str]:
    data = _load(out / "bench.json")
    if not data:
        return []
    lines = ["## CUDA benchmarks (pytest-benchmark)", "",
             "| benchmark | n | min s | median s | rounds |", "|---|---:|---:|---:|---:|"]
    for b in data.get("benchmarks", []):
        s = b["stats"]
        lines.append(f"| {b['name']} | {b.get('extra_info', {}).get('n', '')} | "
                     f"{s['min']:.4g} | {s['median']:.4g} | {s['rounds']} |")
    return lines


def scaling(out: Path) -> list[str]:
    data = _load(out / "sketch_scaling.json")
    if not data:
        return []
    dev = data["rows"][0]["device"] if data.get("rows") else "?"
    lines = [f"## Sketch optimizer step against n ({dev}, P = 32, k = 128)", "",
             "| n | median s | min s | peak GiB | estimate GiB |", "|---:|---:|---:|---:|---:|"]
    for r in data["rows"]:
        lines.append(f"| {r['n']} | {r['median_s']:.3f} | {r['min_s']:.3f} | "
                     f"{r['peak_gib']:.2f} | {r['estimate_gib']:.2f} |")
    fit = data.get("fit") or {}
    if fit:
        lines += ["", f"slope of log(step) on log(n): {fit['slope_median']:.3f} (medians)"]
    return lines


def to_target(out: Path) -> list[str]:
    data = _load(out / "time_to_target.json")
    if not data:
        return []
    lines = [f"## Time to the target error ({data[0]['device'] if data else '?'}, from scratch)",
             "",
             "| operator | n | target | to target s (steps) | factorize s | stop "
             "| fresh-probe error |",
             "|---|---:|---:|---|---:|---|---:|"]
    for r in data:
        t, m = r["to_target"], r["method"]
        reached = f"{t['seconds']:.1f} ({t['steps']})" if t["reached"] else \
            f"not reached: {t['error']:.1e} after {t['seconds']:.0f} s"
        lines.append(f"| {r['operator']} | {r['n']} | {r['target']:g} | {reached} | "
                     f"{m['seconds']:.1f} | {m['stopped_because']} | "
                     f"{m['fresh_probe_error']:.1e} |")
    return lines


def suite(out: Path) -> list[str]:
    path = out / "run" / "results.parquet"
    if not path.exists():
        return []
    import pandas as pd

    df = pd.read_parquet(path)
    cols = [c for c in ("operator", "n", "method", "device", "status", "factor_error",
                        "setup_seconds") if c in df.columns]
    lines = ["## Suite `suites/gpu_check.yaml` (device: auto, forked executor)", "",
             "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, row in df[cols].iterrows():
        cells = [f"{v:.3g}" if isinstance(v, float) else str(v) for v in row]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def main() -> None:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "gpu_check_out")
    head = ["# GPU check (benchmarks/gpu_check.sh)"]
    if (out / "rehearsal.txt").exists():
        head += ["", "**A rehearsal on the CPU (GPU_CHECK_ON_CPU=1), small sizes: these are "
                 "not GPU numbers.**"]
    parts = [head, environment(out), steps(out),
             tests(out), bench(out), scaling(out), to_target(out), suite(out)]
    text = "\n\n".join("\n".join(p) for p in parts if p) + "\n"
    (out / "summary.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
