#!/usr/bin/env bash
# The datasets behind docs/results.md (about 5 minutes on 2 CPU cores).
set -euo pipefail
cd "$(dirname "$0")/.."
. .venv/bin/activate
mkdir -p results/data
gcrl collect pointmaze results/data/pointmaze-medium.hdf5 --maze medium --episodes 200 --seed 0 --force
gcrl relabel results/data/pointmaze-medium.hdf5 results/data/pointmaze-medium-her.hdf5 \
    --strategy future --k 4 --tolerance 1.0 --seed 0 --force
gcrl collect pointmaze-tasks results/data/pointmaze-tasks.hdf5 --maze medium \
    --episodes-per-task 200,200,20,20,5 --off-task 0.5,0.5,0,0,0 --seed 0 --force
# Routes: the rich tasks' episodes pass through another task's goal before their own.
gcrl collect pointmaze-tasks results/data/pointmaze-routes.hdf5 --maze medium \
    --episodes-per-task 200,200,5,5,5 --detour 1,1,0,0,0 --max-steps 400 --seed 0 --force
for strategy in future geometric within-pursuit; do
    case $strategy in
        future) options=(--strategy future) ;;
        geometric) options=(--strategy geometric --gamma 0.9) ;;
        within-pursuit) options=(--strategy future --within-goal-segments) ;;
    esac
    gcrl relabel bundled:pointmaze-medium-navigate "results/data/bundled-her-$strategy.hdf5" \
        "${options[@]}" --k 4 --tolerance 1.0 --seed 0 --force
done
gcrl collect metaworld-mt10 results/data/mt10.hdf5 --episodes 20 --noise 0.1 --seed 0 --force
gcrl collect babyai results/data/babyai-gotolocal.hdf5 --episodes 3000 --noise 0.1 \
    --hold-out "red ball" --seed 0 --force
# MT10 without window-close (the zero-shot rows): its episodes dropped, the task table kept.
.venv/bin/python -c "
from gcrl.datasets import load, save
d = load('results/data/mt10.hdf5')
held = d.tasks.index(next(t for t in d.tasks if t.name == 'window-close-v3'))
keep = [e for e in range(d.num_episodes) if d.task_ids[d.episode_starts[e]] != held]
save(d.select_episodes(keep), 'results/data/mt10-no-window-close.hdf5', overwrite=True)
"
