#!/usr/bin/env bash
# The main job on the bundled default: the PointMaze dataset shipped inside the package
# (OGBench's medium maze, navigate-style play of a noisy waypoint expert), goal-conditioned BC
# trained twice for 3000 steps, once on the expert's own goals and once with hindsight goals
# added (HER future, k = 4, drawn within each pursuit of one goal: plain HER hurts BC on this
# play data, docs/relabel.md says why), each policy evaluated in the real maze on OGBench's
# five evaluation tasks, and the two compared.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}  # small networks: one thread avoids contention
mkdir -p data runs
gcrl info bundled:pointmaze-medium-navigate
gcrl relabel bundled:pointmaze-medium-navigate data/pointmaze-medium-her.hdf5 \
    --strategy future --k 4 --tolerance 1.0 --within-goal-segments --seed 0 --force
for run in stored her; do
    data=bundled:pointmaze-medium-navigate
    if [ "$run" = her ]; then data=data/pointmaze-medium-her.hdf5; fi
    echo "== BC on the $run goals ($data)"
    gcrl fit --config configs/quickstart.yaml --data.path "$data" --trainer.enable_progress_bar false
    checkpoint=$(ls -t runs/csv/version_*/checkpoints/*.ckpt | head -1)
    gcrl evaluate "$checkpoint" --env pointmaze-medium --episodes 10 \
        --json "runs/quickstart-$run.json" --plot "runs/quickstart-$run.png"
done
python - <<'PY'
import json
rates = {run: json.load(open(f"runs/quickstart-{run}.json"))["summary"] for run in ("stored", "her")}
print("\nmean success over the five tasks (10 episodes each):")
print(f"  BC on the expert's own goals:                    {rates['stored']['success_mean']:.0%}")
print(f"  BC with hindsight goals within each pursuit:     {rates['her']['success_mean']:.0%}")
print("  (one seed each: docs/results.md compares them over three seeds)")
PY
