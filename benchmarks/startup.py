"""Start-up time of the command line and of ``gcrl.load_policy``, beside bare Python and a
bare ``import lightning`` measured in the same run.

    python benchmarks/startup.py              # 3 rounds, median of each
    taskset -c 1 python benchmarks/startup.py --rounds 5

Every row is a fresh process; wall-clock seconds and CPU seconds (user + system of the
process and its children) are the median over --rounds, the rows interleaved round by round
so that a change in machine load touches all of them alike. ``gcrl fit --help`` is measured
three ways (:mod:`gcrl.cli.help_cache`): with no cache on a 100-column terminal (the text
shipped with gcrl is printed), with no cache on an 80-column one (LightningCLI builds the
text: what any first call costs without a usable shipped text) and from the cache. The
checkpoint for ``load_policy`` is a 2-step BC run made first in a temporary directory.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PYTHON = sys.executable
GCRL = str(Path(sys.executable).with_name("gcrl"))


def timed(command: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Run ``command``; returns (wall seconds, CPU seconds of it and its children)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def make_checkpoint(directory: Path) -> Path:
    """A 2-step BC checkpoint on the bundled PointMaze data."""
    model = ["--model", "gcrl.algorithms.BC", "--model.hidden_dims", "[64, 64]"]
    data = ["--data.path", "bundled:pointmaze-medium-navigate", "--data.batch_size", "64"]
    trainer = ["--trainer.max_steps", "2", "--trainer.enable_progress_bar", "false"]
    subprocess.run(
        [GCRL, "fit", *model, *data, *trainer],
        cwd=directory,
        check=True,
        capture_output=True,
    )
    return next((directory / "runs/csv/version_0/checkpoints").glob("*.ckpt"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as name:
        work = Path(name)
        ckpt = make_checkpoint(work)
        cache = work / "cache"
        env = {**os.environ, "XDG_CACHE_HOME": str(cache), "COLUMNS": "100"}
        load = f"import gcrl; gcrl.load_policy({str(ckpt)!r})"
        rows: dict[str, list[str]] = {
            "python -c pass": [PYTHON, "-c", "pass"],
            'python -c "import lightning"': [PYTHON, "-c", "import lightning"],
            "gcrl --help": [GCRL, "--help"],
            "gcrl fit --help (no cache: the shipped text)": [GCRL, "fit", "--help"],
            "gcrl fit --help (no cache, 80 columns: built)": [GCRL, "fit", "--help"],
            "gcrl fit --help (cached, 80 columns)": [GCRL, "fit", "--help"],
            "gcrl info bundled:pointmaze-medium-navigate": [
                GCRL,
                "info",
                "bundled:pointmaze-medium-navigate",
            ],
            "import gcrl; gcrl.load_policy(CKPT)": [PYTHON, "-c", load],
        }
        results: dict[str, list[tuple[float, float]]] = {row: [] for row in rows}
        narrow = {**env, "COLUMNS": "80"}  # narrower than the shipped text's 100 columns
        for _ in range(args.rounds):
            for row, command in rows.items():
                if "no cache" in row:
                    shutil.rmtree(cache, ignore_errors=True)
                results[row].append(timed(command, narrow if "80 columns" in row else env))
    lightning = statistics.median(w for w, _ in results['python -c "import lightning"'])
    print(f"{args.rounds} rounds, median; {os.cpu_count()} CPUs, Python {sys.version.split()[0]}")
    print("| command | wall s | CPU s | wall / import lightning |")
    print("| --- | ---: | ---: | ---: |")
    for row, samples in results.items():
        wall = statistics.median(w for w, _ in samples)
        cpu = statistics.median(c for _, c in samples)
        print(f"| `{row}` | {wall:.2f} | {cpu:.2f} | {wall / lightning:.2f} |")


if __name__ == "__main__":
    main()
