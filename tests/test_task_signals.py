"""gcrl.tasks.signals: the vector a batch's task information becomes."""

from __future__ import annotations

import pytest
import torch

from gcrl.errors import ConfigError
from gcrl.tasks.signals import EmbeddingSignal, GoalSignal, OneHotSignal


def test_task_signals() -> None:
    ids = torch.tensor([0, 2, 1])
    assert torch.equal(OneHotSignal(3)(None, ids), torch.eye(3)[ids])
    assert EmbeddingSignal(3, 5)(None, ids).shape == (3, 5)
    goals = torch.randn(3, 2)
    assert torch.equal(GoalSignal(2)(goals, None), goals)
    assert GoalSignal(2, [16, 8])(goals, None).shape == (3, 8)
    with pytest.raises(ConfigError, match="no goals"):
        GoalSignal(2)(None, ids)
