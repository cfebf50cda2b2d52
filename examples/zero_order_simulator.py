"""Train a controller network through a non-differentiable projectile simulator with ES.

A small MLP maps a target distance to a launch angle and speed. The simulator integrates the
flight with air drag on a fixed time grid and reports the landing *cell* (a 0.25 m grid), so
autograd sees a piecewise-constant function whose gradient is zero almost everywhere. The
antithetic ES estimator of ``torchopt_lite.diff.zero_order`` differentiates its Gaussian
smoothing instead; the simulator is written for one parameter setting and ``evaluation='vmap'``
runs all perturbed settings in one batched call.

Run: ``python examples/zero_order_simulator.py`` (CPU, about ten seconds). Writes
``examples/out/zero_order_simulator.png``.
"""

from __future__ import annotations

import math
import pathlib
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch

import torchopt_lite as torchopt
from torchopt_lite.diff.zero_order import zero_order

GRAVITY, DRAG, DT, STEPS, CELL = 9.81, 0.05, 0.02, 160, 0.25
STEPS_TRAIN, NUM_SAMPLES, SIGMA, LR = 300, 24, 0.05, 0.03


def policy(
    params: dict[str, torch.Tensor], target: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(angle, speed) for each target distance, from a 1-16-2 tanh network."""
    h = torch.tanh((target.unsqueeze(-1) / 10.0) @ params["w1"] + params["b1"])
    out = h @ params["w2"] + params["b2"]
    angle = torch.sigmoid(out[..., 0]) * (math.pi / 2)
    speed = 2.0 + 18.0 * torch.sigmoid(out[..., 1])
    return angle, speed


def simulate(angle: torch.Tensor, speed: torch.Tensor) -> torch.Tensor:
    """Landing cell of a projectile with quadratic drag (explicit Euler, fixed time grid)."""
    x, y = torch.zeros_like(angle), torch.zeros_like(angle)
    vx, vy = speed * torch.cos(angle), speed * torch.sin(angle)
    landing = torch.full_like(angle, float("nan"))
    for _ in range(STEPS):
        v = torch.sqrt(vx * vx + vy * vy)
        vx, vy = vx - DT * DRAG * v * vx, vy - DT * (GRAVITY + DRAG * v * vy)
        x, y = x + DT * vx, y + DT * vy
        landing = torch.where(torch.isnan(landing) & (y < 0), x, landing)
    landing = torch.where(torch.isnan(landing), x, landing)  # still flying: where it is now
    return torch.round(landing / CELL) * CELL  # the simulator only reports a cell


def miss(params: dict[str, torch.Tensor], targets: torch.Tensor) -> torch.Tensor:
    """Mean squared miss distance plus a small penalty on launch speed (energy)."""
    angle, speed = policy(params, targets)
    return (simulate(angle, speed) - targets).square().mean() + 1e-4 * speed.square().mean()


def main() -> None:
    torch.set_num_threads(1)  # small tensors: one thread is fastest (and immune to contention)
    torch.manual_seed(0)
    targets = torch.linspace(2.0, 10.0, 48)
    params = {
        "w1": torch.randn(1, 16) * 0.5,
        "b1": torch.zeros(16),
        "w2": torch.randn(16, 2) * 0.1,
        "b2": torch.zeros(2),
    }
    for p in params.values():
        p.requires_grad_()

    landing = simulate(*policy(params, targets))
    grads = torch.autograd.grad((landing - targets).square().mean(), list(params.values()))
    norm = sum(g.norm() for g in grads)
    print(f"autograd's gradient of the miss distance: norm {norm:.1f} (piecewise constant)")

    es_miss = zero_order(
        None,  # standard normal perturbations
        method="antithetic",
        num_samples=NUM_SAMPLES,
        sigma=SIGMA,
        evaluation="vmap",
        generator=torch.Generator().manual_seed(0),
    )(miss)
    optimizer = torchopt.Adam(params.values(), lr=LR)
    history = []
    start = time.perf_counter()
    for step in range(STEPS_TRAIN):
        optimizer.zero_grad()
        loss = es_miss(params, targets)
        loss.backward()
        optimizer.step()
        history.append(loss.item())
        if step % 25 == 0 or step == STEPS_TRAIN - 1:
            print(
                f"step {step:4d}  loss {history[-1]:8.4f}  ({time.perf_counter() - start:5.1f} s)"
            )

    with torch.no_grad():
        test_targets = torch.linspace(2.0, 10.0, 200)
        landed = simulate(*policy(params, test_targets))
    rmse = (landed - test_targets).square().mean().sqrt().item()
    print(f"held-out targets: RMS miss {rmse:.3f} m (cell size {CELL} m)")

    out = pathlib.Path(__file__).parent / "out"
    out.mkdir(exist_ok=True)
    fig, (ax_loss, ax_fit) = plt.subplots(1, 2, figsize=(10, 4))
    ax_loss.semilogy(history)
    ax_loss.set(xlabel="step", ylabel="loss", title="training")
    ax_fit.plot(test_targets, test_targets, "k--", lw=1, label="perfect")
    ax_fit.plot(test_targets, landed, ".", ms=3, label="landing cell")
    ax_fit.set(xlabel="target distance (m)", ylabel="landing (m)", title=f"RMS miss {rmse:.2f} m")
    ax_fit.legend()
    fig.tight_layout()
    fig.savefig(out / "zero_order_simulator.png", dpi=120)
    print(f"saved {out / 'zero_order_simulator.png'}")


if __name__ == "__main__":
    main()
