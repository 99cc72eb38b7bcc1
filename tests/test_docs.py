"""The Python examples in the docs run as written, on a small dataset the test makes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gcrl.datasets import save

from .conftest import make_trajectories

DOCS = Path(__file__).resolve().parents[1] / "docs"


@pytest.mark.parametrize("page", ["relabel.md", "evaluation.md"])
def test_python_examples_run(page: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocks = re.findall(r"```python\n(.*?)```", (DOCS / page).read_text(), re.S)
    assert blocks, f"{page} has no Python example"
    (tmp_path / "data").mkdir()
    save(make_trajectories([20, 1, 35], goal=True), tmp_path / "data" / "pointmaze-umaze.hdf5")
    monkeypatch.chdir(tmp_path)
    for block in blocks:
        exec(compile(block, f"{page}", "exec"), {})
