"""Memory-bounded unrolls: peak memory and time of adjoint="unroll" vs "checkpoint".

One meta-gradient = ``inner_loop`` (T Adam steps on an MLP, synthetic regression) + a query loss
+ ``torch.autograd.grad`` to the initial parameters. T = 10, 100, 1000; modes: the full unroll,
checkpoint with ceil(sqrt(T)) segments (the default) and with k = 4 segments, and (T <= 100) the
same sqrt(T) segments written with ``torch.utils.checkpoint(use_reentrant=False)``, to show why
``adjoint="checkpoint"`` does not use it.

Memory, measured: on CPU, the profiler's allocator events (``torch.profiler`` with
``profile_memory=True``: every allocation and free of the CPU allocator, in order) summed from the
start of the forward pass; "held" is what is still allocated when the forward pass returns (the
graph and its saved tensors, the outputs), "peak" the maximum over the forward and backward
passes. On CUDA: ``torch.cuda.memory_allocated`` and ``max_memory_allocated`` relative to the
start. Time: forward + backward without the profiler, the modes timed in turns, median of 3
rounds (one round for T = 1000).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import optree
import torch
import torch.nn.functional as F
from torch import nn
from torch.profiler import ProfilerActivity, profile
from torch.utils.checkpoint import checkpoint

import torchopt_lite
from benchmarks import _timing
from benchmarks._timing import generator, timeit_interleaved
from torchopt_lite.diff.explicit import functional_loss, inner_loop

STEPS = (10, 100, 1000)
WIDTH, BATCH = 32, 32  # an 8-32-32-1 MLP on 32 points: small enough for T = 1000 on one thread


def _problem() -> tuple[nn.Module, dict[str, torch.Tensor], tuple[torch.Tensor, ...]]:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(8, WIDTH), nn.Tanh(), nn.Linear(WIDTH, WIDTH), nn.Tanh(),
                        nn.Linear(WIDTH, 1))  # fmt: skip
    gen = generator(1)
    w = torch.randn(8, 1, generator=gen)
    x, xq = (torch.randn(BATCH, 8, generator=gen) for _ in range(2))
    data = (x, torch.sin(x @ w), xq, torch.sin(xq @ w))
    return net, dict(net.named_parameters()), data


def _torch_checkpoint_loop(
    loss_fn: Callable[..., torch.Tensor], steps: int, params: Any, *args: torch.Tensor
) -> Any:
    """The same loop in ceil(sqrt(T)) segments of ``torch.utils.checkpoint`` (non-reentrant).

    For comparison only: each inner ``autograd.grad`` inside a segment makes the checkpoint
    rerun the segment up to that step during the forward pass and keep what the rerun saved.
    """
    opt = torchopt_lite.adam(1e-3)

    def segment(n: int, params: Any, state: Any) -> Any:
        for _ in range(n):
            leaves, spec = optree.tree_flatten(params)
            grads = torch.autograd.grad(loss_fn(params, *args), leaves, create_graph=True)
            updates, state = opt.update(
                optree.tree_unflatten(spec, list(grads)), state, params=params, inplace=False
            )
            params = optree.tree_map(torch.add, params, updates)
        return params, state

    k = math.isqrt(steps - 1) + 1
    state = opt.init(params)
    for i in range(k):
        n = steps // k + (i < steps % k)
        params, state = checkpoint(segment, n, params, state, use_reentrant=False)
    return params


def _meta_gradient(
    steps: int, adjoint: str, k: int | None
) -> tuple[Callable[[], torch.Tensor], Any, Callable[[], object]]:
    """``(forward, backward, both)``: the inner loop + query loss, its meta-gradient, both."""
    net, params0, (x, y, xq, yq) = _problem()
    loss_fn = functional_loss(net, F.mse_loss)
    mode = "unroll" if adjoint == "torch.utils.checkpoint" else adjoint
    adapt = inner_loop(loss_fn, torchopt_lite.adam(1e-3), steps, adjoint=mode,  # type: ignore[arg-type]
                       checkpoints=k)  # fmt: skip

    def forward() -> torch.Tensor:
        if adjoint == "torch.utils.checkpoint":
            return loss_fn(_torch_checkpoint_loop(loss_fn, steps, params0, x, y), xq, yq)
        return loss_fn(adapt(params0, x, y).params, xq, yq)

    def backward(outer: torch.Tensor) -> Any:
        return torch.autograd.grad(outer, list(params0.values()))

    def both() -> object:
        return backward(forward())

    return forward, backward, both


def _memory(forward: Callable[[], torch.Tensor], backward: Any) -> tuple[int, int]:
    """(bytes held after the forward pass, peak bytes over forward + backward)."""
    if _timing.DEVICE.type == "cuda":
        torch.cuda.synchronize()
        start = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        outer = forward()
        torch.cuda.synchronize()
        held = torch.cuda.memory_allocated() - start
        backward(outer)
        del outer
        torch.cuda.synchronize()
        return held, torch.cuda.max_memory_allocated() - start
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        outer = forward()
        marker = torch.empty(0)  # noqa: F841  # its (empty) allocation marks the end of forward
        with torch.profiler.record_function("backward"):
            backward(outer)
        del outer
    events = sorted(
        (e.start_ns(), e.name(), e.nbytes())
        for e in prof.profiler.kineto_results.events()
        if e.name() in ("[memory]", "backward")
    )
    current = peak = held = 0
    for _, name, nbytes in events:
        if name == "backward":
            held = current
            continue
        current += nbytes
        peak = max(peak, current)
    return held, peak


def main() -> None:
    print(__doc__.split("\n\n")[2].replace("\n", " "))
    print(f"\nMLP 8-{WIDTH}-{WIDTH}-1, batch {BATCH}, Adam inner steps, float32.")
    header = (
        f"{'T':>5} {'mode':<22} {'held KiB':>10} {'peak KiB':>10} {'time ms':>10}"
        f" {'peak/unroll':>12} {'time/unroll':>12}"
    )
    print(header)
    for steps in STEPS:
        sqrt_k = math.isqrt(steps - 1) + 1
        modes = [("unroll", "unroll", None), (f"checkpoint k={sqrt_k} (sqrt)", "checkpoint", None),
                 ("checkpoint k=4", "checkpoint", 4)]  # fmt: skip
        if steps <= 100:  # its forward pass reruns each segment once per step: too slow beyond
            modes.append((f"torch.utils k={sqrt_k}", "torch.utils.checkpoint", None))
        memory: dict[str, tuple[int, int]] = {}
        fns: dict[str, Callable[[], object]] = {}
        for label, adjoint, k in modes:
            forward, backward, fns[label] = _meta_gradient(steps, adjoint, k)
            memory[label] = _memory(forward, backward)
        rounds, warmup = (3, 1) if steps < 1000 else (1, 0)  # T = 1000: seconds per run
        times = timeit_interleaved(fns, rounds=rounds, number=1, warmup=warmup)
        base_peak, base_time = memory["unroll"][1], times["unroll"]
        for label, (held, peak) in memory.items():
            print(
                f"{steps:>5} {label:<22} {held / 1024:>10.0f} {peak / 1024:>10.0f}"
                f" {times[label] * 1e3:>10.1f} {peak / base_peak:>11.3f}x"
                f" {times[label] / base_time:>11.2f}x"
            )
