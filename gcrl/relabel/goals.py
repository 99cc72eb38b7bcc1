"""Hindsight goal strategies: for each sampled position, a goal position in the same episode.

Every function takes ``index`` (the positions goals are drawn for) and ``first``/``last``
(the first and last position of each one's episode, inclusive) and returns goal positions as
a new int64 array; ``index`` is never modified. Positions are state positions
(:mod:`gcrl.relabel.episodes`): ``first`` is ``s_0``, ``last`` is the state after the last
action. Random choices come from the ``numpy.random.Generator`` passed in.

:data:`GOAL_STRATEGIES` registers each strategy by name behind one signature
(:class:`GoalStrategy`); :class:`GoalMixture` draws from any of them, and a new strategy is one
:func:`register_goal_strategy` call (its file code comes from :mod:`gcrl.relabel.codes`).

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
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal, NamedTuple

import numpy as np

from gcrl.errors import ConfigError
from gcrl.relabel.codes import RELABEL_CODES, register_code

#: Goal position meaning "keep the goal stored in the data" (the ``original`` strategy).
KEEP = -1

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


class GoalQuery(NamedTuple):
    """The samples a strategy draws goals for: their state positions ``states`` and, per
    sample, the first and last state of its episode (inclusive); ``num_states`` in the whole
    dataset. (A named tuple: one is made per strategy per batch, so it must be cheap.)"""

    states: np.ndarray
    first: np.ndarray
    last: np.ndarray
    num_states: int


@dataclass(frozen=True)
class GoalOptions:
    """Options of the strategies that have some: ``gamma`` and ``truncation`` (geometric),
    ``inclusive`` (future)."""

    gamma: float = 0.99
    truncation: Truncation = "renormalise"
    inclusive: bool = False


#: ``draw(query, rng, options) -> goal positions [len(query.states)]`` (int64; :data:`KEEP`
#: keeps the stored goal).
GoalDraw = Callable[[GoalQuery, np.random.Generator, GoalOptions], np.ndarray]


@dataclass(frozen=True)
class GoalStrategy:
    """One hindsight goal strategy."""

    name: str
    draw: GoalDraw
    #: Its goals may be states of another episode (``random``): their episode is looked up
    #: from the position, and a streamed offline expansion draws them from a pool of the
    #: whole file's goals.
    any_episode: bool = False
    #: It keeps the goal stored in the data (positions :data:`KEEP`), relabeling nothing.
    keeps_stored: bool = False
    #: Offline expansion (``gcrl relabel --strategy``) may use it.
    expands: bool = True


_strategies: dict[str, GoalStrategy] = {}
#: Every goal strategy by name, in registration order.
GOAL_STRATEGIES: Mapping[str, GoalStrategy] = MappingProxyType(_strategies)


def register_goal_strategy(strategy: GoalStrategy, code: int | None = None) -> None:
    """Add ``strategy`` (its file code: ``code``, or the next free one)."""
    if strategy.name in _strategies:
        raise ConfigError(f"goal strategy {strategy.name!r}: registered already")
    if strategy.name not in RELABEL_CODES:
        register_code(strategy.name, code)
    _strategies[strategy.name] = strategy


def goal_strategy(name: str) -> GoalStrategy:
    """The registered strategy called ``name``."""
    try:
        return _strategies[name]
    except KeyError:
        raise ConfigError(
            f"goal strategy: unknown {name!r}; choose from {', '.join(_strategies)}"
        ) from None


def goal_expansions() -> tuple[str, ...]:
    """The strategies offline expansion may use."""
    return tuple(name for name, s in _strategies.items() if s.expands)


def _keep(q: GoalQuery, rng: np.random.Generator, o: GoalOptions) -> np.ndarray:
    return np.full(len(q.states), KEEP, dtype=np.int64)


def _current(q: GoalQuery, rng: np.random.Generator, o: GoalOptions) -> np.ndarray:
    return current_goals(q.states, q.first, q.last)


def _final(q: GoalQuery, rng: np.random.Generator, o: GoalOptions) -> np.ndarray:
    return final_goals(q.states, q.first, q.last)


def _future(q: GoalQuery, rng: np.random.Generator, o: GoalOptions) -> np.ndarray:
    return future_goals(q.states, q.first, q.last, rng, inclusive=o.inclusive)


def _geometric(q: GoalQuery, rng: np.random.Generator, o: GoalOptions) -> np.ndarray:
    return geometric_goals(q.states, q.first, q.last, rng, gamma=o.gamma, truncation=o.truncation)


def _episode(q: GoalQuery, rng: np.random.Generator, o: GoalOptions) -> np.ndarray:
    return episode_goals(q.states, q.first, q.last, rng)


def _random(q: GoalQuery, rng: np.random.Generator, o: GoalOptions) -> np.ndarray:
    return random_goals(q.num_states, len(q.states), rng)


for _builtin in (
    GoalStrategy("original", _keep, keeps_stored=True, expands=False),
    GoalStrategy("current", _current, expands=False),
    GoalStrategy("final", _final),
    GoalStrategy("future", _future),
    GoalStrategy("geometric", _geometric),
    GoalStrategy("episode", _episode),
    GoalStrategy("random", _random, any_episode=True),
):
    register_goal_strategy(_builtin)


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
    #: The strategies with a weight, in registration order; :meth:`choose` indexes them.
    strategies: tuple[GoalStrategy, ...] = field(init=False, repr=False, compare=False)
    #: The strategies' options (made once: :meth:`sample` runs every batch).
    options: GoalOptions = field(init=False, repr=False, compare=False)
    _cdf: np.ndarray = field(init=False, repr=False, compare=False)
    _any_episode: np.ndarray = field(init=False, repr=False, compare=False)

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
        chosen = tuple(s for name, s in GOAL_STRATEGIES.items() if name in weights)
        probabilities = np.array([weights[s.name] for s in chosen])
        object.__setattr__(self, "weights", weights)
        object.__setattr__(self, "strategies", chosen)
        object.__setattr__(
            self, "options", GoalOptions(self.gamma, self.truncation, self.inclusive)
        )
        object.__setattr__(self, "_cdf", np.cumsum(probabilities / probabilities.sum()))
        object.__setattr__(self, "_any_episode", np.array([s.any_episode for s in chosen]))

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
        return any(s.keeps_stored for s in self.strategies)

    def choose(self, size: int, rng: np.random.Generator) -> np.ndarray:
        """Which strategy (index into :attr:`strategies`) each of ``size`` samples uses."""
        if len(self.strategies) == 1:
            return np.zeros(size, dtype=np.int8)
        codes = np.searchsorted(self._cdf, rng.random(size) * self._cdf[-1], side="right")
        return np.minimum(codes, len(self.strategies) - 1).astype(np.int8)

    def any_episode(self, codes: np.ndarray) -> np.ndarray | None:
        """Which samples (by their :meth:`choose` index) use a strategy whose goals may lie in
        another episode, bool ``[B]``; None when no strategy of the mixture does."""
        return self._any_episode[codes] if self._any_episode.any() else None

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
        options = self.options
        for code, strategy in enumerate(self.strategies):
            sel = slice(None) if len(self.strategies) == 1 else np.nonzero(codes == code)[0]
            query = GoalQuery(index[sel], first[sel], last[sel], num_states)
            goals[sel] = strategy.draw(query, rng, options)
        return goals


@dataclass(frozen=True)
class Subgoal:
    """A goal set of subgoals: the state ``steps`` ahead of each sample's state, as HIQL's
    low-level goals and high-level targets are (OGBench's ``subgoal_steps``, 25).

    The subgoal never passes the episode's last state, nor, with ``toward``, the goal of the
    named earlier set when that goal lies in the sample's own episode (the high-level target
    on the way to the high-level goal). ``states`` also returns the subgoal states' full
    observations (``<set>_states``), for networks evaluated at the subgoal.
    """

    steps: int
    toward: str | None = None
    states: bool = False

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ConfigError(f"subgoal_steps: must be >= 1, got {self.steps}")

    def positions(
        self, states: np.ndarray, last: np.ndarray, toward: np.ndarray | None
    ) -> np.ndarray:
        """Subgoal state positions ``min(state + steps, cap)``: ``cap`` is the episode's last
        state, or the ``toward`` positions where given (-1 where that goal is not a state of
        the sample's episode); int64 ``[B]``."""
        cap = last if toward is None else np.where(toward >= 0, toward, last)
        return np.minimum(states + self.steps, cap)
