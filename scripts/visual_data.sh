#!/usr/bin/env bash
# The camera-image datasets of the visual configs (about 20 minutes on 2 CPU cores: OGBench's
# renderer draws about 4 frames per second per core).
set -euo pipefail
cd "$(dirname "$0")/.."
. .venv/bin/activate
mkdir -p results/data
gcrl collect visual-cube-single results/data/visual-cube-single.hdf5 --episodes 20 --max-steps 200 --seed 0 --workers 2 --force
