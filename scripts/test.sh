#!/usr/bin/env bash
# The test suite: installs what it needs, then lint, type check and tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
ruff check gcrl tests benchmarks scripts
ruff format --check gcrl tests benchmarks scripts
mypy
python -m pytest "$@"
