"""Networks: conditioned MLPs, policy heads, value ensembles and target networks."""

from gcrl.models.critics import ValueEnsemble, polyak_update, target_copy
from gcrl.models.mlp import MLP, ConditionedMLP
from gcrl.models.policies import POLICY_KINDS, Policy

__all__ = [
    "MLP",
    "POLICY_KINDS",
    "ConditionedMLP",
    "Policy",
    "ValueEnsemble",
    "polyak_update",
    "target_copy",
]
