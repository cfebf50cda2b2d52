"""Meta-training with sharded meta-parameters, shared by the single-process reference and the ranks.

The sinusoid tasks, the model and the process-group setup are those of ``_collective_workers``;
the inner loop is two differentiable SGD steps on the gathered parameters.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.func import functional_call

import torchopt_lite.distributed as todist

from ._collective_workers import META_STEPS, NUM_TASKS, _mse, _setup, mlp, sinusoid

INNER_LR = 0.1


def _task_loss(net: nn.Module, full: dict[str, Tensor], step: int, task: int) -> Tensor:
    xs, ys, xq, yq = sinusoid(step, task)
    params = full
    for _ in range(2):
        grads = torch.autograd.grad(
            _mse(functional_call(net, params, (xs,)), ys), list(params.values()), create_graph=True
        )
        params = {k: v - INNER_LR * g for (k, v), g in zip(params.items(), grads, strict=True)}
    return _mse(functional_call(net, params, (xq,)), yq)


def _full(p: Tensor) -> Tensor:
    return p.full_tensor() if isinstance(p, dist.tensor.DTensor) else p


def sharded_train(steps: int = META_STEPS) -> dict[str, Any]:
    """Meta-train ``steps`` meta-steps; return every step's meta-gradient and the final params."""
    net = todist.shard_meta_model(mlp())
    outer = torch.optim.Adam(net.parameters(), lr=0.01)
    grads = []
    for step in range(steps):
        share = todist.task_shard(NUM_TASKS)
        outer.zero_grad(set_to_none=True)
        full = todist.full_parameters(net)
        zero = sum(p.sum() for p in full.values()) * 0.0  # every gather is differentiated
        losses = [_task_loss(net, full, step, task) for task in share]
        (sum(losses, zero) / NUM_TASKS).backward()  # mean over the share, times n_r / N
        grads.append([_full(p.grad).detach().clone() for p in net.parameters()])
        outer.step()
    return {
        "grads": grads,
        "params": [_full(p).detach().clone() for p in net.parameters()],
        "local_shapes": [
            tuple(p.to_local().shape) if isinstance(p, dist.tensor.DTensor) else None
            for p in net.parameters()
        ],
        "model": net,
    }


def main(rank: int, world_size: int, port: int, out: str) -> None:
    """One rank of the sharded run; rank 0 saves what it saw to ``out``."""
    _setup(rank, world_size, port, timeout=60.0)
    run = sharded_train()
    seen: dict[str, Any] = {k: v for k, v in run.items() if k != "model"}
    try:
        todist.shard_meta_model(run["model"])
    except ValueError as error:
        seen["again_error"] = str(error)
    try:
        todist.shard_meta_model(nn.parallel.DistributedDataParallel(mlp()))
    except TypeError as error:
        seen["ddp_error"] = str(error)
    if rank == 0:
        torch.save(seen, out)
    dist.barrier()
    dist.destroy_process_group()
