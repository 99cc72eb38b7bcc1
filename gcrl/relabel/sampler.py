"""On-the-fly goal relabeling: draw a batch of rows and relabel its goals, all vectorised.

>>> import numpy as np
>>> from gcrl.datasets.trajectories import Trajectories, take_rows
>>> ag = np.arange(7, dtype=np.float64)[:, None]           # achieved goal of s_0..s_6
>>> obs = {"achieved_goal": ag[:6], "desired_goal": np.full((6, 1), 9.0)}
>>> nxt = {"achieved_goal": ag[1:], "desired_goal": np.full((6, 1), 9.0)}
>>> data = Trajectories(observations=obs, actions=np.zeros((6, 1)), rewards=np.zeros(6),
...                     terminals=np.zeros(6), timeouts=[0, 0, 1, 0, 0, 1],
...                     next_observations=nxt, episode_starts=[0, 3])
>>> sampler = GoalSampler(data, value_goals=GoalMixture.only("final"), seed=0)
>>> batch = sampler.sample(4, rows=np.array([0, 2, 3, 5]))
>>> batch["value_goals"][:, 0].tolist()        # each episode's final achieved goal
[3.0, 3.0, 6.0, 6.0]
>>> batch["rewards"].tolist(), batch["masks"].tolist()   # only rows reaching it succeed
([0.0, 1.0, 0.0, 1.0], [1.0, 0.0, 1.0, 0.0])
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from gcrl.datasets.trajectories import DESIRED_GOAL, goal_columns, take_observations, take_rows
from gcrl.errors import ConfigError, MissingKeyError
from gcrl.relabel.episodes import EpisodeIndex
from gcrl.relabel.goals import KEEP, GoalMixture, Subgoal
from gcrl.relabel.rewards import GoalReward, check_rewards

if TYPE_CHECKING:
    from gcrl.datasets.trajectories import Observations, Trajectories

#: ``reward_fn(observations, actions, next_observations) -> rewards [B]``; observations carry
#: the relabeled goal under ``desired_goal``.
RewardFn = Callable[[Any, np.ndarray, Any], np.ndarray]


def as_generator(seed: int | np.random.Generator | None) -> np.random.Generator:
    """``seed`` itself when it is a Generator, else a new one seeded with it."""
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


class GoalSampler:
    """Samples goal-relabeled batches from trajectories held in memory.

    A batch carries one or more named **goal sets**, each drawn by its own
    :class:`GoalMixture` (OGBench's value and actor goals are two); rewards, terminals and
    masks belong to one of them, the ``reward_goals`` set.

    Args:
        data: the trajectories; observations are a dict holding ``goal_key`` (and
            ``desired_goal`` when a mixture keeps stored goals), or an array whose
            ``goal_dims`` (default: all) are the goal.
        goal_key: the dict observation key holding the achieved goal.
        goal_dims: for array observations, the dimensions that form the goal.
        value_goals, actor_goals: shorthand for ``goal_sets={"value": value_goals, "actor":
            actor_goals}`` (default: OGBench's value goals; actor goals default to the value
            goals themselves).
        goal_sets: set name -> the mixture its goals are drawn from, a :class:`Subgoal`
            (the state some steps ahead), or the name of an earlier set whose goals it
            shares. Sets are drawn in the order given.
        reward_goals: the set whose goals rewards are computed for (``value``).
        reward: how relabeled rows are rewarded (tolerance, ``s`` or ``s'``, 0/1 or -1/0).
        reward_fn: replaces the reward values (success, hence ``terminals``, still follows
            ``reward``); called on the batch with relabeled ``desired_goal``.
        random_goal_pool: goal values to draw any-episode goals (``random``) from instead of
            this data's states (the offline expansion passes the whole file's when streaming
            chunks).
        seed: an int or a ``numpy.random.Generator``; every draw comes from it.

    Rows keeping their stored goal (``"original"`` in a mixture) keep their stored rewards
    and terminals. Relabeled rows get ``terminals = success``: reaching the goal ends its
    episode.
    """

    def __init__(
        self,
        data: Trajectories,
        *,
        goal_key: str = "achieved_goal",
        goal_dims: Sequence[int] | slice | None = None,
        value_goals: GoalMixture | None = None,
        actor_goals: GoalMixture | None = None,
        goal_sets: Mapping[str, GoalMixture | Subgoal | str] | None = None,
        reward_goals: str = "value",
        reward: GoalReward | None = None,
        reward_fn: RewardFn | None = None,
        random_goal_pool: np.ndarray | None = None,
        seed: int | np.random.Generator | None = None,
    ) -> None:
        if goal_sets is None:
            goal_sets = {
                "value": value_goals or GoalMixture.ogbench_value(),
                "actor": actor_goals or "value",
            }
        elif value_goals is not None or actor_goals is not None:
            raise ConfigError("goal_sets: give either goal_sets or value_goals/actor_goals")
        self.goal_sets = dict(goal_sets)
        for name, mixture in self.goal_sets.items():
            earlier = list(self.goal_sets)[: list(self.goal_sets).index(name)]
            if isinstance(mixture, str) and mixture not in earlier:
                raise ConfigError(f"goal_sets: {name!r} shares {mixture!r}, not an earlier set")
            toward = mixture.toward if isinstance(mixture, Subgoal) else None
            if toward is not None and toward not in earlier:
                raise ConfigError(
                    f"goal_sets: {name!r} heads toward {toward!r}, not an earlier set"
                )
        if reward_goals not in self.goal_sets:
            raise ConfigError(f"reward_goals: {reward_goals!r} is not among the goal sets")
        self.reward_goals = reward_goals
        self.data = data
        self.index = EpisodeIndex.from_starts(data.episode_starts, data.num_transitions)
        self.reward = reward or GoalReward()
        self.reward_fn = reward_fn
        self.rng = as_generator(seed)
        self.achieved, self.next_achieved = goal_columns(data, goal_key, goal_dims)
        self.stored_goals = (
            data.observations[DESIRED_GOAL]
            if isinstance(data.observations, dict) and DESIRED_GOAL in data.observations
            else None
        )
        uses_original = any(
            isinstance(m, GoalMixture) and m.uses_original for m in self.goal_sets.values()
        )
        if uses_original and self.stored_goals is None:
            raise MissingKeyError(
                f"observations/{DESIRED_GOAL}: needed to keep stored goals ('original'), "
                "but the observations hold none"
            )
        self.random_goal_pool = random_goal_pool

    # ----------------------------------------------------------------- public
    def sample(
        self, batch_size: int, rows: np.ndarray | None = None, *, gather: bool = True
    ) -> dict[str, Any]:
        """A relabeled batch of ``batch_size`` rows drawn uniformly (or the given ``rows``).

        Returns a dict of numpy arrays: ``observations``, ``next_observations`` (dicts when
        the data's are; their ``desired_goal`` is the reward set's goal), ``actions``,
        ``rewards`` (float32), ``terminals`` (bool), ``masks`` (float32, ``1 - terminals``),
        ``<set>_goals`` for each goal set (``value_goals``, ``actor_goals``...),
        ``<set>_states`` for each :class:`Subgoal` set asking for them, ``task_ids``
        (when the data has tasks), ``rows`` (source row of each sample) and ``relabeled``
        (bool: the reward set's goal was relabeled). With ``gather=False`` the first three are
        left out, for the caller to gather by ``rows`` from its own copy of the data (a
        training device's, for instance).
        """
        if rows is None:
            rows = self.rng.integers(0, self.data.num_transitions, size=batch_size)
        rows = np.asarray(rows, dtype=np.int64)
        episodes = self.index.episode_of_row[rows]
        states = rows + episodes
        first, last = self.index.first_state[episodes], self.index.last_state[episodes]

        draws: dict[str, _Draw] = {}
        subgoal_states: dict[str, Any] = {}
        for name, mixture in self.goal_sets.items():
            if isinstance(mixture, str):
                draws[name] = draws[mixture]
                continue
            if isinstance(mixture, Subgoal):
                toward = None
                if mixture.toward is not None:
                    goal = draws[mixture.toward]
                    own = goal.positions != KEEP
                    if goal.any_episode is not None:
                        own &= ~goal.any_episode
                    toward = np.where(own, goal.positions, -1)
                positions = mixture.positions(states, last, toward)
                goals = self.index.gather_states(
                    self.achieved, self.next_achieved, positions, episodes
                )
                draws[name] = _Draw(goals, positions, None)
                if mixture.states:
                    subgoal_states[name] = self._states_at(positions, episodes)
                continue
            codes = mixture.choose(len(rows), self.rng)
            positions = mixture.sample(states, first, last, self.index.num_states, self.rng, codes)
            any_episode = mixture.any_episode(codes)
            goals = self._goal_values(rows, positions, episodes, any_episode)
            draws[name] = _Draw(goals, positions, any_episode)

        data = self.data
        rewarded = draws[self.reward_goals]
        relabeled = rewarded.positions != KEEP
        success = self._success(rows, states, rewarded)
        terminals = np.where(relabeled, success, take_rows(data.terminals, rows))
        gathered: dict[str, Any] = {}
        if gather or self.reward_fn is not None:
            gathered["observations"] = _gather(data.observations, rows, rewarded.goals)
            gathered["next_observations"] = _gather(data.next_observations, rows, rewarded.goals)
            gathered["actions"] = take_rows(data.actions, rows)
        if self.reward_fn is not None:
            rewards = check_rewards(
                self.reward_fn(
                    gathered["observations"], gathered["actions"], gathered["next_observations"]
                ),
                len(rows),
                "reward_fn",
            )
        else:
            rewards = self.reward.rewards(success)
        rewards = np.where(relabeled, rewards, take_rows(data.rewards, rows)).astype(np.float32)
        batch = gathered if gather else {}
        batch |= {
            "rewards": rewards,
            "terminals": terminals,
            "masks": (~terminals).astype(np.float32),
        }
        batch |= {f"{name}_goals": draw.goals for name, draw in draws.items()}
        batch |= {f"{name}_states": value for name, value in subgoal_states.items()}
        batch |= {"rows": rows, "relabeled": relabeled}
        if data.task_ids is not None:
            batch["task_ids"] = take_rows(data.task_ids, rows)
        return batch

    # ----------------------------------------------------------------- internals
    def _states_at(self, positions: np.ndarray, episodes: np.ndarray) -> Observations:
        """The observations of the states at ``positions`` (of ``episodes``): a dict of
        arrays, or an array, as the data's observations are."""
        observations, following = self.data.observations, self.data.next_observations
        if isinstance(observations, dict):
            assert isinstance(following, dict)
            return {
                key: self.index.gather_states(
                    observations[key], following[key], positions, episodes
                )
                for key in observations
            }
        assert isinstance(following, np.ndarray)
        return self.index.gather_states(observations, following, positions, episodes)

    def _goal_values(
        self,
        rows: np.ndarray,
        positions: np.ndarray,
        episodes: np.ndarray,
        any_episode: np.ndarray | None,
    ) -> np.ndarray:
        """Goal vectors at ``positions``; stored goals where :data:`KEEP`."""
        keep = positions == KEEP
        kept = bool(keep.any())
        if any_episode is None or not any_episode.any():
            if not kept:  # the common case: every goal is a state of the row's own episode
                return self.index.gather_states(
                    self.achieved, self.next_achieved, positions, episodes
                )
            any_episode = np.zeros(len(rows), dtype=bool)
        out = np.empty((len(rows), *self.achieved.shape[1:]), dtype=self.achieved.dtype)
        if kept:
            assert self.stored_goals is not None
            out[keep] = self.stored_goals[rows[keep]]
        if any_episode.any() and self.random_goal_pool is not None:
            draw = self.rng.integers(0, len(self.random_goal_pool), size=int(any_episode.sum()))
            out[any_episode] = self.random_goal_pool[draw]
            inside = ~(keep | any_episode)
        else:
            inside = ~keep
            episodes = episodes.copy()
            episodes[any_episode] = self.index.episode_of_state(positions[any_episode])
        out[inside] = self.index.gather_states(
            self.achieved, self.next_achieved, positions[inside], episodes[inside]
        )
        return out

    def _success(self, rows: np.ndarray, states: np.ndarray, draw: _Draw) -> np.ndarray:
        judged = self.next_achieved if self.reward.judged_on == "next" else self.achieved
        success = self.reward.success(
            draw.goals, draw.positions, states, lambda: take_rows(judged, rows)
        )
        pooled = draw.any_episode if self.random_goal_pool is not None else None
        if self.reward.tolerance is None and pooled is not None:
            success &= ~pooled  # goals drawn from the pool carry no position
        return success


class _Draw(NamedTuple):
    """One goal set's draw: goal values, state positions (:data:`KEEP`: stored goal), and
    which came from a strategy whose goals may lie in another episode."""

    goals: np.ndarray
    positions: np.ndarray
    any_episode: np.ndarray | None


def _gather(observations: Observations, rows: np.ndarray, goals: np.ndarray) -> Observations:
    if not isinstance(observations, dict):
        return take_rows(observations, rows)
    out = {k: take_rows(v, rows) for k, v in observations.items() if k != DESIRED_GOAL}
    if DESIRED_GOAL in observations:
        out[DESIRED_GOAL] = goals.astype(observations[DESIRED_GOAL].dtype, copy=False)
    return out


def gather_transitions(
    data: Trajectories, rows: np.ndarray
) -> tuple[Observations, Observations, np.ndarray]:
    """``(observations, next_observations, actions)`` of ``rows``, as stored."""
    return (
        take_observations(data.observations, rows),
        take_observations(data.next_observations, rows),
        take_rows(data.actions, rows),
    )


class RowSampler:
    """Uniform rows with their stored rewards; ``masks`` are ``1 - terminals``.

    :meth:`sample` returns ``rewards``, ``terminals``, ``masks``, ``rows``, ``task_ids``
    (when the data has tasks) and, unless ``gather=False``, ``observations``,
    ``next_observations`` and ``actions``.
    """

    def __init__(self, data: Trajectories, seed: int | np.random.Generator | None = None) -> None:
        self.data = data
        self.rng = as_generator(seed)

    def sample(
        self, batch_size: int, rows: np.ndarray | None = None, *, gather: bool = True
    ) -> dict[str, Any]:
        """A batch of ``batch_size`` uniform rows (or the given ``rows``)."""
        if rows is None:
            rows = self.rng.integers(0, self.data.num_transitions, size=batch_size)
        terminals = take_rows(self.data.terminals, rows)
        batch: dict[str, Any] = {
            "rows": rows,
            "rewards": take_rows(self.data.rewards, rows),
            "terminals": terminals,
            "masks": (~terminals).astype(np.float32),
        }
        if gather:
            observations, next_observations, actions = gather_transitions(self.data, rows)
            batch |= {
                "observations": observations,
                "next_observations": next_observations,
                "actions": actions,
            }
        if self.data.task_ids is not None:
            batch["task_ids"] = take_rows(self.data.task_ids, rows)
        return batch
