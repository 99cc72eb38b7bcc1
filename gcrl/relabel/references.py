"""Goal relabeling by reference, for camera-image data: copies that name their rows instead of
repeating them.

A relabeled state dataset repeats each row ``k`` times with a new goal. For images that would
multiply the file by ``k + 1`` (and again by two, for goal images). Instead,
``gcrl relabel`` on image data keeps the rows once and writes a table of **goal references**,
one entry per copy:

* ``rows``: the row whose transition ``(s, a, s')`` the copy takes;
* ``goal_rows`` and ``goal_next``: its goal is the observation of ``goal_rows``, or, where
  ``goal_next`` is set, that row's next observation (an episode's final state);
* ``rewards`` and ``terminals``: 1 and true where the goal is ``s'``, judged by index
  (OGBench's convention: images are never compared by tolerance).

:class:`ReferenceSampler` draws training batches from the copies and gathers their images by
row, so neither the file nor memory holds an image more than once (numpy only;
:func:`gcrl.relabel.offline.read_goal_references` reads a file's references).

>>> import numpy as np
>>> from gcrl.datasets.trajectories import Trajectories
>>> frames = np.arange(6, dtype=np.uint8).reshape(6, 1, 1, 1)   # 6 one-pixel "images"
>>> data = Trajectories(observations=frames[:5], next_observations=frames[1:],
...     actions=np.zeros((5, 1)), rewards=np.zeros(5), terminals=np.zeros(5),
...     timeouts=[0, 0, 0, 0, 1], episode_starts=[0])
>>> rng = np.random.default_rng(0)
>>> refs = draw_goal_references(data, first_row=0, strategy="final", k=1, rng=rng)
>>> refs.goals(data)[:, 0, 0, 0].tolist()          # every goal: the final state, frame 5
[5, 5, 5, 5, 5]
>>> refs.rewards.tolist()                            # reached by the last transition only
[0.0, 0.0, 0.0, 0.0, 1.0]
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from gcrl.datasets.trajectories import Trajectories, take_rows
from gcrl.errors import ConfigError, DataError
from gcrl.relabel.episodes import EpisodeIndex
from gcrl.relabel.goals import GoalMixture, goal_strategy
from gcrl.relabel.sampler import as_generator

#: The native file's group holding the references.
GOAL_REFERENCES = "goal_references"


@dataclass(frozen=True, eq=False)
class GoalReferences:
    """Goal-relabeled copies by reference: ``[M]`` columns, one entry per copy."""

    rows: np.ndarray  # int64: the transition's row
    goal_rows: np.ndarray  # int64: the goal's row
    goal_next: np.ndarray  # bool: the goal is that row's next observation
    rewards: np.ndarray  # float32
    terminals: np.ndarray  # bool: the goal is reached by the transition

    def __post_init__(self) -> None:
        sizes = {f.name: len(getattr(self, f.name)) for f in fields(self)}
        if len(set(sizes.values())) != 1:
            raise DataError(f"{GOAL_REFERENCES}: columns of different lengths {sizes}")

    def __len__(self) -> int:
        return len(self.rows)

    def columns(self) -> dict[str, np.ndarray]:
        """The columns by name (the file's layout)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_columns(cls, columns: dict[str, np.ndarray], num_rows: int) -> GoalReferences:
        """The references stored as ``columns``, checked against a dataset of ``num_rows``."""
        missing = [f.name for f in fields(cls) if f.name not in columns]
        if missing:
            raise DataError(f"{GOAL_REFERENCES}/{missing[0]}: missing")
        refs = cls(
            rows=np.asarray(columns["rows"], dtype=np.int64),
            goal_rows=np.asarray(columns["goal_rows"], dtype=np.int64),
            goal_next=np.asarray(columns["goal_next"], dtype=bool),
            rewards=np.asarray(columns["rewards"], dtype=np.float32),
            terminals=np.asarray(columns["terminals"], dtype=bool),
        )
        for name in ("rows", "goal_rows"):
            values = getattr(refs, name)
            if len(values) and (values.min() < 0 or values.max() >= num_rows):
                raise DataError(f"{GOAL_REFERENCES}/{name}: rows outside the {num_rows:,} rows")
        return refs

    def goals(self, data: Trajectories, copies: np.ndarray | None = None) -> np.ndarray:
        """The goal observations of ``copies`` (default: all), gathered from ``data``'s array
        observations: ``[len(copies), ...]``."""
        picked = slice(None) if copies is None else copies
        goal_rows, goal_next = self.goal_rows[picked], self.goal_next[picked]
        observations, following = data.observations, data.next_observations
        if isinstance(observations, dict) or isinstance(following, dict):
            raise DataError(f"{GOAL_REFERENCES}: need array observations (camera images)")
        goals = take_rows(observations, goal_rows)
        if goal_next.any():
            goals[goal_next] = take_rows(following, goal_rows[goal_next])
        return goals


def draw_goal_references(
    chunk: Trajectories,
    *,
    first_row: int,
    strategy: str,
    k: int,
    rng: np.random.Generator,
    gamma: float = 0.99,
    truncation: str = "renormalise",
    negative_rewards: bool = False,
) -> GoalReferences:
    """``k`` goal references for every row of ``chunk`` (whole episodes starting at file row
    ``first_row``), their goals drawn by ``strategy`` within each row's episode.

    Rewards are 1 where the goal is ``s'`` (0 otherwise; -1 / 0 with ``negative_rewards``).
    Strategies drawing goals from other episodes (``random``) are refused: a reference needs
    the goal's row, which a pooled goal does not carry."""
    if goal_strategy(strategy).any_episode:
        raise ConfigError(
            f"strategy {strategy}: draws goals from other episodes; image data relabels by "
            "reference within episodes (final, future, geometric, episode)"
        )
    index = EpisodeIndex.from_starts(chunk.episode_starts, len(chunk))
    mixture = GoalMixture.only(strategy, gamma=gamma, truncation=truncation)
    rows = np.repeat(np.arange(len(chunk), dtype=np.int64), k)
    episodes = index.episode_of_row[rows]
    states = rows + episodes
    first, last = index.first_state[episodes], index.last_state[episodes]
    codes = mixture.choose(len(rows), rng)
    positions = mixture.sample(states, first, last, index.num_states, rng, codes)
    goal_next = positions == last  # the episode's final state: the last row's s'
    success = positions == states + 1
    rewards = success.astype(np.float32) - (1.0 if negative_rewards else 0.0)
    return GoalReferences(
        rows=rows + first_row,
        goal_rows=positions - episodes - goal_next + first_row,
        goal_next=goal_next,
        rewards=rewards.astype(np.float32),
        terminals=success,
    )


class ReferenceSampler:
    """Batches of the goal-relabeled copies of ``references`` (a
    :class:`~gcrl.relabel.pipeline.BatchSampler`): copies drawn uniformly, their transitions
    and goals gathered from ``data`` by row. Both goal sets (``value``, ``actor``) are the
    copy's goal; ``rows`` are the transitions' rows (a training device gathers them)."""

    def __init__(
        self,
        data: Trajectories,
        references: GoalReferences,
        seed: int | np.random.Generator | None = None,
    ) -> None:
        if not len(references):
            raise DataError(f"{GOAL_REFERENCES}: no copies")
        self.data = data
        self.references = references
        self.rng = as_generator(seed)

    def sample(
        self, batch_size: int, rows: np.ndarray | None = None, *, gather: bool = True
    ) -> dict[str, Any]:
        """A batch of ``batch_size`` copies (``rows``: which copies, default uniform)."""
        refs = self.references
        copies = (
            self.rng.integers(0, len(refs), size=batch_size)
            if rows is None
            else np.asarray(rows, dtype=np.int64)
        )
        transitions = refs.rows[copies]
        goals = refs.goals(self.data, copies)
        terminals = refs.terminals[copies]
        batch: dict[str, Any] = {
            "rows": transitions,
            "rewards": refs.rewards[copies],
            "terminals": terminals,
            "masks": (~terminals).astype(np.float32),
            "value_goals": goals,
            "actor_goals": goals,
            "relabeled": np.ones(len(copies), dtype=bool),
        }
        if gather:
            batch["observations"] = take_rows(self.data.observations, transitions)  # type: ignore[arg-type]
            batch["next_observations"] = take_rows(self.data.next_observations, transitions)  # type: ignore[arg-type]
            batch["actions"] = take_rows(self.data.actions, transitions)
        if self.data.task_ids is not None:
            batch["task_ids"] = take_rows(self.data.task_ids, transitions)
        return batch


__all__ = [
    "GOAL_REFERENCES",
    "GoalReferences",
    "ReferenceSampler",
    "draw_goal_references",
]
