"""Frame stacking: each observation as its last ``k`` frames, concatenated along channels
(OGBench's ``frame_stack``), never reaching back across an episode's start (numpy only).

Row ``i`` of episode ``[start, end]`` becomes ``frames[max(i - k + 1, start)], ...,
frames[i]`` (oldest first; an episode's first rows repeat its first frame), and its next
observation the same stack one step later, ending with ``next_observations[i]``. Goals drawn
from stacked observations are stacks too, as in OGBench's training; its evaluation tiles the
goal image ``k`` times (:class:`FrameHistory`, which evaluation uses).

>>> import numpy as np
>>> from gcrl.datasets.trajectories import Trajectories
>>> frames = np.arange(5, dtype=np.uint8).reshape(5, 1, 1, 1)   # one-pixel frames 0..4
>>> data = Trajectories(observations=frames[:4], next_observations=frames[1:],
...     actions=np.zeros((4, 1)), rewards=np.zeros(4), terminals=np.zeros(4),
...     timeouts=[0, 1, 0, 1], episode_starts=[0, 2])           # two episodes of two rows
>>> stacked = stack_frames(data, 2)
>>> stacked.observations[:, 0, 0].tolist()         # row 2 starts an episode: 2, 2, not 1, 2
[[0, 0], [0, 1], [2, 2], [2, 3]]
>>> stacked.next_observations[:, 0, 0].tolist()
[[0, 1], [1, 2], [2, 3], [3, 4]]
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from typing import Any

import numpy as np

from gcrl.datasets.trajectories import DESIRED_GOAL, Trajectories, replace_fields
from gcrl.errors import ConfigError

#: The dict-observation key of the state (OGBench evaluation's observations).
OBSERVATION = "observation"


def stack_frames(data: Trajectories, k: int) -> Trajectories:
    """``data`` with its array observations (``[N, ..., C]``, channels last) replaced by
    stacks of their last ``k`` frames (``[N, ..., k * C]``); other columns unchanged. The
    stacked columns are new arrays (``k`` times the observations' bytes)."""
    if k < 1:
        raise ConfigError(f"frame_stack: must be at least 1, got {k}")
    observations, following = data.observations, data.next_observations
    if not isinstance(observations, np.ndarray) or not isinstance(following, np.ndarray):
        raise ConfigError("frame_stack: needs array observations (camera images)")
    if k == 1:
        return data
    n = data.num_transitions
    rows = np.arange(n)
    starts = np.repeat(data.episode_starts, data.episode_lengths)  # each row's episode start
    # Frame j of a stack (oldest first) is row i - (k - 1 - j), clipped at the start.
    current = [observations[np.maximum(rows - back, starts)] for back in range(k - 1, -1, -1)]
    # The next stack ends with s'_i; before it come the frames of rows i - k + 2 .. i.
    later = [observations[np.maximum(rows + 1 - back, starts)] for back in range(k - 1, 0, -1)]
    return replace_fields(
        data,
        observations=np.concatenate(current, axis=-1),
        next_observations=np.concatenate([*later, following], axis=-1),
    )


class FrameHistory:
    """The observations a frame-stacking policy reads, one environment's at a time: the last
    ``k`` observations concatenated along channels (the first repeated after a reset), and a
    ``desired_goal`` tiled ``k`` times (OGBench's ``FrameStackWrapper``)."""

    def __init__(self, k: int) -> None:
        if k < 1:
            raise ConfigError(f"frame_stack: must be at least 1, got {k}")
        self.k = k
        self.frames: deque[np.ndarray] = deque(maxlen=k)

    def reset(self, observation: Any) -> Any:
        """The stacked first observation of an episode (with ``k`` 1: ``observation``)."""
        if self.k == 1:
            return observation
        self.frames.clear()
        for _ in range(self.k):
            self.frames.append(np.asarray(_state(observation)))
        return self._stacked(observation)

    def push(self, observation: Any) -> Any:
        """The stacked observation after a step (with ``k`` 1: ``observation``)."""
        if self.k == 1:
            return observation
        self.frames.append(np.asarray(_state(observation)))
        return self._stacked(observation)

    def _stacked(self, observation: Any) -> Any:
        frames = np.concatenate(list(self.frames), axis=-1)
        if not isinstance(observation, Mapping):
            return frames
        out = {**observation, OBSERVATION: frames}
        if DESIRED_GOAL in observation:
            out[DESIRED_GOAL] = np.concatenate([observation[DESIRED_GOAL]] * self.k, axis=-1)
        return out


def _state(observation: Any) -> Any:
    if isinstance(observation, Mapping):
        if OBSERVATION not in observation:
            raise ConfigError(
                f"frame_stack: observations are dicts of {', '.join(observation)}; stacking "
                f"needs their {OBSERVATION!r}"
            )
        return observation[OBSERVATION]
    return observation


__all__ = ["FrameHistory", "stack_frames"]
