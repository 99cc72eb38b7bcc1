"""Every Python example in README.md and docs/*.md runs as written, in a directory holding
small stand-ins for the files the examples name."""

from __future__ import annotations

import re
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from gcrl.algorithms import BC
from gcrl.datasets import save
from gcrl.training import TrajectoryDataModule

from .conftest import make_trajectories
from .training_data import fit

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
#: The checkpoint the examples load.
CHECKPOINT = Path("runs/csv/version_0/checkpoints/epoch=3-step=2000.ckpt")


def python_blocks(page: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", page.read_text(), re.S)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The files the examples name: a goal-conditioned dataset, a D4RL file and a policy
    trained (one step) on the bundled PointMaze data."""
    root = tmp_path_factory.mktemp("docs")
    (root / "data").mkdir()
    save(make_trajectories([20, 1, 35], goal=True), root / "data" / "pointmaze-umaze.hdf5")
    rng = np.random.default_rng(0)
    with h5py.File(root / "hopper-medium.hdf5", "w") as f:
        f["observations"] = rng.normal(size=(30, 11)).astype(np.float32)
        f["actions"] = rng.uniform(-1, 1, size=(30, 3)).astype(np.float32)
        f["rewards"] = rng.normal(size=30).astype(np.float32)
        f["terminals"] = np.eye(30, dtype=bool)[12]
        f["timeouts"] = np.eye(30, dtype=bool)[29]
    torch.set_num_threads(1)
    data = TrajectoryDataModule("bundled:pointmaze-medium-navigate", batch_size=16)
    trainer = fit(BC(spec=data.spec, hidden_dims=[8]), data, 1, default_root_dir=root)
    (root / CHECKPOINT).parent.mkdir(parents=True)
    trainer.save_checkpoint(root / CHECKPOINT)
    return root


def test_the_readme_and_the_guides_have_examples() -> None:
    with_examples = {page.name for page in PAGES if python_blocks(page)}
    assert {"README.md", "relabel.md", "training.md", "format.md"} <= with_examples


@pytest.mark.parametrize("page", [p for p in PAGES if python_blocks(p)], ids=lambda p: p.name)
def test_python_examples_run(page: Path, workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(workdir)
    namespace: dict[str, object] = {}  # a page's blocks run in order, sharing names
    for block in python_blocks(page):
        exec(compile(block, str(page.relative_to(ROOT)), "exec"), namespace)
