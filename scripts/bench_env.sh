#!/usr/bin/env bash
# Create .venv-bench (if missing) for benchmarks/relabel.py: gcrl plus stable-baselines3, kept
# out of .venv so the reference implementation (and torch) is never a test dependency.
# Idempotent: a second run only checks that the pins are satisfied.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv-bench/bin/python ]; then
    "$PYTHON" -m venv .venv-bench
fi
# shellcheck disable=SC1091
. .venv-bench/bin/activate
export PIP_DISABLE_PIP_VERSION_CHECK=1
# pip's output (build-backend notices included) goes to a log, shown only when it fails.
log=.venv-bench/install.log
quiet() { "$@" >"$log" 2>&1 || { cat "$log"; exit 1; }; }
quiet pip install --upgrade pip
# Torch first: `pip install torch==2.13.0` takes the local CPU wheel, while letting
# stable-baselines3 pull it in fetches the CUDA build.
quiet pip install torch==2.13.0
quiet pip install -e ".[minari,envs]"
quiet pip install stable-baselines3==2.9.2
