"""PCGrad and GradNorm across two CPU processes (gloo): both ranks end with the same
parameters as one process training on the union of their batches."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from gcrl.optim import GradNorm, PCGrad

STEPS = 3
NUM_TASKS = 4


def data(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(32, 6, generator=g), torch.randn(32, 2, generator=g)
    task_ids = torch.randint(0, NUM_TASKS, (32,), generator=g)
    y = y + 3 * torch.randn(NUM_TASKS, 2, generator=g)[task_ids]
    return x.double(), y.double(), task_ids


def model() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(6, 16),
        nn.LayerNorm(16),
        nn.GELU(),
        nn.Linear(16, 16),
        nn.GELU(),
        nn.Linear(16, 2),
    ).double()


def train(kind: str, rows: slice) -> list[torch.Tensor]:
    """A few SGD steps with PCGrad or GradNorm on ``rows`` of the batch; the parameters."""
    net = model()
    method = PCGrad([net], NUM_TASKS, seed=3) if kind == "pcgrad" else GradNorm(net[3], NUM_TASKS)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    x, y, task_ids = data()
    for _ in range(STEPS):
        optimizer.zero_grad()
        with method.capture():
            losses = ((net(x[rows]) - y[rows]) ** 2).sum(-1)
        method.backward(losses, task_ids[rows])
        optimizer.step()
    return [p.detach() for p in net.parameters()]


def worker(rank: int, kind: str, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        params = train(kind, slice(rank * 16, (rank + 1) * 16))
        torch.save(params, f"{out}.{rank}")
    finally:
        dist.destroy_process_group()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["pcgrad", "gradnorm"])
def test_two_ranks_match_one_process_on_the_union(kind: str, tmp_path: Path) -> None:
    out = str(tmp_path / "params")
    mp.spawn(worker, args=(kind, free_port(), out), nprocs=2, join=True)
    rank0, rank1 = torch.load(f"{out}.0"), torch.load(f"{out}.1")
    single = train(kind, slice(0, 32))
    for a, b, c in zip(rank0, rank1, single, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)  # identical on both ranks
        torch.testing.assert_close(a, c, rtol=1e-9, atol=1e-12)
