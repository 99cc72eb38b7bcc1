"""What the benchmarks share: a method run in a fresh process, and its peak memory (Linux).

A benchmark script calls itself with a hidden ``--measure NAME`` option through
:func:`run_isolated`; the child calls :func:`reset_peak` once its imports are done, measures,
reads :func:`peak_mb` and prints one JSON line, the last line of its stdout. Peak memory is
then the growth of the child's maximum resident set size during the measurement alone.
:func:`run_command` times an external command and reads its whole-process peak instead.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def status_kb(field: str) -> int:
    """A ``kB`` field of ``/proc/self/status`` (``VmRSS``, ``VmHWM``)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def reset_peak() -> int:
    """Reset this process's peak resident set (``clear_refs`` 5); returns the current one, kB.

    Called after the imports, the peak then counts the measured work alone, not the imports
    nor the parent the process was forked from.
    """
    Path("/proc/self/clear_refs").write_text("5")
    return status_kb("VmRSS")


def peak_mb(rss0_kb: int) -> float:
    """Growth of the peak resident set since :func:`reset_peak` returned ``rss0_kb``, MB."""
    return (status_kb("VmHWM") - rss0_kb) / 1024


def run_isolated(script: str, name: str, args: Sequence[str] = ()) -> dict[str, Any]:
    """Run ``script --measure name *args`` in a fresh interpreter; its last stdout line (JSON).

    Exits with the child's stderr when it fails.
    """
    out = subprocess.run(
        [sys.executable, script, "--measure", name, *args],
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:
        sys.exit(f"{name} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_command(argv: Sequence[str]) -> dict[str, float]:
    """Run an external command; its wall-clock ``seconds`` and whole-process ``peak_mb``.

    The peak is the child's maximum resident set (``wait4``), interpreter and imports
    included. Exits with the command's output when it fails.
    """
    start = time.perf_counter()
    process = subprocess.Popen(
        list(argv), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    assert process.stdout is not None
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        sys.exit(f"{' '.join(argv)} failed ({process.returncode}):\n{output}")
    return {"seconds": seconds, "peak_mb": usage.ru_maxrss / 1024}
