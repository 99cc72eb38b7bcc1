"""``import gcrl`` stays cheap: no torch, lightning or h5py until a submodule needs them."""

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
    loaded = modules_after("import gcrl.datasets")
    assert "h5py" in loaded
    assert not loaded & {"torch", "lightning", "minari", "gymnasium"}
