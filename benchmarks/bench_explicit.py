"""Explicit (unrolled) differentiation: MAML meta-steps vs TorchOpt 0.7.3 and higher.

One meta-step = 5 differentiable inner steps on the support set + the query loss + backward to
the initial parameters. Sizes: a 1-40-40-1 MLP on 10 sinusoid points, and a 784-256-256-10 MLP
on a batch of 64 (cross-entropy). Then a meta-batch of 16 sinusoid tasks: ours adapts them all
at once under ``torch.func.vmap``; TorchOpt loops over them with ``MetaSGD``. Memory: the bytes
of tensors the unrolled graph saves for the outer backward (exact, via saved-tensor hooks), and
the peak RSS of one meta-step in a fresh process (Linux /proc).
"""

from __future__ import annotations

import gc
import itertools
import json
import os
import statistics
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from benchmarks import _timing
from benchmarks._timing import generator, has, report, single_thread, timeit

INNER_STEPS, INNER_LR, TASKS = 5, 0.01, 16


def _mlp(sizes: tuple[int, ...]) -> nn.Module:
    torch.manual_seed(0)
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def _data(kind: str) -> tuple[tuple[int, ...], Callable, tuple[torch.Tensor, ...]]:
    gen = generator(1)
    if kind == "small":
        x, xq = (torch.rand(10, 1, generator=gen) * 10 - 5 for _ in range(2))
        return (1, 40, 40, 1), F.mse_loss, (x, torch.sin(x), xq, torch.sin(xq))
    x, xq = (torch.randn(64, 784, generator=gen) for _ in range(2))
    y, yq = (torch.randint(0, 10, (64,), generator=gen) for _ in range(2))
    return (784, 256, 256, 10), F.cross_entropy, (x, y, xq, yq)


def _oop_meta_step(lib: Any, cls_name: str, kind: str) -> Callable[[], None]:
    """MAML meta-step with a library's MetaSGD/MetaAdam and extract/recover_state_dict."""
    sizes, criterion, (x, y, xq, yq) = _data(kind)
    net = _mlp(sizes)
    inner = getattr(lib, cls_name)(net, lr=INNER_LR)
    net_state = lib.extract_state_dict(net)
    inner_state = lib.extract_state_dict(inner)

    def step() -> None:
        for _ in range(INNER_STEPS):
            inner.step(criterion(net(x), y))
        criterion(net(xq), yq).backward()
        lib.recover_state_dict(net, net_state)
        lib.recover_state_dict(inner, inner_state)

    return step


def _higher_meta_step(cls_name: str, kind: str) -> Callable[[], None]:
    import higher

    sizes, criterion, (x, y, xq, yq) = _data(kind)
    net = _mlp(sizes)
    optim = {"MetaSGD": torch.optim.SGD, "MetaAdam": torch.optim.Adam}[cls_name]
    opt = optim(net.parameters(), lr=INNER_LR)

    def step() -> None:
        with higher.innerloop_ctx(net, opt, copy_initial_weights=False) as (fnet, diffopt):
            for _ in range(INNER_STEPS):
                diffopt.step(criterion(fnet(x), y))
            criterion(fnet(xq), yq).backward()

    return step


def _tasks(dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, ...]:
    gen = generator(2)
    amp = torch.rand(TASKS, 1, 1, generator=gen, dtype=dtype) * 4.9 + 0.1
    phase = torch.rand(TASKS, 1, 1, generator=gen, dtype=dtype) * 3.14
    xs, xq = (torch.rand(TASKS, 10, 1, generator=gen, dtype=dtype) * 10 - 5 for _ in range(2))
    return xs, amp * torch.sin(xs + phase), xq, amp * torch.sin(xq + phase)


def _batched_meta_step() -> Callable[[], None]:
    from torchopt_lite.diff.explicit import batched_inner_loop, functional_loss, per_parameter_sgd

    net = _mlp((1, 40, 40, 1))
    params = dict(net.named_parameters())
    loss_fn = functional_loss(net, F.mse_loss)
    adapt = batched_inner_loop(loss_fn, per_parameter_sgd(INNER_LR), INNER_STEPS)
    query = torch.func.vmap(loss_fn)
    xs, ys, xq, yq = _tasks()

    def step() -> None:
        query(adapt(params, xs, ys).params, xq, yq).sum().backward()

    return step


def _loop_meta_step(lib: Any) -> Callable[[], None]:
    net = _mlp((1, 40, 40, 1))
    inner = lib.MetaSGD(net, lr=INNER_LR)
    net_state = lib.extract_state_dict(net)
    xs, ys, xq, yq = _tasks()

    def step() -> None:
        for t in range(TASKS):
            for _ in range(INNER_STEPS):
                inner.step(F.mse_loss(net(xs[t]), ys[t]))
            F.mse_loss(net(xq[t]), yq[t]).backward()
            lib.recover_state_dict(net, net_state)

    return step


def _saved_mib(step: Callable[[], None]) -> float:
    """MiB of tensors saved for backward while one meta-step runs (storage counted once)."""
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        seen[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        step()
    return sum(seen.values()) / 2**20


def _libs() -> dict[str, Any]:
    import torchopt_lite

    libs: dict[str, Any] = {"torchopt_lite": torchopt_lite}
    if has("torchopt"):
        import torchopt

        libs["torchopt 0.7.3"] = torchopt
    return libs


def _rss_mib(field: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0
    raise RuntimeError(f"no {field} in /proc/self/status")


def _peak_child(lib_name: str, cls_name: str, kind: str) -> None:
    """Run in a fresh process: print the peak RSS above the resting RSS during one meta-step."""
    single_thread()
    step = _oop_meta_step(_libs()[lib_name], cls_name, kind)
    step()  # warm up: first-call allocations are not the meta-step's
    gc.collect()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the peak (VmHWM) to the current RSS
    rest = _rss_mib("VmRSS")
    step()
    print(json.dumps(_rss_mib("VmHWM") - rest))


def _peak_rss(lib_name: str, cls_name: str, kind: str, runs: int = 3) -> float:
    """Median over ``runs`` fresh processes. Tensors of 64 KiB and more are mmapped, so freed
    temporaries leave the RSS at once and the peak counts what was live together, not what the
    heap happened to keep from the warm-up."""
    if _timing.DEVICE.type != "cpu":  # the allocator's peak, in this process
        step = _oop_meta_step(_libs()[lib_name], cls_name, kind)
        step()
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        rest = torch.cuda.memory_allocated()
        step()
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - rest) / 2**20
    code = (
        "from benchmarks.bench_explicit import _peak_child; "
        f"_peak_child({lib_name!r}, {cls_name!r}, {kind!r})"
    )
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
    peaks = []
    for _ in range(runs):
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
        ).stdout
        peaks.append(float(json.loads(out.strip().splitlines()[-1])))
    return statistics.median(peaks)


def _interleaved(
    steps: dict[str, Callable[[], None]], repeat: int, number: int
) -> dict[str, float]:
    """Median seconds per call, the candidates taking turns so a changing load hits all alike."""
    samples: dict[str, list[float]] = {name: [] for name in steps}
    for fn in steps.values():
        fn()
    for _ in range(repeat):
        for name, fn in steps.items():
            samples[name].append(timeit(fn, repeat=1, number=number, warmup=0))
    return {name: statistics.median(v) for name, v in samples.items()}


def main() -> None:
    single_thread()
    libs = _libs()
    baseline = "torchopt 0.7.3" if "torchopt 0.7.3" in libs else "torchopt_lite"
    targets = {
        ("MetaSGD", "small"): "<= 0.80x TorchOpt",
        ("MetaSGD", "large"): "<= 0.95x TorchOpt",
        ("MetaAdam", "small"): "<= 0.80x TorchOpt",
        ("MetaAdam", "large"): "<= 0.95x TorchOpt",
    }
    for (cls_name, kind), target in targets.items():
        steps = {name: _oop_meta_step(lib, cls_name, kind) for name, lib in libs.items()}
        if has("higher"):
            steps["higher 0.2.1"] = _higher_meta_step(cls_name, kind)
        number = 10 if kind == "small" else 2
        times = _interleaved(steps, repeat=9, number=number)
        shape = "1-40-40-1, 10 points" if kind == "small" else "784-256-256-10, batch 64"
        report(f"MAML meta-step, {cls_name}, {INNER_STEPS} inner steps, MLP {shape}", times,
               baseline, target)  # fmt: skip
        saved = {name: _saved_mib(fn) for name, fn in steps.items() if "higher" not in name}
        print("  graph memory saved for backward: "
              + ", ".join(f"{n} {m:.2f} MiB" for n, m in saved.items()))  # fmt: skip

    steps = {"torchopt_lite batched (vmap)": _batched_meta_step()}
    steps.update({f"{name} loop": _loop_meta_step(lib) for name, lib in libs.items()})
    times = _interleaved(steps, repeat=5, number=3)
    loop_base = f"{baseline} loop"
    report(f"MAML meta-batch of {TASKS} sinusoid tasks, {INNER_STEPS} inner SGD steps, 1-40-40-1",
           times, loop_base, "batched <= 0.35x TorchOpt's loop")  # fmt: skip

    print("\n## peak memory of one meta-step above the resting state (MiB), 784-256-256-10")
    for cls_name in ("MetaSGD", "MetaAdam"):
        peaks = {name: _peak_rss(name, cls_name, "large") for name in libs}
        print(f"  {cls_name}: " + ", ".join(f"{n} {m:.1f}" for n, m in peaks.items())
              + "   target: torchopt_lite <= TorchOpt")  # fmt: skip


if __name__ == "__main__":
    main()
