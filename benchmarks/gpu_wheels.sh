#!/usr/bin/env bash
# Fill .whl/ (git-ignored) with the wheels benchmarks/gpu_check.sh installs on a borrowed GPU
# machine, which has Python 3.12, PyTorch, NumPy, SciPy, pandas, pluggy and click but no
# network and not pydantic: pydantic with its own dependencies, and the few of ours that such
# a machine may lack (pure-Python or manylinux x86_64 wheels for CPython 3.12). Run it on a
# machine that reaches the package index, before carrying the working tree over:
#
#   bash benchmarks/gpu_wheels.sh            # then carry .whl/ along (run's `carry`)
set -eu
cd "$(dirname "$0")/.."
mkdir -p .whl
python3 -m pip download --dest .whl --only-binary=:all: --python-version 3.12 \
    --implementation cp --abi cp312 --platform manylinux2014_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \
    "pydantic>=2.5" "pyyaml>=6" "threadpoolctl>=3.1" "psutil>=5.9" "tqdm>=4.60" \
    "pyarrow>=12" "numba>=0.60" "pytest>=7.4" "pytest-benchmark>=4" "setuptools>=77" wheel
ls .whl
