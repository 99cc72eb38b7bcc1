"""BabyAI: grid-world levels with text missions and discrete actions (minigrid).

Collection (``gcrl collect babyai``) plays minigrid's ``BabyAIBot`` in a BabyAI level
(``--env-id``, default ``BabyAI-GoToLocal-v0``). With probability ``--noise`` at each step the
bot's action is replaced by one drawn uniformly from all of the level's actions (``drop``,
``toggle`` and ``done`` included); the bot is told the action actually taken and replans from
the new state. The bot can give up after some off-policy actions (it raises when a random
``toggle`` opened a box); it is then re-created from the current state, and if even a fresh bot
cannot plan, that step's action is random. ``infos/random_action`` marks the steps whose
action was not the bot's.

Every distinct mission string is a task, ``Task(name=mission, text=mission)``, numbered in
order of first appearance; each yielded part (one episode) carries the task table so far.
``--hold-out PHRASE`` (repeatable) keeps every mission containing the phrase as whole words
(:func:`mission_is_held_out`) out of the data: such episodes are redrawn with new seeds.

Observations are flat float32 vectors of :data:`OBS_SIZE` = 151 values, unscaled:

* ``[0, 147)``: the 7x7x3 egocentric ``image`` (the agent's view: the agent sits at column 3
  of the bottom row, facing up), flattened in C order, so value ``(i * 7 + j) * 3 + c`` is
  cell column ``i``, row ``j``, channel ``c``: 0 object type, 1 colour, 2 state (minigrid's
  ``OBJECT_TO_IDX``, ``COLOR_TO_IDX``, ``STATE_TO_IDX``).
* ``[147, 151)``: one-hot of the agent's ``direction`` (0 east, 1 south, 2 west, 3 north).

Actions are int64 scalars, minigrid's action indices (0 left, 1 right, 2 forward, 3 pickup,
4 drop, 5 toggle, 6 done). Rewards are the level's (``1 - 0.9 * steps / max_steps`` on
success, else 0); ``terminals`` mark episodes the level ended (mission accomplished, or failed
in levels that can fail), ``timeouts`` those cut at the step limit; ``infos/success`` is
``reward > 0``, ``infos/env_seed`` the seed the episode's level was generated from.

Evaluation (``gcrl evaluate --env babyai-gotolocal``) has one task per possible GoToLocal
mission, 36 in all: "go to {the|a} {colour} {ball|box|key}" ("a" when the room holds several
matching objects).

Hindsight instructions (:func:`hindsight_instructions`, ``data.instruction_relabel_ratio``
in training, ``gcrl relabel --strategy hindsight-instruction`` offline): GoTo missions succeed
at the first step after which the agent faces a matching object (the cell in front of it in
its recorded view, :data:`FRONT_CELL`). An episode in which the agent faced an object its own
mission does not describe is relabeled with the mission "go to {the|a} {colour} {type}" of
that object ("the" when the level, regenerated from ``infos/env_seed``, holds one object of
that colour and type, as BabyAI words it), cut at the step the agent first faced it: the
relabeled episode ends there, next to and facing the object, with the level's reward
``1 - 0.9 * steps / max_steps`` and a terminal; earlier rows get reward 0. Of several such
objects, the one first faced latest is taken (the longest relabeled episode). Missions the
dataset held out (its ``hold_out`` attribute) are never produced.

minigrid is imported only inside functions, so importing this module does not need it.
"""

from __future__ import annotations

import contextlib
import io
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gcrl.datasets.trajectories import Task, TaskTable, Trajectories
from gcrl.envs.base import CollectOptions, Step, argument, episode_to_trajectories
from gcrl.errors import ConfigError, option
from gcrl.relabel.instructions import HindsightTasks

GOTOLOCAL_ID = "BabyAI-GoToLocal-v0"
#: Side of the agent's egocentric view, in cells.
VIEW_SIZE = 7
IMAGE_SIZE = VIEW_SIZE * VIEW_SIZE * 3
NUM_DIRECTIONS = 4
#: Length of the flat observation vector: the image, then the direction one-hot.
OBS_SIZE = IMAGE_SIZE + NUM_DIRECTIONS
#: The object types GoToLocal places (minigrid's ``RoomGrid.add_distractors``).
GOTOLOCAL_OBJECTS = ("ball", "box", "key")
#: Index of the object type of the cell in front of the agent in the flat observation: column
#: 3, row 5 of the egocentric view (then colour, then state).
FRONT_CELL = (3 * VIEW_SIZE + VIEW_SIZE - 2) * 3
#: Draws of a level seed before giving up on finding an allowed (or a requested) mission.
MAX_SEED_TRIES = 100_000


# --------------------------------------------------------------------------- helpers
def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def mission_is_held_out(mission: str, phrases: Sequence[str]) -> bool:
    """True when any phrase occurs in ``mission`` as a run of whole words.

    Matching ignores case and punctuation: ``"red ball"`` holds out "go to the red ball" and
    "pick up a red ball, then open a door", not "go to the red box" nor "go to the
    tired balloon". A phrase without any word holds out nothing.

    >>> mission_is_held_out("go to the red ball", ["red ball"])
    True
    >>> mission_is_held_out("go to the red box", ["red ball", "blue box"])
    False
    """
    words = _words(mission)
    for phrase in phrases:
        target = _words(phrase)
        if not target:
            continue
        n = len(target)
        if any(words[i : i + n] == target for i in range(len(words) - n + 1)):
            return True
    return False


def make_babyai_env(env_id: str, max_steps: int | None = None) -> Any:
    """A gymnasium BabyAI level (``render_mode="rgb_array"``: ``render()`` returns frames
    without a display); ``max_steps`` fixes the step limit, ``None`` keeps the level's own.

    Raises :class:`ConfigError` for an unknown id or an environment that is no BabyAI level.
    """
    import gymnasium as gym
    import minigrid  # noqa: F401  (registers the BabyAI ids)
    from minigrid.envs.babyai.core.roomgrid_level import RoomGridLevel

    kwargs: dict[str, Any] = {"render_mode": "rgb_array"}
    if max_steps is not None:
        kwargs["max_steps"] = max_steps
    try:
        env = gym.make(env_id, **kwargs)
    except gym.error.Error as err:
        raise ConfigError(f"--env-id: {err}") from None
    if not isinstance(env.unwrapped, RoomGridLevel):
        env.close()
        raise ConfigError(f"--env-id: {env_id} is not a BabyAI level (no mission to follow)")
    return env


def reset_level(env: Any, seed: int) -> dict[str, Any]:
    """Reset ``env`` with ``seed``; returns minigrid's observation dict. The level generator's
    rejection-sampling messages (printed to stdout) are swallowed."""
    with contextlib.redirect_stdout(io.StringIO()):
        observation, _ = env.reset(seed=seed)
    return dict(observation)


def flat_observation(observation: dict[str, Any]) -> np.ndarray:
    """The flat float32 ``[151]`` vector of a minigrid observation (layout in the module
    docstring): the egocentric image flattened, then the direction one-hot."""
    out = np.zeros(OBS_SIZE, dtype=np.float32)
    out[:IMAGE_SIZE] = np.asarray(observation["image"]).reshape(-1)
    out[IMAGE_SIZE + int(observation["direction"])] = 1.0
    return out


def action_index(action: Any, num_actions: int) -> int:
    """The int action in ``action`` (an int, or an array of one element); raises
    :class:`ValueError` unless it is a whole number in ``[0, num_actions)``."""
    array = np.asarray(action)
    if array.size != 1:
        raise ValueError(f"action: expected one discrete action, got shape {array.shape}")
    value = array.item()
    index = int(value)
    if index != value or not 0 <= index < num_actions:
        raise ValueError(f"action: {value!r} is not an action index in [0, {num_actions})")
    return index


class NoisyBot:
    """minigrid's ``BabyAIBot`` with random-action noise, kept working after off-policy
    actions (re-created when it fails)."""

    def __init__(self, env: Any, noise: float, rng: np.random.Generator) -> None:
        self.env = env
        self.noise = noise
        self.rng = rng
        self.num_actions = int(env.action_space.n)
        self._bot: Any = None
        self._taken: int | None = None
        #: How many times the bot failed and was re-created (over all episodes).
        self.restarts = 0

    def start(self) -> None:
        """Begin an episode (call after the level's reset)."""
        self._bot = self._new_bot()
        self._taken = None

    def _new_bot(self) -> Any:
        from minigrid.utils.baby_ai_bot import BabyAIBot

        return BabyAIBot(self.env)

    def _bot_action(self) -> int | None:
        # The bot signals that it cannot go on with assertions and its own exception types
        # (DisappearedBoxError after a random toggle opened a box), hence the broad catches.
        try:
            return int(self._bot.replan(self._taken))
        except Exception:
            pass
        self.restarts += 1
        try:
            self._bot = self._new_bot()
            return int(self._bot.replan())
        except Exception:
            return None

    def act(self) -> tuple[int, bool]:
        """The next action and whether it is random (noise, or no bot could plan)."""
        suggested = self._bot_action()
        if suggested is None or self.rng.random() < self.noise:
            action, random = int(self.rng.integers(self.num_actions)), True
        else:
            action, random = suggested, False
        self._taken = action
        return action, random


# --------------------------------------------------------------------------- collection
@dataclass(frozen=True)
class BabyAIOptions(CollectOptions):
    """Options of ``gcrl collect babyai``."""

    noise: float = field(
        default=0.1, metadata=argument("probability of a random action at each step")
    )
    env_id: str = field(
        default=GOTOLOCAL_ID, metadata=argument(f"BabyAI level id (default {GOTOLOCAL_ID})")
    )
    max_steps: int | None = field(
        default=None,
        metadata=argument("step limit per episode (default: the level's own, 64 for GoToLocal)"),
    )
    hold_out: tuple[str, ...] = field(
        default=(),
        metadata=argument(
            "leave out every mission containing PHRASE as whole words, e.g. 'red ball' "
            "(repeatable)",
            action="append",
            metavar="PHRASE",
        ),
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "hold_out", tuple(self.hold_out))
        for phrase in self.hold_out:
            if not _words(phrase):
                raise ConfigError(f"{option('hold_out')}: {phrase!r} holds no word")
        if not 0.0 <= self.noise <= 1.0:
            raise ConfigError(f"{option('noise')}: a probability in [0, 1], got {self.noise}")
        self.require_positive("max_steps")


class BabyAIRecipe:
    """``gcrl collect babyai``: BabyAIBot play, with random-action noise, in a BabyAI level."""

    name = "babyai"
    summary = "BabyAI level (minigrid), text missions as tasks, BabyAIBot with random actions"
    options = BabyAIOptions

    def attrs(self, options: BabyAIOptions) -> dict[str, Any]:
        """Provenance: level, expert, noise, seed, held-out phrases, action count, layout."""
        import minigrid

        env = make_babyai_env(options.env_id, options.max_steps)
        num_actions = int(env.action_space.n)
        env.close()
        return {
            "env": f"minigrid {options.env_id}",
            "env_id": options.env_id,
            "minigrid_version": minigrid.__version__,
            "expert": "minigrid BabyAIBot, re-created when it fails after an off-policy "
            "action; with probability noise a uniformly random action replaces its action",
            "noise": float(options.noise),
            "seed": int(options.seed),
            "hold_out": list(options.hold_out),
            "num_actions": num_actions,
            "max_steps": "level default" if options.max_steps is None else options.max_steps,
            "observation_layout": "float32 [151]: 7x7x3 egocentric image (object, colour, "
            "state) flattened in C order, then one-hot direction (4)",
            "reward": "level reward: 1 - 0.9 * steps / max_steps on success, else 0",
        }

    def collect(self, options: BabyAIOptions) -> Iterator[Trajectories]:
        """Yields one part per episode, each with the task table of the missions so far."""
        phrases = options.hold_out
        env = make_babyai_env(options.env_id, options.max_steps)
        try:
            seed_stream, action_stream = np.random.SeedSequence(options.seed).spawn(2)
            seeds = np.random.default_rng(seed_stream)
            bot = NoisyBot(env, float(options.noise), np.random.default_rng(action_stream))
            table = TaskTable()
            for _ in range(options.episodes):
                yield self._episode(env, bot, seeds, phrases, table)
        finally:
            env.close()

    def _episode(
        self,
        env: Any,
        bot: NoisyBot,
        seeds: np.random.Generator,
        phrases: tuple[str, ...],
        table: TaskTable,
    ) -> Trajectories:
        for _ in range(MAX_SEED_TRIES):
            env_seed = int(seeds.integers(2**31 - 1))
            observation = reset_level(env, env_seed)
            mission = str(observation["mission"])
            if not mission_is_held_out(mission, phrases):
                break
        else:
            raise ConfigError(f"--hold-out: {MAX_SEED_TRIES} missions in a row were held out")
        task_id = table.add(Task(mission, mission))
        bot.start()
        observations = [flat_observation(observation)]
        actions: list[np.ndarray] = []
        rewards: list[float] = []
        successes: list[bool] = []
        randoms: list[bool] = []
        while True:
            action, random = bot.act()
            observation, reward, terminated, truncated, _ = env.step(action)
            observations.append(flat_observation(observation))
            actions.append(np.int64(action))
            rewards.append(float(reward))
            successes.append(float(reward) > 0)
            randoms.append(random)
            if terminated or truncated:
                break
        return episode_to_trajectories(
            observations,
            actions,
            rewards,
            terminated=bool(terminated),
            infos={
                "success": successes,
                "random_action": randoms,
                "env_seed": [env_seed] * len(actions),
            },
            task_id=task_id,
            tasks=table.tasks,
        )


RECIPE = BabyAIRecipe()
RECIPES = {RECIPE.name: RECIPE}


# --------------------------------------------------------------------------- hindsight
def faced_objects(observations: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(type, colour)`` minigrid indices of the cell in front of the agent, per row of flat
    observations ``[N, 151]``."""
    flat = np.asarray(observations)
    return flat[:, FRONT_CELL].astype(np.int64), flat[:, FRONT_CELL + 1].astype(np.int64)


def _last_new_object(
    types: np.ndarray, colours: np.ndarray, own: str, kinds: dict[int, str]
) -> tuple[int, str, int] | None:
    """``(step, type name, colour index)`` of the object, among those one episode faced that
    its own mission does not describe, first faced latest (the longest relabeled episode);
    None when there is none. ``types``/``colours`` are the episode's faced cells after each
    step."""
    from minigrid.core.constants import COLOR_NAMES, IDX_TO_COLOR

    own_words = own.split()[-2:]  # "... {colour} {type}"
    first: dict[tuple[int, int], int] = {}
    for step, (kind, colour) in enumerate(zip(types.tolist(), colours.tolist(), strict=True)):
        if kind in kinds and 0 <= colour < len(COLOR_NAMES) and (kind, colour) not in first:
            if [IDX_TO_COLOR[colour], kinds[kind]] != own_words:
                first[(kind, colour)] = step
    if not first:
        return None
    (kind, colour), step = max(first.items(), key=lambda item: item[1])
    return step, kinds[kind], colour


def hindsight_instructions(data: Trajectories) -> HindsightTasks:
    """The hindsight GoTo missions of a BabyAI dataset (see the module docstring) as a
    :class:`~gcrl.relabel.instructions.HindsightTasks`: new missions are appended to the task
    table. The level id and step limit come from the dataset's attributes (``env_id``,
    ``max_steps``); episodes need ``infos/env_seed``."""
    from minigrid.core.constants import IDX_TO_COLOR, OBJECT_TO_IDX

    if "env_seed" not in data.infos:
        raise ConfigError("infos/env_seed: hindsight instructions regenerate levels from it")
    if data.task_ids is None:
        raise ConfigError("task_ids: hindsight instructions need the dataset's missions")
    env_id = str(data.attrs.get("env_id", GOTOLOCAL_ID))
    limit = data.attrs.get("max_steps")
    env = make_babyai_env(env_id, int(limit) if isinstance(limit, int | np.integer) else None)
    held_out = tuple(str(p) for p in np.atleast_1d(data.attrs.get("hold_out", [])))
    table = TaskTable()
    for task in data.tasks:
        table.add(task)
    kinds = {OBJECT_TO_IDX[k]: k for k in GOTOLOCAL_OBJECTS}
    if isinstance(data.next_observations, dict):
        raise ConfigError("observations: hindsight instructions read BabyAI's flat views")
    types, colours = faced_objects(data.next_observations)
    n = data.num_transitions
    task_ids = np.full(n, -1, dtype=np.int64)
    rewards = np.zeros(n, dtype=np.float32)
    terminals = np.zeros(n, dtype=bool)
    ends = np.append(data.episode_starts[1:], n)
    try:
        for start, end in zip(data.episode_starts, ends, strict=True):
            own = data.tasks[int(data.task_ids[start])].text
            found = _last_new_object(types[start:end], colours[start:end], own, kinds)
            if found is None:
                continue
            step, kind, colour_index = found
            colour = IDX_TO_COLOR[colour_index]
            reset_level(env, int(data.infos["env_seed"][start]))
            level = env.unwrapped
            count = sum(
                1
                for cell in level.grid.grid
                if cell is not None and cell.type == kind and cell.color == colour
            )
            mission = f"go to {'the' if count == 1 else 'a'} {colour} {kind}"
            if mission_is_held_out(mission, held_out):
                continue
            cut = start + step
            task_ids[start : cut + 1] = table.add(Task(mission, mission))
            rewards[cut] = 1.0 - 0.9 * (step + 1) / level.max_steps
            terminals[cut] = True
    finally:
        env.close()
    return HindsightTasks(task_ids, rewards, terminals, table.tasks)


# --------------------------------------------------------------------------- evaluation
def gotolocal_missions() -> tuple[str, ...]:
    """Every mission GoToLocal can generate, sorted: "go to {a|the} {colour} {type}" for
    minigrid's six colours and the ball, box and key ("a" when the room holds several
    matching objects) — 36 strings."""
    from minigrid.core.constants import COLOR_NAMES

    return tuple(
        sorted(
            f"go to {article} {colour} {kind}"
            for article in ("a", "the")
            for colour in COLOR_NAMES
            for kind in GOTOLOCAL_OBJECTS
        )
    )


class BabyAITaskEnv:
    """One BabyAI level, reset to a requested mission by drawing level seeds until it
    comes up."""

    def __init__(self, env_id: str, tasks: tuple[Task, ...]) -> None:
        self.env = make_babyai_env(env_id)
        self.tasks = tasks
        self.num_actions = int(self.env.action_space.n)

    def reset(self, task: int, seed: int) -> np.ndarray:
        """Start an episode whose mission is ``tasks[task].text``; returns the flat
        observation. The level seeds tried are drawn from ``default_rng(seed)``, so the
        episode is a function of ``(task, seed)``."""
        mission = self.tasks[task].text
        seeds = np.random.default_rng(seed)
        for _ in range(MAX_SEED_TRIES):
            observation = reset_level(self.env, int(seeds.integers(2**31 - 1)))
            if observation["mission"] == mission:
                return flat_observation(observation)
        raise RuntimeError(f"no level seed gave the mission {mission!r} in {MAX_SEED_TRIES}")

    def step(self, action: np.ndarray | int) -> Step:
        """Apply one action (an int, or an array of one element); success is reward > 0."""
        index = action_index(action, self.num_actions)
        observation, reward, terminated, truncated, _ = self.env.step(index)
        return Step(
            flat_observation(observation),
            float(reward),
            bool(terminated or truncated),
            float(reward) > 0,
        )

    def render(self) -> np.ndarray:
        """The full grid, RGB uint8 ``[H, W, 3]`` (minigrid's tile rendering, no display)."""
        return np.asarray(self.env.render(), dtype=np.uint8)

    def close(self) -> None:
        """Release the level."""
        self.env.close()


class BabyAISuite:
    """Evaluation in one BabyAI level over a fixed list of missions."""

    def __init__(self, name: str, env_id: str, missions: Sequence[str]) -> None:
        self.name = name
        self.env_id = env_id
        self.tasks: tuple[Task, ...] = tuple(Task(m, m) for m in missions)
        env = make_babyai_env(env_id)
        reset_level(env, 0)
        self.max_steps: int = int(env.unwrapped.max_steps)
        env.close()

    def make_env(self, render: bool = False) -> BabyAITaskEnv:
        """A fresh instance; it always renders (minigrid's ``rgb_array`` mode costs nothing
        until :meth:`BabyAITaskEnv.render` is called)."""
        return BabyAITaskEnv(self.env_id, self.tasks)


def gotolocal_suite() -> BabyAISuite:
    """GoToLocal (one 8x8 room, 8 objects), one task per possible mission, 64 steps."""
    return BabyAISuite("babyai-gotolocal", GOTOLOCAL_ID, gotolocal_missions())


SUITES = {"babyai-gotolocal": gotolocal_suite}
