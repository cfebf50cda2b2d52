"""Meta-training runs shared by the single-process reference and the spawned collective ranks.

Every run draws task ``i`` of meta-step ``s`` from ``task_generator(SEED, s, i)``, takes the
ranks' share with ``task_shard`` and reduces with ``MetaGradientAllReduce``; without a process
group the same code is the single-process reference.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

import torchopt_lite
import torchopt_lite.distributed as todist
from torchopt_lite import linear_solve
from torchopt_lite.diff.explicit import batched_inner_loop, functional_loss
from torchopt_lite.diff.implicit import custom_root

D = torch.float64
SEED = 0
NUM_TASKS = 5  # uneven on 2 (3 + 2) and 4 (2 + 1 + 1 + 1) ranks
META_STEPS = 3
SHOTS = 8


def sinusoid(step: int, task: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(support x, support y, query x, query y) of one task, the same on every rank."""
    g = todist.task_generator(SEED, step, task)
    amplitude = 0.1 + 4.9 * torch.rand((), generator=g, dtype=D)
    phase = torch.pi * torch.rand((), generator=g, dtype=D)
    x = 10 * torch.rand(2 * SHOTS, 1, generator=g, dtype=D) - 5
    y = amplitude * torch.sin(x + phase)
    return x[:SHOTS], y[:SHOTS], x[SHOTS:], y[SHOTS:]


def mlp() -> nn.Module:
    torch.manual_seed(SEED)
    return nn.Sequential(nn.Linear(1, 16), nn.Tanh(), nn.Linear(16, 1)).to(D)


def _mse(a: Tensor, b: Tensor) -> Tensor:
    return ((a - b) ** 2).mean()


def _meta_optimizer_losses(make_inner: Callable[[nn.Module], Any]) -> Callable[..., list[Tensor]]:
    def losses(net: nn.Module, step: int, share: range) -> list[Tensor]:
        out = []
        for task in share:
            xs, ys, xq, yq = sinusoid(step, task)
            saved = torchopt_lite.extract_state_dict(net)
            inner = make_inner(net)
            for _ in range(2):
                inner.step(_mse(net(xs), ys))
            out.append(_mse(net(xq), yq))
            torchopt_lite.recover_state_dict(net, saved)
        return out

    return losses


def _vmap_losses(net: nn.Module, step: int, share: range) -> list[Tensor]:
    if not share:
        return []
    xs, ys, xq, yq = (torch.stack(t) for t in zip(*(sinusoid(step, i) for i in share), strict=True))
    loss_fn = functional_loss(net, _mse)
    adapt = batched_inner_loop(loss_fn, torchopt_lite.sgd(lr=0.05), steps=2)
    adapted = adapt(dict(net.named_parameters()), xs, ys).params
    return [loss_fn({k: v[b] for k, v in adapted.items()}, xq[b], yq[b]) for b in range(len(share))]


class RidgeFeatures(nn.Module):
    """Meta-parameters of an implicit inner problem: a feature map and a ridge strength."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(SEED)
        self.features = nn.Linear(1, 6).to(D)
        self.log_lam = nn.Parameter(torch.tensor(-1.0, dtype=D))


def _ridge_optimality(w: Tensor, lam: Tensor, phi: Tensor, y: Tensor) -> Tensor:
    return phi.T @ (phi @ w - y) + lam * w


def _ridge_solve(w0: Tensor, lam: Tensor, phi: Tensor, y: Tensor) -> Tensor:
    eye = torch.eye(phi.shape[1], dtype=D)
    return torch.linalg.solve(phi.T @ phi + lam * eye, phi.T @ y)


_ridge = custom_root(_ridge_optimality, argnums=(1, 2), solve=linear_solve.solve_inv())(
    _ridge_solve
)


def _implicit_losses(model: nn.Module, step: int, share: range) -> list[Tensor]:
    out = []
    for task in share:
        xs, ys, xq, yq = sinusoid(step, task)
        phi_s, phi_q = torch.tanh(model.features(xs)), torch.tanh(model.features(xq))
        w = _ridge(torch.zeros(6, 1, dtype=D), model.log_lam.exp(), phi_s, ys)
        out.append(_mse(phi_q @ w, yq))
    return out


KINDS: dict[str, tuple[Callable[[], nn.Module], Callable[..., list[Tensor]]]] = {
    "meta_sgd": (mlp, _meta_optimizer_losses(lambda n: torchopt_lite.MetaSGD(n, lr=0.1))),
    "meta_adam": (mlp, _meta_optimizer_losses(lambda n: torchopt_lite.MetaAdam(n, lr=0.05))),
    "vmap": (mlp, _vmap_losses),
    "implicit": (RidgeFeatures, _implicit_losses),
}


def meta_train(
    kind: str,
    *,
    steps: int = META_STEPS,
    overlap: bool = True,
    bucket_cap_mb: float = 25.0,
    per_task_backward: bool = False,
    ddp: bool = False,
    model: nn.Module | None = None,
    outer: torch.optim.Optimizer | None = None,
    first_step: int = 0,
) -> dict[str, Any]:
    """Meta-train ``steps`` meta-steps; return every step's meta-gradient and the final params.

    With ``ddp=True`` the meta-model is wrapped in ``DistributedDataParallel`` instead of using
    the reducer: DDP averages, so each rank's loss is scaled by ``W n_r / N``, and a rank with no
    tasks still runs a backward.
    """
    make_model, losses = KINDS[kind]
    net = make_model() if model is None else model
    outer = torch.optim.Adam(net.parameters(), lr=0.01) if outer is None else outer
    if ddp:
        wrapped: nn.Module = nn.parallel.DistributedDataParallel(net)
        reducer = None
    else:
        wrapped = net
        reducer = todist.MetaGradientAllReduce(net, overlap=overlap, bucket_cap_mb=bucket_cap_mb)
    grads = []
    for step in range(first_step, first_step + steps):
        share = todist.task_shard(NUM_TASKS)
        outer.zero_grad(set_to_none=True)
        if reducer is None:
            task_losses = losses(wrapped, step, share)
            zero = sum(p.sum() for p in net.parameters()) * 0.0  # every rank joins DDP's reduction
            world_size = todist.collective_world_size()
            (sum(task_losses, zero) * world_size / NUM_TASKS).backward()
        else:
            with reducer.sync(weight=len(share) / NUM_TASKS):
                task_losses = losses(net, step, share)
                if per_task_backward:  # several backward calls inside one sync
                    for loss in task_losses:
                        (loss / len(share)).backward()
                elif task_losses:
                    (sum(task_losses) / len(share)).backward()
        grads.append([p.grad.clone() for p in net.parameters()])
        outer.step()
    return {
        "grads": grads,
        "params": [p.detach().clone() for p in net.parameters()],
        "buckets": 0 if reducer is None else len(reducer.buckets),
        "model": net,
        "outer": outer,
    }


def _public(run: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in run.items() if k not in ("model", "outer")}


def _setup(rank: int, world_size: int, port: int, timeout: float) -> bool:
    torch.set_num_threads(1)
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE=str(world_size),
        GLOO_SOCKET_IFNAME="lo",
    )
    return todist.init_process_group("gloo", timeout=timeout)


def main(rank: int, world_size: int, port: int, out: str, checkpoint: str) -> None:
    """One rank of the equivalence run; rank 0 saves what it saw to ``out``."""
    seen: dict[str, Any] = {"initialized": _setup(rank, world_size, port, timeout=60.0)}
    seen["again"] = todist.init_process_group("gloo")  # idempotent
    seen["world"] = (todist.collective_rank(), todist.collective_world_size())
    for kind in KINDS:
        seen[kind] = _public(meta_train(kind))
    if world_size > 2:  # the variants below once, on 2 ranks (4 processes on 2 cores are slow)
        _finish(rank, seen, out)
        return
    seen["no_overlap_small_buckets"] = _public(
        meta_train("meta_sgd", overlap=False, bucket_cap_mb=1e-4)
    )
    seen["overlap_small_buckets"] = _public(meta_train("meta_sgd", bucket_cap_mb=1e-4))
    seen["per_task_backward"] = _public(meta_train("meta_sgd", per_task_backward=True))
    seen["ddp"] = _public(meta_train("meta_sgd", ddp=True))
    try:
        todist.MetaGradientAllReduce(nn.parallel.DistributedDataParallel(mlp()))
    except TypeError as error:
        seen["ddp_error"] = str(error)
    # Checkpoint: rank 0 writes, every rank loads the same state and resumes identically.
    run = meta_train("meta_adam", steps=2)
    todist.save_checkpoint(
        checkpoint, step=2, meta_params=run["model"], meta_optimizer=run["outer"]
    )
    net = mlp()
    outer = torch.optim.Adam(net.parameters(), lr=0.01)
    step = todist.load_checkpoint(checkpoint, meta_params=net, meta_optimizer=outer)
    seen["resumed"] = _public(
        meta_train("meta_adam", steps=1, model=net, outer=outer, first_step=step)
    )
    # All ranks hold the same parameters: the spread over ranks is zero.
    flat = torch.cat([p.detach().reshape(-1) for p in net.parameters()])
    spread = torch.stack([flat, -flat])
    dist.all_reduce(spread, op=dist.ReduceOp.MAX)
    seen["spread"] = float((spread[0] + spread[1]).abs().max())
    _finish(rank, seen, out)


def _finish(rank: int, seen: dict[str, Any], out: str) -> None:
    if rank == 0:
        torch.save(seen, out)
    dist.barrier()
    dist.destroy_process_group()


def die_or_hang(rank: int, port: int, out: str, hang: bool) -> None:
    """Rank 1 dies (or sleeps) before its all_reduce; rank 0 records the error it gets."""
    _setup(rank, 2, port, timeout=3.0)
    net = mlp()
    net(torch.ones(1, 1, dtype=D)).sum().backward()
    reducer = todist.MetaGradientAllReduce(net)
    dist.barrier()  # both ranks are up
    if rank == 1:
        if hang:
            time.sleep(6.0)  # past rank 0's 3 s timeout
        os._exit(0)
    start = time.monotonic()
    try:
        reducer.all_reduce(0.5)
        result: dict[str, Any] = {"error": None}
    except RuntimeError as error:
        result = {"error": str(error), "cause": repr(error.__cause__)}
    result["seconds"] = time.monotonic() - start
    torch.save(result, out)
    os._exit(0)  # the group is broken; do not wait for the dead peer at exit
