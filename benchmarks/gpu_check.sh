#!/usr/bin/env bash
# The GPU check of issue 27, in one call: on a machine with CUDA, run the CUDA tests, the CUDA
# benchmarks (the probe loss's step and the sketch optimizer's at n = 2^16 and 2^20, the time
# to a target error at n = 65 536) and a small suite with `device: auto` through the default
# forked executor, and write one summary, $OUT/summary.md (with every raw file beside it).
#
#   bash benchmarks/gpu_check.sh [OUT]       # OUT: the output folder (default: $OUT, else
#                                            # ./gpu_check_out)
#
# The borrowed GPU machines have Python 3.12 with PyTorch, NumPy, SciPy, pandas, pluggy and
# click but not pydantic: wheels carried in .whl/ (git-ignored; benchmarks/gpu_wheels.sh fills
# it on a machine with network access) are installed first, without an index. lubench itself
# is installed without its dependencies (editable, no build isolation). Without a CUDA device
# the script says so in the summary and exits 0 having run nothing on a GPU;
# GPU_CHECK_ON_CPU=1 then runs every step on the CPU at small sizes instead (a rehearsal of
# the machinery: the numbers are not the GPU's).
set -u
cd "$(dirname "$0")/.."
OUT="${1:-${OUT:-gpu_check_out}}"
mkdir -p "$OUT"
PY="${PYTHON:-python3}"
LOG="$OUT/gpu_check.log"
: > "$LOG"
say() { echo "$*" | tee -a "$LOG"; }
step() {  # step NAME COMMAND...: run, log, record the exit status in $OUT/status.txt
    local name="$1"; shift
    say "== $name: $*"
    local t0=$SECONDS
    "$@" >> "$LOG" 2>&1
    local rc=$?
    echo "$name $rc $((SECONDS - t0))" >> "$OUT/status.txt"
    say "   exit $rc after $((SECONDS - t0)) s"
    return 0
}
: > "$OUT/status.txt"

# 1. The environment: the carried wheels, then lubench (no dependencies, no network).
#    By name, one at a time: what is installed already stays (the machine's NumPy and
#    PyTorch are not replaced), what is missing comes from .whl/.
if compgen -G ".whl/*.whl" > /dev/null; then
    for req in pydantic pyyaml threadpoolctl psutil tqdm pyarrow numba pytest pytest-benchmark; do
        step "wheel:$req" "$PY" -m pip install --no-index --find-links .whl -q "$req"
    done
fi
step install "$PY" -m pip install --no-deps --no-build-isolation --no-index -q -e .
"$PY" - > "$OUT/environment.json" 2>> "$LOG" <<'EOF'
import json, platform, subprocess
out = {"python": platform.python_version()}
for mod in ("torch", "numpy", "scipy", "pandas", "pydantic", "numba", "lubench"):
    try:
        out[mod] = getattr(__import__(mod), "__version__", "installed")
    except Exception as exc:  # noqa: BLE001 - reported, not raised
        out[mod] = f"missing ({type(exc).__name__})"
try:
    import torch
    out["cuda_available"] = bool(torch.cuda.is_available())
    out["cuda_devices"] = torch.cuda.device_count()
    out["cuda_name"] = torch.cuda.get_device_name(0) if out["cuda_devices"] else None
    out["torch_cuda"] = torch.version.cuda
except Exception as exc:  # noqa: BLE001
    out["cuda_available"] = False
    out["cuda_error"] = repr(exc)
try:
    out["nvidia_smi"] = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version",
                                        "--format=csv,noheader"], capture_output=True,
                                       text=True, timeout=30).stdout.strip()
except Exception:  # noqa: BLE001
    out["nvidia_smi"] = None
print(json.dumps(out, indent=1))
EOF
CUDA=$("$PY" -c "import json,sys; print(json.load(open(sys.argv[1])).get('cuda_available', False))" "$OUT/environment.json" 2>/dev/null || echo False)
DEV=cuda SIZES="16384 65536 262144 1048576" N=65536 SECONDS_BUDGET=600
if [ "$CUDA" != "True" ]; then
    say "no CUDA device: PyTorch sees none here (environment.json); nothing was run on a GPU"
    if [ "${GPU_CHECK_ON_CPU:-0}" != "1" ]; then
        "$PY" benchmarks/gpu_summary.py "$OUT" >> "$LOG" 2>&1 || say "summary failed"
        exit 0
    fi
    say "GPU_CHECK_ON_CPU=1: rehearsing every step on the CPU at small sizes"
    DEV=cpu SIZES="4096 16384" N=4096 SECONDS_BUDGET=60
    echo "$DEV" > "$OUT/rehearsal.txt"
fi

# 2. The CUDA tests (the GPU path through the forked executor, the sketch optimizer, the
#    fused step; the CPU parameters beside them).
step tests "$PY" -m pytest -q -p no:cacheprovider tests/test_gpu_path.py tests/test_sketch.py \
    tests/test_flat_step.py --junitxml="$OUT/tests.xml"

# 3. The CUDA benchmarks: the probe loss's Adam step (k = 64) and the sketch optimizer's step
#    (k = 128) up to n = 2^20, the near-field Newton direction.
SEL="$DEV and (probes or sketch or near)"
[ "$DEV" = cpu ] && SEL="cpu and (n1024 or 4096) and (probes or sketch or near)"
step bench "$PY" -m pytest -q -p no:cacheprovider benchmarks/test_bench_gfmm.py \
    benchmarks/test_bench_sketch.py --benchmark-only -k "$SEL" \
    --benchmark-json="$OUT/bench.json"
# shellcheck disable=SC2086  # the sizes are words
step scaling "$PY" benchmarks/sketch_scaling.py --device "$DEV" --sizes $SIZES \
    --steps 3 --json "$OUT/sketch_scaling.json"
step to_target "$PY" benchmarks/time_to_target.py --device "$DEV" --n "$N" --target 1e-6 \
    --seconds "$SECONDS_BUDGET" --json "$OUT/time_to_target.json"

# 4. A small suite with device: auto through the default (forked, local) executor.
step suite "$PY" -m lubench.cli run suites/gpu_check.yaml -o "$OUT/run" --no-report
step report "$PY" -m lubench.cli report "$OUT/run" --formats md -o "$OUT/report"

# 5. One summary.
"$PY" benchmarks/gpu_summary.py "$OUT" >> "$LOG" 2>&1 || say "summary failed"
say "summary: $OUT/summary.md"
