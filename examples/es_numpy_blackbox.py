"""Optimize a NumPy black box with evolution strategies, SPSA and finite differences.

The black box is a 10-dimensional Rosenbrock function written in NumPy (it could be another
program): ``numpy_function`` turns it into a differentiable torch function whose backward pass
is estimated from function values. Each estimator gets the same budget of 20 calls per step:

* ES, antithetic sampling (10 pairs of Gaussian perturbations);
* SPSA (10 pairs of random-sign perturbations);
* central differences (2 calls per coordinate).

On the clean function the near-exact central differences win. When every call returns the
value plus measurement noise, a difference quotient with a small step amplifies that noise
and the smoothed ES and SPSA estimates are the better choice.

Run: ``python examples/es_numpy_blackbox.py`` (CPU, a few seconds). Writes
``examples/out/es_numpy_blackbox.png``.
"""

from __future__ import annotations

import pathlib

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch

from torchopt_lite.diff.zero_order import numpy_function

DIM, STEPS, LR, NOISE = 10, 600, 0.02, 1e-3
ESTIMATORS = {
    "ES antithetic": {"method": "antithetic", "num_samples": 10, "sigma": 0.02},
    "SPSA": {"method": "spsa", "num_samples": 10, "sigma": 0.02},
    "central differences": {"method": "central_difference", "sigma": 1e-4},
}


def rosenbrock(x: np.ndarray) -> np.ndarray:
    """The black box: Rosenbrock over the last axis (so it also accepts a batch of points)."""
    return np.sum(100.0 * (x[..., 1:] - x[..., :-1] ** 2) ** 2 + (1.0 - x[..., :-1]) ** 2, axis=-1)


def optimize(label: str, noise: float, seed: int) -> list[float]:
    rng = np.random.default_rng(seed)

    def measured(x: np.ndarray) -> np.ndarray:
        value = rosenbrock(x)
        return value + noise * rng.standard_normal(np.shape(value))

    f = numpy_function(
        measured, batched=True, generator=torch.Generator().manual_seed(seed), **ESTIMATORS[label]
    )
    x = torch.zeros(DIM, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.Adam([x], lr=LR)
    history = []
    for _ in range(STEPS):
        optimizer.zero_grad()
        f(x).backward()
        optimizer.step()
        history.append(float(rosenbrock(x.detach().numpy())))  # the clean value, for the plot
    return history


def main() -> None:
    torch.set_num_threads(1)
    out = pathlib.Path(__file__).parent / "out"
    out.mkdir(exist_ok=True)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, noise in zip(axes, (0.0, NOISE), strict=True):
        for label in ESTIMATORS:
            history = optimize(label, noise, seed=0)
            print(f"noise {noise:g}  {label:<20s} f after {STEPS} steps: {history[-1]:.3e}")
            calls = 20 * np.arange(1, STEPS + 1)
            ax.semilogy(calls, history, label=label)
        ax.set(xlabel="calls of the black box", title=f"measurement noise std {noise:g}")
        ax.legend()
    axes[0].set_ylabel("Rosenbrock value (noise-free)")
    fig.tight_layout()
    fig.savefig(out / "es_numpy_blackbox.png", dpi=120)
    print(f"saved {out / 'es_numpy_blackbox.png'}")


if __name__ == "__main__":
    main()
