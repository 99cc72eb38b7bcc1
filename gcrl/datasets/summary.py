"""Dataset summaries for ``gcrl info``: sizes, shapes, episode lengths, returns, tasks.

Native files are summarised lazily: only the 1-D columns (rewards, flags, episode index, task
ids) are read, never the observations, so files larger than memory can be inspected.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from gcrl.datasets.loading import check_format_applies, detect_format, load
from gcrl.datasets.native_format import NativeReader
from gcrl.datasets.trajectories import Task, Trajectories
from gcrl.errors import reading


def summarize(
    source: str | os.PathLike[str], format: str | None = None, **options: Any
) -> dict[str, Any]:
    """A JSON-compatible summary of any supported dataset; see :func:`summarize_columns`."""
    if format == "gcrl":
        check_format_applies(source, format)
    format = format or detect_format(source)
    if format == "gcrl":
        with reading(source), NativeReader(source) as reader:
            task_ids = reader.column("task_ids") if reader.has("task_ids") else None
            return summarize_columns(
                source=str(source),
                format=format,
                layout=reader.layout(),
                rewards=reader.column("rewards"),
                terminals=reader.column("terminals"),
                timeouts=reader.column("timeouts"),
                episode_starts=reader.episode_starts,
                task_ids=task_ids,
                tasks=reader.tasks,
                attrs=reader.attrs,
            )
    trajectories = load(source, format=format, **options)
    return summarize_trajectories(trajectories, source=str(source), format=format)


def summarize_trajectories(
    t: Trajectories, *, source: str = "", format: str = ""
) -> dict[str, Any]:
    """The summary of an in-memory record."""
    layout = {k: (v.shape[1:], v.dtype) for k, v in t.columns().items() if k != "episode_starts"}
    return summarize_columns(
        source=source,
        format=format,
        layout=layout,
        rewards=t.rewards,
        terminals=t.terminals,
        timeouts=t.timeouts,
        episode_starts=t.episode_starts,
        task_ids=t.task_ids,
        tasks=t.tasks,
        attrs=t.attrs,
    )


def _stats(values: np.ndarray) -> dict[str, float]:
    values = values.astype(np.float64)
    return {
        "mean": float(values.mean()),
        "std": float(values.std()),
        "min": float(values.min()),
        "max": float(values.max()),
    }


def summarize_columns(
    *,
    source: str,
    format: str,
    layout: dict[str, tuple[tuple[int, ...], Any]],
    rewards: np.ndarray,
    terminals: np.ndarray,
    timeouts: np.ndarray,
    episode_starts: np.ndarray,
    task_ids: np.ndarray | None,
    tasks: tuple[Task, ...],
    attrs: dict[str, Any],
) -> dict[str, Any]:
    """Summary dict: counts, per-row shapes/dtypes, episode lengths (steps), episode returns
    (undiscounted sums of rewards), and per-task transition and episode counts."""
    n = len(rewards)
    lengths = np.diff(np.append(episode_starts, n))
    returns = np.add.reduceat(rewards.astype(np.float64), episode_starts)

    def spec(prefix: str) -> dict[str, Any]:
        return {
            (name[len(prefix) + 1 :] or name): {"shape": list(shape), "dtype": str(np.dtype(dtype))}
            for name, (shape, dtype) in sorted(layout.items())
            if name == prefix or name.startswith(prefix + "/")
        }

    task_rows = []
    if task_ids is not None:
        per_row = np.bincount(task_ids, minlength=len(tasks))
        per_episode = np.bincount(task_ids[episode_starts], minlength=len(tasks))
        task_rows = [
            {
                "id": i,
                "name": task.name,
                "text": task.text,
                "transitions": int(per_row[i]),
                "episodes": int(per_episode[i]),
            }
            for i, task in enumerate(tasks)
        ]
    provenance = {
        k: v
        for k, v in attrs.items()
        if k not in ("num_transitions", "num_episodes", "observations_are_dict")
    }
    return {
        "source": source,
        "format": format,
        "transitions": n,
        "episodes": len(episode_starts),
        "episode_length": {
            "min": int(lengths.min()),
            "mean": float(lengths.mean()),
            "max": int(lengths.max()),
        },
        "terminals": int(np.count_nonzero(terminals)),
        "timeouts": int(np.count_nonzero(timeouts)),
        "observations": spec("observations"),
        "actions": spec("actions")["actions"],
        "rewards": _stats(rewards),
        "returns": _stats(returns),
        "tasks": task_rows,
        "infos": spec("infos"),
        "attrs": provenance,
    }
