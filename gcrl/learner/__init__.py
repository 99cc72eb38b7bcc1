"""Training agents under Lightning: :class:`AgentModule`, the one adapter every algorithm of
:mod:`gcrl.algorithms` is trained through (``gcrl fit`` wraps the configured agent in it)."""

from gcrl.learner.module import AgentModule

__all__ = ["AgentModule"]
