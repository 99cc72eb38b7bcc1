"""OGBench manipulation (cube, scene, puzzle): datasets played by OGBench's own oracles.

``gcrl collect cube-single OUT`` (and ``cube-double``, ``cube-triple``, ``cube-quadruple``,
``scene``, ``puzzle-3x3``, ``puzzle-4x4``, ``puzzle-4x5``, ``puzzle-4x6``) follows OGBench's
``data_gen_scripts/generate_manipspace.py``:

* the environment is OGBench's own (``gymnasium.make(ENV_ID, terminate_at_goal=False,
  mode="data_collection")``), and each episode lasts ``--max-steps`` transitions (1000: the
  1001 states per episode of OGBench's files);
* ``--dataset-type play`` drives OGBench's plan oracles (``ogbench.manipspace.oracles.plan``:
  keyframe plans with temporally smoothed noise, ``--noise`` 0.1, ``--noise-smoothing`` 0.5);
  ``noisy`` its Markov oracles (closed loop, ``--min-norm`` 0.4) with Gaussian action noise of
  std ``[xi, xi, xi, 3 xi, 10 xi]``, ``xi ~ U(0, --noise)`` drawn per episode, and a uniformly
  random action with probability ``--p-random-action`` (OGBench: 0.1 for cube and scene, 0.2
  for puzzle; 0 for play);
* when the oracle finishes its subtask the environment draws a new target
  (``set_new_target``) with OGBench's per-environment stacking probability (cube-double
  ``U(0, 0.25)`` per episode, triple ``U(0.05, 0.35)``, quadruple ``U(0.1, 0.5)``, others 0.5);
* scene episodes that push the cube out of the cameras' view are played again (OGBench's
  health check).

Every random choice is drawn from ``--seed``: the recipe's own draws from a
``numpy.random.Generator``, each episode's environment reset from a seed it draws, and the
oracles' draws (OGBench's oracles use numpy's global generator) from a ``RandomState`` of the
recipe's that is swapped in while an episode plays and swapped out afterwards, so the caller's
global state is left as it was.

Observations are OGBench's flat float32 state vectors (arrays, as in OGBench's files: its goals
are whole states, so goal-conditioned training draws goals from the observations themselves);
the ``visual-`` recipes (``visual-cube-single``, ...) record OGBench's 64 x 64 x 3 uint8
camera images instead (stored in compressed chunks of rows), rendered by MuJoCo's offscreen
OpenGL (``MUJOCO_GL``, ``egl`` unless set). Rendering dominates their cost: ``--workers N``
plays chunks of episodes in N processes, and ``--chunk-episodes`` makes a long recording
resumable (:func:`gcrl.envs.collection.collect`).
Rewards are 0 and there are no terminals: the last row of each episode is a timeout. Infos
aligned with each row's observation: ``qpos``, ``qvel`` and, for scene and puzzle,
``button_states``, as OGBench stores them. ``OUT.npz`` writes OGBench's compact npz layout,
which ``ogbench.utils.load_dataset`` reads, instead of the native file.

OGBench and MuJoCo are imported only when an environment is made.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gcrl.datasets.trajectories import Task, Trajectories
from gcrl.envs import MANIPSPACE_RECIPES
from gcrl.envs.base import (
    CollectOptions,
    argument,
    episode_to_trajectories,
    global_numpy_random,
)
from gcrl.errors import ConfigError, option

#: Recipe name -> OGBench's environment id.
ENVS = {name: f"{name}-v0" for name in MANIPSPACE_RECIPES}
DATASET_TYPES = ("play", "noisy")
#: The prefix of the recipes that record OGBench's 64 x 64 RGB observations.
VISUAL = "visual-"
#: MuJoCo's offscreen OpenGL when the user has not chosen one (headless machines have EGL).
DEFAULT_MUJOCO_GL = "egl"
#: OGBench's episode length: 1001 states, 1000 transitions.
EPISODE_STEPS = 1000
#: The per-dimension scale of the noisy oracles' Gaussian action noise (x, y, z, yaw, gripper).
NOISE_SCALE = np.array([1.0, 1.0, 1.0, 3.0, 10.0])
#: ``set_new_target``'s stacking probability per episode: a range drawn from (cube-N) or fixed.
P_STACK = {
    "cube-single": (0.0, 0.0),
    "cube-double": (0.0, 0.25),
    "cube-triple": (0.05, 0.35),
    "cube-quadruple": (0.1, 0.5),
}
P_STACK_OTHERS = 0.5


def family(name: str) -> str:
    """``cube``, ``scene`` or ``puzzle``: which oracles play recipe ``name``."""
    return name.removeprefix(VISUAL).split("-")[0]


@dataclass(frozen=True)
class ManipSpaceOptions(CollectOptions):
    """Options of the OGBench manipulation recipes (defaults: OGBench's)."""

    episodes: int = field(
        default=1000, metadata=argument("episodes to record (OGBench: 1000, plus 100 for val)")
    )
    noise: float = field(
        default=0.1,
        metadata=argument(
            "play: the plan's noise level; noisy: the top of the per-episode action noise "
            "level xi ~ U(0, NOISE)"
        ),
    )
    dataset_type: str = field(
        default="play",
        metadata=argument(
            "play (plan oracles) or noisy (Markov oracles + Gaussian noise)", choices=DATASET_TYPES
        ),
    )
    noise_smoothing: float = field(
        default=0.5, metadata=argument("play: the plan noise's smoothing (OGBench: 0.5)")
    )
    min_norm: float = field(
        default=0.4, metadata=argument("noisy: the Markov oracles' minimum action norm (0.4)")
    )
    p_random_action: float | None = field(
        default=None,
        metadata=argument(
            "probability of a uniformly random action (default: OGBench's, 0 for play, 0.1 "
            "for noisy cube and scene, 0.2 for noisy puzzle)"
        ),
    )
    max_steps: int = field(
        default=EPISODE_STEPS, metadata=argument("transitions per episode (OGBench: 1000)")
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        self.require_positive("max_steps")
        for name in ("noise_smoothing", "min_norm"):
            value = getattr(self, name)
            if value < 0:
                raise ConfigError(f"{option(name)}: must be non-negative, got {value}")
        p = self.p_random_action
        if p is not None and not 0 <= p <= 1:
            raise ConfigError(f"{option('p_random_action')}: must lie in [0, 1], got {p}")

    def random_action_probability(self, name: str) -> float:
        """The probability of a random action in recipe ``name``'s episodes."""
        if self.p_random_action is not None:
            return self.p_random_action
        if self.dataset_type == "play":
            return 0.0
        return 0.2 if family(name) == "puzzle" else 0.1


def make_collection_env(env_id: str, max_steps: int) -> Any:
    """OGBench's environment ``env_id`` in its data-collection mode (no termination at the
    goal, a new target on request), cut after ``max_steps`` + 1 steps."""
    # Read when MuJoCo is first imported. State environments build a renderer too (scene and
    # puzzle), which under the default GLFW prints an error on a machine without a display.
    if env_id.startswith(VISUAL) or not os.environ.get("DISPLAY"):
        os.environ.setdefault("MUJOCO_GL", DEFAULT_MUJOCO_GL)
    import gymnasium
    import ogbench.manipspace  # noqa: F401  (registers the environments)

    with _quiet_action_space():
        return gymnasium.make(
            env_id, terminate_at_goal=False, mode="data_collection", max_episode_steps=max_steps + 1
        )


@contextmanager
def _quiet_action_space() -> Iterator[None]:
    """Silence gymnasium's note that OGBench's ``action_space`` (a new float64-bounded Box at
    every access) is cast to float32: harmless, and printed once per episode otherwise."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*precision lowered by casting")
        yield


def make_oracles(name: str, env: Any, options: ManipSpaceOptions) -> dict[str, Any]:
    """OGBench's oracles for recipe ``name``, by the target task they solve (``cube``,
    ``button``, ``drawer``, ``window``), as generate_manipspace.py builds them."""
    kind = family(name)
    if options.dataset_type == "noisy":
        from ogbench.manipspace.oracles.markov.button_markov import ButtonMarkovOracle
        from ogbench.manipspace.oracles.markov.cube_markov import CubeMarkovOracle
        from ogbench.manipspace.oracles.markov.drawer_markov import DrawerMarkovOracle
        from ogbench.manipspace.oracles.markov.window_markov import WindowMarkovOracle

        norm = options.min_norm
        if kind == "cube":
            return {"cube": CubeMarkovOracle(env=env, min_norm=norm)}
        if kind == "scene":
            return {
                "cube": CubeMarkovOracle(env=env, min_norm=norm, max_step=100),
                "button": ButtonMarkovOracle(env=env, min_norm=norm),
                "drawer": DrawerMarkovOracle(env=env, min_norm=norm),
                "window": WindowMarkovOracle(env=env, min_norm=norm),
            }
        return {"button": ButtonMarkovOracle(env=env, min_norm=norm, gripper_always_closed=True)}
    from ogbench.manipspace.oracles.plan.button_plan import ButtonPlanOracle
    from ogbench.manipspace.oracles.plan.cube_plan import CubePlanOracle
    from ogbench.manipspace.oracles.plan.drawer_plan import DrawerPlanOracle
    from ogbench.manipspace.oracles.plan.window_plan import WindowPlanOracle

    noise = {"noise": options.noise, "noise_smoothing": options.noise_smoothing}
    if kind == "cube":
        return {"cube": CubePlanOracle(env=env, **noise)}
    if kind == "scene":
        return {
            "cube": CubePlanOracle(env=env, **noise),
            "button": ButtonPlanOracle(env=env, **noise),
            "drawer": DrawerPlanOracle(env=env, **noise),
            "window": WindowPlanOracle(env=env, **noise),
        }
    return {"button": ButtonPlanOracle(env=env, gripper_always_closed=True, **noise)}


def scene_is_healthy(qpos: np.ndarray) -> bool:
    """OGBench's scene health check on an episode's ``qpos`` rows: the cube never goes too
    far right, nor too far left unless it is in the drawer (test-time goal images would be
    ambiguous otherwise)."""
    cube = qpos[:, 14:17]
    too_right = bool((cube[:, 1] >= 0.29).any())
    outside_drawer = (cube[:, 1] <= -0.3) & ((cube[:, 2] < 0.06) | (cube[:, 2] > 0.08))
    return not too_right and not bool(outside_drawer.any())


class ManipSpaceRecipe:
    """``gcrl collect <name>``: one of OGBench's manipulation datasets, played by its oracles."""

    options = ManipSpaceOptions

    def __init__(self, name: str) -> None:
        self.name = name
        self.env_id = ENVS[name]
        self.summary = f"OGBench {self.env_id}, play or noisy data from OGBench's own oracles"
        self.task = Task(name, "reach the goal state")

    def attrs(self, options: ManipSpaceOptions) -> dict[str, Any]:
        """Provenance: OGBench's environment id and version, the oracles and their noise."""
        from importlib.metadata import version

        oracles = "plan" if options.dataset_type == "play" else "markov"
        return {
            "env": f"ogbench {self.env_id}",
            "ogbench_version": version("ogbench"),
            "dataset_type": options.dataset_type,
            "expert": f"ogbench.manipspace.oracles.{oracles}, as generate_manipspace.py drives "
            "them",
            "noise": float(options.noise),
            "noise_smoothing": float(options.noise_smoothing),
            "min_norm": float(options.min_norm),
            "p_random_action": options.random_action_probability(self.name),
            "seed": int(options.seed),
            "max_steps": int(options.max_steps),
            "observation": "64 x 64 x 3 uint8 camera image; goals are whole observations"
            if self.name.startswith(VISUAL)
            else "OGBench's flat state vector; goals are whole states",
            "reward": "0 (goal-conditioned data: rewards come from relabeled goals)",
        }

    def collect(self, options: ManipSpaceOptions) -> Iterator[Trajectories]:
        """Plays ``options.episodes`` episodes; yields one part per episode."""
        rng = np.random.default_rng(options.seed)
        oracle_stream = np.random.RandomState(int(rng.integers(2**32)))
        env = make_collection_env(self.env_id, options.max_steps)
        try:
            oracles = make_oracles(self.name, env, options)
            for _ in range(options.episodes):
                while True:
                    with global_numpy_random(oracle_stream), _quiet_action_space():
                        episode = self._episode(env, oracles, options, rng)
                    if family(self.name) != "scene" or scene_is_healthy(episode.infos["qpos"]):
                        break
                yield episode
        finally:
            env.close()

    def _episode(
        self,
        env: Any,
        oracles: dict[str, Any],
        options: ManipSpaceOptions,
        rng: np.random.Generator,
    ) -> Trajectories:
        low, high = env.action_space.low, env.action_space.high
        p_random = options.random_action_probability(self.name)
        stack = P_STACK.get(self.name)
        p_stack = P_STACK_OTHERS if stack is None else float(rng.uniform(*stack))
        xi = float(rng.uniform(0, options.noise)) if options.dataset_type == "noisy" else 0.0
        ob, info = env.reset(seed=int(rng.integers(2**31)))
        agent = oracles[info["privileged/target_task"]]
        agent.reset(ob, info)
        observations, actions = [np.asarray(ob)], []
        infos: dict[str, list[Any]] = {"qpos": [], "qvel": []}
        buttons = hasattr(env.unwrapped, "_cur_button_states")
        if buttons:
            infos["button_states"] = []
        for _ in range(options.max_steps):
            if rng.random() < p_random:
                action = rng.uniform(low, high)
            else:
                action = np.asarray(agent.select_action(ob, info), dtype=np.float64)
                if xi > 0:
                    action = action + rng.normal(0.0, xi * NOISE_SCALE, action.shape)
            action = np.clip(action, -1.0, 1.0).astype(np.float32)
            ob, _, _, _, info = env.step(action)
            if agent.done:  # the subtask is solved: OGBench draws the next target
                target_ob, target_info = env.unwrapped.set_new_target(p_stack=p_stack)
                agent = oracles[target_info["privileged/target_task"]]
                agent.reset(target_ob, target_info)
            observations.append(np.asarray(ob))
            actions.append(action)
            # prev_*: the simulator state at the row's observation (OGBench's alignment).
            infos["qpos"].append(np.asarray(info["prev_qpos"], dtype=np.float32))
            infos["qvel"].append(np.asarray(info["prev_qvel"], dtype=np.float32))
            if buttons:
                infos["button_states"].append(np.asarray(info["prev_button_states"], np.int64))
        return episode_to_trajectories(
            [o if o.dtype == np.uint8 else o.astype(np.float32) for o in observations],
            actions,
            [0.0] * len(actions),
            terminated=False,
            infos=infos,
            task_id=0,
            tasks=(self.task,),
        )


RECIPES = {name: ManipSpaceRecipe(name) for name in ENVS}
