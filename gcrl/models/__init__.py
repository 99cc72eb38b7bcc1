"""Networks: conditioned MLPs and their multi-task layouts, policy heads, value ensembles and
target networks."""

from gcrl.models.critics import ValueEnsemble, polyak_update, target_copy
from gcrl.models.layouts import LAYOUTS, Layout, conditioned_network
from gcrl.models.mlp import MLP, ConditionedMLP, TaskNetwork
from gcrl.models.policies import POLICY_KINDS, Policy

__all__ = [
    "LAYOUTS",
    "MLP",
    "POLICY_KINDS",
    "ConditionedMLP",
    "Layout",
    "Policy",
    "TaskNetwork",
    "ValueEnsemble",
    "conditioned_network",
    "polyak_update",
    "target_copy",
]
