"""Train the parameters of a numpy simulation with Adam, a schedule and clipping.

The "other program" is a 1-D heat simulation written in numpy. It owns its parameters (the
initial temperature profile and a heat source, plain numpy arrays) and computes the gradient of
its loss itself, with the adjoint method. torchopt_lite only supplies the optimizer:
``interop.ExternalOptimizer`` runs ``chain(clip_grad_norm, adam(lr=exponential_decay))`` on
those arrays in place, without copying them (they share memory with torch tensors).

Halfway through, the optimizer state is saved with ``np.savez`` and the run is resumed in a new
optimizer, as after a restart; the resumed run ends bit for bit where an uninterrupted run
ends.

Run: ``python examples/external_simulation.py`` (CPU, a few seconds). Writes
``examples/out/external_simulation.png``.
"""

from __future__ import annotations

import pathlib
import tempfile

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

import torchopt_lite as to
from torchopt_lite.interop import ExternalOptimizer

CELLS, TIME_STEPS, ALPHA, DECAY, DT, REG = 60, 150, 0.2, 0.01, 0.1, 1e-3
STEPS, SAVE_AT = 400, 200


class HeatRod:
    """u_{t+1} = A u_t + dt * source, A = I + alpha * Laplacian - decay * I (zero ends)."""

    def __init__(self) -> None:
        self.initial = np.zeros(CELLS)  # parameters owned by the simulation
        self.source = np.zeros(CELLS)
        x = np.linspace(0, 1, CELLS)
        self.target = np.exp(-(((x - 0.3) / 0.08) ** 2)) + 0.6 * np.exp(-(((x - 0.7) / 0.1) ** 2))

    @staticmethod
    def apply_a(u: np.ndarray) -> np.ndarray:
        """One explicit diffusion step; A is symmetric, so it is also the adjoint step."""
        padded = np.pad(u, 1)
        return u + ALPHA * (padded[:-2] - 2 * u + padded[2:]) - DECAY * u

    def run(self) -> np.ndarray:
        u = self.initial.copy()
        for _ in range(TIME_STEPS):
            u = self.apply_a(u) + DT * self.source
        return u

    def loss_and_grad(self) -> tuple[float, dict[str, np.ndarray]]:
        """Loss and its gradient by the adjoint recursion lam_t = A^T lam_{t+1}."""
        r = (self.run() - self.target) / CELLS
        loss = 0.5 * r @ r * CELLS + 0.5 * REG * (self.source @ self.source) / CELLS
        lam, acc = r, np.zeros(CELLS)
        for _ in range(TIME_STEPS):
            acc += lam
            lam = self.apply_a(lam)
        grads = {"initial": lam, "source": DT * acc + REG * self.source / CELLS}
        return float(loss), grads


def make_optimizer() -> to.base.GradientTransformation:
    schedule = to.schedule.exponential_decay(0.05, 0.3, transition_steps=STEPS)
    return to.chain(to.clip_grad_norm(max_norm=1.0), to.adam(lr=schedule))


def check_gradient(sim: HeatRod) -> None:
    rng = np.random.default_rng(0)
    sim.initial[:], sim.source[:] = rng.normal(size=CELLS), rng.normal(size=CELLS)
    _, grads = sim.loss_and_grad()
    v = rng.normal(size=CELLS)
    h = 1e-6
    sim.source += h * v
    up = sim.loss_and_grad()[0]
    sim.source -= 2 * h * v
    down = sim.loss_and_grad()[0]
    print(f"adjoint gradient vs central difference: {grads['source'] @ v:.8f} vs "
          f"{(up - down) / (2 * h):.8f}")  # fmt: skip
    sim.initial[:], sim.source[:] = 0.0, 0.0


def train(
    sim: HeatRod, steps: range, opt: ExternalOptimizer, losses: list[float], verbose: bool = True
) -> None:
    for step in steps:
        loss, grads = sim.loss_and_grad()
        opt.step(grads)  # writes into sim.initial and sim.source
        losses.append(loss)
        if verbose and step % 50 == 0:
            print(f"step {step:3d}: loss {loss:.6f}")


def main() -> None:
    sim = HeatRod()
    check_gradient(sim)

    losses: list[float] = []
    opt = ExternalOptimizer({"initial": sim.initial, "source": sim.source}, make_optimizer())
    print(f"arrays shared with torch (zero copy): {opt.zero_copy}")
    train(sim, range(SAVE_AT), opt, losses)
    with tempfile.TemporaryDirectory() as tmp:
        path = pathlib.Path(tmp) / "optimizer.npz"
        np.savez(path, **opt.state_dict())
        print(f"saved the optimizer state at step {SAVE_AT} ({path.stat().st_size} bytes)")
        del opt  # a restart: a new optimizer on the simulation's arrays, state reloaded
        opt = ExternalOptimizer({"initial": sim.initial, "source": sim.source}, make_optimizer())
        with np.load(path) as saved:
            opt.load_state_dict(saved)
    train(sim, range(SAVE_AT, STEPS), opt, losses)
    final = sim.loss_and_grad()[0]
    print(f"final loss {final:.6f} (start {losses[0]:.6f})")

    reference = HeatRod()
    ref_opt = ExternalOptimizer(
        {"initial": reference.initial, "source": reference.source}, make_optimizer()
    )
    train(reference, range(STEPS), ref_opt, [], verbose=False)
    same = np.array_equal(reference.source, sim.source) and np.array_equal(
        reference.initial, sim.initial
    )
    print(f"resumed run equals the uninterrupted run bit for bit: {same}")

    out = pathlib.Path(__file__).parent / "out"
    out.mkdir(exist_ok=True)
    x = np.linspace(0, 1, CELLS)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    ax1.semilogy(losses)
    ax1.axvline(SAVE_AT, color="gray", ls=":", label="saved and resumed")
    ax1.set(xlabel="Adam step", ylabel="loss", title="training the simulation's parameters")
    ax1.legend()
    ax2.plot(x, sim.target, "k--", label="target at final time")
    ax2.plot(x, sim.run(), label="simulated at final time")
    ax2.plot(x, sim.initial, label="learned initial profile")
    ax2.plot(x, DT * TIME_STEPS * sim.source, label="learned source x duration")
    ax2.set(xlabel="position")
    ax2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "external_simulation.png", dpi=120)
    print(f"saved {out / 'external_simulation.png'}")


if __name__ == "__main__":
    main()
