"""OGBench's own agents (its unmodified ``impls/``), timed: the reference rows of
``benchmarks/train.py --impls``, measured in the same run.

    /tmp/jax/bin/python benchmarks/ogbench_impls.py --impls OGBENCH/impls --data data.npz \\
        --agent gciql --batch-size 256 --hidden-dims 256 256

Loads ``--data`` (OGBench's npz layout, as ``gcrl.datasets.write_ogbench`` writes it) with
``ogbench.utils.load_dataset``, samples with OGBench's ``GCDataset`` / ``HGCDataset``, and
builds the agent with its ``create`` at its default configuration, except the sizes given
here (and, for image data, ``--encoder`` and ``--p-aug``). Two rates, steps per second
after ``--warmup`` untimed updates (the first compiles), each of ``--repeats`` rounds timed
for about ``--seconds``:

* ``update``: the agent's jitted ``update`` on 16 batches drawn beforehand and already on
  the device: the model's cost alone;
* ``loop``: ``sample`` then ``update``, as OGBench's ``impls/main.py`` trains (its logging
  and evaluation left out).

The clock is read after every 10 updates, blocking on the last one, so that JAX's
asynchronous dispatch overlaps Python with the computation as in OGBench's loop. Prints one
JSON line: ``{"agent", "update": [...], "loop": [...], "jax"}``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

PREDRAWN = 16


def rounds(step: Callable[[int], Any], warmup: int, seconds: float, repeats: int) -> list[float]:
    """Steps per second of ``step(i)`` in each of ``repeats`` rounds of about ``seconds``."""
    import jax

    for i in range(warmup):
        out = step(i)
    jax.block_until_ready(out)
    rates = []
    for _ in range(repeats):
        steps, start = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - start) < seconds or steps < 10:
            for _ in range(10):
                out = step(steps)
                steps += 1
            jax.block_until_ready(out)
        rates.append(steps / elapsed)
    return rates


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--impls", required=True, type=Path, help="OGBench checkout's impls/")
    parser.add_argument("--data", required=True, type=Path, help="npz in OGBench's layout")
    parser.add_argument("--agent", required=True, help="impls/agents/<agent>.py")
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--hidden-dims", type=int, nargs="+", default=[512, 512, 512])
    parser.add_argument("--encoder", help="the agent's visual encoder (impala_small, ...)")
    parser.add_argument("--p-aug", type=float, help="the agent's image augmentation probability")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).parents[1] / "scripts"))
    from ogbench_reference import load_reference  # the same loading as the side-by-side runs

    sizes = {"batch_size": args.batch_size, "actor_hidden_dims": tuple(args.hidden_dims)}
    if args.encoder:
        sizes["encoder"] = args.encoder
    if args.p_aug is not None:
        sizes["p_aug"] = args.p_aug
    try:
        agents, config, train = load_reference(args.impls, args.agent, args.data, sizes)
    except FileNotFoundError as error:
        print(error, file=sys.stderr)
        return 2
    if "value_hidden_dims" in config:
        config["value_hidden_dims"] = tuple(args.hidden_dims)
    import jax
    import numpy as np

    np.random.seed(0)  # noqa: NPY002  (OGBench's samplers draw from the global generator)
    example = train.sample(1)
    state = {
        "agent": agents[config["agent_name"]].create(
            0, example["observations"], example["actions"], config
        )
    }
    predrawn = [jax.device_put(train.sample(args.batch_size)) for _ in range(PREDRAWN)]

    def update(i: int) -> Any:
        state["agent"], info = state["agent"].update(predrawn[i % PREDRAWN])
        return info

    def loop(i: int) -> Any:
        state["agent"], info = state["agent"].update(train.sample(args.batch_size))
        return info

    measured = {"update": [], "loop": []}  # type: dict[str, list[float]]
    for _ in range(args.repeats):  # interleaved, as the gcrl rows are
        for name, step in (("update", update), ("loop", loop)):
            measured[name] += rounds(step, args.warmup, args.seconds, 1)
    print(json.dumps({"agent": args.agent, **measured, "jax": jax.__version__}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
