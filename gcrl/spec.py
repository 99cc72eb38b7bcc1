"""The model-input contract: :class:`InputSpec`, one frozen record of how a dataset's raw rows
become network inputs and of the shapes the networks are built for (numpy only).

The training data module builds it from the data, the algorithms size their networks from it,
checkpoints store it (:meth:`InputSpec.to_dict`), and :func:`gcrl.load_policy` and evaluation
turn raw environment observations into the same inputs with it.

>>> import numpy as np
>>> spec = InputSpec(observation_dim=3, action_dim=2, discrete=False, goal_dim=2,
...                  observation_keys=("observation",), goal_key="achieved_goal")
>>> spec.state({"observation": np.zeros((4, 3)), "desired_goal": np.ones((4, 2))}).shape
(4, 3)
>>> InputSpec.from_dict(spec.to_dict()) == spec
True
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from gcrl.datasets.trajectories import (
    DESIRED_GOAL,
    Observations,
    Task,
    Trajectories,
    goal_column,
    take_observations,
)
from gcrl.errors import ConfigError, DataError, MissingKeyError

#: Version of the :meth:`InputSpec.to_dict` layout (checkpoints without one hold version 1).
SPEC_VERSION = 1
#: Checkpoint key holding gcrl's metadata (algorithm class, data spec, how to act).
CHECKPOINT_KEY = "gcrl"
#: Version of the networks a checkpoint's weights are for: 3 since hidden layers put their
#: LayerNorm after the activation, as OGBench's do (2 and earlier: before it; they load as
#: they were built, see :func:`gcrl.algorithms.agent.networks_of_version`); 2 since gcrl
#: 0.2.0, where every value network takes the layout; checkpoints without one (gcrl 0.1.0)
#: hold version 1, whose value, critic and encoder networks were one shared MLP (or trunk
#: and heads) in any layout.
NETWORKS_VERSION = 3
#: The last networks version whose hidden layers put LayerNorm before the activation.
NORM_BEFORE_ACTIVATION_UNTIL = 2


def networks_version_of(meta: Mapping[str, Any]) -> int:
    """The networks version of a checkpoint's gcrl metadata (``checkpoint[CHECKPOINT_KEY]``):
    1 when it records none (gcrl 0.1.0)."""
    return int(meta.get("networks_version", 1))


#: The task table of data without tasks.
DEFAULT_TASKS = (Task("task"),)
#: Rows per block when standardisation statistics are accumulated.
STAT_ROWS = 1 << 16


@dataclass(frozen=True, eq=False)
class Standardisation:
    """Per-dimension ``(x - mean) / std``; float32 ``[D]`` each (a constant column has std 1)."""

    mean: np.ndarray
    std: np.ndarray

    def __post_init__(self) -> None:
        object.__setattr__(self, "mean", np.asarray(self.mean, dtype=np.float32).reshape(-1))
        object.__setattr__(self, "std", np.asarray(self.std, dtype=np.float32).reshape(-1))

    @classmethod
    def of(cls, flat: np.ndarray) -> Standardisation:
        """The statistics of the columns of ``flat`` ``[N, D]``, read in blocks of rows."""
        return cls.of_blocks(flat[i : i + STAT_ROWS] for i in range(0, len(flat), STAT_ROWS))

    @classmethod
    def of_blocks(cls, blocks: Iterable[np.ndarray]) -> Standardisation:
        """The column statistics of the rows of all ``blocks`` (each ``[n_i, D]``) together,
        merged block by block (Chan et al.'s pairwise update), so memory is bounded by one
        block: a memory-mapped dataset is never copied whole."""
        count, mean, m2 = 0, np.zeros(0), np.zeros(0)
        for block in blocks:
            values = np.asarray(block, dtype=np.float64).reshape(len(block), -1)
            n = len(values)
            if n == 0:
                continue
            block_mean = values.mean(axis=0)
            block_m2 = ((values - block_mean) ** 2).sum(axis=0)
            if count == 0:
                count, mean, m2 = n, block_mean, block_m2
                continue
            delta, total = block_mean - mean, count + n
            mean = mean + delta * (n / total)
            m2 = m2 + block_m2 + delta**2 * (count * n / total)
            count = total
        if count == 0:
            raise DataError("standardisation: no rows")
        std = np.sqrt(m2 / count)
        return cls(mean, np.where(std > 1e-6, std, 1.0))

    def __call__(self, flat: np.ndarray) -> np.ndarray:
        """``[B, D]`` standardised, float32."""
        return (np.asarray(flat, dtype=np.float32) - self.mean) / self.std

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Standardisation)
            and np.array_equal(self.mean, other.mean)
            and np.array_equal(self.std, other.std)
        )

    __hash__ = None  # type: ignore[assignment]

    def to_list(self) -> list[list[float]]:
        """``[mean, std]`` as lists (the checkpoint layout)."""
        return [self.mean.astype(np.float64).tolist(), self.std.astype(np.float64).tolist()]


@dataclass(frozen=True)
class InputSpec:
    """How raw rows become network inputs, and the sizes the networks are built for.

    ``observation_dim`` is the width of the flat state: the ``observation_keys`` of dict
    observations concatenated (each flattened), or the whole array observation flattened.
    ``goal_dim`` is 0 without goals; goals come from ``goal_key`` (dict observations) or the
    ``goal_dims`` of array observations (None: all of them, OGBench's convention).
    ``action_dim`` is the flat action width, or the number of discrete actions. ``tasks`` is
    the task table (one unnamed task for single-task data). ``observation_scale`` and
    ``goal_scale`` standardise the flat state and goals when the data module normalises.

    ``image_shape`` is ``(height, width, channels)`` when the state is one uint8 camera image
    (OGBench's ``visual-*`` data): the flat state is then that image's bytes in HWC order,
    kept uint8 up to the network, whose image encoder scales it to [0, 1]
    (:mod:`gcrl.models.encoders`), and never standardised. ``goal_image`` says the goals
    are such images too (goals that are whole observations). ``frame_stack`` is how many
    frames each image state stacks along its channels (the data module's ``frame_stack``;
    acting keeps that many, :class:`gcrl.datasets.frames.FrameHistory`).
    """

    observation_dim: int
    action_dim: int
    discrete: bool
    goal_dim: int = 0
    tasks: tuple[Task, ...] = DEFAULT_TASKS
    observation_keys: tuple[str, ...] | None = None
    goal_key: str | None = None
    goal_dims: tuple[int, ...] | None = None
    observation_scale: Standardisation | None = None
    goal_scale: Standardisation | None = None
    image_shape: tuple[int, int, int] | None = None
    goal_image: bool = False
    frame_stack: int = 1

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "tasks", tuple(self.tasks) or DEFAULT_TASKS)
        if self.observation_keys is not None:
            set_(self, "observation_keys", tuple(self.observation_keys))
        if self.goal_dims is not None:
            set_(self, "goal_dims", tuple(int(d) for d in self.goal_dims))
        if self.image_shape is not None:
            shape = tuple(int(d) for d in self.image_shape)
            if len(shape) != 3 or int(np.prod(shape)) != self.observation_dim:
                raise ConfigError(
                    f"spec: image_shape {shape} must be (height, width, channels) of "
                    f"{self.observation_dim} values"
                )
            set_(self, "image_shape", shape)
        if self.frame_stack < 1 or (self.frame_stack > 1 and self.image_shape is None):
            raise ConfigError(f"spec: frame_stack {self.frame_stack} needs image states")
        if self.goal_image and (self.image_shape is None or self.goal_dim != self.observation_dim):
            raise ConfigError("spec: image goals need image observations of the same shape")
        for name in ("observation_dim", "action_dim", "goal_dim"):
            if getattr(self, name) < 0:
                raise ConfigError(f"spec: {name} must be >= 0, got {getattr(self, name)}")

    # ----------------------------------------------------------------- properties
    @property
    def num_tasks(self) -> int:
        """M, the number of tasks (1 for single-task data)."""
        return len(self.tasks)

    @property
    def task_names(self) -> list[str]:
        """Task names in task-id order."""
        return [t.name for t in self.tasks]

    @property
    def images(self) -> bool:
        """Whether the state is a camera image (see :attr:`image_shape`)."""
        return self.image_shape is not None

    @property
    def dict_observations(self) -> bool:
        """Whether raw observations are dicts."""
        return self.observation_keys is not None

    # ----------------------------------------------------------------- building
    @classmethod
    def from_data(
        cls,
        data: Trajectories,
        *,
        observation_keys: Sequence[str] = ("observation",),
        goal_key: str = "achieved_goal",
        goal_dims: Sequence[int] | None = None,
        goals: bool = False,
        normalize: bool = False,
    ) -> InputSpec:
        """The spec of ``data``: ``observation_keys`` and ``goal_key`` apply to dict
        observations, ``goal_dims`` to arrays. Goals are part of the input when ``goals`` is
        true (relabeling draws them) or the data stores ``desired_goal``. ``normalize``
        computes the standardisation statistics of the states and goals.
        """
        obs = data.observations
        is_dict = isinstance(obs, dict)
        keys = tuple(observation_keys) if is_dict else None
        if isinstance(obs, dict):
            for key in observation_keys:
                if key not in obs:
                    raise MissingKeyError(
                        f"observations/{key}: no such key (observation_keys); "
                        f"the observations hold {', '.join(sorted(obs))}"
                    )
        actions = data.actions
        discrete = bool(np.issubdtype(actions.dtype, np.integer))
        if discrete:
            # The environment's action count when the recipe recorded it: the data may
            # never use the last actions, the policy must still output them.
            action_dim = max(int(actions.max()) + 1, int(data.attrs.get("num_actions", 0)))
        else:
            action_dim = int(np.prod(actions.shape[1:]))
        stored_goals = is_dict and DESIRED_GOAL in obs
        has_goals = goals or stored_goals
        goals_seen: np.ndarray | None = None
        if has_goals and is_dict and goal_key not in obs and not goals:
            goals_seen = obs[DESIRED_GOAL]  # stored goals only: nothing is relabeled
        elif has_goals:
            # Relabeled goals are achieved goals, so their statistics scale every goal.
            goals_seen = goal_column(obs, goal_key, None if is_dict else goal_dims)
        spec = cls(
            observation_dim=0,
            action_dim=action_dim,
            discrete=discrete,
            goal_dim=0 if goals_seen is None else int(np.prod(goals_seen.shape[1:])),
            tasks=data.tasks,
            observation_keys=keys,
            goal_key=goal_key if is_dict else None,
            goal_dims=None if goal_dims is None else tuple(goal_dims),
        )
        width = spec.state(take_observations(obs, np.arange(1)), check=False).shape[1]
        image_shape = _image_shape(obs, keys)
        goal_image = (
            image_shape is not None
            and goals_seen is not None
            and goals_seen.dtype == np.uint8
            and tuple(goals_seen.shape[1:]) == image_shape
        )
        spec = replace(spec, observation_dim=width, image_shape=image_shape, goal_image=goal_image)
        if not normalize:
            return spec
        return replace(
            spec,
            # Images are scaled by their encoder, never standardised.
            observation_scale=None
            if image_shape is not None
            else Standardisation.of_blocks(
                spec.state(take_observations(obs, slice(i, i + STAT_ROWS)), check=False)
                for i in range(0, data.num_transitions, STAT_ROWS)
            ),
            goal_scale=None
            if goals_seen is None or goal_image
            else Standardisation.of(goals_seen.reshape(len(goals_seen), -1)),
        )

    # ----------------------------------------------------------------- raw inputs
    def is_single(self, observations: Observations | Mapping[str, Any]) -> bool:
        """Whether ``observations`` is one observation rather than a batch: its first state
        part (the first observation key's value, or the array) is 1-D (3-D for images)."""
        rank = 1 if self.image_shape is None else len(self.image_shape)
        if isinstance(observations, Mapping):
            keys = self.observation_keys  # none: state() refuses dict observations
            return keys is not None and np.ndim(observations[keys[0]]) == rank
        return np.ndim(observations) == rank

    def state(
        self, observations: Observations | Mapping[str, Any], *, check: bool = True
    ) -> np.ndarray:
        """The flat state input ``[B, observation_dim]`` of raw observations (a batch, or one
        observation as a batch of one), unscaled, in the observations' dtype. Dict
        observations give their ``observation_keys`` concatenated; an array is taken as the
        flat state."""
        if isinstance(observations, Mapping):
            if self.observation_keys is None:
                raise ConfigError("observations: the model was trained on array observations")
            missing = [k for k in self.observation_keys if k not in observations]
            if missing:
                raise MissingKeyError(
                    f"observations/{missing[0]}: no such key; the model reads "
                    f"{', '.join(self.observation_keys)}"
                )
            parts = [np.asarray(observations[k]) for k in self.observation_keys]
        else:  # an array is the flat state itself (for dict data: the keys concatenated)
            parts = [np.asarray(observations)]
        single = self.is_single(observations)
        parts = [p.reshape(1, -1) if single else p.reshape(len(p), -1) for p in parts]
        flat = np.concatenate(parts, axis=1) if len(parts) > 1 else parts[0]
        if check and flat.shape[1] != self.observation_dim:
            raise ConfigError(
                f"observations: {flat.shape[1]} values per observation, the model takes "
                f"{self.observation_dim}"
            )
        return flat

    def network_state(self, observations: Observations | Mapping[str, Any]) -> np.ndarray:
        """:meth:`state`, standardised when the spec says so; float32 (uint8 image bytes for
        image states, which their encoder scales on the training device)."""
        flat = self.state(observations)
        if self.image_shape is not None:
            return np.asarray(flat, dtype=np.uint8)
        scale = self.observation_scale
        return np.asarray(flat, dtype=np.float32) if scale is None else scale(flat)

    def network_goals(self, goals: np.ndarray, batch: int) -> np.ndarray:
        """Goals ``[batch, goal_dim]`` flat and standardised when the spec says so; float32
        (uint8 image bytes for image goals)."""
        dtype = np.uint8 if self.goal_image else np.float32
        flat = np.asarray(goals, dtype=dtype).reshape(batch, -1)
        if flat.shape[1] != self.goal_dim:
            raise ConfigError(
                f"goals: {flat.shape[1]} values per goal, the model takes {self.goal_dim}"
            )
        return flat if self.goal_scale is None else self.goal_scale(flat)

    # ----------------------------------------------------------------- checkpoints
    def to_dict(self) -> dict[str, Any]:
        """A JSON-compatible dict (the layout checkpoints store)."""
        out: dict[str, Any] = {
            "spec_version": SPEC_VERSION,
            "observation_dim": self.observation_dim,
            "action_dim": self.action_dim,
            "discrete": self.discrete,
            "goal_dim": self.goal_dim,
            "tasks": [{"name": t.name, "text": t.text} for t in self.tasks],
            "observation_keys": None
            if self.observation_keys is None
            else list(self.observation_keys),
            "goal_key": self.goal_key,
            "goal_dims": None if self.goal_dims is None else list(self.goal_dims),
        }
        if self.image_shape is not None:  # absent from the specs of state data, as before
            out["image_shape"] = list(self.image_shape)
            out["goal_image"] = self.goal_image
            out["frame_stack"] = self.frame_stack
        scales = {"observation": self.observation_scale, "goal": self.goal_scale}
        if any(s is not None for s in scales.values()):
            out["normalization"] = {k: s.to_list() for k, s in scales.items() if s is not None}
        return out

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> InputSpec:
        """The spec a :meth:`to_dict` dict (or a checkpoint of gcrl 0.1.0) describes."""
        version = int(values.get("spec_version", 1))
        if version > SPEC_VERSION:
            raise DataError(
                f"spec: version {version} is newer than this gcrl reads ({SPEC_VERSION}); "
                "upgrade gcrl"
            )
        try:
            stats = values.get("normalization") or {}
            return cls(
                observation_dim=int(values["observation_dim"]),
                action_dim=int(values["action_dim"]),
                discrete=bool(values["discrete"]),
                goal_dim=int(values.get("goal_dim", 0)),
                tasks=tuple(Task(str(t["name"]), str(t.get("text", ""))) for t in values["tasks"]),
                observation_keys=values.get("observation_keys"),
                goal_key=values.get("goal_key"),
                goal_dims=values.get("goal_dims"),
                observation_scale=_scale(stats.get("observation")),
                goal_scale=_scale(stats.get("goal")),
                image_shape=values.get("image_shape"),
                goal_image=bool(values.get("goal_image", False)),
                frame_stack=int(values.get("frame_stack", 1)),
            )
        except (KeyError, TypeError, ValueError) as err:
            raise DataError(f"spec: not a gcrl input spec ({type(err).__name__}: {err})") from None


def _image_shape(
    observations: Observations, keys: tuple[str, ...] | None
) -> tuple[int, int, int] | None:
    """``(height, width, channels)`` when the state is one uint8 image column (rows of
    three dimensions), else None; an image among other state keys is refused."""
    if isinstance(observations, dict):
        columns = [observations[k] for k in keys or ()]
    else:
        columns = [observations]
    images = [c.ndim == 4 and c.dtype == np.uint8 for c in columns]
    if not any(images):
        return None
    if len(columns) > 1:
        raise ConfigError(
            f"observation_keys: {', '.join(keys or ())} mix a camera image with other state "
            "keys; an image state must be the only observation key"
        )
    height, width, channels = (int(d) for d in columns[0].shape[1:])
    return height, width, channels


def _scale(pair: Sequence[Sequence[float]] | None) -> Standardisation | None:
    if pair is None:
        return None
    mean, std = pair
    return Standardisation(np.asarray(mean), np.asarray(std))
