"""Zero-order gradients: torchopt_lite (sequential, batched, vmap) vs TorchOpt 0.7.3.

Target (issue 5): 32 samples, a batchable function of a 1k-dimensional parameter, 1 thread:
forward + backward <= 0.35x TorchOpt's time with the same settings.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable

import torch

import torchopt_lite.diff.zero_order as zo
from benchmarks._timing import generator, has, report, single_thread, timeit

ROUNDS = 9


def _interleaved(candidates: dict[str, Callable[[], object]]) -> dict[str, float]:
    """Median of ``ROUNDS`` rounds, each timing every candidate once (fair under shared load)."""
    samples: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(ROUNDS):
        for name, fn in candidates.items():
            samples[name].append(timeit(fn, repeat=1, number=10, warmup=1))
    return {name: statistics.median(ts) for name, ts in samples.items()}


DIM, HIDDEN, NUM_SAMPLES, SIGMA = 1000, 64, 32, 0.1


def _problem() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = generator(0)
    w = torch.randn(HIDDEN, DIM, generator=g) / DIM**0.5
    y = torch.randn(HIDDEN, generator=g)
    theta = torch.randn(DIM, generator=g)
    return w, y, theta


def main() -> None:
    single_thread()
    w, y, theta0 = _problem()

    def loss(theta: torch.Tensor) -> torch.Tensor:  # (..., DIM) -> (...): batchable
        return (torch.tanh(theta @ w.T) - y).square().mean(-1) + 1e-3 * theta.square().sum(-1)

    dist = torch.distributions.Normal(0.0, 1.0)
    for method in ("naive", "forward", "antithetic"):
        candidates: dict[str, Callable[[], object]] = {}

        def step(f: Callable[[torch.Tensor], torch.Tensor]) -> None:
            theta = theta0.clone().requires_grad_(True)
            f(theta).backward()

        if has("torchopt"):
            import torchopt

            f_to = torchopt.diff.zero_order(dist, method, num_samples=NUM_SAMPLES, sigma=SIGMA)(
                loss
            )
            candidates["TorchOpt 0.7.3 (sequential)"] = lambda f=f_to: step(f)
        for evaluation in ("batched", "vmap", "sequential"):
            f_ours = zo(dist, method, num_samples=NUM_SAMPLES, sigma=SIGMA, evaluation=evaluation)(
                loss
            )
            candidates[f"torchopt_lite evaluation={evaluation!r}"] = lambda f=f_ours: step(f)
        f_fast = zo(None, method, num_samples=NUM_SAMPLES, sigma=SIGMA, evaluation="batched")(loss)
        candidates["torchopt_lite batched, distribution=None"] = lambda f=f_fast: step(f)
        times = _interleaved(candidates)
        baseline = "TorchOpt 0.7.3 (sequential)" if has("torchopt") else next(iter(times))
        report(
            f"zero_order method={method!r}: forward+backward, d={DIM}, K={NUM_SAMPLES}",
            times,
            baseline,
            target="torchopt_lite evaluation='batched' <= 0.35x TorchOpt",
        )


if __name__ == "__main__":
    main()
