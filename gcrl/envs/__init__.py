"""Real environments: dataset recipes for ``gcrl collect`` and evaluation suites for
``gcrl evaluate``.

Each environment family lives in its own module, imported only when one of its recipes or
suites is asked for, so that its simulator (MuJoCo, Meta-World, minigrid) is needed only then.
Any other name :func:`suite` is given is a gymnasium environment (``CartPole-v1``,
``PointMaze_UMaze-v3``, ``module:EnvId``) or ``minari:DATASET_ID``, the environment a local
Minari dataset recorded (:mod:`gcrl.envs.gymnasium_suite`, which imports gymnasium then).

>>> from gcrl.envs import RECIPES, SUITES
>>> sorted(RECIPES)
['babyai', 'metaworld-mt10', 'pointmaze', 'pointmaze-tasks']
>>> "pointmaze-medium" in SUITES
True
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence

from gcrl.envs.base import Recipe, Suite
from gcrl.errors import ConfigError, option

#: Recipe name -> module holding ``RECIPE``.
RECIPES = {
    "pointmaze": "gcrl.envs.pointmaze",
    "pointmaze-tasks": "gcrl.envs.pointmaze_tasks",
    "metaworld-mt10": "gcrl.envs.metaworld",
    "babyai": "gcrl.envs.babyai",
}
#: Suite name -> module holding ``SUITES[name]``, a factory of the suite.
SUITES = {
    **{
        f"pointmaze-{maze}": "gcrl.envs.pointmaze" for maze in ("arena", "medium", "large", "giant")
    },
    **{
        f"pointmaze-{maze}-tasks": "gcrl.envs.pointmaze_tasks"
        for maze in ("medium", "large", "giant")
    },
    "metaworld-mt10": "gcrl.envs.metaworld",
    "babyai-gotolocal": "gcrl.envs.babyai",
}

__all__ = ["RECIPES", "SUITES", "Recipe", "Suite", "recipe", "suite"]


def recipe(name: str) -> Recipe:
    """The collection recipe called ``name``."""
    if name not in RECIPES:
        raise ConfigError(f"recipe: unknown {name!r}; choose one of {', '.join(RECIPES)}")
    module = importlib.import_module(RECIPES[name])
    found: Recipe = module.RECIPE
    return found


def suite(name: str, *, goal: Sequence[float] | None = None, max_steps: int | None = None) -> Suite:
    """The evaluation suite called ``name``: one of :data:`SUITES`, else a gymnasium id,
    ``module:EnvId`` or ``minari:DATASET_ID`` (see :mod:`gcrl.envs.gymnasium_suite`); returns
    it. ``goal`` (a fixed goal for an environment without ``desired_goal``) and ``max_steps``
    (a step limit) apply to gymnasium environments only: gcrl's suites fix both."""
    if name not in SUITES:
        from gcrl.envs.gymnasium_suite import gymnasium_suite

        return gymnasium_suite(name, goal=goal, max_steps=max_steps, suites=list(SUITES))
    for flag, value in ((option("goal"), goal), (option("max_steps"), max_steps)):
        if value is not None:
            raise ConfigError(
                f"{flag}: {name} sets its own goals and step limit; {flag} is for gymnasium "
                "environments"
            )
    module = importlib.import_module(SUITES[name])
    made: Suite = module.SUITES[name]()
    return made
