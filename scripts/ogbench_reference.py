"""Train one of OGBench's own agents on an npz file and evaluate it in OGBench's environment:
the reference rows beside gcrl's in ``docs/results.md``.

    /tmp/jax/bin/python scripts/ogbench_reference.py --impls OGBENCH/impls --data data.npz \\
        --env pointmaze-medium-navigate-v0 --agent gciql --set alpha=0.003 \\
        --steps 40000 --eval-every 10000 --episodes 10 --seed 0 --out curve.json

It runs OGBench's code unmodified, as ``impls/main.py`` does, minus wandb and videos:
``ogbench.utils.load_dataset`` (compact layout), ``utils.datasets.GCDataset`` /
``HGCDataset`` sampling, the agent's ``create`` and ``update``, and
``utils.evaluation.evaluate`` on every task. ``--impls`` is the ``impls`` folder of an OGBench
checkout (it is not on PyPI); the interpreter needs ``ogbench``, ``jax``, ``flax``, ``optax``,
``distrax`` and ``ml_collections``. Make the npz with ``gcrl.datasets.write_ogbench``.

Prints one line per evaluation and writes ``--out`` (JSON): ``steps``, ``success`` (per task,
fractions of episodes), ``mean`` (over tasks) and ``steps_per_second`` (sampling and updates,
after the first update, which compiles).
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import random
import sys
import time
from pathlib import Path
from typing import Any


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--impls", required=True, type=Path, help="OGBench checkout's impls/")
    parser.add_argument("--data", required=True, type=Path, help="npz in OGBench's layout")
    parser.add_argument(
        "--env", default="pointmaze-medium-navigate-v0", help="OGBench dataset name"
    )
    parser.add_argument("--agent", default="gciql", help="impls/agents/<agent>.py")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override the agent's config (a Python literal), e.g. alpha=0.003",
    )
    parser.add_argument("--steps", type=int, default=40_000, help="training steps")
    parser.add_argument("--eval-every", type=int, default=10_000, help="steps between evaluations")
    parser.add_argument("--episodes", type=int, default=10, help="evaluation episodes per task")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True, type=Path, help="JSON curve to write")
    parser.add_argument(
        "--checkpoint",
        type=Path,
        metavar="FILE",
        help="resumable runs: save the run here after every evaluation (the agent, the curve "
        "so far and every random generator's state), continue from it when it exists, and "
        "delete it once --out is written",
    )
    parser.add_argument(
        "--stop-at",
        type=int,
        metavar="STEP",
        help="with --checkpoint: stop after the evaluation at this step (a chunk of the run)",
    )
    parser.add_argument(
        "--save-agent",
        type=Path,
        metavar="DIR",
        help="also save the trained agent with OGBench's save_agent (DIR/params_<steps>.pkl)",
    )
    return parser.parse_args(argv)


def overrides(pairs: list[str]) -> dict[str, Any]:
    """``KEY=VALUE`` strings as a dict of Python literals (bare words stay strings)."""
    result = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"--set: expected KEY=VALUE, got {pair!r}")
        try:
            result[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            result[key] = value
    return result


def load_reference(
    impls: Path, agent: str, data: Path, config_overrides: dict[str, Any]
) -> tuple[Any, Any, Any]:
    """OGBench's agent registry, ``agent``'s default config with ``config_overrides`` applied,
    and the training dataset it samples from (``GCDataset`` or ``HGCDataset`` over ``data``,
    loaded in the compact layout), as ``impls/main.py`` builds them.

    Puts ``impls`` on ``sys.path``. Raises ``FileNotFoundError`` naming the option whose
    path is missing and ``KeyError`` naming an override the agent has no option for."""
    for path, what in ((impls / "agents", "--impls"), (data, "--data")):
        if not path.exists():
            raise FileNotFoundError(f"{what}: {path}: no such file or directory")
    sys.path.insert(0, str(impls))
    import importlib

    import ogbench
    from agents import agents  # type: ignore[import-not-found]
    from utils.datasets import Dataset, GCDataset, HGCDataset  # type: ignore[import-not-found]

    config = importlib.import_module(f"agents.{agent}").get_config()
    for key, value in config_overrides.items():
        if key not in config:
            raise KeyError(f"{agent} has no option {key!r}")
        config[key] = value
    raw = ogbench.utils.load_dataset(str(data), compact_dataset=True)
    dataset_class = {"GCDataset": GCDataset, "HGCDataset": HGCDataset}[config["dataset_class"]]
    return agents, config, dataset_class(Dataset.create(**raw), config)


def main(argv: list[str] | None = None) -> int:
    options = parse(argv)
    try:
        agents, config, train = load_reference(
            options.impls, options.agent, options.data, overrides(options.set)
        )
    except FileNotFoundError as error:
        print(error, file=sys.stderr)
        return 2
    except KeyError as error:
        print(f"--set: {error.args[0]}", file=sys.stderr)
        return 2
    import jax
    import numpy as np
    import ogbench
    from utils.evaluation import evaluate  # type: ignore[import-not-found]

    env = ogbench.make_env_and_datasets(options.env, env_only=True)
    env.reset(seed=options.seed)

    # OGBench's samplers and evaluation draw from numpy's global generator, as its main.py seeds.
    random.seed(options.seed)
    np.random.seed(options.seed)  # noqa: NPY002
    example = train.sample(1)
    agent = agents[config["agent_name"]].create(
        options.seed, example["observations"], example["actions"], config
    )

    tasks = [info["task_name"] for info in env.unwrapped.task_infos]
    curve: dict[str, Any] = {"steps": [], "success": {t: [] for t in tasks}, "mean": []}
    training_seconds, first = 0.0, 1
    if options.checkpoint is not None and options.checkpoint.exists():
        agent, curve, training_seconds, first = _resume(options.checkpoint, agent, env)
        print(f"resumed from {options.checkpoint} at step {first - 1}", flush=True)
    for step in range(first, options.steps + 1):
        started = time.perf_counter()
        agent, _ = agent.update(train.sample(config["batch_size"]))
        if step > 1:  # the first update compiles
            training_seconds += time.perf_counter() - started
        if step % options.eval_every and step != options.steps:
            continue
        rates = []
        for task_id, name in enumerate(tasks, start=1):
            info, _, _ = evaluate(
                agent=agent,
                env=env,
                task_id=task_id,
                config=config,
                num_eval_episodes=options.episodes,
                num_video_episodes=0,
            )
            curve["success"][name].append(float(info["success"]))
            rates.append(float(info["success"]))
        curve["steps"].append(step)
        curve["mean"].append(float(np.mean(rates)))
        per_task = ", ".join(f"{r:.2f}" for r in rates)
        print(f"step {step}: mean success {curve['mean'][-1]:.3f} ({per_task})", flush=True)
        if options.checkpoint is not None and step < options.steps:
            _save(options.checkpoint, agent, curve, training_seconds, step, env)
            if options.stop_at is not None and step >= options.stop_at:
                print(f"stopped at step {step}; run again to continue", flush=True)
                return 0
    curve.update(
        agent=options.agent,
        config={k: (list(v) if isinstance(v, tuple) else v) for k, v in config.items()},
        data=str(options.data),
        env=options.env,
        seed=options.seed,
        episodes=options.episodes,
        steps_per_second=(options.steps - 1) / max(training_seconds, 1e-9),
        jax=jax.__version__,
    )
    if options.save_agent:
        from utils.flax_utils import save_agent  # type: ignore[import-not-found]

        options.save_agent.mkdir(parents=True, exist_ok=True)
        save_agent(agent, str(options.save_agent), options.steps)
    tmp = options.out.with_name(f".{options.out.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(curve, indent=1))
    os.replace(tmp, options.out)
    if options.checkpoint is not None:
        options.checkpoint.unlink(missing_ok=True)
    return 0


def _save(
    path: Path, agent: Any, curve: dict[str, Any], seconds: float, step: int, env: Any
) -> None:
    """The run after ``step`` (its last evaluation), atomically: the agent's state (flax's
    state dict, as numpy), the curve and training time so far, and the states of the
    generators the run draws from (numpy's and Python's global ones, which OGBench's sampler
    and resets use, and the environment's)."""
    import pickle

    import jax
    import numpy as np
    from flax import serialization

    state = {
        "agent": jax.device_get(serialization.to_state_dict(agent)),
        "curve": curve,
        "training_seconds": seconds,
        "step": step,
        "numpy": np.random.get_state(),  # noqa: NPY002
        "python": random.getstate(),
        "env": env.unwrapped.np_random.bit_generator.state,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(pickle.dumps(state))
    os.replace(tmp, path)


def _resume(path: Path, agent: Any, env: Any) -> tuple[Any, dict[str, Any], float, int]:
    """What :func:`_save` wrote: the agent, curve and training time, and the first step to
    run; restores the generators' states."""
    import pickle

    import numpy as np
    from flax import serialization

    state = pickle.loads(path.read_bytes())  # our own file, written by _save
    np.random.set_state(state["numpy"])  # noqa: NPY002
    random.setstate(state["python"])
    env.unwrapped.np_random.bit_generator.state = state["env"]
    agent = serialization.from_state_dict(agent, state["agent"])
    return agent, state["curve"], float(state["training_seconds"]), int(state["step"]) + 1


if __name__ == "__main__":
    sys.exit(main())
