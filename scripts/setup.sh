#!/usr/bin/env bash
# Create .venv (if missing) and install gcrl with everything the quick start and tests need.
# Idempotent: a second run only checks that the pins are satisfied.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
# shellcheck disable=SC1091
. .venv/bin/activate
export PIP_DISABLE_PIP_VERSION_CHECK=1
# pip's output (build-backend notices included) goes to a log, shown only when it fails.
log=.venv/install.log
quiet() { "$@" >"$log" 2>&1 || { cat "$log"; exit 1; }; }
quiet pip install --upgrade pip
# Torch must come first: `pip install torch==2.13.0` takes the local CPU wheel, while letting
# lightning or sentence-transformers pull it in fetches the CUDA build (gigabytes).
quiet pip install torch==2.13.0
quiet pip install -e ".[minari,envs,eval,train,dev]"
# d4rl cannot be fully installed (it needs mujoco-py); its pure-Python helpers are the
# reference of the D4RL parity tests.
quiet pip install --no-deps d4rl==1.1 gym==0.24.1 gym-notices termcolor
