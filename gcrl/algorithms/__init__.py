"""Algorithms as plain-torch agents (:class:`Agent`), one small file each; losses are plain
functions of a batch. :class:`gcrl.learner.AgentModule` trains any of them under Lightning;
nothing here imports Lightning.

- :class:`BC`: behaviour cloning (Gaussian NLL, MSE, or cross-entropy for discrete actions);
- :class:`IQL`: goal-conditioned implicit Q-learning with OGBench GCIQL's defaults;
- :class:`GCIVL`: goal-conditioned implicit V-learning (no Q-function), OGBench's defaults;
- :class:`HIQL`: hierarchical IQL (GCIVL's value through a subgoal representation, two
  policies);
- :class:`CRL`: contrastive RL (a bilinear critic trained by NCE over the batch);
- :class:`QRL`: quasimetric RL (an IQE distance, a step constraint, latent dynamics);
- :class:`TD3BC`: goal-conditioned TD3+BC (twin critics, a deterministic actor updated every
  second step at its own learning rate);
- :class:`DQN`: double DQN with a conservative regulariser, for discrete actions;
- :class:`Distral`, :class:`DistralIQL`: per-task policies regularised towards a distilled
  shared policy (Teh et al. 2017), over behaviour cloning or IQL.

Checkpoints name their class by its import path, so a new algorithm needs no registration
(``gcrl fit --help`` lists the ones in :data:`ALGORITHMS`).
"""

from gcrl.algorithms.agent import Agent
from gcrl.algorithms.bc import BC
from gcrl.algorithms.crl import CRL
from gcrl.algorithms.distral import Distral, DistralIQL
from gcrl.algorithms.dqn import DQN
from gcrl.algorithms.gcivl import GCIVL
from gcrl.algorithms.hiql import HIQL
from gcrl.algorithms.iql import IQL
from gcrl.algorithms.qrl import QRL
from gcrl.algorithms.records import Acting
from gcrl.algorithms.td3bc import TD3BC

#: The algorithms gcrl ships, in the order its docs list them.
ALGORITHMS: tuple[type[Agent], ...] = (
    BC,
    IQL,
    GCIVL,
    HIQL,
    CRL,
    QRL,
    TD3BC,
    DQN,
    Distral,
    DistralIQL,
)

__all__ = [
    "ALGORITHMS",
    "BC",
    "CRL",
    "DQN",
    "GCIVL",
    "HIQL",
    "IQL",
    "QRL",
    "TD3BC",
    "Acting",
    "Agent",
    "Distral",
    "DistralIQL",
]
