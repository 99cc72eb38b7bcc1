"""Distral (Teh et al. 2017, "Distral: Robust Multitask Reinforcement Learning"), offline.

Each task ``i`` has its own policy ``pi_i`` (by default the ``independent`` layout: one network
per task, selected by task id, run vectorised) and all tasks share a distilled policy ``pi_0``
(the ``prior``; by default task-agnostic: it sees the state only). The paper's regularised
return, with ``alpha`` in [0, 1] and the inverse temperature ``beta``,

    E_{pi_i}[ sum_t gamma^t (r_t - c_kl log(pi_i / pi_0) - c_ent log pi_i) ],
    c_kl = alpha / beta,   c_ent = (1 - alpha) / beta,

becomes, offline, one loss per sample of task ``i``:

    actor/loss = objective_i + c_kl * KL(pi_i || pi_0) - c_ent * H(pi_i)
    prior/loss = KL(pi_i || pi_0)

with ``objective_i`` the behaviour-cloning negative log-likelihood (:class:`Distral`) or the
advantage-weighted one of IQL's critic (:class:`DistralIQL`). KL and entropy are in closed
form at each sample's state (diagonal Gaussians or categoricals), not estimated from the
data's actions.

Which side each gradient goes to: in ``actor/loss`` ``pi_0`` is detached, so the KL pulls each
task policy towards the shared one (and the entropy bonus keeps it broad); in ``prior/loss``
``pi_i`` is detached, so ``pi_0`` is fitted to all task policies at once: minimising
``KL(pi_i || pi_0)`` over ``pi_0`` is the paper's distillation, maximum likelihood of the task
policies' actions under ``pi_0`` (``E_{pi_i}[log pi_0]``), mass-covering: a Gaussian ``pi_0``
takes the mean of the task policies' means. ``prior/loss`` is not weighted by ``c_kl``: only
``pi_0``'s parameters receive its gradient, Adam's steps do not depend on a loss's scale, and
so ``pi_0`` is still distilled with ``alpha = 0`` (where the task policies ignore it).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import replace
from typing import Any, cast

import torch

from gcrl.algorithms.agent import Agent
from gcrl.algorithms.iql import IQL
from gcrl.algorithms.records import Acting
from gcrl.errors import ConfigError
from gcrl.models.layouts import Layout
from gcrl.models.policies import Policy, act_by_rule
from gcrl.spec import InputSpec
from gcrl.tasks.signals import EmbeddingSignal, NoSignal, OneHotSignal, TaskSignal, TextSignal
from gcrl.training.batch import Batch

#: The name ``gcrl.load_policy(checkpoint, policy=...)`` takes for the distilled policy.
PRIOR = "prior"
_LOG_2PI_E = math.log(2 * math.pi) + 1.0


def distral_weights(alpha: float, beta: float) -> tuple[float, float]:
    """The paper's ``(c_kl, c_ent) = (alpha / beta, (1 - alpha) / beta)``."""
    if not 0.0 <= alpha <= 1.0:
        raise ConfigError(f"alpha: Distral's KL share lies in [0, 1], got {alpha}")
    if not beta > 0.0:
        raise ConfigError(f"beta: Distral's inverse temperature must be above 0, got {beta}")
    return alpha / beta, (1.0 - alpha) / beta


def gaussian_kl(
    mean_p: torch.Tensor, log_std_p: torch.Tensor, mean_q: torch.Tensor, log_std_q: torch.Tensor
) -> torch.Tensor:
    """``KL(N(mean_p, std_p^2) || N(mean_q, std_q^2))`` of diagonal Gaussians, summed over the
    last axis: ``sum_d log(std_q / std_p) + (std_p^2 + (mean_p - mean_q)^2) / (2 std_q^2) -
    1/2``; ``[B]``."""
    var_p, var_q = torch.exp(2 * log_std_p), torch.exp(2 * log_std_q)
    per_dim = log_std_q - log_std_p + (var_p + (mean_p - mean_q) ** 2) / (2 * var_q) - 0.5
    return per_dim.sum(-1)


def categorical_kl(logits_p: torch.Tensor, logits_q: torch.Tensor) -> torch.Tensor:
    """``KL(p || q) = sum_a p(a) (log p(a) - log q(a))`` of categoricals given by logits;
    ``[B]``."""
    log_p, log_q = torch.log_softmax(logits_p, -1), torch.log_softmax(logits_q, -1)
    return (log_p.exp() * (log_p - log_q)).sum(-1)


def policy_entropy(policy: Policy, out: torch.Tensor) -> torch.Tensor:
    """``H(pi(. | s))`` per sample, ``[B]``: ``-sum_a p log p`` (categorical) or
    ``sum_d (log(2 pi e) / 2 + log std_d)`` (Gaussian; state-independent, and constant with
    ``const_std``)."""
    if policy.kind == "categorical":
        log_p = torch.log_softmax(out, -1)
        return -(log_p.exp() * log_p).sum(-1)
    log_std = policy.std().log()
    return (0.5 * _LOG_2PI_E + log_std).sum(-1).expand(len(out))


def policy_kl(
    p: Policy, p_out: torch.Tensor, q: Policy, q_out: torch.Tensor, *, detach: str
) -> torch.Tensor:
    """``KL(p || q)`` per sample, ``[B]``, with ``detach`` (``"p"`` or ``"q"``) the side that
    receives no gradient."""
    if p.kind != q.kind or p.kind == "deterministic":
        raise ConfigError(f"Distral: KL between {p.kind} and {q.kind} policies is not defined")
    if detach == "p":
        p_out = p_out.detach()
    else:
        q_out = q_out.detach()
    if p.kind == "categorical":
        return categorical_kl(p_out, q_out)
    log_std_p, log_std_q = p.std().log(), q.std().log()
    if detach == "p":
        log_std_p = log_std_p.detach()
    else:
        log_std_q = log_std_q.detach()
    return gaussian_kl(p_out, log_std_p, q_out, log_std_q)


def distral_losses(
    actor: Policy,
    prior: Policy,
    batch: Batch,
    condition: torch.Tensor,
    prior_condition: torch.Tensor,
    heads: torch.Tensor | None,
    *,
    c_kl: float,
    c_ent: float,
    weights: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """Distral's per-sample losses (``[B]`` each).

    ``actor/loss``: ``-w log pi_i(a | s) + c_kl KL(pi_i || sg(pi_0)) - c_ent H(pi_i)``, with
    ``w`` the AWR ``weights`` (1 when None: behaviour cloning); ``prior/loss``:
    ``KL(sg(pi_i) || pi_0)``. Logged too, without gradient: ``actor/nll`` (``-log pi_i(a|s)``),
    ``distral/kl``, ``distral/entropy`` (of ``pi_i``) and ``prior/nll`` (``-log pi_0(a|s)``).
    ``pi_i`` is ``actor`` with ``condition`` and task ids ``heads``; ``pi_0`` is ``prior``
    with ``prior_condition`` (``[B, 0]``: task-agnostic).
    """
    obs, actions = batch.observations, batch.actions
    out = actor(obs, condition, heads)
    prior_out = prior(obs, prior_condition)
    log_prob = actor.log_prob(out, actions)
    fitted = -log_prob if weights is None else -(weights * log_prob)
    kl_actor = policy_kl(actor, out, prior, prior_out, detach="q")
    entropy = policy_entropy(actor, out)
    kl_prior = policy_kl(actor, out, prior, prior_out, detach="p")
    return {
        "actor/loss": fitted + c_kl * kl_actor - c_ent * entropy,
        "actor/nll": -log_prob.detach(),
        "distral/kl": kl_actor.detach(),
        "distral/entropy": entropy.detach(),
        "prior/loss": kl_prior,
        "prior/nll": -prior.log_prob(prior_out, actions).detach(),
    }


def require_task_ids(spec: InputSpec | Mapping[str, Any] | None) -> None:
    """Refuse data without several tasks (goal-conditioned data has no task ids)."""
    if spec is None:
        return  # Agent names the missing spec
    spec = spec if isinstance(spec, InputSpec) else InputSpec.from_dict(spec)
    if spec.num_tasks < 2:
        raise ConfigError(
            f"Distral: needs task ids, data of several tasks (this data holds {spec.num_tasks}; "
            "goal-conditioned data has none): use BC or IQL"
        )


class _DistralParts(Agent):
    """What :class:`Distral` and :class:`DistralIQL` share: the distilled policy ``prior``,
    its condition, and acting by it."""

    prior: Policy
    prior_signal: bool
    c_kl: float
    c_ent: float

    def _signal_kind(self, task_signal: str) -> str:
        # "auto": the task ids (Distral's data has several tasks, goals or not).
        return "onehot" if task_signal == "auto" else super()._signal_kind(task_signal)

    def _build_prior(
        self,
        kind: str,
        hidden_dims: list[int],
        alpha: float,
        beta: float,
        prior_signal: bool,
        const_std: bool,
        activation: str,
        layer_norm: bool,
    ) -> None:
        if self.num_heads == 1 and not isinstance(
            self.signal, OneHotSignal | EmbeddingSignal | TextSignal
        ):
            raise ConfigError(
                f"Distral: with the {self.layout['kind']} layout the task policies tell tasks "
                "apart only by a task-id signal; use task_signal onehot, embedding or text, "
                "or layout independent"
            )
        self.c_kl, self.c_ent = distral_weights(alpha, beta)
        self.prior_signal = prior_signal
        # One network for all tasks, conditioned on the task vector only with prior_signal.
        shared = replace(
            self.network_factory(hidden_dims, activation),
            layout=Layout().to_dict(),
            num_heads=1,
            conditioning=self.conditioning if prior_signal else "concat",
            cond_dim=self.signal.dim if prior_signal else 0,
        )
        self.prior = shared.policy(
            kind,
            self.observation_dim,
            self.spec.action_dim,
            const_std=const_std,
            layer_norm=layer_norm,
        )

    def prior_condition(self, condition: torch.Tensor) -> torch.Tensor:
        """``pi_0``'s condition: the task vector with ``prior_signal``, else ``[B, 0]``."""
        return condition if self.prior_signal else condition.new_zeros(len(condition), 0)

    @torch.no_grad()
    def act_prior(
        self,
        observations: torch.Tensor,
        goals: torch.Tensor | None = None,
        task_ids: torch.Tensor | None = None,
        *,
        text_embeddings: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The distilled policy's actions (as :meth:`act` gives the task policies'); the task
        inputs are read only with ``prior_signal``."""
        observations, goals = self.encode_inputs(observations, goals)
        if self.prior_signal:
            condition = self.condition(observations, goals, task_ids, text_embeddings)
        else:
            condition = observations.new_zeros(len(observations), 0)
        assert self.acting_rule is not None
        return act_by_rule(self.acting_rule, [self.prior], observations, condition, None)

    def policies(self) -> dict[str | None, Acting]:
        """The task policies (``None``) and the distilled one, ``"prior"``
        (``gcrl.load_policy(checkpoint, policy="prior")``), which reads the task inputs only
        with ``prior_signal``."""
        signal: TaskSignal = self.signal if self.prior_signal else NoSignal()
        return {**super().policies(), PRIOR: Acting(self.act_prior, signal, 1)}


class Distral(_DistralParts):
    """Distral over behaviour cloning: per-task policies regularised towards a distilled
    shared policy ``pi_0`` (see the module's docstring for the losses and gradients).

    ``c_kl = alpha / beta`` weighs ``KL(pi_i || pi_0)`` and ``c_ent = (1 - alpha) / beta`` the
    entropy bonus ``H(pi_i)``, added to each task policy's negative log-likelihood.

    Args:
        hidden_dims: widths of each task policy's MLP (256, 256, 256).
        prior_hidden_dims: widths of ``pi_0``'s MLP (default: ``hidden_dims``).
        alpha: the paper's KL share, in [0, 1] (0.5): 1 is pure KL regularisation, 0 pure
            entropy regularisation.
        beta: the paper's inverse temperature (10; larger: weaker regularisation).
        prior_signal: condition ``pi_0`` on the task signal too (off: task-agnostic, as in
            the paper).
        const_std: the Gaussians' standard deviations are fixed at 1; then the entropy is a
            constant (the ``c_ent`` term does nothing) and the KL is half the squared distance
            of the means. Off by default: learned state-independent log-stds, one for the
            task policies (:class:`~gcrl.models.policies.Policy` holds one, whatever the
            layout) and one for ``pi_0``.
        layer_norm, activation: of the MLPs.
        layout: of the task policies: ``independent`` (default, the paper's separate
            networks), or any layout of :class:`~gcrl.algorithms.Agent` with a task-id signal.
        **kwargs: task signal (``auto``: one-hot task ids) and optimiser options of
            :class:`~gcrl.algorithms.Agent`; goal-only data (no task ids) is refused.

    Continuous actions: Gaussian policies; discrete: categorical (cross-entropy). Acting is by
    the task policies' mode; ``gcrl.load_policy(checkpoint, policy="prior")`` acts by
    ``pi_0``.
    """

    objective = ("actor/loss", "prior/loss")
    goal_sets = ("actor",)
    acting_rule = "mode"
    acting_networks = ("actor",)

    def __init__(
        self,
        hidden_dims: list[int] | None = None,
        prior_hidden_dims: list[int] | None = None,
        alpha: float = 0.5,
        beta: float = 10.0,
        prior_signal: bool = False,
        const_std: bool = False,
        layer_norm: bool = False,
        activation: str = "gelu",
        layout: str = "independent",
        **kwargs: Any,
    ) -> None:
        require_task_ids(kwargs.get("spec"))
        super().__init__(layout=layout, **kwargs)
        self.alpha, self.beta = alpha, beta
        kind = "categorical" if self.spec.discrete else "gaussian"
        dims = list(hidden_dims or [256, 256, 256])
        self.actor = self.network_factory(dims, activation).policy(
            kind,
            self.observation_dim,
            self.spec.action_dim,
            const_std=const_std,
            layer_norm=layer_norm,
        )
        self._build_prior(
            kind,
            list(prior_hidden_dims or dims),
            alpha,
            beta,
            prior_signal,
            const_std,
            activation,
            layer_norm,
        )

    def losses(self, batch: Batch) -> dict[str, torch.Tensor]:
        condition = self.batch_condition(batch, "actor")
        return distral_losses(
            self.actor,
            self.prior,
            batch,
            condition,
            self.prior_condition(condition),
            self.heads(batch),
            c_kl=self.c_kl,
            c_ent=self.c_ent,
        )


class DistralIQL(_DistralParts, IQL):
    """Distral over IQL: IQL's value and critic losses (per task, by the layout), and task
    policies trained by advantage-weighted regression (``exp(alpha * (Q - V))``, capped at
    100) plus Distral's ``c_kl KL(pi_i || pi_0) - c_ent H(pi_i)``, with ``c_kl =
    distral_alpha / distral_beta`` and ``c_ent = (1 - distral_alpha) / distral_beta``
    (``alpha`` stays IQL's AWR inverse temperature). Continuous actions.

    Args:
        distral_alpha, distral_beta: the paper's ``alpha`` (0.5) and ``beta`` (10).
        prior_signal, prior_hidden_dims: as in :class:`Distral`.
        alpha: the AWR inverse temperature (3).
        actor_loss: ``awr`` only.
        const_std: as in :class:`Distral` (off).
        layout: of every network (``independent``: per-task critics and policies).
        **kwargs: :class:`~gcrl.algorithms.IQL`'s options.
    """

    # IQL's objective is inferred as a 3-tuple; this one adds the prior's loss.
    objective = (  # type: ignore[assignment]
        "value/loss",
        "critic/loss",
        "actor/loss",
        "prior/loss",
    )

    def __init__(
        self,
        distral_alpha: float = 0.5,
        distral_beta: float = 10.0,
        prior_signal: bool = False,
        prior_hidden_dims: list[int] | None = None,
        alpha: float = 3.0,
        actor_loss: str = "awr",
        const_std: bool = False,
        activation: str = "gelu",
        layout: str = "independent",
        **kwargs: Any,
    ) -> None:
        if actor_loss != "awr":
            raise ConfigError(f"actor_loss: DistralIQL's task policies use awr, not {actor_loss!r}")
        require_task_ids(kwargs.get("spec"))
        super().__init__(
            alpha=alpha,
            actor_loss=actor_loss,
            const_std=const_std,
            activation=activation,
            layout=layout,
            **kwargs,
        )
        self.distral_alpha, self.distral_beta = distral_alpha, distral_beta
        self._build_prior(
            "gaussian",
            list(prior_hidden_dims or cast(list[int], self.actor.config["hidden_dims"])),
            distral_alpha,
            distral_beta,
            prior_signal,
            const_std,
            activation,
            False,  # IQL's actor has no layer norm
        )

    def _actor_losses(
        self, batch: Batch, cond: torch.Tensor, heads: torch.Tensor | None
    ) -> dict[str, torch.Tensor]:
        advantage, weight = self.awr_weights(batch, cond, heads)
        out = distral_losses(
            self.actor,
            self.prior,
            batch,
            cond,
            self.prior_condition(cond),
            heads,
            c_kl=self.c_kl,
            c_ent=self.c_ent,
            weights=weight,
        )
        out["actor/adv"] = advantage
        return out
