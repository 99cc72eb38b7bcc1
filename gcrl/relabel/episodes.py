"""Episode boundaries and the index arithmetic over them.

Two index spaces are used. **Rows** are transitions ``0..N-1``. **States** are the ``L + 1``
states ``s_0 .. s_L`` of each episode of ``L`` transitions, numbered episode after episode, so
``N + E`` in all: the layout OGBench stores. Row ``i`` of episode ``e`` starts in state
``i + e`` and ends in state ``i + e + 1``; episode ``e`` owns the contiguous states
``first_state[e] .. last_state[e]`` (inclusive). Goal samplers work on state positions, so the
state after the last action of an episode is a goal like any other.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from gcrl.datasets.trajectories import take_rows
from gcrl.errors import ConfigError


@dataclass(frozen=True)
class EpisodeIndex:
    """Boundaries of ``num_rows`` rows cut into episodes starting at ``starts``.

    >>> index = EpisodeIndex.from_starts([0, 3], num_rows=5)   # episodes of 3 and 2 rows
    >>> index.lengths.tolist(), index.first_state.tolist(), index.last_state.tolist()
    ([3, 2], [0, 4], [3, 6])
    >>> index.state_of_row(np.array([0, 2, 3])).tolist()        # s_t of rows 0, 2 and 3
    [0, 2, 4]
    """

    starts: np.ndarray
    num_rows: int
    ends: np.ndarray = field(init=False, repr=False)
    lengths: np.ndarray = field(init=False, repr=False)
    episode_of_row: np.ndarray = field(init=False, repr=False)
    first_state: np.ndarray = field(init=False, repr=False)
    last_state: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        starts = np.asarray(self.starts, dtype=np.int64)
        if starts.ndim != 1 or len(starts) == 0 or starts[0] != 0:
            raise ConfigError("episode starts: expected a 1-D array beginning with 0")
        ends = np.append(starts[1:], self.num_rows).astype(np.int64)
        lengths = ends - starts
        if (lengths <= 0).any():
            raise ConfigError("episode starts: must be strictly increasing and below num_rows")
        episodes = np.arange(len(starts), dtype=np.int64)
        set_ = object.__setattr__
        set_(self, "starts", starts)
        set_(self, "ends", ends)
        set_(self, "lengths", lengths)
        set_(self, "episode_of_row", np.repeat(episodes, lengths))
        set_(self, "first_state", starts + episodes)
        set_(self, "last_state", ends + episodes)

    @classmethod
    def from_starts(cls, starts: np.ndarray | list[int], num_rows: int) -> EpisodeIndex:
        """The index of ``num_rows`` rows whose episodes begin at ``starts``."""
        return cls(np.asarray(starts, dtype=np.int64), int(num_rows))

    @property
    def num_episodes(self) -> int:
        """E."""
        return len(self.starts)

    @property
    def num_states(self) -> int:
        """N + E, the number of state positions."""
        return self.num_rows + self.num_episodes

    def state_of_row(self, rows: np.ndarray) -> np.ndarray:
        """State position of ``s_t`` for each row (add 1 for ``s_{t+1}``), int64."""
        return rows + self.episode_of_row[rows]

    def episode_of_state(self, states: np.ndarray) -> np.ndarray:
        """Episode of each state position, int64."""
        return np.searchsorted(self.first_state, states, side="right") - 1

    def gather_states(
        self,
        observations: np.ndarray,
        next_observations: np.ndarray,
        states: np.ndarray,
        episodes: np.ndarray | None = None,
    ) -> np.ndarray:
        """Values of ``states`` from a per-row column and its next-state twin.

        State ``t >= 1`` of an episode is read from ``next_observations`` of row ``t - 1``,
        state 0 from ``observations`` of the episode's first row. ``episodes`` (the episode of
        each state, when the caller knows it) saves a search. Returns a new array.
        """
        if episodes is None:
            episodes = self.episode_of_state(states)
        offsets = states - self.first_state[episodes]
        rows = self.starts[episodes] + offsets - 1
        at_start = offsets == 0
        out = take_rows(next_observations, np.maximum(rows, 0))
        if at_start.any():
            out[at_start] = observations[rows[at_start] + 1]
        return out
