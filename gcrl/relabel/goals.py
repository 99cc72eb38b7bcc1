"""Hindsight goal strategies: for each sampled position, a goal position in the same episode.

Every function takes ``index`` (the positions goals are drawn for) and ``first``/``last``
(the first and last position of each one's episode, inclusive) and returns goal positions as
a new int64 array; ``index`` is never modified. Positions are state positions
(:mod:`gcrl.relabel.episodes`): ``first`` is ``s_0``, ``last`` is the state after the last
action. Random choices come from the ``numpy.random.Generator`` passed in.

>>> rng = np.random.default_rng(0)
>>> index, first, last = np.array([0, 2, 5]), np.array([0, 0, 5]), np.array([4, 4, 5])
>>> final_goals(index, first, last).tolist()
[4, 4, 5]
>>> goals = future_goals(index, first, last, rng)
>>> bool(((goals > index) | (index == last)).all() and (goals <= last).all())
True
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from gcrl.errors import ConfigError

#: Goal position meaning "keep the goal stored in the data" (see :data:`ORIGINAL`).
KEEP = -1

#: Strategy names, in the order of their codes in a :class:`GoalMixture` draw.
GOAL_STRATEGIES = ("original", "current", "final", "future", "geometric", "episode", "random")

Truncation = Literal["renormalise", "clip"]


def current_goals(index: np.ndarray, first: np.ndarray, last: np.ndarray) -> np.ndarray:
    """The state itself: ``index``."""
    return np.array(index, dtype=np.int64)


def final_goals(index: np.ndarray, first: np.ndarray, last: np.ndarray) -> np.ndarray:
    """The episode's last state: ``last``."""
    return np.broadcast_to(np.asarray(last, dtype=np.int64), np.shape(index)).copy()


def future_goals(
    index: np.ndarray,
    first: np.ndarray,
    last: np.ndarray,
    rng: np.random.Generator,
    *,
    inclusive: bool = False,
) -> np.ndarray:
    """Uniform over the rest of the episode.

    Exclusive (default): uniform over ``index + 1 .. last``, the states after the action, as
    HER's ``future`` (goals from the next observations of steps ``t .. T-1``); at the last
    state, which has no future, the last state itself. Inclusive: ``index .. last``.
    """
    index = np.asarray(index, dtype=np.int64)
    low = index if inclusive else np.minimum(index + 1, last)
    return rng.integers(low, np.asarray(last, dtype=np.int64) + 1)


def geometric_goals(
    index: np.ndarray,
    first: np.ndarray,
    last: np.ndarray,
    rng: np.random.Generator,
    *,
    gamma: float = 0.99,
    truncation: Truncation = "renormalise",
) -> np.ndarray:
    """``index + k`` with ``P(k) = (1 - gamma) gamma^(k-1)`` for ``k >= 1``.

    ``truncation="renormalise"`` draws ``k`` from the distribution restricted to the
    ``last - index`` states left and renormalised (inverse CDF, exact);
    ``truncation="clip"`` draws the untruncated ``k`` and clips the goal to ``last``, which
    puts the tail's mass on the last state (OGBench does this). At the last state: ``last``.
    """
    if not 0.0 < gamma < 1.0:
        raise ConfigError(f"gamma: must lie in (0, 1), got {gamma}")
    index = np.asarray(index, dtype=np.int64)
    last = np.asarray(last, dtype=np.int64)
    if truncation == "clip":
        return np.minimum(index + rng.geometric(1.0 - gamma, size=index.shape), last)
    if truncation != "renormalise":
        raise ConfigError(f"truncation: expected 'renormalise' or 'clip', got {truncation!r}")
    left = last - index
    # P(k <= j) = (1 - gamma^j) / (1 - gamma^left); invert with u in [0, 1).
    log_gamma = math.log(gamma)
    tail = -np.expm1(left * log_gamma)
    u = rng.random(index.shape)
    k = np.ceil(np.log1p(-u * tail) / log_gamma)
    k = np.clip(k, 1, np.maximum(left, 1)).astype(np.int64)
    return np.where(left > 0, index + k, index)


def episode_goals(
    index: np.ndarray, first: np.ndarray, last: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Uniform over the whole episode, ``first .. last``, past states included."""
    shape = np.shape(index)
    first = np.broadcast_to(np.asarray(first, dtype=np.int64), shape)
    return rng.integers(first, np.broadcast_to(np.asarray(last, dtype=np.int64), shape) + 1)


def random_goals(num_states: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """Uniform over all ``num_states`` states of the dataset (any episode)."""
    return rng.integers(0, num_states, size=size)


@dataclass(frozen=True)
class GoalMixture:
    """A mixture of goal strategies, drawn independently per sample.

    ``weights`` maps strategy names (:data:`GOAL_STRATEGIES`) to probabilities summing to 1;
    ``"original"`` keeps the goal stored in the data (position :data:`KEEP`). ``gamma`` and
    ``truncation`` configure ``geometric``; ``inclusive`` configures ``future``.

    >>> GoalMixture.ogbench_value().weights
    {'current': 0.2, 'geometric': 0.5, 'random': 0.3}
    >>> GoalMixture.her(k=4).weights
    {'original': 0.2, 'future': 0.8}
    """

    weights: Mapping[str, float]
    gamma: float = 0.99
    truncation: Truncation = "renormalise"
    inclusive: bool = False
    _cdf: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        weights = {k: float(v) for k, v in self.weights.items() if v != 0}
        unknown = sorted(set(weights) - set(GOAL_STRATEGIES))
        if unknown:
            raise ConfigError(
                f"goal strategy: unknown {', '.join(map(repr, unknown))}; "
                f"choose from {', '.join(GOAL_STRATEGIES)}"
            )
        if any(v < 0 for v in weights.values()) or not math.isclose(sum(weights.values()), 1):
            raise ConfigError(f"goal mixture: weights must be >= 0 and sum to 1, got {weights}")
        probabilities = np.array([weights.get(name, 0.0) for name in GOAL_STRATEGIES])
        object.__setattr__(self, "weights", weights)
        object.__setattr__(self, "_cdf", np.cumsum(probabilities / probabilities.sum()))

    # ----------------------------------------------------------------- presets
    @classmethod
    def only(cls, strategy: str, **options: float | bool | str) -> GoalMixture:
        """A single strategy."""
        return cls({strategy: 1.0}, **options)  # type: ignore[arg-type]

    @classmethod
    def ogbench_value(cls, gamma: float = 0.99) -> GoalMixture:
        """OGBench's value goals (GCIVL, GCIQL, HIQL): current 0.2, geometric 0.5, random 0.3.

        The geometric part is clipped to the episode's last state, as OGBench does.
        """
        return cls({"current": 0.2, "geometric": 0.5, "random": 0.3}, gamma, "clip")

    @classmethod
    def ogbench_actor(cls) -> GoalMixture:
        """OGBench's actor goals (GCBC and the actors above): uniform future states."""
        return cls({"future": 1.0})

    @classmethod
    def her(cls, k: int = 4, strategy: str = "future") -> GoalMixture:
        """HER: ``k`` relabeled goals per kept one, so a share ``k / (k + 1)`` relabeled."""
        if k < 0:
            raise ConfigError(f"k: must be >= 0, got {k}")
        return cls({"original": 1 / (k + 1), strategy: k / (k + 1)})

    # ----------------------------------------------------------------- drawing
    @property
    def uses_original(self) -> bool:
        """True when some samples keep the stored goal."""
        return "original" in self.weights

    def choose(self, size: int, rng: np.random.Generator) -> np.ndarray:
        """Strategy code (index into :data:`GOAL_STRATEGIES`) of each of ``size`` samples."""
        if len(self.weights) == 1:
            code = GOAL_STRATEGIES.index(next(iter(self.weights)))
            return np.full(size, code, dtype=np.int8)
        codes = np.searchsorted(self._cdf, rng.random(size) * self._cdf[-1], side="right")
        return np.minimum(codes, len(GOAL_STRATEGIES) - 1).astype(np.int8)

    def sample(
        self,
        index: np.ndarray,
        first: np.ndarray,
        last: np.ndarray,
        num_states: int,
        rng: np.random.Generator,
        codes: np.ndarray | None = None,
    ) -> np.ndarray:
        """Goal positions for ``index`` (:data:`KEEP` where the stored goal is kept).

        ``codes`` (from :meth:`choose`) fixes which strategy each sample uses; by default they
        are drawn here.
        """
        index = np.asarray(index, dtype=np.int64)
        if codes is None:
            codes = self.choose(len(index), rng)
        goals = np.empty(len(index), dtype=np.int64)
        for code, name in enumerate(GOAL_STRATEGIES):
            if name not in self.weights:
                continue
            sel = slice(None) if len(self.weights) == 1 else np.nonzero(codes == code)[0]
            goals[sel] = self._strategy(name, index[sel], first[sel], last[sel], num_states, rng)
        return goals

    def _strategy(
        self,
        name: str,
        index: np.ndarray,
        first: np.ndarray,
        last: np.ndarray,
        num_states: int,
        rng: np.random.Generator,
    ) -> np.ndarray:
        if name == "original":
            return np.full(len(index), KEEP, dtype=np.int64)
        if name == "current":
            return current_goals(index, first, last)
        if name == "final":
            return final_goals(index, first, last)
        if name == "future":
            return future_goals(index, first, last, rng, inclusive=self.inclusive)
        if name == "geometric":
            return geometric_goals(
                index, first, last, rng, gamma=self.gamma, truncation=self.truncation
            )
        if name == "episode":
            return episode_goals(index, first, last, rng)
        return random_goals(num_states, len(index), rng)
