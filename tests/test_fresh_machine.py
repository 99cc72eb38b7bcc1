"""The README's two set-up commands on a fresh clone, in a venv of their own (slow tier).

``git clone`` of this checkout's commit (what a user gets: committed files only), then
``bash scripts/quickstart.sh`` and ``bash scripts/test.sh`` there, with nothing of this
checkout's environment (no active venv, no ``PYTHONPATH``). CI runs it
(``.ci/run``: ``scripts/test.sh -m slow -k fresh_machine``), so the suite itself runs inside
the clone, under the README's own test command.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: What the set-up commands and runs write into a checkout (git-ignored; left behind when
#: copying a checkout without git), relative to its root.
BUILT = {".venv", "runs", "data", ".mypy_cache", ".ruff_cache", "results/runs", "results/data"}


def built(directory: str, names: list[str]) -> list[str]:
    """The entries of ``directory`` that copying a checkout leaves out (``copytree``'s
    ``ignore``)."""
    here = Path(directory).relative_to(ROOT)
    return [
        name
        for name in names
        if (here / name).as_posix() in BUILT or name == "__pycache__" or name.endswith(".egg-info")
    ]


def clean_environment() -> dict[str, str]:
    """This process's environment without its venv: what a new shell has."""
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    venv = str(Path(sys.prefix) / "bin")
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if p != venv)
    env.pop("PYTEST_ADDOPTS", None)
    return env


def run_in(clone: Path, command: list[str], env: dict[str, str]) -> str:
    """Run ``command`` in ``clone``; returns its output, or fails with its last lines."""
    done = subprocess.run(
        command, cwd=clone, env=env, capture_output=True, text=True, timeout=45 * 60
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"{' '.join(command)}: rc {done.returncode}\n{output[-4000:]}"
    return output


@pytest.mark.slow
def test_fresh_machine_readme_commands() -> None:
    # Not under pytest's tmp_path, whose parent is private to the user running the tests: the
    # suite inside runs the clone's gcrl as an unprivileged user too (tests/test_bad_input.py).
    with tempfile.TemporaryDirectory() as name:
        Path(name).chmod(0o755)
        readme_commands_on_a_clone(Path(name) / "gcrl")


def readme_commands_on_a_clone(clone: Path) -> None:
    if (ROOT / ".git").exists():
        subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True)
    else:  # a checkout without git metadata (an unpacked archive): its files as they are
        shutil.copytree(ROOT, clone, ignore=built)
    assert not (clone / ".venv").exists()
    env = clean_environment()

    quickstart = run_in(clone, ["bash", "scripts/quickstart.sh"], env)
    assert (clone / ".venv" / "bin" / "python").exists()  # it installed its own venv
    assert "GPU available" not in quickstart and "| Name " not in quickstart  # quiet
    assert "mean success over the five tasks" in quickstart
    evaluations = sorted((clone / "runs").glob("quickstart-*.json"))
    assert [p.name for p in evaluations] == ["quickstart-her.json", "quickstart-stored.json"]

    tests = run_in(clone, ["bash", "scripts/test.sh", "-q", "-p", "no:cacheprovider"], env)
    summary = tests.strip().splitlines()[-1]
    assert " passed" in summary and "failed" not in summary and "error" not in summary, summary
