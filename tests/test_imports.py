"""``import gcrl`` stays cheap: no torch, lightning or h5py until a submodule needs them,
and ``gcrl.relabel`` never needs them."""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = ("torch", "lightning", "pytorch_lightning", "h5py", "minari", "gymnasium")


def modules_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print(' '.join(sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout
    return set(out.split())


@pytest.mark.parametrize("statement", ["import gcrl", "import gcrl.errors"])
def test_import_gcrl_is_light(statement: str) -> None:
    loaded = modules_after(statement)
    assert not loaded & set(HEAVY)
    assert "numpy" not in loaded or statement != "import gcrl"


def test_datasets_load_no_optional_backend() -> None:
    loaded = modules_after("from gcrl.datasets import load, save")
    assert "h5py" in loaded
    assert not loaded & {"torch", "lightning", "minari", "gymnasium"}


def test_loading_and_relabeling_files_need_no_torch() -> None:
    """The data side (gcrl.datasets, and gcrl.relabel's offline driver) stays out of the
    training layers, at import and at run time."""
    statement = (
        "from gcrl.datasets import load; from gcrl.relabel import relabel_file; "
        "load('bundled:pointmaze-medium-navigate')"
    )
    loaded = modules_after(statement)
    assert "h5py" in loaded
    assert not {m.split(".")[0] for m in loaded} & {"torch", "lightning", "pytorch_lightning"}


@pytest.mark.parametrize(
    "statement",
    [
        "import gcrl.relabel",
        "from gcrl.relabel import *",
        "import gcrl.datasets.trajectories",
        "import gcrl.spec",
    ],
)
def test_relabel_imports_numpy_and_nothing_heavier(statement: str) -> None:
    """gcrl.relabel is for any code base, JAX ones included: numpy only."""
    loaded = modules_after(statement)
    assert "numpy" in loaded
    assert not loaded & set(HEAVY)
