"""Trained policies as plain callables on numpy observations (torch, no Lightning).

>>> import gcrl
>>> policy = gcrl.load_policy("runs/csv/version_0/checkpoints/last.ckpt")  # doctest: +SKIP
>>> actions = policy(observations, goals=goals)                           # doctest: +SKIP
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from gcrl.datasets.trajectories import DESIRED_GOAL, Task
from gcrl.errors import ConfigError, DataError, DatasetNotFoundError, MissingGoalsError
from gcrl.spec import CHECKPOINT_KEY, NETWORKS_VERSION, networks_version_of
from gcrl.tasks.signals import EmbeddingSignal, OneHotSignal, TextSignal

if TYPE_CHECKING:
    from gcrl.algorithms.agent import Agent
    from gcrl.algorithms.records import Acting

#: The key of the state in a dict observation, for a policy trained on array observations.
STATE_KEY = "observation"
#: Checkpoints naming a class in this package are imported; any other module must have been
#: imported by the caller already, so that loading a checkpoint never runs code it names.
_OWN_PACKAGE = "gcrl"


#: The layouts whose networks version 1 built as it builds them now.
_V1_LAYOUTS = ("shared", "heads")
#: The algorithms of gcrl 0.1.0 with no value network (their networks are unchanged).
_V1_ACTOR_ONLY = ("gcrl.algorithms.bc.BC", "gcrl.algorithms.distral.Distral")


def check_networks_version(checkpoint: Mapping[str, Any], source: object) -> None:
    """Raise a one-line :class:`~gcrl.errors.DataError` for a checkpoint whose weights do not
    fit this gcrl's networks: newer than :data:`gcrl.spec.NETWORKS_VERSION`, or of gcrl 0.1.0 with a
    layout its value networks ignored (retrain it)."""
    meta = checkpoint[CHECKPOINT_KEY]
    version = networks_version_of(meta)
    if version > NETWORKS_VERSION:
        raise DataError(
            f"{source}: networks version {version} is newer than this gcrl reads "
            f"({NETWORKS_VERSION}); upgrade gcrl"
        )
    if version >= 2 or meta.get("algorithm") in _V1_ACTOR_ONLY:
        return
    hparams = checkpoint.get("hyper_parameters") or {}
    kind = "heads" if hparams.get("multi_head") else str(hparams.get("layout", "shared"))
    if kind not in _V1_LAYOUTS:
        raise DataError(
            f"{source}: written by gcrl 0.1.0, whose value networks ignored layout {kind}; "
            "its weights do not fit this gcrl's networks: retrain it with gcrl fit"
        )


def read_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The whole checkpoint, read with ``weights_only`` (no code runs).

    Raises a one-line error for a missing file, a file that is not a checkpoint (truncated or
    of another program), a checkpoint gcrl did not write, one without weights, or one whose
    weights do not fit this gcrl's networks (:func:`check_networks_version`).
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetNotFoundError(f"{path}: no such checkpoint")
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise DataError(f"{path}: not a readable checkpoint ({reason[:200]})") from None
    if not isinstance(raw, Mapping) or CHECKPOINT_KEY not in raw:
        raise DataError(f"{path}: not a gcrl checkpoint (no {CHECKPOINT_KEY!r} metadata)")
    if not isinstance(raw.get("state_dict"), Mapping) or not raw["state_dict"]:
        raise DataError(f"{path}: the checkpoint holds no weights ('state_dict')")
    check_networks_version(raw, path)
    return dict(raw)


def read_checkpoint_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """gcrl's metadata of a checkpoint (``algorithm``, ``spec``, ``acting``); see
    :func:`read_checkpoint` for the errors."""
    return dict(read_checkpoint(path)[CHECKPOINT_KEY])


def load_agent(
    path: str | os.PathLike[str],
    expected: type[Agent] | None = None,
    map_location: str | torch.device = "cpu",
) -> Agent:
    """The trained agent of a checkpoint, rebuilt from its class and ``hyper_parameters``
    with its weights loaded, in eval mode (torch alone: no Lightning).

    ``expected`` (for example :class:`gcrl.algorithms.BC`) makes a checkpoint of another
    algorithm an error instead of a surprise.
    """
    from gcrl.algorithms.agent import networks_of_version

    raw = read_checkpoint(path)
    cls = algorithm_class(str(raw[CHECKPOINT_KEY].get("algorithm", "")), path)
    if expected is not None and not issubclass(cls, expected):
        raise ConfigError(f"{path}: a {cls.__name__} checkpoint, not {expected.__name__}")
    config = {k: v for k, v in (raw.get("hyper_parameters") or {}).items() if not k.startswith("_")}
    config["spec"] = raw[CHECKPOINT_KEY]["spec"]
    try:
        with networks_of_version(networks_version_of(raw[CHECKPOINT_KEY])):
            agent = cls(**config)
        agent.load_state_dict(raw["state_dict"], strict=True)
    except (KeyError, RuntimeError, TypeError, ValueError) as err:  # options or weights
        reason = str(err).splitlines()[0][:200] if str(err) else type(err).__name__
        raise DataError(f"{path}: cannot be loaded as {cls.__name__} ({reason})") from None
    return agent.to(map_location).eval()


def algorithm_class(class_path: str, source: str | os.PathLike[str]) -> type[Agent]:
    """The algorithm class a checkpoint names (``package.module.Class``).

    Only subclasses of :class:`~gcrl.algorithms.Agent` are accepted. A module of
    gcrl itself is imported; any other must be imported already (import your own algorithm's
    module before loading its checkpoints), so a checkpoint naming ``os.system`` or an unknown
    module is refused without importing anything.
    """
    module_name, _, class_name = class_path.rpartition(".")
    if not module_name or not class_name.isidentifier():
        raise DataError(f"{source}: algorithm {class_path!r} is not a class path")
    own = module_name == _OWN_PACKAGE or module_name.startswith(_OWN_PACKAGE + ".")
    module = sys.modules.get(module_name)
    if module is None and own:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            module = None
    if module is None:
        raise DataError(
            f"{source}: algorithm {class_path!r}: module {module_name!r} is "
            + ("not in this gcrl" if own else "not gcrl's and not imported; import it first")
        )
    from gcrl.algorithms.agent import Agent

    cls = getattr(module, class_name, None)
    if not (isinstance(cls, type) and issubclass(cls, Agent)):
        raise DataError(f"{source}: algorithm {class_path!r} is not a gcrl algorithm class")
    return cls


class LoadedPolicy:
    """A trained policy: ``policy(observations, goals=..., task_ids=..., texts=...)``.

    ``observations`` are raw: a dict (the keys the model was trained on are used, and
    ``desired_goal`` serves as the goal when ``goals`` is not given) or an array; one
    observation or a batch. The task comes from ``goals``, ``task_ids`` or ``texts`` (any
    instruction, embedded with the model's text encoder), as the model's task signal needs.
    Returns numpy actions (int indices for discrete actions), batched like the input.
    """

    def __init__(self, agent: Agent, acting: Acting | None = None) -> None:
        #: The trained agent (its networks and spec).
        self.agent = agent
        #: The policy of the agent this calls (by default its own, ``agent.policies()[None]``).
        self.acting = agent.policies()[None] if acting is None else acting
        self.spec = agent.spec
        self._embedder: Any = None

    @property
    def task_names(self) -> list[str]:
        """The names of the tasks the policy was trained on, in task-id order."""
        return self.spec.task_names

    def on_tasks(
        self, observations: np.ndarray | Mapping[str, np.ndarray], tasks: Sequence[Task]
    ) -> np.ndarray:
        """Actions for a batch whose row ``i`` pursues ``tasks[i]`` (the evaluation protocol
        of :func:`gcrl.evaluation.evaluate`).

        Training tasks are found by name and given their task ids; a text-conditioned policy
        gets each task's instruction, so it can also run tasks it was not trained on; a
        goal-conditioned one takes its goals from the observations' ``desired_goal``. A
        policy trained on array observations (OGBench's layout) given dict ones takes their
        ``observation`` as its state.
        """
        goals = None
        if isinstance(observations, Mapping) and not self.spec.dict_observations:
            if STATE_KEY not in observations:
                raise ConfigError(
                    f"observations: the policy was trained on array observations; these are "
                    f"dicts of {', '.join(observations)} (no {STATE_KEY!r})"
                )
            goals = observations.get(DESIRED_GOAL)
            observations = observations[STATE_KEY]
        index = {name: i for i, name in enumerate(self.task_names)}
        known = all(t.name in index for t in tasks)
        ids = np.array([index[t.name] for t in tasks]) if known else None
        if isinstance(self.acting.signal, TextSignal):
            texts = None if known else [t.text for t in tasks]
            return self(observations, goals=goals, task_ids=ids, texts=texts)
        if ids is None and self._needs_task_ids():
            unknown = next(t.name for t in tasks if t.name not in index)
            raise ConfigError(
                f"--tasks: {unknown!r} is not among the policy's training tasks "
                f"({', '.join(index)}); a task-id policy cannot run it"
            )
        return self(observations, goals=goals, task_ids=ids)

    def _needs_task_ids(self) -> bool:
        signal = self.acting.signal
        return isinstance(signal, OneHotSignal | EmbeddingSignal) or self.acting.num_heads > 1

    def __call__(
        self,
        observations: np.ndarray | Mapping[str, np.ndarray],
        goals: np.ndarray | None = None,
        task_ids: np.ndarray | Sequence[int] | int | None = None,
        texts: Sequence[str] | str | None = None,
    ) -> np.ndarray:
        spec = self.spec
        state = spec.network_state(observations)  # checks the keys first
        single = spec.is_single(observations)
        batch = len(state)
        device = self.agent.device
        if goals is None and isinstance(observations, Mapping) and DESIRED_GOAL in observations:
            goals = np.asarray(observations[DESIRED_GOAL])
        if goals is None and self.acting.signal.uses_goals:
            raise MissingGoalsError(
                f"goals: the policy is goal-conditioned ({spec.goal_dim}-d goals); give goals, "
                f"or observations with {DESIRED_GOAL}"
            )
        goal_tensor = None
        if goals is not None and spec.goal_dim:
            goal_tensor = torch.as_tensor(spec.network_goals(goals, batch), device=device)
        id_tensor = None
        if task_ids is not None:
            ids = np.broadcast_to(np.asarray(task_ids), (batch,)).copy()
            id_tensor = torch.as_tensor(ids, device=device).long()
        embeddings = None if texts is None else self._text_embeddings(texts, batch).to(device)
        with torch.no_grad():
            actions = self.acting.act(
                torch.as_tensor(state, device=device),
                goal_tensor,
                id_tensor,
                text_embeddings=embeddings,
            )
        out = actions.cpu().numpy()
        return out[0] if single else out

    def _text_embeddings(self, texts: Sequence[str] | str, batch: int) -> torch.Tensor:
        from gcrl.tasks.text import TextEmbedder

        signal = self.acting.signal
        if not isinstance(signal, TextSignal):
            raise ConfigError("texts: the model is not text-conditioned")
        texts = [texts] * batch if isinstance(texts, str) else list(texts)
        if self._embedder is None:  # kept: it caches each text's vector in memory
            self._embedder = TextEmbedder(signal.model)
        return torch.from_numpy(self._embedder.embed(texts))


def load_policy(checkpoint: str | os.PathLike[str], policy: str | None = None) -> LoadedPolicy:
    """A callable policy from a ``gcrl fit`` checkpoint (loaded with ``weights_only``).

    The agent is rebuilt with torch alone (:func:`load_agent`: no Lightning). ``policy``
    picks another policy the agent has by name (Distral's ``"prior"``, the distilled
    task-agnostic policy); None: the algorithm's own. An unknown name is a one-line
    :class:`~gcrl.errors.ConfigError`.
    """
    agent = load_agent(checkpoint)
    policies = agent.policies()
    if policy not in policies:
        names = ", ".join(sorted(n for n in policies if n is not None)) or (
            "none besides the default (policy=None)"
        )
        raise ConfigError(f"policy: {checkpoint} holds no policy {policy!r}; its policies: {names}")
    return LoadedPolicy(agent, policies[policy])
