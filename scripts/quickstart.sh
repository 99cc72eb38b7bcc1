#!/usr/bin/env bash
# The main job on the bundled default: make a small PointMaze dataset with a noisy scripted
# expert in the real gymnasium-robotics environment (as a Minari dataset), convert it to gcrl's
# native format, summarise it, expand it with hindsight goals (HER future, k = 4, success
# within PointMaze's 0.45), and train goal-conditioned BC on it for a few hundred steps.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
mkdir -p data
python scripts/make_pointmaze_dataset.py data/minari --episodes 40 --seed 0 --force
gcrl convert data/minari/pointmaze/umaze-noisy-v0 data/pointmaze-umaze.hdf5 \
    --task reach --task-text "move the ball to the goal" --force
gcrl info data/pointmaze-umaze.hdf5
gcrl relabel data/pointmaze-umaze.hdf5 data/pointmaze-umaze-her.hdf5 \
    --strategy future --k 4 --tolerance 0.45 --seed 0 --force
gcrl fit --config configs/pointmaze-gcbc.yaml --trainer.max_steps 300 --data.steps_per_epoch 100
