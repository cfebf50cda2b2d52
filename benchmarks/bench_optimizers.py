"""Optimizer steps side by side: torchopt_lite vs torch.optim (foreach, fused) and TorchOpt 0.7.3.

Workloads (issue 10): Adam in place on 10M float32 parameters as 100 leaves of 100k and as 1000
leaves of 1k; SGD with momentum in place; the torch.optim-style classes; Adam out of place (the
differentiable path); extra memory of an in-place Adam step. One thread; every ratio is measured
in this one run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import torch

import torchopt_lite
from benchmarks import _timing
from benchmarks._timing import generator, has, report, timeit_interleaved

SHAPES = {"100x100k": (100, 100_000), "1000x1k": (1000, 1_000)}


def _tensors(n: int, size: int, seed: int) -> list[torch.Tensor]:
    gen = generator(seed)
    return [torch.randn(size, generator=gen) for _ in range(n)]


def _torch_optim_step(cls: type, params: list, grads: list, **kw: object) -> Callable[[], None]:
    ps = [p.clone().requires_grad_(True) for p in params]
    for p, g in zip(ps, grads, strict=True):
        p.grad = g.clone()
    opt = cls(ps, **kw)
    return opt.step


def _functional_step(
    opt: Any, params: list, grads: list, apply: Callable[..., Any] = torchopt_lite.apply_updates
) -> Callable[[], None]:
    """``update`` + ``apply_updates`` in place (TorchOpt's pair or ours)."""
    ps = [p.clone() for p in params]
    state = opt.init(ps)
    bufs = [g.clone() for g in grads]

    def step() -> None:
        nonlocal state
        # In place, the updates overwrite the gradient buffers (the documented contract). The
        # time of a step does not depend on the values, so every contender steps on its buffers
        # as they are, with no refresh in the timed region.
        updates, state = opt.update(bufs, state, inplace=True)
        apply(ps, updates, inplace=True)

    return step


def bench_inplace_adam() -> None:
    for label, (n, size) in SHAPES.items():
        params, grads = _tensors(n, size, 0), _tensors(n, size, 1)
        times = {
            "torch.optim.Adam(fused=True)": _torch_optim_step(
                torch.optim.Adam, params, grads, lr=1e-3, fused=True
            ),
            "torch.optim.Adam(foreach=True)": _torch_optim_step(
                torch.optim.Adam, params, grads, lr=1e-3, foreach=True
            ),
            "torchopt_lite.adam (update+apply, inplace)": _functional_step(
                torchopt_lite.adam(lr=1e-3), params, grads
            ),
            "torchopt_lite.Adam(...).step()": _torch_optim_step(
                torchopt_lite.Adam, params, grads, lr=1e-3
            ),
        }
        if has("torchopt"):
            import torchopt

            times["TorchOpt 0.7.3 adam (update+apply)"] = _functional_step(
                torchopt.adam(lr=1e-3), params, grads, torchopt.apply_updates
            )
            times["TorchOpt 0.7.3 Adam(...).step()"] = _torch_optim_step(
                torchopt.Adam, params, grads, lr=1e-3
            )
        measured = timeit_interleaved(times)
        report(
            f"Adam in place, {label} float32",
            measured,
            "torch.optim.Adam(fused=True)",
            "functional <= 1.5x fused (100x100k), <= 1.0x (1000x1k); Adam class <= 1.1x",
        )


def bench_inplace_sgd() -> None:
    for label, (n, size) in SHAPES.items():
        params, grads = _tensors(n, size, 0), _tensors(n, size, 1)
        kw = {"lr": 1e-3, "momentum": 0.9}
        times = {
            "torch.optim.SGD(fused=True)": _torch_optim_step(
                torch.optim.SGD, params, grads, fused=True, **kw
            ),
            "torch.optim.SGD(foreach=True)": _torch_optim_step(
                torch.optim.SGD, params, grads, foreach=True, **kw
            ),
            "torchopt_lite.sgd (update+apply, inplace)": _functional_step(
                torchopt_lite.sgd(**kw), params, grads
            ),
            "torchopt_lite.SGD(...).step()": _torch_optim_step(
                torchopt_lite.SGD, params, grads, **kw
            ),
        }
        if has("torchopt"):
            import torchopt

            times["TorchOpt 0.7.3 sgd (update+apply)"] = _functional_step(
                torchopt.sgd(**kw), params, grads, torchopt.apply_updates
            )
        measured = timeit_interleaved(times)
        report(
            f"SGD momentum=0.9 in place, {label} float32",
            measured,
            "torch.optim.SGD(fused=True)",
            "functional <= 1.8x fused; SGD class <= 1.1x",
        )


def _unrolled_adam(
    module: object, params: list, grads: list, ones: list, backward: bool
) -> Callable[[], None]:
    opt = module.adam(lr=1e-3)  # type: ignore[attr-defined]
    state0 = opt.init(params)
    apply = module.apply_updates  # type: ignore[attr-defined]

    def step() -> None:
        state, ps = state0, params
        for k in range(3 if backward else 1):
            updates, state = opt.update(grads[k], state, params=ps, inplace=False)
            if backward:
                ps = apply(ps, updates, inplace=False)
        if backward:
            torch.autograd.backward(ps, ones)

    return step


def bench_out_of_place_adam() -> None:
    """The differentiable update (``inplace=False``): the call alone, and 3 steps + backward.

    Gradients are leaf tensors that require grad, so the measured graph is the optimizer's own
    (no model): backward reaches the parameters and every step's gradients.
    """
    for label, (n, size) in {"1000x1k": (1000, 1_000), "100x10k": (100, 10_000)}.items():
        params = [p.requires_grad_(True) for p in _tensors(n, size, 0)]
        grads = [[g.requires_grad_(True) for g in _tensors(n, size, 1 + k)] for k in range(3)]
        ones = [torch.ones(size) for _ in range(n)]

        for backward in (False, True):
            what = "3 steps (update+apply) + backward" if backward else "update() alone"
            data = (params, grads, ones, backward)
            times = {f"torchopt_lite.adam, {what}": _unrolled_adam(torchopt_lite, *data)}
            base = f"torchopt_lite.adam, {what}"
            if has("torchopt"):
                import torchopt

                base = f"TorchOpt 0.7.3 adam, {what}"
                times[base] = _unrolled_adam(torchopt, *data)
            measured = timeit_interleaved(times, rounds=7, number=2)
            report(f"Adam out of place (differentiable), {label} float32", measured, base,
                   "update() alone <= 0.40x TorchOpt")  # fmt: skip


MEMORY_N, MEMORY_SIZE = 100, 100_000


def _memory_step(which: str) -> Callable[[], None]:
    """One in-place Adam step of ``which`` on 100x100k float32 leaves, state allocated."""
    params, grads = _tensors(MEMORY_N, MEMORY_SIZE, 0), _tensors(MEMORY_N, MEMORY_SIZE, 1)
    if which.startswith("torch.optim"):
        kind = {"fused": True} if which == "torch.optim fused" else {"foreach": True}
        return _torch_optim_step(torch.optim.Adam, params, grads, lr=1e-3, **kind)
    lib: Any = torchopt_lite
    if which == "torchopt":
        import torchopt as lib
    return _functional_step(lib.adam(lr=1e-3), params, grads, lib.apply_updates)


def _peak_kib() -> int:
    # VmHWM: this address space's peak RSS (getrusage's ru_maxrss would carry the parent's peak
    # across exec on Linux and hide everything below it).
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM"))


def _memory_child(which: str) -> None:
    """In a fresh process: print the peak RSS growth (KiB) over 3 steps after a warm-up."""
    torch.set_num_threads(1)
    step = _memory_step(which)
    step()  # warm up: code first touched (kernels, pools) is not a step's temporaries
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # the peak (VmHWM) restarts from the current RSS
    before = _peak_kib()
    for _ in range(3):
        step()
    print(json.dumps(_peak_kib() - before))


def _extra_kib(which: str) -> float:
    """Peak memory above the resting state during 3 steps (after a warm-up step).

    On CPU, in a fresh process with glibc's mmap threshold lowered to 64 KiB, so every temporary
    of a leaf's size is a fresh mapping that the peak RSS sees; on an accelerator, its
    allocator's peak in this process.
    """
    if _timing.DEVICE.type != "cpu":
        step = _memory_step(which)
        step()
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        for _ in range(3):
            step()
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - base) / 1024
    code = f"from benchmarks.bench_optimizers import _memory_child; _memory_child({which!r})"
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    return float(json.loads(out.stdout.strip().splitlines()[-1]))


def bench_memory() -> None:
    """Extra peak memory of an in-place Adam step; ``torch.optim`` foreach (temporaries for the
    whole list) is the positive control."""
    print("\n## Extra peak memory of an in-place Adam step, 100x100k float32 (40 MB of params)")
    contenders = ["torch.optim fused", "torch.optim foreach", "torchopt_lite"]
    contenders += ["torchopt"] if has("torchopt") else []
    params_kib = MEMORY_N * MEMORY_SIZE * 4 / 1024
    for which in contenders:
        extra = _extra_kib(which)
        print(
            f"  {which:<44s} {extra / 1024:8.1f} MiB   {100 * extra / params_kib:6.1f}% of params"
        )
    print("  target: torchopt_lite <= 10% of the parameters' size")


def main() -> None:
    bench_inplace_adam()
    bench_inplace_sgd()
    bench_out_of_place_adam()
    bench_memory()


if __name__ == "__main__":
    from benchmarks._timing import single_thread

    single_thread()
    main()
