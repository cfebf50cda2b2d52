"""MAML on sinusoid tasks, data-parallel: the meta-batch split over torch.distributed processes.

Every process holds the same meta-parameters theta (a 1-40-40-1 MLP, float64, seeded). At each
meta-step the meta-batch of 8 tasks is split into contiguous shares by ``task_shard`` (8 tasks
on 1 process, 4 + 4 on 2, 2 + 2 + 2 + 2 on 4); each task's data comes from
``task_generator(seed, step, task)``, so task t is the same task whichever process draws it. A
process adapts theta to each of its tasks with ``torchopt_lite.MetaSGD`` (3 differentiable SGD
steps) and back-propagates the mean query loss of its share to theta. On leaving
``reducer.sync(weight=share / 8)`` the bucketed all-reduce has summed the weighted meta-gradients
over the processes, so every process holds the meta-gradient of the whole meta-batch's mean loss,
second-order terms included, and takes the same Adam step. The run is therefore the same for any
number of processes: the last line, ``meta-params checksum``, agrees to rounding.

Run: python examples/distributed_data_parallel.py                  (1 process, no process group)
 or: torchrun --standalone --nproc-per-node 2 examples/distributed_data_parallel.py   (gloo)
Checkpoint and resume: add ``--checkpoint PATH`` (saved every 50 meta-steps and at the end), then
run again with ``--checkpoint PATH --resume``; the resumed run ends where an unbroken one does.
Writes examples/out/distributed_data_parallel.png (rank 0).
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

import torchopt_lite
import torchopt_lite.distributed as todist

OUT = Path(__file__).parent / "out"
SEED, META_BATCH, SHOTS, INNER_STEPS, INNER_LR, OUTER_LR = 0, 8, 10, 3, 0.01, 3e-3
META_STEPS, LOG_EVERY, SAVE_EVERY = 250, 50, 50
Task = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


def sample_task(seed: int, step: int, task: int) -> Task:
    """Sinusoid A sin(x + phi), A ~ U[0.1, 5], phi ~ U[0, pi]; support and query x ~ U[-5, 5]."""
    g = todist.task_generator(seed, step, task)
    amp = torch.rand((), generator=g, dtype=torch.float64) * 4.9 + 0.1
    phase = torch.rand((), generator=g, dtype=torch.float64) * math.pi
    xs, xq = (torch.rand(SHOTS, 1, generator=g, dtype=torch.float64) * 10 - 5 for _ in range(2))
    return xs, amp * torch.sin(xs + phase), xq, amp * torch.sin(xq + phase)


def make_net() -> nn.Module:
    """The same initial theta on every process (seeded CPU init; nothing to broadcast)."""
    torch.manual_seed(SEED)
    net = nn.Sequential(nn.Linear(1, 40), nn.ReLU(), nn.Linear(40, 40), nn.ReLU(), nn.Linear(40, 1))
    return net.double()


def adapted_query_loss(net: nn.Module, inner: torchopt_lite.MetaSGD, task: Task) -> torch.Tensor:
    """Query loss after INNER_STEPS of MetaSGD on the support set, differentiable in theta."""
    xs, ys, xq, yq = task
    for _ in range(INNER_STEPS):
        inner.step(F.mse_loss(net(xs), ys))
    return F.mse_loss(net(xq), yq)


def global_sum_(t: torch.Tensor) -> torch.Tensor:
    """Sum ``t`` over the processes in place (for the logged losses only)."""
    if dist.is_initialized():
        dist.all_reduce(t)
    return t


def train(args: argparse.Namespace) -> tuple[nn.Module, torch.Tensor, int]:
    net = make_net()
    theta = list(net.parameters())  # the leaves: the meta-parameters the reducer combines
    meta_opt = torch.optim.Adam(theta, lr=OUTER_LR)
    inner = torchopt_lite.MetaSGD(net, lr=INNER_LR)
    net_state = torchopt_lite.extract_state_dict(net)
    reducer = todist.MetaGradientAllReduce(theta)

    my_tasks = todist.task_shard(META_BATCH)
    weight = len(my_tasks) / META_BATCH  # uneven shares are weighted by their size
    todist.rank_zero_print(
        f"{todist.collective_world_size()} process(es); meta-batch of {META_BATCH} tasks, "
        f"rank 0 takes tasks {list(my_tasks)}"
    )

    start = 0
    if args.resume:
        if args.checkpoint is None or not Path(args.checkpoint).exists():
            raise SystemExit(f"--resume needs an existing --checkpoint; got {args.checkpoint}.")
        start = todist.load_checkpoint(args.checkpoint, meta_params=net, meta_optimizer=meta_opt)
        todist.rank_zero_print(f"resumed from {args.checkpoint} after meta-step {start}")

    curve = torch.zeros(args.meta_steps, dtype=torch.float64)  # weighted share of each step
    tic = time.perf_counter()
    for step in range(start, args.meta_steps):
        meta_opt.zero_grad()
        losses = []
        for t in my_tasks:
            losses.append(adapted_query_loss(net, inner, sample_task(SEED, step, t)))
            torchopt_lite.recover_state_dict(net, net_state)  # theta back in the module
        loss = torch.stack(losses).mean()
        with reducer.sync(weight=weight):
            loss.backward()  # theta.grad: this share's meta-gradient, then the global one
        meta_opt.step()
        curve[step] = loss.detach() * weight

        done = step + 1
        if done % LOG_EVERY == 0 or done == args.meta_steps:
            first = max(start, done - LOG_EVERY)
            recent = global_sum_(curve[first:done].clone())
            curve[first:done] = recent
            todist.rank_zero_print(
                f"meta-step {done:4d}  meta-batch query loss after adaptation "
                f"{recent.mean().item():.4f}  ({time.perf_counter() - tic:.1f} s)"
            )
        if args.checkpoint is not None and (done % SAVE_EVERY == 0 or done == args.meta_steps):
            todist.save_checkpoint(args.checkpoint, step=done, meta_params=net,
                                   meta_optimizer=meta_opt)  # fmt: skip
    return net, curve, start


def plot(net: nn.Module, curve: torch.Tensor, start: int, path: Path) -> None:
    """Training curve and one held-out task before and after adaptation."""
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    steps = range(start + 1, len(curve) + 1)
    ax1.plot(steps, curve[start:].numpy(), lw=1.5)
    title = f"{todist.collective_world_size()} process(es): any number gives this curve"
    ax1.set(xlabel="meta-step", ylabel="post-adaptation query MSE (whole meta-batch)",
            yscale="log", title=title)  # fmt: skip

    task = sample_task(SEED + 1, 0, 0)  # a task no training step draws
    xs, ys, _, _ = task
    grid = torch.linspace(-5, 5, 200, dtype=torch.float64).unsqueeze(1)
    inner = torchopt_lite.MetaSGD(net, lr=INNER_LR)
    state = torchopt_lite.extract_state_dict(net)
    with torch.no_grad():
        before = net(grid)
    adapted_query_loss(net, inner, task)
    with torch.no_grad():
        after = net(grid)
    torchopt_lite.recover_state_dict(net, state)
    ax2.plot(xs[:, 0], ys[:, 0], "k^", label=f"{SHOTS} support points")
    ax2.plot(grid[:, 0], before[:, 0], ":", label="before adaptation")
    ax2.plot(grid[:, 0], after[:, 0], label=f"after {INNER_STEPS} inner steps")
    ax2.set(xlabel="x", title="a held-out task")
    ax2.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--meta-steps", type=int, default=META_STEPS)
    parser.add_argument("--checkpoint", type=Path, default=None, help="save here (rank 0)")
    parser.add_argument("--resume", action="store_true", help="start from --checkpoint")
    args = parser.parse_args()

    torch.set_num_threads(1)
    todist.init_process_group(timeout=120.0)  # False under plain python: one process
    net, curve, start = train(args)

    checksum = torch.stack([p.detach().sum() for p in net.parameters()]).sum().item()
    is_rank_zero = todist.collective_rank() == 0
    if is_rank_zero:
        OUT.mkdir(exist_ok=True)
        plot(net, curve, start, OUT / "distributed_data_parallel.png")
        print(f"saved {OUT / 'distributed_data_parallel.png'}")
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
    if is_rank_zero:  # the group is gone: every process would count as rank 0 now
        print(f"meta-params checksum: {checksum!r}")


if __name__ == "__main__":
    main()
