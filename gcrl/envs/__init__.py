"""Real environments: dataset recipes for ``gcrl collect`` and evaluation suites for
``gcrl evaluate``.

Each environment family lives in its own module, imported only when one of its recipes or
suites is asked for, so that its simulator (MuJoCo, Meta-World, minigrid) is needed only then.
An OGBench environment id or dataset name (``cube-single-v0``,
``antmaze-large-navigate-v0``) is evaluated with OGBench's own protocol
(:mod:`gcrl.envs.ogbench_suite`). Any other name :func:`suite` is given is a gymnasium
environment (``CartPole-v1``, ``PointMaze_UMaze-v3``, ``module:EnvId``) or
``minari:DATASET_ID``, the environment a local Minari dataset recorded
(:mod:`gcrl.envs.gymnasium_suite`, which imports gymnasium then).

>>> from gcrl.envs import RECIPES, SUITES
>>> sorted(RECIPES)[:6]
['babyai', 'cube-double', 'cube-quadruple', 'cube-single', 'cube-triple', 'metaworld-mt10']
>>> "pointmaze-medium" in SUITES
True
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence

from gcrl.envs.base import Recipe, Suite
from gcrl.errors import ConfigError, option

#: OGBench's manipulation datasets (:mod:`gcrl.envs.manipspace`); listed here so that the
#: registry is known without importing that module.
_MANIPSPACE_STATE = (
    *(f"cube-{n}" for n in ("single", "double", "triple", "quadruple")),
    "scene",
    *(f"puzzle-{n}" for n in ("3x3", "4x4", "4x5", "4x6")),
)
MANIPSPACE_RECIPES = (*_MANIPSPACE_STATE, *(f"visual-{n}" for n in _MANIPSPACE_STATE))

#: Recipe name -> module holding ``RECIPES[name]``.
RECIPES = {
    "pointmaze": "gcrl.envs.pointmaze",
    "pointmaze-tasks": "gcrl.envs.pointmaze_tasks",
    "metaworld-mt10": "gcrl.envs.metaworld",
    "babyai": "gcrl.envs.babyai",
    **{name: "gcrl.envs.manipspace" for name in MANIPSPACE_RECIPES},
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
    found: Recipe = module.RECIPES[name]
    return found


def suite(name: str, *, goal: Sequence[float] | None = None, max_steps: int | None = None) -> Suite:
    """The evaluation suite called ``name``: one of :data:`SUITES`, else a gymnasium id,
    ``module:EnvId`` or ``minari:DATASET_ID`` (see :mod:`gcrl.envs.gymnasium_suite`); returns
    it. ``goal`` (a fixed goal for an environment without ``desired_goal``) and ``max_steps``
    (a step limit) apply to gymnasium environments only: gcrl's suites fix both."""
    from gcrl.envs.ogbench_suite import is_ogbench_name

    if name not in SUITES and is_ogbench_name(name):
        from gcrl.envs.ogbench_suite import ogbench_suite

        _only_gymnasium_options(name, goal, max_steps)
        return ogbench_suite(name)
    if name not in SUITES:
        from gcrl.envs.gymnasium_suite import gymnasium_suite

        return gymnasium_suite(name, goal=goal, max_steps=max_steps, suites=list(SUITES))
    _only_gymnasium_options(name, goal, max_steps)
    module = importlib.import_module(SUITES[name])
    made: Suite = module.SUITES[name]()
    return made


def _only_gymnasium_options(name: str, goal: object, max_steps: object) -> None:
    for flag, value in ((option("goal"), goal), (option("max_steps"), max_steps)):
        if value is not None:
            raise ConfigError(
                f"{flag}: {name} sets its own goals and step limit; {flag} is for gymnasium "
                "environments"
            )
