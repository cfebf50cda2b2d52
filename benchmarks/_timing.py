"""Timing and reporting helpers shared by every benchmark (1 thread, median of repeats).

``python -m benchmarks --device cuda`` runs every workload on that device: tensors and modules
are created there (the default device and the seeded generators), and timings synchronize.
"""

from __future__ import annotations

import gc
import importlib.util
import resource
import statistics
import time
from collections.abc import Callable

import torch

DEVICE = torch.device("cpu")


def use_device(name: str) -> None:
    """Run the workloads on ``name`` (``cpu``, ``cuda``, ...): the default device of factories."""
    global DEVICE
    DEVICE = torch.device(name)
    if DEVICE.type != "cpu":  # a default device is a TorchFunctionMode: it slows every call
        torch.set_default_device(DEVICE)


def generator(seed: int) -> torch.Generator:
    """A seeded generator on the benchmark device."""
    return torch.Generator(device=DEVICE).manual_seed(seed)


def sync() -> None:
    """Wait for queued kernels (accelerators run asynchronously)."""
    if DEVICE.type == "cuda":
        torch.cuda.synchronize()


def single_thread() -> None:
    """Pin torch to one intra-op thread (the setting every target in the issues uses)."""
    torch.set_num_threads(1)


def has(module: str) -> bool:
    """Whether an optional anchor (``torchopt``, ``higher``) is installed."""
    return importlib.util.find_spec(module) is not None


def timeit(fn: Callable[[], object], *, repeat: int = 7, number: int = 5, warmup: int = 2) -> float:
    """Median seconds per call of ``fn`` over ``repeat`` batches of ``number`` calls."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeat):
        gc.collect()
        sync()
        start = time.perf_counter()
        for _ in range(number):
            fn()
        sync()
        samples.append((time.perf_counter() - start) / number)
    return statistics.median(samples)


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far, in MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def report(title: str, times: dict[str, float], baseline: str, target: str | None = None) -> None:
    """Print times and ratios to ``baseline``, measured in this one run."""
    base = times[baseline]
    print(f"\n## {title}")
    for name, t in times.items():
        print(f"  {name:<44s} {t * 1e3:10.3f} ms   {t / base:6.2f}x {baseline}")
    if target:
        print(f"  target: {target}")


def timeit_interleaved(
    fns: dict[str, Callable[[], object]], *, rounds: int = 9, number: int = 3, warmup: int = 2
) -> dict[str, float]:
    """Median seconds per call of each function, timed in turns (robust to machine drift)."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            gc.collect()
            sync()
            start = time.perf_counter()
            for _ in range(number):
                fn()
            sync()
            samples[name].append((time.perf_counter() - start) / number)
    return {name: statistics.median(s) for name, s in samples.items()}
