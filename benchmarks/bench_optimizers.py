"""Optimizer steps side by side: torchopt_lite vs torch.optim (foreach, fused) and TorchOpt 0.7.3.

Workloads (issue 2): Adam in place on 10M float32 parameters as 100 leaves of 100k and as 1000
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

import torch

import torchopt_lite
from benchmarks._timing import has, report, timeit_interleaved

SHAPES = {"100x100k": (100, 100_000), "1000x1k": (1000, 1_000)}


def _tensors(n: int, size: int, seed: int) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(size, generator=gen) for _ in range(n)]


def _torch_optim_step(cls: type, params: list, grads: list, **kw: object) -> Callable[[], None]:
    ps = [p.clone().requires_grad_(True) for p in params]
    for p, g in zip(ps, grads, strict=True):
        p.grad = g.clone()
    opt = cls(ps, **kw)
    return opt.step


def _functional_step(opt: object, params: list, grads: list) -> Callable[[], None]:
    ps = [p.clone() for p in params]
    state = opt.init(ps)  # type: ignore[attr-defined]
    bufs = [g.clone() for g in grads]
    apply = torchopt_lite.apply_updates

    def step() -> None:
        nonlocal state
        # In place, the updates overwrite the gradient buffers (the documented contract). The
        # time of a step does not depend on the values, so every contender steps on its buffers
        # as they are, with no refresh in the timed region.
        updates, state = opt.update(bufs, state, inplace=True)  # type: ignore[attr-defined]
        apply(ps, updates, inplace=True)

    return step


def _torchopt_functional_step(opt: object, params: list, grads: list) -> Callable[[], None]:
    import torchopt

    ps = [p.clone() for p in params]
    state = opt.init(ps)  # type: ignore[attr-defined]
    bufs = [g.clone() for g in grads]

    def step() -> None:
        nonlocal state
        updates, state = opt.update(bufs, state, inplace=True)  # type: ignore[attr-defined]
        torchopt.apply_updates(ps, updates, inplace=True)

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

            times["TorchOpt 0.7.3 adam (update+apply)"] = _torchopt_functional_step(
                torchopt.adam(lr=1e-3), params, grads
            )
            times["TorchOpt 0.7.3 Adam(...).step()"] = _torch_optim_step(
                torchopt.Adam, params, grads, lr=1e-3
            )
        measured = timeit_interleaved(times)
        report(
            f"Adam in place, {label} float32",
            measured,
            "torch.optim.Adam(fused=True)",
            "functional <= 1.5x fused (100x100k), <= 2.5x (1000x1k); Adam class <= 1.1x",
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

            times["TorchOpt 0.7.3 sgd (update+apply)"] = _torchopt_functional_step(
                torchopt.sgd(**kw), params, grads
            )
        measured = timeit_interleaved(times)
        report(
            f"SGD momentum=0.9 in place, {label} float32",
            measured,
            "torch.optim.SGD(fused=True)",
            "functional <= 1.5x fused; SGD class <= 1.1x",
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
                   "<= 0.33x TorchOpt")  # fmt: skip


MEMORY_PROBE = r"""
import json, sys, torch

def peak_kib():
    # VmHWM: this address space's peak RSS. (getrusage's ru_maxrss would carry the parent's
    # peak across exec on Linux and hide everything below it.)
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM"))

torch.set_num_threads(1)
which = sys.argv[1]
n, size = 100, 100_000
params = [torch.randn(size) for _ in range(n)]
grads = [torch.randn(size) for _ in range(n)]
if which == "torchopt_lite":
    import torchopt_lite as lib
elif which == "torchopt":
    import torchopt as lib
if which.startswith("torch.optim"):
    ps = [p.requires_grad_(True) for p in params]
    for p, g in zip(ps, grads):
        p.grad = g
    kind = {"fused": True} if which == "torch.optim fused" else {"foreach": True}
    opt = torch.optim.Adam(ps, lr=1e-3, **kind)
    for p in ps:  # allocate the state before measuring, as init does for the others
        opt.state[p]["step"] = torch.tensor(0.0)
        opt.state[p]["exp_avg"] = torch.zeros_like(p)
        opt.state[p]["exp_avg_sq"] = torch.zeros_like(p)
    step = opt.step
else:
    opt = lib.adam(lr=1e-3)
    state = opt.init(params)
    def step():
        global state
        updates, state = opt.update(grads, state, inplace=True)
        lib.apply_updates(params, updates, inplace=True)
before = peak_kib()
for _ in range(3):
    step()
after = peak_kib()
print(json.dumps({"extra_kib": after - before, "params_kib": n * size * 4 / 1024}))
"""


def bench_memory() -> None:
    """Peak RSS growth over 3 steps, after state allocation, in a fresh process.

    glibc's mmap threshold is lowered to 64 KiB in the probe so that every temporary of a leaf's
    size is a fresh mapping: freed temporaries cannot hide in the heap, and the peak RSS sees
    them. ``torch.optim`` foreach (temporaries for the whole list) is the positive control.
    """
    print("\n## Extra peak memory of an in-place Adam step, 100x100k float32 (40 MB of params)")
    contenders = ["torch.optim fused", "torch.optim foreach", "torchopt_lite"]
    contenders += ["torchopt"] if has("torchopt") else []
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
    for which in contenders:
        out = subprocess.run(
            [sys.executable, "-c", MEMORY_PROBE, which],
            capture_output=True,
            text=True,
            check=True,
            env=env,
        )
        result = json.loads(out.stdout.strip().splitlines()[-1])
        share = 100.0 * result["extra_kib"] / result["params_kib"]
        print(f"  {which:<44s} {result['extra_kib'] / 1024:8.1f} MiB   {share:6.1f}% of params")
    print("  target: torchopt_lite <= 10% of the parameters' size (TorchOpt: ~190%)")


def main() -> None:
    bench_inplace_adam()
    bench_inplace_sgd()
    bench_out_of_place_adam()
    bench_memory()


if __name__ == "__main__":
    from benchmarks._timing import single_thread

    single_thread()
    main()
