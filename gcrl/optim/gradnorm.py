"""GradNorm: task weights that balance the tasks' gradient norms at the last shared layer.

Chen et al. (2018). The network is trained on ``sum_t w_t L_t``. With ``G_t`` the norm of the
gradient of ``w_t L_t`` at the last shared layer's weight, ``G`` their mean over the tasks in
the batch, and ``r_t = (L_t / L_t(0)) / mean_s (L_s / L_s(0))`` the relative inverse training
rate, the weights descend ``sum_t |G_t - G r_t^alpha|`` (the target held constant), then are
kept positive and renormalised to sum to T. ``L_t(0)`` is each task's loss the first time it
is seen, never overwritten. The norms come from the same single backward pass as the
network's gradients.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from gcrl.errors import ConfigError
from gcrl.optim.task_gradients import TaskGradients, TaskLosses

#: Smallest weight a task keeps (the weights are clamped before renormalising).
MIN_WEIGHT = 1e-3
ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8


class GradNorm:
    """GradNorm over ``last_shared`` (a Linear layer whose weight measures the norms).

    Usage, in any PyTorch loop::

        gradnorm = GradNorm(model.trunk[-1], num_tasks=10)
        with gradnorm.capture():
            losses = per_sample_loss(model(x), y)        # [B]
        gradnorm.backward(losses, task_ids)              # .grad of sum_t w_t L_t; updates w
        optimizer.step()
    """

    def __init__(
        self,
        last_shared: nn.Module,
        num_tasks: int,
        *,
        alpha: float = 1.5,
        learning_rate: float = 0.025,
    ) -> None:
        if not isinstance(last_shared, nn.Linear):
            raise ConfigError("GradNorm: last_shared must be an nn.Linear layer")
        self.layer = last_shared
        self.num_tasks = num_tasks
        self.alpha = alpha
        self.learning_rate = learning_rate
        # Adam on the T weights, in float64 numpy: a tensor optimiser's per-call overhead
        # would cost more than the rest of the update.
        self._weights = np.ones(num_tasks)
        self._moments = (np.zeros(num_tasks), np.zeros(num_tasks))
        self._steps = 0
        self.initial_losses = torch.full((num_tasks,), float("nan"), dtype=torch.float64)
        self.gradients = TaskGradients([last_shared], [last_shared.weight])

    @property
    def weights(self) -> torch.Tensor:
        """The current task weights ``[T]`` (positive, summing to T)."""
        return torch.from_numpy(self._weights.astype(np.float32))

    def state_dict(self) -> dict[str, Any]:
        """The task weights, their Adam moments and step count, and the initial losses."""
        # Tensors and ints only: checkpoints load with torch.load(weights_only=True).
        return {
            "weights": torch.from_numpy(self._weights.copy()),
            "first_moments": torch.from_numpy(self._moments[0].copy()),
            "second_moments": torch.from_numpy(self._moments[1].copy()),
            "steps": self._steps,
            "initial_losses": self.initial_losses.clone(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._weights = state["weights"].double().numpy().copy()
        self._moments = (
            state["first_moments"].double().numpy().copy(),
            state["second_moments"].double().numpy().copy(),
        )
        self._steps = int(state["steps"])
        self.initial_losses = state["initial_losses"].clone()

    def capture(self):  # type: ignore[no-untyped-def]
        """Context manager to wrap the forward pass in."""
        return self.gradients.capture()

    def backward(self, losses: torch.Tensor, task_ids: torch.Tensor) -> TaskLosses:
        """Backpropagate ``sum_t w_t L_t`` into the network's ``.grad``, then update and
        renormalise the weights. Returns the per-task losses."""
        task_losses = TaskLosses(losses, task_ids, self.num_tasks)
        weights = self.weights.to(losses.device)
        # G_t = w_t |grad L_t|: the norms of the weighted task gradients.
        norms = self.gradients.weight_norms(task_losses, weights).cpu().double()
        present = task_losses.present.cpu()
        current = task_losses.detached_means().cpu().double()
        first = present & torch.isnan(self.initial_losses)
        self.initial_losses[first] = current[first]
        self._update(norms, current, present)
        return task_losses

    def _update(self, norms: torch.Tensor, losses: torch.Tensor, present: torch.Tensor) -> None:
        if int(present.sum()) < 2:
            return  # nothing to balance
        g, loss, seen = norms.numpy(), losses.numpy(), present.numpy()
        weights = self._weights
        ratio = loss[seen] / self.initial_losses.numpy()[seen]
        target = g[seen].mean() * (ratio / ratio.mean()) ** self.alpha
        # d/dw_t |G_t - target_t| with G_t = w_t |grad L_t| and the target held constant.
        grad = np.zeros(self.num_tasks)
        grad[seen] = np.sign(g[seen] - target) * g[seen] / np.maximum(weights[seen], MIN_WEIGHT)
        self._steps += 1
        first, second = self._moments
        first[:] = ADAM_BETAS[0] * first + (1 - ADAM_BETAS[0]) * grad
        second[:] = ADAM_BETAS[1] * second + (1 - ADAM_BETAS[1]) * grad**2
        unbiased = first / (1 - ADAM_BETAS[0] ** self._steps)
        scale = np.sqrt(second / (1 - ADAM_BETAS[1] ** self._steps)) + ADAM_EPS
        weights = np.maximum(weights - self.learning_rate * unbiased / scale, MIN_WEIGHT)
        self._weights = weights * self.num_tasks / weights.sum()
