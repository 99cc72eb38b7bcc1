#!/usr/bin/env bash
# The main job on the bundled default: the PointMaze dataset shipped inside the package
# (OGBench's medium maze, navigate-style play of a noisy waypoint expert), expanded with
# hindsight goals (HER future, k = 4), goal-conditioned BC trained on it for 3000 steps, and
# the policy evaluated in the real maze on OGBench's five evaluation tasks.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}  # small networks: one thread avoids contention
mkdir -p data
gcrl info bundled:pointmaze-medium-navigate
gcrl relabel bundled:pointmaze-medium-navigate data/pointmaze-medium-her.hdf5 \
    --strategy future --k 4 --tolerance 1.0 --seed 0 --force
gcrl fit --config configs/quickstart.yaml --trainer.enable_progress_bar false
checkpoint=$(ls -t runs/csv/version_*/checkpoints/*.ckpt | head -1)
gcrl evaluate "$checkpoint" --env pointmaze-medium --episodes 10 \
    --json runs/quickstart-eval.json --plot runs/quickstart-success.png
