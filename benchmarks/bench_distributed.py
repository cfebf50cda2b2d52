"""Data-parallel meta-learning on collectives: meta-steps per second with 1, 2 and 4 processes.

One meta-step = for each of this process's tasks, 5 differentiable ``MetaSGD`` steps on a
1-40-40-1 MLP (10 sinusoid points) and the query loss; one backward inside
``MetaGradientAllReduce.sync``; an Adam step. Each configuration runs in fresh local processes
(``torch.multiprocessing``, gloo over 127.0.0.1; NCCL with ``--device cuda``, one GPU per
process). Weak scaling keeps 4 tasks per process (meta-batch 4N); strong scaling keeps a
meta-batch of 8 tasks (8/N per process). Efficiency = throughput_N / (N * throughput_1), in tasks
per second for weak scaling and meta-steps per second for strong scaling. Communication = the
time spent leaving ``sync`` (the all-reduce not hidden behind the backward, plus waiting for the
slowest process), as a share of the meta-step, on rank 0. Medians over the timed meta-steps.
"""

from __future__ import annotations

import os
import socket
import statistics
import time
from typing import Any

import torch
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import nn

from benchmarks import _timing

INNER_STEPS, INNER_LR, SHOTS, PER_RANK, TOTAL = 5, 0.01, 10, 4, 8
WARMUP, STEPS = 5, 60
WORLD_SIZES = (1, 2, 4)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, device: str, total: int, results: Any) -> None:
    """One process of a configuration: time STEPS meta-steps, rank 0 reports."""
    import torchopt_lite
    import torchopt_lite.distributed as todist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world), LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world),
                      GLOO_SOCKET_IFNAME="lo")  # fmt: skip
    torch.set_num_threads(1)
    on_gpu = device.startswith("cuda")
    if on_gpu:
        torch.cuda.set_device(rank)
    dev = torch.device(f"cuda:{rank}" if on_gpu else "cpu")
    todist.init_process_group("nccl" if on_gpu else "gloo", timeout=120.0)

    def sync() -> None:
        if on_gpu:
            torch.cuda.synchronize(dev)

    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(1, 40), nn.ReLU(), nn.Linear(40, 40), nn.ReLU(),
                        nn.Linear(40, 1)).to(dev)  # fmt: skip
    theta = list(net.parameters())
    meta_opt = torch.optim.Adam(theta, lr=1e-3)
    inner = torchopt_lite.MetaSGD(net, lr=INNER_LR)
    net_state = torchopt_lite.extract_state_dict(net)
    reducer = todist.MetaGradientAllReduce(theta)
    my_tasks = todist.task_shard(total)
    weight = len(my_tasks) / total
    tasks = []
    for t in my_tasks:
        g = todist.task_generator(0, 0, t)
        amp, phase = torch.rand(2, generator=g).tolist()
        xs, xq = (torch.rand(SHOTS, 1, generator=g) * 10 - 5 for _ in range(2))
        tasks.append(tuple(v.to(dev) for v in (xs, amp * torch.sin(xs + phase),
                                               xq, amp * torch.sin(xq + phase))))  # fmt: skip

    def meta_step() -> float:
        meta_opt.zero_grad()
        losses = []
        for xs, ys, xq, yq in tasks:
            for _ in range(INNER_STEPS):
                inner.step(F.mse_loss(net(xs), ys))
            losses.append(F.mse_loss(net(xq), yq))
            torchopt_lite.recover_state_dict(net, net_state)
        loss = torch.stack(losses).mean()
        with reducer.sync(weight=weight):
            loss.backward()
            sync()
            entered_exit = time.perf_counter()
        sync()
        comm = time.perf_counter() - entered_exit
        meta_opt.step()
        return comm

    for _ in range(WARMUP):
        meta_step()
    torch.distributed.barrier()
    steps, comms = [], []
    for _ in range(STEPS):
        start = time.perf_counter()
        comms.append(meta_step())
        sync()
        steps.append(time.perf_counter() - start)
    if rank == 0:  # medians: the 2 shared cores see other load now and then
        results.put(
            (1.0 / statistics.median(steps), statistics.median(comms) / statistics.median(steps))
        )
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()


def _run(world: int, total: int, device: str) -> tuple[float, float]:
    """Meta-steps per second and communication share of one configuration, fresh processes."""
    ctx = mp.get_context("spawn")
    results = ctx.SimpleQueue()
    mp.start_processes(_worker, args=(world, _free_port(), device, total, results),
                       nprocs=world, join=True, start_method="spawn")  # fmt: skip
    return results.get()


def _table(title: str, rows: dict[int, tuple[float, float]], tasks: dict[int, int]) -> None:
    """Throughput, efficiency against 1 process and communication share, all from this run."""
    print(f"\n## {title}")
    print(f"  {'processes':>9s} {'tasks/proc':>10s} {'meta-steps/s':>13s} {'tasks/s':>9s} "
          f"{'efficiency':>10s} {'comm share':>10s}")  # fmt: skip
    base = rows[1][0] * tasks[1]  # tasks per second with one process
    for n, (steps_per_s, comm) in rows.items():
        tasks_per_s = steps_per_s * tasks[n] * n
        weak = tasks[n] == tasks[1]
        eff = tasks_per_s / (n * base) if weak else steps_per_s / (n * rows[1][0])
        print(f"  {n:9d} {tasks[n]:10d} {steps_per_s:13.1f} {tasks_per_s:9.1f} {eff:9.2f}x "
              f"{comm:9.1%}")  # fmt: skip


def main() -> None:
    device = _timing.DEVICE.type
    if device == "cuda":
        if not torch.cuda.is_available() or not torch.distributed.is_nccl_available():
            print("\nskipped: --device cuda needs CUDA and NCCL")
            return
        sizes = tuple(n for n in WORLD_SIZES if n <= torch.cuda.device_count())
        skipped = [n for n in WORLD_SIZES if n not in sizes]
        backend = f"nccl, {torch.cuda.device_count()} GPU(s), one per process"
        note = f"; {skipped} processes skipped (NCCL needs one GPU each)" if skipped else ""
    else:
        sizes, note = WORLD_SIZES, ""
        backend = "gloo over 127.0.0.1, 1 thread per process"
    cores = len(os.sched_getaffinity(0))
    print(f"backend: {backend}{note}")
    print(f"load average before the run: {os.getloadavg()[0]:.2f} (other work on these cores "
          "lowers every efficiency below)")  # fmt: skip
    if device != "cuda" and cores < max(sizes):
        print(f"note: this machine has {cores} cores, so {max(sizes)} processes oversubscribe "
              "them: efficiency past that point measures the CPU, not the collectives")  # fmt: skip
    header = f"MAML meta-step, MetaSGD {INNER_STEPS} inner steps, 1-40-40-1"
    runs: dict[tuple[int, int], tuple[float, float]] = {}  # (processes, meta-batch) -> result
    for n, total in [(n, PER_RANK * n) for n in sizes] + [(n, TOTAL) for n in sizes]:
        if (n, total) not in runs:  # 2 processes x 4 tasks is in both tables: run it once
            runs[n, total] = _run(n, total, device)
    weak = {n: runs[n, PER_RANK * n] for n in sizes}
    _table(f"weak scaling: {PER_RANK} tasks per process, {header}", weak,
           dict.fromkeys(sizes, PER_RANK))  # fmt: skip
    strong = {n: runs[n, TOTAL] for n in sizes}
    _table(f"strong scaling: meta-batch of {TOTAL} tasks, {header}", strong,
           {n: TOTAL // n for n in sizes})  # fmt: skip
    print("  target: efficiency near 1.00x while processes <= cores; comm share small")


if __name__ == "__main__":
    main()
