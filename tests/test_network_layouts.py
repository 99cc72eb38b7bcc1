"""Every algorithm's networks, as built, in every layout: the layout is checked on the modules
constructed (their classes, their per-task parameters, their parameter counts), not on the
configuration they record."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from gcrl.algorithms import BC, CRL, DQN, GCIVL, HIQL, IQL, QRL, TD3BC, Distral, DistralIQL
from gcrl.algorithms.agent import Agent
from gcrl.cli.main import main
from gcrl.datasets import Task
from gcrl.errors import ConfigError
from gcrl.learner import AgentModule
from gcrl.models.care import CARE
from gcrl.models.critics import ValueEnsemble
from gcrl.models.factory import parameter_count
from gcrl.models.grouped import GroupedLayerNorm
from gcrl.models.layouts import (
    LAYOUTS,
    TASK_ID_LAYOUTS,
    IndependentMLP,
    Layout,
    TaskEncoderMLP,
    TaskEncodersMLP,
    conditioned_network,
)
from gcrl.models.mlp import ConditionedMLP, TaskNetwork, layer_norm_before_activation
from gcrl.models.policies import Policy
from gcrl.models.soft_modular import SoftModularNetwork
from gcrl.spec import InputSpec

from .training_data import multitask_goal_reaching

torch.set_num_threads(1)

NUM_TASKS = 3
TASKS = tuple(Task(f"task{i}", f"reach goal number {i}") for i in range(NUM_TASKS))
#: The network class each layout builds.
LAYOUT_CLASS: dict[str, type[TaskNetwork]] = {
    "shared": ConditionedMLP,
    "heads": ConditionedMLP,
    "independent": IndependentMLP,
    "task_encoders": TaskEncodersMLP,
    "task_encoder": TaskEncoderMLP,
    "care": CARE,
    "soft_modular": SoftModularNetwork,
}
#: Small networks of every algorithm, by name: (class, options).
ALGORITHMS: dict[str, tuple[type[Agent], dict[str, Any]]] = {
    "bc": (BC, {}),
    "iql": (IQL, {}),
    "gcivl": (GCIVL, {}),
    "crl": (CRL, {"latent_dim": 8}),
    "crl-awr": (CRL, {"latent_dim": 8, "actor_loss": "awr"}),
    "qrl": (QRL, {"latent_dim": 8}),
    "hiql": (HIQL, {"rep_dim": 4}),
    "td3bc": (TD3BC, {}),
    "distral": (Distral, {}),
    "distral-iql": (DistralIQL, {}),
    "dqn": (DQN, {}),
}
#: The layouts an algorithm refuses, with the error's words.
REFUSED = {
    "qrl": ("one encoder", [k for k in LAYOUTS if k != "shared"]),
    "hiql": ("subgoal representation", [k for k in LAYOUTS if k != "shared"]),
    "crl": ("reads no task vector", ["task_encoder", "care", "soft_modular"]),
    "crl-awr": ("reads no task vector", ["task_encoder", "care", "soft_modular"]),
}


def spec(discrete: bool = False) -> InputSpec:
    return InputSpec(
        observation_dim=4, action_dim=3 if discrete else 2, discrete=discrete, goal_dim=4,
        tasks=TASKS,
    )  # fmt: skip


def build(name: str, layout: str) -> Agent:
    cls, options = ALGORITHMS[name]
    goal_conditioned = cls in (CRL, QRL, HIQL)  # their critics read goals
    return cls(
        spec=spec(discrete=name == "dqn"),
        task_signal="goal" if goal_conditioned else "onehot",
        hidden_dims=[16, 16],
        layout=layout,
        **options,
    )


def layout_networks(model: Agent) -> dict[str, TaskNetwork]:
    """The model's conditioned networks that take its layout, by module name (Distral's
    distilled prior is one network for all tasks by design)."""
    return {
        name: module
        for name, module in model.named_modules()
        if isinstance(module, TaskNetwork) and not name.startswith("prior")
    }


CASES = [(name, layout) for name in ALGORITHMS for layout in LAYOUTS]


@pytest.mark.parametrize(("name", "layout"), CASES)
def test_every_network_of_every_algorithm_is_built_in_the_layout(name: str, layout: str) -> None:
    refused_words, refused = REFUSED.get(name, ("", []))
    if layout in refused:
        with pytest.raises(ConfigError, match=refused_words) as err:
            build(name, layout)
        assert "\n" not in str(err.value) and layout in str(err.value)
        return
    model = build(name, layout)
    networks = layout_networks(model)
    assert networks, f"{name}: no conditioned network"
    for path, network in networks.items():
        assert type(network) is LAYOUT_CLASS[layout], f"{name}.{path}: {type(network)}"
        specific = network.task_specific_parameters()
        if layout in ("shared", "task_encoder", "care", "soft_modular"):
            continue  # no parameters per task id: the task parts read the task vector
        assert specific, f"{name}.{path}: no per-task parameters in the {layout} layout"
    # Every value network the algorithm trains is one of them (not only the actor's).
    values = [m for m in model.modules() if isinstance(m, ValueEnsemble)]
    for ensemble in values:
        for member in ensemble.members:
            assert type(member) is LAYOUT_CLASS[layout]


@pytest.mark.parametrize("name", ["iql", "gcivl", "crl", "dqn", "td3bc", "distral-iql"])
def test_independent_value_networks_hold_a_network_per_task(name: str) -> None:
    """Parameter counts of the built value networks: ``independent`` is one network per
    task, so ``NUM_TASKS`` times the ``shared`` network of the same widths."""
    shared, independent = build(name, "shared"), build(name, "independent")
    for attr in ("critic", "value", "q"):
        one = getattr(shared, attr, None)
        if not isinstance(one, nn.Module):
            continue
        many = getattr(independent, attr)
        assert parameter_count(many) == NUM_TASKS * parameter_count(one), attr


def test_independent_iql_through_gcrl_fit_holds_five_networks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through ``gcrl fit`` and the checkpoint it writes: IQL on five tasks with the
    independent layout has about five times the parameters of the shared layout (actor,
    critics and value; the target critics are copies and are left out)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GCRL_CACHE_DIR", str(tmp_path / "cache"))
    multitask_goal_reaching(tmp_path / "tasks.hdf5", tasks=5)
    counts = {}
    for layout in ("shared", "independent"):
        args = ["fit", "--model", "gcrl.algorithms.IQL", "--data.path", "tasks.hdf5"]
        args += ["--model.task_signal", "onehot", "--model.hidden_dims", "[32, 32]"]
        args += ["--model.layout", layout, "--data.batch_size", "16"]
        args += ["--trainer.max_steps", "2", "--trainer.enable_progress_bar", "false"]
        args += ["--trainer.default_root_dir", layout, "--trainer.logger", "false"]
        assert main(args) == 0
        (checkpoint,) = (tmp_path / layout).rglob("*.ckpt")
        weights = torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]
        counts[layout] = sum(v.numel() for k, v in weights.items() if "target" not in k)
    assert counts["independent"] >= 4.5 * counts["shared"], counts


def test_checkpoints_of_networks_that_do_not_fit_are_one_line_errors(tmp_path: Path) -> None:
    """A gcrl 0.1.0 checkpoint (no networks_version) whose layout its value networks ignored
    names the release and says to retrain; one of a newer release says to upgrade."""
    import lightning as L

    from gcrl.errors import DataError
    from gcrl.policy import load_policy
    from gcrl.spec import CHECKPOINT_KEY, NETWORKS_VERSION
    from gcrl.training import TrajectoryDataModule

    data = TrajectoryDataModule(
        str(multitask_goal_reaching(tmp_path / "tasks.hdf5")), batch_size=8, steps_per_epoch=1
    )
    model = IQL(spec=data.spec, task_signal="onehot", hidden_dims=[8, 8], layout="independent")
    trainer = L.Trainer(max_steps=1, logger=False, enable_progress_bar=False,
                        enable_model_summary=False, default_root_dir=tmp_path)  # fmt: skip
    trainer.fit(AgentModule(model), data)
    path = tmp_path / "iql.ckpt"
    trainer.save_checkpoint(path)
    raw = torch.load(path, weights_only=True)
    assert raw[CHECKPOINT_KEY]["networks_version"] == NETWORKS_VERSION
    load_policy(path)  # this release's checkpoint loads
    for version, words in ((None, "gcrl 0.1.0.*layout independent.*retrain"), (99, "upgrade")):
        edited = dict(raw, **{CHECKPOINT_KEY: dict(raw[CHECKPOINT_KEY])})
        if version is None:
            del edited[CHECKPOINT_KEY]["networks_version"]
        else:
            edited[CHECKPOINT_KEY]["networks_version"] = version
        torch.save(edited, tmp_path / "edited.ckpt")
        with pytest.raises(DataError, match=words) as err:
            load_policy(tmp_path / "edited.ckpt")
        assert "\n" not in str(err.value)


@pytest.mark.parametrize("name", list(ALGORITHMS))
def test_the_adapter_trains_the_agents_own_networks(name: str) -> None:
    """The one Lightning adapter holds the agent's networks themselves (the same parameter
    objects, under the agent's state-dict keys), records the agent's config as its
    hyperparameters, and the config rebuilds an agent of the same networks."""
    agent = build(name, "shared")
    module = AgentModule(agent)
    assert {id(p) for p in module.parameters()} == {id(p) for p in agent.parameters()}
    assert list(module.state_dict()) == list(agent.state_dict())
    assert dict(module.hparams) == agent.config
    rebuilt = type(agent)(**agent.config)
    shapes = {k: v.shape for k, v in agent.state_dict().items()}
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == shapes
    module.eval()
    assert not agent.training and not module.training
    with pytest.raises(ConfigError, match="not a gcrl agent"):
        AgentModule(torch.nn.Linear(2, 2))  # type: ignore[arg-type]


def _network_options(layout: str) -> dict[str, Any]:
    """A small network's options in ``layout`` (task-id layouts get one part per task)."""
    heads = NUM_TASKS if layout in TASK_ID_LAYOUTS else 1
    return {"num_heads": heads, "layout": Layout.parse(layout, None).to_dict()}


@pytest.mark.parametrize("legacy", [False, True], ids=["now", "networks-v2"])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_layer_norm_normalises_the_activations_in_every_layout(layout: str, legacy: bool) -> None:
    """OGBench's hidden layer is ``Linear -> activation -> LayerNorm``; networks version 2
    normalised before the activation, and checkpoints of it are built that way. With ReLU,
    every LayerNorm's input is non-negative exactly when it follows the activation."""
    torch.manual_seed(0)
    with layer_norm_before_activation() if legacy else contextlib.nullcontext():
        net = conditioned_network(
            5, 4, [16, 16, 16], 2, activation_name="relu", layer_norm=True,
            **_network_options(layout),
        )  # fmt: skip
    seen: list[torch.Tensor] = []
    norms = [m for m in net.modules() if isinstance(m, nn.LayerNorm | GroupedLayerNorm)]
    for norm in norms:
        norm.register_forward_hook(lambda _, args, __: seen.append(args[0]))
    with torch.no_grad():
        net(torch.randn(64, 5), torch.randn(64, 4), torch.arange(64) % NUM_TASKS)
    assert norms and len(seen) >= len(norms)
    assert (min(float(x.min()) for x in seen) < 0) == legacy


@pytest.mark.parametrize("layout", LAYOUTS)
def test_stochastic_actors_start_with_a_tenth_of_the_output_weights(layout: str) -> None:
    """OGBench's actors draw their mean (logit) layer at variance scale 0.01, a tenth of the
    Xavier bound: the Gaussian and categorical policies' output weights are a tenth of those
    the deterministic policy draws from the same seed, and nothing else differs."""
    built = {}
    for kind in ("deterministic", "gaussian", "categorical"):
        torch.manual_seed(0)
        built[kind] = Policy(kind, 5, 4, 3, [16, 16, 16], **_network_options(layout))
    reference = built["deterministic"].net
    for kind in ("gaussian", "categorical"):
        net = built[kind].net
        assert torch.equal(net.output_layer().weight, 0.1 * reference.output_layer().weight)
        others = {k: v for k, v in net.state_dict().items() if k not in _output_keys(net)}
        for key, value in others.items():
            assert torch.equal(value, reference.state_dict()[key]), key


def _output_keys(net: TaskNetwork) -> set[str]:
    layer = net.output_layer()
    return {name for name, p in net.named_parameters() if p is layer.weight}
