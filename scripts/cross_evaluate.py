"""Each framework's trained policy through the other framework's evaluator: the cross-check
of the two evaluators behind the side-by-side table in ``docs/results.md``.

    # gcrl's checkpoint, OGBench's evaluator (impls/utils/evaluation.py, ogbench's env)
    /tmp/jax/bin/python scripts/cross_evaluate.py ogbench-evaluator --run gcrl-gcivl-s0 \\
        --gcrl-checkpoint CKPT --impls OGBENCH/impls --out cross.json
    # OGBench's agent (scripts/ogbench_reference.py --save-agent DIR), gcrl's evaluator
    python scripts/cross_evaluate.py gcrl-evaluator --run ogbench-gcivl-s0 \\
        --ogbench-agent DIR/params_40000.pkl --ogbench-curve curve.json \\
        --jax-python /tmp/jax/bin/python --impls OGBENCH/impls --out cross.json

The policy runs in its own framework's interpreter (gcrl's needs torch, OGBench's jax), as a
child process that answers batches of ``(observations, goals)`` with actions over its
stdin/stdout, in numpy's ``.npy`` format; the evaluator runs in the other interpreter and
sees only actions. Both policies act deterministically (OGBench's ``temperature=0``, gcrl's
mean action). Writes ``--out`` (JSON): per-task success (fractions of ``--episodes``
episodes), their mean, which policy and which evaluator. This script runs under either
interpreter, so it imports gcrl and jax only inside the command that needs them.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
OGBENCH_ENV = "pointmaze-medium-navigate-v0"
GCRL_SUITE = "pointmaze-medium"


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--impls", type=Path, help="OGBench checkout's impls/")
    common.add_argument("--episodes", type=int, default=20, help="episodes per task")
    common.add_argument("--seed", type=int, default=0, help="the evaluator's seed")
    common.add_argument(
        "--run",
        required=True,
        help="the side-by-side run the policy comes from (results/side/RUN.json), e.g. "
        "gcrl-gcivl-s0: the table sets the result beside that run's own last evaluation",
    )
    ogb = commands.add_parser(
        "ogbench-evaluator", parents=[common], help="gcrl's policy, OGBench's evaluator"
    )
    ogb.add_argument("--gcrl-checkpoint", required=True, type=Path)
    ogb.add_argument(
        "--gcrl-python",
        default=str(ROOT / ".venv" / "bin" / "python"),
        help="interpreter with gcrl (default: the README's .venv)",
    )
    ogb.add_argument("--out", required=True, type=Path)
    ours = commands.add_parser(
        "gcrl-evaluator", parents=[common], help="OGBench's policy, gcrl's evaluator"
    )
    ours.add_argument("--ogbench-agent", required=True, type=Path, help="params_<step>.pkl")
    ours.add_argument(
        "--ogbench-curve",
        required=True,
        type=Path,
        help="the run's ogbench_reference.py --out (its agent, config and data)",
    )
    ours.add_argument("--jax-python", required=True, help="interpreter with jax and ogbench")
    ours.add_argument("--out", required=True, type=Path)
    serve = commands.add_parser("serve", help="(internal) answer batches with actions")
    serve.add_argument("framework", choices=["gcrl", "ogbench"])
    serve.add_argument("policy", type=Path)
    serve.add_argument("--impls", type=Path)
    serve.add_argument("--ogbench-curve", type=Path)
    return parser.parse_args(argv)


def _write(stream: IO[bytes], *arrays: np.ndarray) -> None:
    """Each array as its length (8 bytes) and its ``.npy`` bytes (pipes cannot seek)."""
    for array in arrays:
        buffer = io.BytesIO()
        np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
        stream.write(len(buffer.getbuffer()).to_bytes(8, "little") + buffer.getvalue())
    stream.flush()


def _read(stream: IO[bytes]) -> np.ndarray:
    size = int.from_bytes(stream.read(8), "little")
    return np.load(io.BytesIO(stream.read(size)), allow_pickle=False)


class RemotePolicy:
    """A policy answered by a ``serve`` child process: ``policy(observations, goals)`` returns
    its actions for a batch (float32, clipped to [-1, 1] by the server)."""

    def __init__(self, command: list[str]) -> None:
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def __call__(self, observations: np.ndarray, goals: np.ndarray) -> np.ndarray:
        assert self.process.stdin is not None and self.process.stdout is not None
        _write(self.process.stdin, observations.astype(np.float32), goals.astype(np.float32))
        return _read(self.process.stdout)

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        self.process.wait(timeout=60)


def serve(options: argparse.Namespace) -> int:
    """Answer ``(observations, goals)`` batches on stdin with actions on stdout until EOF."""
    # The stream gets a private descriptor; whatever else writes to stdout (the frameworks'
    # prints, C libraries) goes to stderr, so it cannot corrupt the stream.
    stdout = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    act: Any
    if options.framework == "gcrl":
        from gcrl.policy import load_policy

        policy = load_policy(options.policy)

        def act(observations: np.ndarray, goals: np.ndarray) -> np.ndarray:
            if policy.spec.dict_observations:
                return policy({"observation": observations, "desired_goal": goals})
            return policy(observations, goals=goals)
    else:
        import jax
        from ogbench_reference import load_reference  # type: ignore[import-not-found]

        run = json.loads(options.ogbench_curve.read_text())
        agents, config, train = load_reference(
            options.impls, run["agent"], Path(run["data"]), _tuples(run["config"])
        )
        from utils.flax_utils import restore_agent  # type: ignore[import-not-found]

        example = train.sample(1)
        agent = agents[config["agent_name"]].create(
            0, example["observations"], example["actions"], config
        )
        step = options.policy.stem.removeprefix("params_")
        agent = restore_agent(agent, str(options.policy.parent), step)
        key = jax.random.PRNGKey(0)  # temperature 0: the key draws nothing that matters

        def act(observations: np.ndarray, goals: np.ndarray) -> np.ndarray:
            actions = agent.sample_actions(observations, goals, seed=key, temperature=0.0)
            return np.asarray(actions)

    stdin = sys.stdin.buffer
    while stdin.peek(1):
        observations, goals = _read(stdin), _read(stdin)
        _write(stdout, np.clip(np.asarray(act(observations, goals), np.float32), -1, 1))
    return 0


def _tuples(config: dict[str, Any]) -> dict[str, Any]:
    """A recorded config with its lists back as the tuples OGBench's configs hold."""
    return {k: tuple(v) if isinstance(v, list) else v for k, v in config.items()}


def ogbench_evaluator(options: argparse.Namespace) -> dict[str, Any]:
    """gcrl's checkpoint through OGBench's ``evaluate``, seeded as ``impls/main.py`` is."""
    import random

    sys.path.insert(0, str(options.impls))
    import ogbench
    from utils.evaluation import evaluate  # type: ignore[import-not-found]

    env = ogbench.make_env_and_datasets(OGBENCH_ENV, env_only=True)
    env.reset(seed=options.seed)
    random.seed(options.seed)
    np.random.seed(options.seed)  # noqa: NPY002  (OGBench's evaluate draws from it)
    policy = RemotePolicy(
        [
            options.gcrl_python,
            __file__,
            "serve",
            "gcrl",
            str(options.gcrl_checkpoint),
        ]
    )

    class Agent:  # what OGBench's evaluate calls
        def sample_actions(
            self, observations: Any, goals: Any = None, seed: Any = None, temperature: float = 1
        ) -> np.ndarray:
            return policy(np.asarray(observations)[None], np.asarray(goals)[None])[0]

    success = {}
    try:
        for task_id, info in enumerate(env.unwrapped.task_infos, start=1):
            stats, _, _ = evaluate(
                agent=Agent(),
                env=env,
                task_id=task_id,
                config={},
                num_eval_episodes=options.episodes,
                num_video_episodes=0,
                eval_temperature=0,
            )
            success[info["task_name"]] = float(stats["success"])
    finally:
        policy.close()
    return {
        "policy": f"gcrl {options.gcrl_checkpoint.name}",
        "evaluator": "ogbench",
        "success": success,
    }


def gcrl_evaluator(options: argparse.Namespace) -> dict[str, Any]:
    """OGBench's saved agent through gcrl's ``evaluate`` on the ``pointmaze-medium`` suite."""
    from gcrl.envs import suite
    from gcrl.evaluation import evaluate

    policy = RemotePolicy(
        [
            options.jax_python,
            __file__,
            "serve",
            "ogbench",
            str(options.ogbench_agent),
            f"--impls={options.impls}",
            f"--ogbench-curve={options.ogbench_curve}",
        ]
    )

    def act(observations: Any, tasks: Any) -> np.ndarray:
        return policy(observations["observation"], observations["desired_goal"])

    try:
        report = evaluate(act, suite(GCRL_SUITE), episodes=options.episodes, seed=options.seed)
    finally:
        policy.close()
    success = {r.name: float(r.success_rate) for r in report.tasks}
    return {
        "policy": f"ogbench {options.ogbench_agent.name}",
        "evaluator": "gcrl",
        "success": success,
    }


def main(argv: list[str] | None = None) -> int:
    options = parse(argv)
    if options.command == "serve":
        return serve(options)
    if options.impls is None or not (options.impls / "utils" / "evaluation.py").exists():
        print(f"--impls: {options.impls}: not an OGBench impls/ folder", file=sys.stderr)
        return 2
    started = time.perf_counter()
    if options.command == "ogbench-evaluator":
        record = ogbench_evaluator(options)
    else:
        record = gcrl_evaluator(options)
    record.update(
        run=options.run,
        mean=float(np.mean(list(record["success"].values()))),
        episodes=options.episodes,
        seed=options.seed,
        wall_seconds=time.perf_counter() - started,
    )
    options.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = options.out.with_name(f".{options.out.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(record, indent=1) + "\n")
    os.replace(tmp, options.out)
    print(json.dumps(record))
    return 0


if __name__ == "__main__":
    sys.exit(main())
