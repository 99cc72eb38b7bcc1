"""Goal relabeling speed: gcrl's on-the-fly sampler beside stable-baselines3's HerReplayBuffer
and beside OGBench's GCDataset, and gcrl's offline expansion (``gcrl relabel``).

    scripts/bench_env.sh                                   # .venv-bench: gcrl + SB3 (+ torch)
    .venv-bench/bin/python benchmarks/relabel.py           # 1M transitions (~0.6 GB of scratch)
    .venv-bench/bin/python benchmarks/relabel.py --transitions 100000 --repeats 1

Builds (once, cached under --workdir) a native gcrl file of PointMaze-like transitions: dict
observations ``observation`` (4,: position and velocity), ``achieved_goal`` (2,: the
position, a smooth random walk) and ``desired_goal`` (2,: fixed per episode), float32 actions,
episodes of --episode-length steps ending in a timeout; and a file of its first half.

On-the-fly rows, in transitions per second (batch size x calls / seconds, timed over at least
--seconds per measurement, best of --repeats):

* SB3 ``HerReplayBuffer.sample`` (``future``, ``n_sampled_goal=4``, ``device="cpu"``: it
  returns torch tensors, part of its real cost), its arrays filled directly with the same
  transitions; rewards come from the real ``PointMaze_UMaze-v3``'s vectorised
  ``compute_reward`` through a ``DummyVecEnv``, as in training.
* OGBench's ``GCDataset.sample`` (``impls/utils/datasets.py``) rebuilt in numpy: GCIQL's
  config (value goals: current 0.2, geometric trajectory goals 0.5 with discount 0.99, random
  0.3; actor goals: uniform trajectory goals; ``gc_negative``), on OGBench's compact layout
  (N + E states, ``valids``), ``jax.tree_util.tree_map`` replaced by a dict walk. Like
  OGBench's own files, its observations are flat (the ``observation`` key) and its goals are
  whole observations; gcrl's OGBench mode runs on the same flat observations.
* gcrl's ``GoalSampler`` in the mode of each: HER k = 4 with PointMaze's 0.45 success radius,
  and OGBench's value and actor goals with OGBench's reward (index equality, -1/0).
* gcrl's ``GoalSampler`` in OGBench's mode with 2-D position goals, three layouts of the same
  data: dict observations (``achieved_goal``), and flat array observations whose first two
  dimensions are the goal, given as a list (``goal_dims=[0, 1]``) or a slice; the array rows
  should be as fast as the dict one (D4RL-AntMaze-style data).

Every method runs in a fresh subprocess; its peak memory is the growth of the maximum resident
set over its setup (load, buffer fill) and sampling. The offline rows time ``gcrl relabel`` on
the whole file and on its first half, each run in a fresh process that does nothing else:
seconds, and the growth of the peak resident set over the command (interpreter and imports
excluded), which should not grow with the file. The tables end with the
ratios the targets are stated in.
"""

# OGBench and SB3 draw from numpy's global generator; the rebuild does as OGBench does.
# ruff: noqa: NPY002

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from _measure import peak_mb, reset_peak, run_isolated

#: PointMaze's success radius (its sparse ``compute_reward``).
GOAL_RADIUS = 0.45
#: HER's relabeled goals per kept one.
HER_K = 4
SB3 = "SB3 HerReplayBuffer"
OGBENCH = "OGBench-style GCDataset"
GCRL_HER = "gcrl GoalSampler (HER k=4)"
GCRL_OGBENCH = "gcrl GoalSampler (OGBench)"
GCRL_DICT = "gcrl GoalSampler (OGBench), dict, achieved_goal"
GCRL_LIST = "gcrl GoalSampler (OGBench), array, goal_dims [0, 1]"
GCRL_SLICE = "gcrl GoalSampler (OGBench), array, goal_dims 0:2"
#: The measurement of one offline ``gcrl relabel`` in a fresh process.
OFFLINE = "offline"

Sample = Callable[[int], Any]


# --------------------------------------------------------------------------- data
def make_data(path: Path, half: Path, transitions: int, episode_length: int) -> None:
    """The benchmark's native file (and one of its first half of the episodes), once."""
    from gcrl.datasets import Trajectories, save

    if path.exists() and half.exists():
        return
    rng = np.random.default_rng(0)
    lengths = [episode_length] * (transitions // episode_length)
    if transitions % episode_length:
        lengths.append(transitions % episode_length)
    episodes, steps = len(lengths), max(lengths)
    # A damped random walk per episode (steps + 1 states): velocity follows the actions.
    actions = rng.uniform(-1, 1, size=(episodes, steps, 2)).astype(np.float32)
    position = np.empty((episodes, steps + 1, 2))
    velocity = np.empty((episodes, steps + 1, 2))
    position[:, 0] = rng.uniform(-1.5, 1.5, size=(episodes, 2))
    velocity[:, 0] = 0.0
    for t in range(steps):
        velocity[:, t + 1] = 0.9 * velocity[:, t] + 0.1 * actions[:, t]
        position[:, t + 1] = position[:, t] + 0.1 * velocity[:, t + 1]
    states = {
        "achieved_goal": position,
        "desired_goal": np.repeat(rng.uniform(-1.5, 1.5, size=(episodes, 1, 2)), steps + 1, 1),
        "observation": np.concatenate([position, velocity], axis=-1),
    }
    # Rows of every episode, in order (the last episode may be shorter).
    keep = (np.arange(steps)[None, :] < np.asarray(lengths)[:, None]).ravel()
    observations = {k: v[:, :-1].reshape(-1, v.shape[-1])[keep] for k, v in states.items()}
    nxt = {k: v[:, 1:].reshape(-1, v.shape[-1])[keep] for k, v in states.items()}
    distance = np.linalg.norm(nxt["achieved_goal"] - nxt["desired_goal"], axis=-1)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    timeouts = np.zeros(transitions, dtype=bool)
    timeouts[np.cumsum(lengths) - 1] = True
    data = Trajectories(
        observations=observations,
        actions=actions.reshape(-1, 2)[keep],
        rewards=(distance <= GOAL_RADIUS).astype(np.float32),
        terminals=np.zeros(transitions, dtype=bool),
        timeouts=timeouts,
        next_observations=nxt,
        episode_starts=starts,
        attrs={"source": "benchmarks/relabel.py (synthetic PointMaze-like)"},
    )
    save(data, path, overwrite=True)
    half_rows = int(starts[max(episodes // 2, 1)]) if episodes > 1 else transitions
    save(data.rows(0, half_rows), half, overwrite=True)


# --------------------------------------------------------------------------- SB3
def sb3_sampler(path: Path) -> tuple[Sample, dict[str, Any]]:
    """SB3's HerReplayBuffer holding the file's transitions, and what its check found."""
    import gymnasium as gym
    import gymnasium_robotics
    from stable_baselines3 import HerReplayBuffer
    from stable_baselines3.common.vec_env import DummyVecEnv

    from gcrl.datasets import load_native

    gym.register_envs(gymnasium_robotics)
    env = DummyVecEnv([lambda: gym.make("PointMaze_UMaze-v3")])
    data = load_native(path)
    buffer = HerReplayBuffer(
        data.num_transitions,
        env.observation_space,
        env.action_space,
        env,
        device="cpu",
        n_sampled_goal=HER_K,
        goal_selection_strategy="future",
    )
    fill_her_buffer(buffer, data)
    del data
    np.random.seed(0)  # SB3 draws from numpy's global generator
    notes = check_her_buffer(buffer)
    return buffer.sample, notes


def fill_her_buffer(buffer: Any, data: Any) -> None:
    """Put ``data`` into an empty HerReplayBuffer of its size, as N ``add()`` calls would.

    ``add()`` stores ``done = terminated or truncated`` (what the VecEnv reports), and
    ``timeouts`` from ``info["TimeLimit.truncated"]``; at each episode's end it writes the
    episode's start and length into every row of the episode. After exactly ``buffer_size``
    additions ``pos`` has wrapped to 0 and the buffer is ``full``.
    """
    n = data.num_transitions
    assert buffer.buffer_size == n and buffer.n_envs == 1 and buffer.pos == 0
    for key, column in buffer.observations.items():
        column[:, 0] = data.observations[key]
        buffer.next_observations[key][:, 0] = data.next_observations[key]
    buffer.actions[:, 0] = data.actions
    buffer.rewards[:, 0] = data.rewards
    buffer.dones[:, 0] = data.terminals | data.timeouts
    buffer.timeouts[:, 0] = data.timeouts & ~data.terminals
    lengths = data.episode_lengths
    buffer.ep_start[:, 0] = np.repeat(data.episode_starts, lengths)
    buffer.ep_length[:, 0] = np.repeat(lengths, lengths)
    buffer._current_ep_start[:] = 0
    buffer.pos, buffer.full = 0, True


def check_her_buffer(buffer: Any) -> dict[str, Any]:
    """Check that relabeled goals come from the row's own episode, at or after the row, and
    that ``sample`` returns torch tensors with rewards by PointMaze's radius.

    Returns ``future_includes_current``: the share of ``future`` goals that are the row's own
    next achieved goal (SB3 draws among the next observations of steps ``t .. T-1``).
    """
    import torch

    n = buffer.buffer_size
    rows = np.random.randint(0, n, size=2048)
    goals = buffer._sample_goals(rows, np.zeros_like(rows))
    next_achieved = buffer.next_observations["achieved_goal"][:, 0]
    ends = buffer.ep_start[rows, 0] + buffer.ep_length[rows, 0]
    for row, end, goal in zip(rows, ends, goals, strict=True):
        if not (next_achieved[row:end] == goal).all(axis=1).any():
            raise AssertionError(f"SB3 goal of row {row} is not a later state of its episode")
    current = float((goals == next_achieved[rows]).all(axis=1).mean())

    batch = buffer.sample(512)
    assert isinstance(batch.actions, torch.Tensor) and batch.rewards.shape == (512, 1)
    virtual = int((1 - 1 / (HER_K + 1)) * 512)
    achieved = batch.next_observations["achieved_goal"][:virtual].numpy()
    goal = batch.observations["desired_goal"][:virtual].numpy()
    expected = np.linalg.norm(achieved - goal, axis=-1) <= GOAL_RADIUS
    assert (batch.rewards[:virtual, 0].numpy() == expected).all(), "SB3 rewards disagree"
    return {"future_includes_current": current}


# --------------------------------------------------------------------------- OGBench
OGBENCH_CONFIG: dict[str, Any] = {
    # GCIQL's (and GCIVL's) dataset settings in OGBench's impls/agents.
    "discount": 0.99,
    "value_p_curgoal": 0.2,
    "value_p_trajgoal": 0.5,
    "value_p_randomgoal": 0.3,
    "value_geom_sample": True,
    "actor_p_curgoal": 0.0,
    "actor_p_trajgoal": 1.0,
    "actor_p_randomgoal": 0.0,
    "actor_geom_sample": False,
    "gc_negative": True,
    "p_aug": 0.0,
    "frame_stack": None,
}


def tree_map(function: Callable[[np.ndarray], Any], tree: Any) -> Any:
    """``jax.tree_util.tree_map`` over nested dicts of arrays."""
    if isinstance(tree, dict):
        return {k: tree_map(function, v) for k, v in tree.items()}
    return function(tree)


def tree_leaves(tree: Any) -> list[np.ndarray]:
    if isinstance(tree, dict):
        return [leaf for v in tree.values() for leaf in tree_leaves(v)]
    return [tree]


class OGBenchDataset(dict):  # type: ignore[type-arg]
    """OGBench's ``Dataset`` (a FrozenDict of arrays), in numpy."""

    def __init__(self, fields: dict[str, Any]) -> None:
        super().__init__(fields)
        self.size = max(len(leaf) for leaf in tree_leaves(dict(self)))
        if "valids" in self:
            (self.valid_idxs,) = np.nonzero(self["valids"] > 0)

    def get_random_idxs(self, num_idxs: int) -> np.ndarray:
        if "valids" in self:
            return self.valid_idxs[np.random.randint(len(self.valid_idxs), size=num_idxs)]
        return np.random.randint(self.size, size=num_idxs)

    def sample(self, batch_size: int, idxs: np.ndarray | None = None) -> dict[str, Any]:
        if idxs is None:
            idxs = self.get_random_idxs(batch_size)
        return self.get_subset(idxs)

    def get_subset(self, idxs: np.ndarray) -> dict[str, Any]:
        result = tree_map(lambda arr: arr[idxs], dict(self))
        if "next_observations" not in result:
            nxt = np.minimum(idxs + 1, self.size - 1)
            result["next_observations"] = tree_map(lambda arr: arr[nxt], self["observations"])
        return result


@dataclass
class OGBenchGCDataset:
    """OGBench's ``GCDataset`` (without frame stacking and image augmentation), in numpy."""

    dataset: OGBenchDataset
    config: dict[str, Any]

    def __post_init__(self) -> None:
        self.size = self.dataset.size
        (self.terminal_locs,) = np.nonzero(self.dataset["terminals"] > 0)
        self.initial_locs = np.concatenate([[0], self.terminal_locs[:-1] + 1])
        assert self.terminal_locs[-1] == self.size - 1
        c = self.config
        assert np.isclose(c["value_p_curgoal"] + c["value_p_trajgoal"] + c["value_p_randomgoal"], 1)
        assert np.isclose(c["actor_p_curgoal"] + c["actor_p_trajgoal"] + c["actor_p_randomgoal"], 1)
        assert c["frame_stack"] is None

    def sample(
        self, batch_size: int, idxs: np.ndarray | None = None, evaluation: bool = False
    ) -> dict[str, Any]:
        c = self.config
        if idxs is None:
            idxs = self.dataset.get_random_idxs(batch_size)
        batch = self.dataset.sample(batch_size, idxs)
        value_goal_idxs = self.sample_goals(
            idxs,
            c["value_p_curgoal"],
            c["value_p_trajgoal"],
            c["value_p_randomgoal"],
            c["value_geom_sample"],
        )
        actor_goal_idxs = self.sample_goals(
            idxs,
            c["actor_p_curgoal"],
            c["actor_p_trajgoal"],
            c["actor_p_randomgoal"],
            c["actor_geom_sample"],
        )
        batch["value_goals"] = self.get_observations(value_goal_idxs)
        batch["actor_goals"] = self.get_observations(actor_goal_idxs)
        successes = (idxs == value_goal_idxs).astype(float)
        batch["masks"] = 1.0 - successes
        batch["rewards"] = successes - (1.0 if c["gc_negative"] else 0.0)
        if c["p_aug"] is not None and not evaluation and np.random.rand() < c["p_aug"]:
            raise NotImplementedError("image augmentation")
        return batch

    def sample_goals(
        self,
        idxs: np.ndarray,
        p_curgoal: float,
        p_trajgoal: float,
        p_randomgoal: float,
        geom_sample: bool,
    ) -> np.ndarray:
        batch_size = len(idxs)
        random_goal_idxs = self.dataset.get_random_idxs(batch_size)
        # Goals from the same trajectory (excluding the current state, unless it is the final).
        final_state_idxs = self.terminal_locs[np.searchsorted(self.terminal_locs, idxs)]
        if geom_sample:
            offsets = np.random.geometric(p=1 - self.config["discount"], size=batch_size)
            traj_goal_idxs = np.minimum(idxs + offsets, final_state_idxs)
        else:
            distances = np.random.rand(batch_size)  # in [0, 1)
            traj_goal_idxs = np.round(
                np.minimum(idxs + 1, final_state_idxs) * distances
                + final_state_idxs * (1 - distances)
            ).astype(int)
        if p_curgoal == 1.0:
            return idxs
        goal_idxs = np.where(
            np.random.rand(batch_size) < p_trajgoal / (1.0 - p_curgoal),
            traj_goal_idxs,
            random_goal_idxs,
        )
        return np.where(np.random.rand(batch_size) < p_curgoal, idxs, goal_idxs)

    def get_observations(self, idxs: np.ndarray) -> Any:
        return tree_map(lambda arr: arr[idxs], self.dataset["observations"])


def flat_observations(data: Any) -> Any:
    """``data`` with its ``observation`` key as flat array observations, as OGBench stores
    them (its goals are whole observations)."""
    import dataclasses

    return dataclasses.replace(
        data,
        observations=data.observations["observation"],
        next_observations=data.next_observations["observation"],
    )


def ogbench_layout(data: Any) -> dict[str, Any]:
    """OGBench's compact dataset of ``data`` (flat observations): each episode's L + 1 states
    in a row.

    First the layout of OGBench's files (``terminals`` on each episode's last state, whose
    action is unused), then ``ogbench.utils.load_dataset(compact_dataset=True)``'s step:
    ``valids`` masks the last state and ``terminals`` also marks the one before it.
    """
    n, e = data.num_transitions, data.num_episodes
    states = np.arange(n) + data.episode_ids  # state position of each row's s_t
    last = data.episode_ends + np.arange(e)  # position of each episode's final state

    def per_state(column: np.ndarray, final: np.ndarray | None) -> np.ndarray:
        out = np.zeros((n + e, *column.shape[1:]), dtype=column.dtype)
        out[states] = column
        if final is not None:
            out[last] = final
        return out

    ends = data.episode_ends - 1
    observations = per_state(data.observations, data.next_observations[ends])
    terminals = np.zeros(n + e, dtype=np.float32)
    terminals[last] = 1.0
    valids = 1.0 - terminals
    terminals = np.minimum(terminals + np.concatenate([terminals[1:], [1.0]]), 1.0)
    return {
        "observations": observations,
        "actions": per_state(data.actions, None),
        "terminals": terminals.astype(np.float32),
        "valids": valids,
    }


def ogbench_sampler(path: Path) -> tuple[Sample, dict[str, Any]]:
    from gcrl.datasets import load_native

    dataset = OGBenchDataset(ogbench_layout(flat_observations(load_native(path))))
    sampler = OGBenchGCDataset(dataset, OGBENCH_CONFIG)
    np.random.seed(0)
    return sampler.sample, {}


# --------------------------------------------------------------------------- gcrl
def gcrl_sampler(path: Path, mode: str) -> tuple[Sample, dict[str, Any]]:
    """gcrl's GoalSampler over the loaded file: ``her`` (SB3's mode), ``ogbench`` (OGBench's
    mode, goals are whole flat observations), or OGBench's mode with position goals on
    ``dict`` observations (``achieved_goal``) or on flat array observations whose first two
    dimensions are the goal (``list``: ``goal_dims=[0, 1]``, ``slice``: ``slice(0, 2)``)."""
    from gcrl.datasets import load_native
    from gcrl.relabel import GoalMixture, GoalReward, GoalSampler

    data = load_native(path)
    if mode == "her":
        sampler = GoalSampler(
            data,
            goal_key="achieved_goal",
            value_goals=GoalMixture.her(k=HER_K),
            reward=GoalReward(tolerance=GOAL_RADIUS),
            seed=0,
        )
        return sampler.sample, {}
    goal_dims: Any = {"list": [0, 1], "slice": slice(0, 2)}.get(mode)
    sampler = GoalSampler(
        data if mode == "dict" else flat_observations(data),
        goal_key="achieved_goal",
        goal_dims=goal_dims,
        value_goals=GoalMixture.ogbench_value(),
        actor_goals=GoalMixture.ogbench_actor(),
        reward=GoalReward.ogbench(),
        seed=0,
    )
    return sampler.sample, {}


def gcrl_available() -> bool:
    """Whether gcrl's on-the-fly sampler exists in this checkout."""
    return importlib.util.find_spec("gcrl.relabel.sampler") is not None


def gcrl_cli_available() -> bool:
    """Whether ``gcrl relabel`` exists in this checkout."""
    return importlib.util.find_spec("gcrl.cli.relabel") is not None


# --------------------------------------------------------------------------- measuring
#: name -> (setup, modules imported before the peak is reset).
SAMPLERS: dict[str, tuple[Callable[[Path], tuple[Sample, dict[str, Any]]], tuple[str, ...]]] = {
    SB3: (sb3_sampler, ("torch", "stable_baselines3", "gymnasium_robotics")),
    OGBENCH: (ogbench_sampler, ()),
    GCRL_HER: (lambda path: gcrl_sampler(path, "her"), ("gcrl.relabel",)),
    GCRL_OGBENCH: (lambda path: gcrl_sampler(path, "ogbench"), ("gcrl.relabel",)),
    GCRL_DICT: (lambda path: gcrl_sampler(path, "dict"), ("gcrl.relabel",)),
    GCRL_LIST: (lambda path: gcrl_sampler(path, "list"), ("gcrl.relabel",)),
    GCRL_SLICE: (lambda path: gcrl_sampler(path, "slice"), ("gcrl.relabel",)),
}
GCRL_ROWS = (GCRL_HER, GCRL_OGBENCH, GCRL_DICT, GCRL_LIST, GCRL_SLICE)


def measure(
    name: str, target: Path, batches: list[int], repeats: int, seconds: float
) -> dict[str, Any]:
    """Set one sampler up and time it at each batch size (called in a fresh subprocess)."""
    setup, modules = SAMPLERS[name]
    warnings.simplefilter("ignore")
    for module in ("h5py", "gcrl.datasets.native_format", *modules):
        importlib.import_module(module)
    rss0 = reset_peak()
    start = time.perf_counter()
    sample, notes = setup(target)
    setup_seconds = time.perf_counter() - start
    rates = {}
    for batch in batches:
        sample(batch)  # warm-up
        rates[str(batch)] = max(throughput(sample, batch, seconds) for _ in range(repeats))
    return {"rates": rates, "setup_s": setup_seconds, "peak_mb": peak_mb(rss0), **notes}


def throughput(sample: Sample, batch: int, seconds: float) -> float:
    """Transitions per second of ``sample(batch)`` called for at least ``seconds``."""
    calls, start = 0, time.perf_counter()
    while True:
        sample(batch)
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return calls * batch / elapsed


def offline_argv(source: Path, out: Path) -> list[str]:
    """``gcrl relabel``'s arguments of the offline rows."""
    return ["relabel", str(source), str(out), "--strategy", "future", "--k", str(HER_K)]


def measure_offline(source: Path, out: Path) -> dict[str, float]:
    """One ``gcrl relabel`` (called in a fresh process that does nothing else): seconds and
    the growth of the peak resident set over the command alone, MB (the interpreter and the
    imports excluded, so the figure is the command's working memory)."""
    from gcrl.cli.main import main as gcrl_main

    rss0 = reset_peak()
    start = time.perf_counter()
    code = gcrl_main([*offline_argv(source, out), "--force", "--seed", "0"])
    seconds = time.perf_counter() - start
    if code:
        sys.exit(f"gcrl relabel exited {code}")
    return {"seconds": seconds, "peak_mb": peak_mb(rss0)}


def offline(source: Path, out: Path, repeats: int) -> dict[str, float]:
    """``gcrl relabel`` on ``source``, each run in a fresh process: best seconds, highest
    peak (MB)."""
    runs = [
        run_isolated(__file__, OFFLINE, ["--target", str(source), "--out", str(out)])
        for _ in range(repeats)
    ]
    written = _transitions(out)
    out.unlink()
    return {
        "transitions": _transitions(source),
        "output": written,
        "seconds": min(r["seconds"] for r in runs),
        "peak_mb": max(r["peak_mb"] for r in runs),
    }


# --------------------------------------------------------------------------- report
def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--transitions", type=int, default=1_000_000)
    parser.add_argument("--episode-length", type=int, default=500)
    parser.add_argument("--batches", type=int, nargs="+", default=[256, 4096])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=1.0, help="least time per measurement")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/gcrl-bench-relabel"))
    parser.add_argument("--skip", nargs="*", default=[], help="method names to skip")
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    parser.add_argument("--target", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure == OFFLINE:
        print(json.dumps(measure_offline(args.target, args.out)))
        return
    if args.measure:
        result = measure(args.measure, args.target, args.batches, args.repeats, args.seconds)
        print(json.dumps(result))
        return

    work = args.workdir / f"n{args.transitions}-L{args.episode_length}"
    work.mkdir(parents=True, exist_ok=True)
    full, half = work / "data.hdf5", work / "half.hdf5"
    print(f"building data in {work} (cached) ...", file=sys.stderr)
    make_data(full, half, args.transitions, args.episode_length)

    skip = set(args.skip)
    if not gcrl_available():
        print("gcrl.relabel.sampler is missing: gcrl rows skipped", file=sys.stderr)
        skip |= set(GCRL_ROWS)
    results: dict[str, dict[str, Any]] = {}
    child_args = ["--target", str(full), "--repeats", str(args.repeats)]
    child_args += ["--seconds", str(args.seconds), "--batches", *map(str, args.batches)]
    for name in SAMPLERS:
        if name in skip:
            continue
        results[name] = run_isolated(__file__, name, child_args)
        rates = ", ".join(f"{b}: {r:,.0f}/s" for b, r in results[name]["rates"].items())
        print(f"  {name}: {rates}", file=sys.stderr)

    expansions: dict[str, dict[str, float]] = {}
    if "offline" in skip:
        pass
    elif not gcrl_cli_available():
        print("gcrl.cli.relabel is missing: offline rows skipped", file=sys.stderr)
    else:
        scratch = work / "relabeled.hdf5"
        for label, source in (("full", full), ("half", half)):
            expansions[label] = offline(source, scratch, args.repeats)
            print(f"  gcrl relabel ({label}): {expansions[label]}", file=sys.stderr)
    report(args, results, expansions)


def _transitions(path: Path) -> float:
    from gcrl.datasets import open_native

    with open_native(path) as reader:
        return float(reader.num_transitions)


def report(
    args: argparse.Namespace,
    results: dict[str, dict[str, Any]],
    expansions: dict[str, dict[str, float]],
) -> None:
    print(
        f"\n{args.transitions:,} transitions, episodes of {args.episode_length} steps; "
        f"transitions/s best of {args.repeats} runs of >= {args.seconds:g} s, "
        "each method in a fresh process\n"
    )
    print("| method | batch | transitions/s | ratio vs SB3 | ratio vs OGBench-style | peak MB |")
    print("|---|---:|---:|---:|---:|---:|")

    def rate(name: str, batch: int) -> float | None:
        return results[name]["rates"][str(batch)] if name in results else None

    def ratio(name: str, base: str, batch: int) -> str:
        a, b = rate(name, batch), rate(base, batch)
        return f"{a / b:.2f}" if a is not None and b is not None else "n/a"

    for name, result in results.items():
        for batch in args.batches:
            print(
                f"| {name} | {batch} | {rate(name, batch):,.0f} | {ratio(name, SB3, batch)} | "
                f"{ratio(name, OGBENCH, batch)} | {result['peak_mb']:.0f} |"
            )
    if SB3 in results:
        share = results[SB3]["future_includes_current"]
        print(
            f"\nSB3's `future` draws steps t..T-1 and takes their next achieved goal: {share:.2%} "
            "of its relabeled goals are the row's own s' (reward 1 at once), the same "
            "distribution as gcrl's default `future` (states after s_t)."
        )

    if expansions:
        print(
            "\n| offline `gcrl relabel --strategy future --k 4` | transitions | written "
            "| seconds | peak MB |"
        )
        print("|---|---:|---:|---:|---:|")
        for label, r in expansions.items():
            print(
                f"| {label} file | {r['transitions']:,.0f} | {r['output']:,.0f} "
                f"| {r['seconds']:.2f} | {r['peak_mb']:.0f} |"
            )

    rows: list[tuple[str, str, str]] = []
    for batch in args.batches:
        rows.append((f"gcrl HER / SB3, batch {batch}", ratio(GCRL_HER, SB3, batch), ">= 5"))
    for batch in args.batches:
        label = f"gcrl OGBench / OGBench-style, batch {batch}"
        rows.append((label, ratio(GCRL_OGBENCH, OGBENCH, batch), ">= 1"))
    full, half = expansions.get("full"), expansions.get("half")
    rows.append(
        (
            "offline k=4 on the full file, seconds",
            f"{full['seconds']:.1f}" if full else "n/a",
            "< 30 at 1M" if args.transitions == 1_000_000 else "< 30 at 1M (not 1M here)",
        )
    )
    for name in (GCRL_LIST, GCRL_SLICE):
        for batch in args.batches:
            label = f"{name.split(', ', 1)[1]} / dict, batch {batch}"
            rows.append((label, ratio(name, GCRL_DICT, batch), ">= 0.67 (within 1.5x)"))
    rows.append(
        (
            "offline peak memory, full / half file",
            f"{full['peak_mb'] / half['peak_mb']:.2f}" if full and half else "n/a",
            "~ 1 (independent of size)",
        )
    )
    print("\nratios (targets in brackets)")
    for label, value, target in rows:
        print(f"{label:<44} {value:>6}  [{target}]")


if __name__ == "__main__":
    main()
