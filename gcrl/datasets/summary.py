"""Dataset summaries for ``gcrl info``: sizes, shapes, episode lengths, returns, tasks.

Native files are summarised lazily: only the 1-D columns (rewards, flags, episode index, task
ids) are read, never the observations, so files larger than memory can be inspected.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from gcrl.datasets.loading import check_format_applies, detect_format, load
from gcrl.datasets.native_format import NativeReader
from gcrl.datasets.trajectories import Task, Trajectories
from gcrl.errors import reading

#: The column ``gcrl relabel`` marks each output row with, and the code of the rows it kept as
#: they were (``gcrl.relabel.codes``: a frozen table).
RELABEL_CODE_KEY = "infos/relabel_strategy"
ORIGINAL_CODE = 0


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
            codes = reader.column(RELABEL_CODE_KEY) if reader.has(RELABEL_CODE_KEY) else None
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
                relabel_codes=codes,
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
        relabel_codes=t.infos.get(RELABEL_CODE_KEY.removeprefix("infos/")),
    )


def episodes_description(t: Trajectories) -> str:
    """``"60 episodes"``, or for a file ``gcrl relabel`` wrote (whose relabeled rows are
    one-step episodes) ``"60 source episodes + 240,000 relabeled rows"``."""
    codes = t.infos.get(RELABEL_CODE_KEY.removeprefix("infos/"))
    if codes is None:
        return f"{t.num_episodes:,} episodes"
    kept = int(np.count_nonzero(codes[t.episode_starts] == ORIGINAL_CODE))
    relabeled = int(np.count_nonzero(codes != ORIGINAL_CODE))
    return f"{kept:,} source episodes + {relabeled:,} relabeled rows"


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
    relabel_codes: np.ndarray | None = None,
) -> dict[str, Any]:
    """Summary dict: counts, per-row shapes/dtypes, episode lengths (steps), episode returns
    (undiscounted sums of rewards), and per-task transition and episode counts.

    A file ``gcrl relabel`` wrote (``relabel_codes``: its ``infos/relabel_strategy``) stores
    each relabeled row as a one-step episode beside the source episodes it kept; its
    ``relabeled`` entry counts the source episodes and transitions (the rows of code 0,
    ``original``), the relabeled transitions and the copies per source row (``k``), whether
    they are goal references (image data: ``by_reference``, the copies stored as a table of
    rows rather than as rows), and the per-task episode counts are of source episodes."""
    n = len(rewards)
    relabeled = None
    if relabel_codes is not None:
        kept = episode_starts[relabel_codes[episode_starts] == ORIGINAL_CODE]
        options = json.loads(str(attrs.get("relabel_options", "{}")))
        source_rows = int(np.count_nonzero(relabel_codes == ORIGINAL_CODE))
        relabeled = {
            "source_episodes": len(kept),
            "source_transitions": source_rows,
            "relabeled_transitions": n - source_rows,
            "copies": options.get("k"),
        }
        if options.get("goal_references"):  # image copies: goal references, not rows
            relabeled["relabeled_transitions"] = int(options["k"]) * source_rows
            relabeled["by_reference"] = True
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
        counted = episode_starts if relabeled is None else kept
        per_episode = np.bincount(task_ids[counted], minlength=len(tasks))
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
        "relabeled": relabeled,
    }
