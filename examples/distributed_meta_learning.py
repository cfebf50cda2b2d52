"""Distributed MAML on sinusoid regression: tasks split over 2 RPC workers on localhost (CPU).

Each task is y = a sin(x + p). The meta-parameters theta of a small MLP live on rank 0. A
meta-batch of 8 tasks is split over the workers by ``torchopt_lite.distributed.parallelize``
(4 tasks each); a worker adapts theta to each of its tasks with 3 differentiable SGD steps
(``torchopt_lite.sgd``, ``inplace=False``) and returns its mean query loss. ``mean_reducer``
averages the two workers' losses into the meta-batch loss (exact: equal parts), distributed
autograd carries the meta-gradient back through both workers, and Adam updates theta on rank 0.

Run: python examples/distributed_meta_learning.py        (spawns 2 workers on 127.0.0.1)
 or: torchrun --nproc-per-node 2 examples/distributed_meta_learning.py
"""

from __future__ import annotations

import math
import os
import socket
import time
import warnings

import torch
import torch.multiprocessing as mp

import torchopt_lite as torchopt
import torchopt_lite.distributed as todist

WORKERS, TASKS, SHOTS, INNER_STEPS, INNER_LR, META_STEPS = 2, 8, 10, 3, 0.05, 1000
Params = tuple[torch.Tensor, ...]


def init_params(hidden: int = 32) -> Params:
    g = torch.Generator().manual_seed(0)
    return (
        torch.randn(1, hidden, generator=g),
        torch.zeros(hidden),
        torch.randn(hidden, 1, generator=g) / math.sqrt(hidden),
        torch.zeros(1),
    )


def predict(params: Params, x: torch.Tensor) -> torch.Tensor:
    w1, b1, w2, b2 = params
    return torch.tanh(x @ w1 + b1) @ w2 + b2


def mse(params: Params, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return ((predict(params, x) - y) ** 2).mean()


def sample_tasks(g: torch.Generator, tasks: int = TASKS) -> tuple[torch.Tensor, ...]:
    """Support and query sets of shape (tasks, SHOTS, 1)."""
    amplitude = 0.5 + 4.5 * torch.rand(tasks, 1, 1, generator=g)
    phase = math.pi * torch.rand(tasks, 1, 1, generator=g)

    def points() -> tuple[torch.Tensor, torch.Tensor]:
        x = 10 * torch.rand(tasks, SHOTS, 1, generator=g) - 5
        return x, amplitude * torch.sin(x + phase)

    return (*points(), *points())


def adapt(params: Params, x: torch.Tensor, y: torch.Tensor) -> Params:
    """INNER_STEPS of SGD on one task's support set, differentiable with respect to params."""
    inner = torchopt.sgd(lr=INNER_LR)
    state = inner.init(params)
    for _ in range(INNER_STEPS):
        grads = torch.autograd.grad(mse(params, x, y), params, create_graph=True)
        updates, state = inner.update(grads, state, inplace=False)
        params = torchopt.apply_updates(params, updates, inplace=False)
    return params


def replicate_params(params: Params, *tasks: torch.Tensor) -> list:
    """Send theta whole to every worker; split the task tensors along the task dimension."""
    return [(w, (params, *a), kw) for w, a, kw in todist.batch_partitioner(*tasks)]


@todist.parallelize(partitioner=replicate_params, reducer=todist.mean_reducer)
def meta_loss(params: Params, xs: torch.Tensor, ys: torch.Tensor, xq: torch.Tensor,
              yq: torch.Tensor) -> torch.Tensor:  # fmt: skip
    """Mean query loss after adaptation, over this worker's tasks."""
    losses = [
        mse(adapt(params, x_s, y_s), x_q, y_q)
        for x_s, y_s, x_q, y_q in zip(xs, ys, xq, yq, strict=True)
    ]
    return torch.stack(losses).mean()


@todist.rank_zero_only
def train() -> None:
    theta = tuple(p.requires_grad_() for p in init_params())
    meta_opt = torchopt.Adam(theta, lr=5e-3)
    g = torch.Generator().manual_seed(1)
    test_tasks = sample_tasks(torch.Generator().manual_seed(2), tasks=32)

    single = meta_loss.__wrapped__(theta, *test_tasks)  # the undecorated body, in this process
    split = meta_loss(theta, *test_tasks)
    print(f"test meta-loss before training: distributed {split:.6f}, one process {single:.6f}")

    start, running = time.perf_counter(), 0.0
    for step in range(1, META_STEPS + 1):
        meta_opt.zero_grad()
        with todist.autograd.context() as ctx:
            loss = meta_loss(theta, *sample_tasks(g))
            todist.autograd.backward(ctx, loss)  # the meta-gradient lands in theta's .grad
        meta_opt.step()
        running += loss.item()
        if step % 100 == 0:
            elapsed = time.perf_counter() - start
            print(
                f"meta-step {step:4d}  mean train meta-loss {running / 100:.4f}  ({elapsed:.1f} s)"
            )
            running = 0.0

    print(f"test meta-loss after training: {meta_loss(theta, *test_tasks):.4f}")


def run(rank: int | None = None, port: int | None = None) -> None:
    if rank is not None:  # spawned below: play torchrun and set the variables it would
        os.environ.update(RANK=str(rank), WORLD_SIZE=str(WORKERS), LOCAL_RANK=str(rank),
                          LOCAL_WORLD_SIZE=str(WORKERS))  # fmt: skip
    os.environ.setdefault("TP_SOCKET_IFNAME", "lo")  # TensorPipe and Gloo on loopback only
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    if port is not None:
        os.environ["MASTER_PORT"] = str(port)
    torch.set_num_threads(1)
    # init_rpc itself trips over torch's deprecated ProcessGroup alias; not ours to fix.
    warnings.filterwarnings("ignore", message="You are using a Backend", category=UserWarning)
    todist.auto_init_rpc()(train)()


if __name__ == "__main__":
    if "RANK" in os.environ:  # launched by torchrun
        run()
    else:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            free_port = s.getsockname()[1]
        mp.spawn(run, args=(free_port,), nprocs=WORKERS)
