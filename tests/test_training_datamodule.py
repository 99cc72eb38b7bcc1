"""gcrl.training: the data module's batches, device-held data, ranks and errors."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from gcrl.errors import ConfigError
from gcrl.training import Batch, TrajectoryDataModule

from .training_data import chain_mdp, goal_reaching, multitask_goal_reaching

# The test networks are tiny: one thread avoids synchronisation costs (and oversubscribing
# the 2 cores when other work runs).
torch.set_num_threads(1)


def test_data_module_batches(tmp_path: Path) -> None:
    path = goal_reaching(tmp_path / "g.hdf5", episodes=10, length=8)
    dm = TrajectoryDataModule(str(path), batch_size=32, steps_per_epoch=3, val_fraction=0.2)
    assert dm.relabel == "ogbench"
    assert dm.spec.observation_dim == 2 and dm.spec.goal_dim == 2
    assert dm.spec.action_dim == 2 and not dm.spec.discrete
    dm.setup("fit")
    assert dm.val_data is not None
    train_rows = set(map(tuple, dm.train_data.observations["observation"].round(9)))
    val_rows = set(map(tuple, dm.val_data.observations["observation"].round(9)))
    assert not train_rows & val_rows, "validation episodes leak into training"
    assert dm.val_data.num_episodes == 2
    batches = list(dm.train_dataloader())
    assert len(batches) == 3
    batch = batches[0]
    assert batch.observations.shape == (32, 2) and batch.observations.dtype == torch.float32
    assert batch.goals["actor"].shape == (32, 2) and batch.goals["value"].shape == (32, 2)
    assert set(batch.rewards.unique().tolist()) <= {-1.0, 0.0}  # OGBench's -1/0
    assert torch.equal(batch.masks, -batch.rewards)  # success (reward 0) ends it
    again = list(
        TrajectoryDataModule(
            str(path), batch_size=32, steps_per_epoch=3, val_fraction=0.2
        ).train_dataloader()
    )
    dm2 = TrajectoryDataModule(str(path), batch_size=32, steps_per_epoch=3, val_fraction=0.2)
    dm2.setup("fit")
    assert all(
        torch.equal(a.observations, b.observations)
        for a, b in zip(batches, list(dm2.train_dataloader()), strict=True)
    )
    assert len(again) == 3
    val = list(dm.val_dataloader())
    assert len(val) == dm.val_batches
    assert all(
        torch.equal(a.actions, b.actions)
        for a, b in zip(val, list(dm.val_dataloader()), strict=True)
    )


@pytest.mark.parametrize(
    "dataset, options",
    [
        ("goal", {"relabel": "ogbench", "normalize": True, "val_fraction": 0.3}),
        ("goal", {"relabel": "her", "observation_keys": ["observation", "achieved_goal"]}),
        ("goal", {"relabel": "none"}),  # stored desired goals
        ("multitask", {"relabel": "none", "normalize": True}),
        ("chain", {}),  # discrete actions
    ],
)
def test_batches_gathered_from_device_data_equal_numpy_batches(
    tmp_path: Path, dataset: str, options: dict
) -> None:
    """Holding observations and actions as tensors and gathering by row gives the very
    batches the numpy path builds: same keys, dtypes and values, for every sampler."""
    make = {"goal": goal_reaching, "multitask": multitask_goal_reaching, "chain": chain_mdp}
    path = make[dataset](tmp_path / f"{dataset}.hdf5")
    modules = {
        mode: TrajectoryDataModule(
            str(path), batch_size=64, steps_per_epoch=4, device_data=mode, **options
        )
        for mode in ("always", "never")
    }
    for dm in modules.values():
        dm.setup("fit")
    assert modules["always"].on_device(modules["always"].train_data) is not None
    assert modules["never"].on_device(modules["never"].train_data) is None
    loaders = ("train_dataloader", "val_dataloader")
    for loader in loaders if options.get("val_fraction") else loaders[:1]:
        streams = [list(getattr(dm, loader)()) for dm in modules.values()]
        assert len(streams[0]) == len(streams[1]) > 0
        for on_device, in_numpy in zip(*streams, strict=True):
            assert on_device.goals.keys() == in_numpy.goals.keys()
            for key, value in columns(in_numpy).items():
                assert columns(on_device)[key].dtype == value.dtype, key
                assert torch.equal(columns(on_device)[key], value), key


def columns(batch: Batch) -> dict[str, torch.Tensor]:
    """Every tensor of a batch by name (goal sets as ``goals/<set>``)."""
    out = {
        f.name: getattr(batch, f.name)
        for f in fields(batch)
        if isinstance(getattr(batch, f.name), torch.Tensor)
    }
    return out | {f"goals/{k}": v for k, v in batch.goals.items()}


def test_relabeled_goals_inside_the_state_keep_numpy_batches(tmp_path: Path) -> None:
    """A state input holding ``desired_goal`` must see the relabeled goal, which only the
    numpy batch has: such data is never gathered on the device."""
    path = goal_reaching(tmp_path / "g.hdf5")
    dm = TrajectoryDataModule(
        str(path), observation_keys=["observation", "desired_goal"], device_data="always"
    )
    assert dm.on_device(dm.train_data) is None
    with pytest.raises(ConfigError, match="device_data"):
        TrajectoryDataModule(str(path), device_data="gpu")


def test_each_rank_samples_its_own_indices(tmp_path: Path) -> None:
    path = goal_reaching(tmp_path / "g.hdf5", episodes=5, length=8)
    dm = TrajectoryDataModule(str(path), batch_size=16, steps_per_epoch=1)

    class FakeTrainer:  # the two attributes the data module reads
        def __init__(self, rank: int) -> None:
            self.global_rank = rank
            self.strategy = SimpleNamespace(root_device=torch.device("cpu"))

    firsts = []
    for rank in (0, 1):
        dm.trainer = FakeTrainer(rank)  # type: ignore[assignment]
        firsts.append(next(iter(dm.train_dataloader())).observations)
    assert not torch.equal(firsts[0], firsts[1])


def test_data_module_errors(tmp_path: Path) -> None:
    path = goal_reaching(tmp_path / "g.hdf5", episodes=3, length=4)
    with pytest.raises(ConfigError, match="relabel"):
        TrajectoryDataModule(str(path), relabel="hindsight")
    with pytest.raises(Exception, match="observation_keys"):
        TrajectoryDataModule(str(path), observation_keys=["position"])
