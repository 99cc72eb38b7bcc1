"""Multi-task optimisation with every task's gradient from one backward pass.

- :class:`PCGrad`: gradient surgery over the shared parameters.
- :class:`GradNorm`: learned task weights balancing gradient norms at the last shared layer.
- :class:`TaskGradients`: the per-task gradients themselves (Linear and LayerNorm layers in
  one pass, other layers by one backward per task).
"""

from gcrl.optim.gradnorm import GradNorm
from gcrl.optim.pcgrad import PCGrad, project_conflicts, random_orders
from gcrl.optim.task_gradients import TaskGradients, TaskLosses

__all__ = [
    "GradNorm",
    "PCGrad",
    "TaskGradients",
    "TaskLosses",
    "project_conflicts",
    "random_orders",
]
