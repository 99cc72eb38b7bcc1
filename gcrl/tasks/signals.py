"""Task signals: the vector a batch's task information becomes, for the networks.

Each signal maps ``(goals, task_ids)`` to ``[B, dim]``:

- ``none``: no signal (``dim`` 0), for single-task data or an unconditioned baseline;
- ``onehot``: the one-hot task id;
- ``embedding``: a learned ``nn.Embedding`` of the task id;
- ``goal``: the goal vector, optionally through an MLP goal encoder;
- ``text``: the task's instruction embedded by a sentence-transformers model. The vectors of
  the dataset's task texts are computed once (cached on disk by
  :class:`gcrl.tasks.text.TextEmbedder`) and kept as a buffer; the language model itself is
  neither trained nor saved in checkpoints.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from gcrl.errors import ConfigError
from gcrl.models.mlp import MLP

SIGNALS = ("none", "onehot", "embedding", "goal", "text")


class TaskSignal(nn.Module):
    """Base class: ``forward(goals, task_ids, text_embeddings=None) -> [B, dim]``.

    ``text_embeddings`` (``[B, dim]``) stand in for the table lookup of the text signal: a
    policy given instructions it was not trained on.
    """

    dim: int
    uses_goals = False
    #: The constructor's arguments (plain data): a checkpoint rebuilds the signal from them.
    config: dict[str, Any]

    def forward(
        self,
        goals: torch.Tensor | None,
        task_ids: torch.Tensor | None,
        text_embeddings: torch.Tensor | None = None,
    ) -> torch.Tensor:
        raise NotImplementedError


class NoSignal(TaskSignal):
    """No task information: ``[B, 0]``."""

    def __init__(self) -> None:
        super().__init__()
        self.dim = 0
        self.config = {}

    def forward(
        self,
        goals: torch.Tensor | None,
        task_ids: torch.Tensor | None,
        text_embeddings: torch.Tensor | None = None,
    ) -> torch.Tensor:
        reference = goals if goals is not None else task_ids
        batch = 1 if reference is None else len(reference)
        return torch.zeros(batch, 0, device=self._device(reference))

    @staticmethod
    def _device(reference: torch.Tensor | None) -> torch.device:
        return reference.device if reference is not None else torch.device("cpu")


class OneHotSignal(TaskSignal):
    """One-hot task ids: ``[B, num_tasks]``."""

    def __init__(self, num_tasks: int) -> None:
        super().__init__()
        self.dim = num_tasks
        self.config = {"num_tasks": num_tasks}

    def forward(
        self,
        goals: torch.Tensor | None,
        task_ids: torch.Tensor | None,
        text_embeddings: torch.Tensor | None = None,
    ) -> torch.Tensor:
        return nn.functional.one_hot(_ids(task_ids), self.dim).float()


class EmbeddingSignal(TaskSignal):
    """A learned embedding per task id: ``[B, dim]``."""

    def __init__(self, num_tasks: int, dim: int) -> None:
        super().__init__()
        self.dim = dim
        self.config = {"num_tasks": num_tasks, "dim": dim}
        self.table = nn.Embedding(num_tasks, dim)

    def forward(
        self,
        goals: torch.Tensor | None,
        task_ids: torch.Tensor | None,
        text_embeddings: torch.Tensor | None = None,
    ) -> torch.Tensor:
        return self.table(_ids(task_ids))


class GoalSignal(TaskSignal):
    """The goal vector, or its encoding by an MLP (``encoder_dims`` hidden widths, output
    ``encoder_dims[-1]``): ``[B, dim]``."""

    uses_goals = True

    def __init__(self, goal_dim: int, encoder_dims: Sequence[int] | None = None) -> None:
        super().__init__()
        self.config = {"goal_dim": goal_dim, "encoder_dims": list(encoder_dims or [])}
        if encoder_dims:
            self.encoder: nn.Module = MLP(goal_dim, encoder_dims[:-1], encoder_dims[-1])
            self.dim = encoder_dims[-1]
        else:
            self.encoder = nn.Identity()
            self.dim = goal_dim

    def forward(
        self,
        goals: torch.Tensor | None,
        task_ids: torch.Tensor | None,
        text_embeddings: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if goals is None:
            raise ConfigError("task_signal goal: the batch holds no goals")
        return self.encoder(goals)


class TextSignal(TaskSignal):
    """Fixed text embeddings of each task's instruction, looked up by task id: ``[B, dim]``.

    ``embeddings`` is ``[num_tasks, dim]`` (from :class:`gcrl.tasks.text.TextEmbedder`);
    when restoring a checkpoint pass ``dim`` instead and the state dict fills the table.
    """

    def __init__(
        self,
        model: str,
        embeddings: torch.Tensor | None = None,
        *,
        num_tasks: int | None = None,
        dim: int | None = None,
    ) -> None:
        super().__init__()
        self.model = model
        if embeddings is None:
            if num_tasks is None or dim is None:
                raise ConfigError("task_signal text: give the embeddings, or num_tasks and dim")
            embeddings = torch.zeros(num_tasks, dim)
        self.register_buffer("table", torch.as_tensor(embeddings, dtype=torch.float32))
        self.dim = int(self.table.shape[1])
        # The table comes from the state dict when rebuilding.
        self.config = {"model": model, "num_tasks": int(self.table.shape[0]), "dim": self.dim}

    table: torch.Tensor

    def forward(
        self,
        goals: torch.Tensor | None,
        task_ids: torch.Tensor | None,
        text_embeddings: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if text_embeddings is not None:
            return text_embeddings.to(self.table.dtype)
        return self.table[_ids(task_ids)]


#: Signal classes by name, for rebuilding one from its ``config``.
SIGNAL_CLASSES: dict[str, type[TaskSignal]] = {
    cls.__name__: cls for cls in (NoSignal, OneHotSignal, EmbeddingSignal, GoalSignal, TextSignal)
}


def build_signal(
    kind: str,
    num_tasks: int,
    goal_dim: int,
    task_texts: Sequence[tuple[str, str]],
    embedding_dim: int = 32,
    goal_encoder_dims: Sequence[int] | None = None,
    text_model: str = "all-MiniLM-L6-v2",
    text_dim: int | None = None,
) -> TaskSignal:
    """The task signal of ``kind`` (one of :data:`SIGNALS`) for data of ``num_tasks`` tasks
    and ``goal_dim``-d goals. ``task_texts`` holds each task's ``(name, text)``: the ``text``
    signal embeds the texts with ``text_model``, unless ``text_dim`` is given (restoring: the
    embeddings then come from the checkpoint)."""
    if kind == "none":
        return NoSignal()
    if kind == "onehot":
        return OneHotSignal(num_tasks)
    if kind == "embedding":
        return EmbeddingSignal(num_tasks, embedding_dim)
    if kind == "goal":
        return GoalSignal(goal_dim, None if goal_encoder_dims is None else list(goal_encoder_dims))
    if text_dim is not None:
        return TextSignal(text_model, num_tasks=num_tasks, dim=text_dim)
    from gcrl.tasks.text import TextEmbedder

    untexted = [name for name, text in task_texts if not text]
    if untexted:
        raise ConfigError(
            f"task_signal text: tasks {untexted} have no text to embed; give the dataset "
            "task texts (gcrl convert --task NAME --task-text TEXT) or use onehot"
        )
    vectors = TextEmbedder(text_model).embed([text for _, text in task_texts])
    return TextSignal(text_model, torch.from_numpy(vectors))


def task_vectors(
    signal: TaskSignal,
    observations: torch.Tensor,
    goals: torch.Tensor | None = None,
    task_ids: torch.Tensor | None = None,
    text_embeddings: torch.Tensor | None = None,
) -> torch.Tensor:
    """The task vector of each sample, ``[B, signal.dim]``, from its goal, task id or
    instruction embedding (whichever ``signal`` takes); ``[B, 0]`` for no signal."""
    if text_embeddings is not None and not isinstance(signal, TextSignal):
        raise ConfigError("texts: the model is not text-conditioned")
    if isinstance(signal, NoSignal):
        return observations.new_zeros(len(observations), 0)
    return signal(goals, task_ids, text_embeddings)


def _ids(task_ids: torch.Tensor | None) -> torch.Tensor:
    if task_ids is None:
        raise ConfigError("task signal: the batch holds no task ids")
    return task_ids.long()
