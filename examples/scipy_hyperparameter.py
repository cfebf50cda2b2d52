"""Learn a regularisation strength through a scipy solution (implicit differentiation).

Inner problem, solved by scipy's trust-exact with autograd derivatives: a polynomial ridge
regression

    w*(lam) = argmin_w  0.5 ||Phi_train w - y_train||^2 + 0.5 exp(log_lam) ||w||^2.

Outer problem: minimize the validation error of w*(lam) over log_lam with Adam. The gradient
d val / d log_lam flows through the scipy solution by the implicit function theorem
(``interop.minimize`` uses ``custom_root`` on the stationarity condition). At the start it is
checked against the closed form, and the learned value is compared with a grid search.

Run: ``python examples/scipy_hyperparameter.py`` (CPU, a few seconds). Writes
``examples/out/scipy_hyperparameter.png``.
"""

from __future__ import annotations

import pathlib

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch

import torchopt_lite as to
from torchopt_lite import interop

DEGREE, STEPS = 9, 50


def make_data() -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(0)

    def sample(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.rand(n, generator=g, dtype=torch.float64) * 2 - 1
        y = torch.sin(3 * x) + 0.2 * torch.randn(n, generator=g, dtype=torch.float64)
        return torch.stack([x**k for k in range(DEGREE + 1)], 1), y

    return (*sample(25), *sample(500))


def ridge(w: torch.Tensor, log_lam: torch.Tensor, phi: torch.Tensor, y: torch.Tensor):
    return 0.5 * ((phi @ w - y) ** 2).sum() + 0.5 * log_lam.exp() * (w**2).sum()


def closed_form(log_lam: torch.Tensor, phi: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    eye = torch.eye(phi.shape[1], dtype=phi.dtype)
    return torch.linalg.solve(phi.T @ phi + log_lam.exp() * eye, phi.T @ y)


def main() -> None:
    phi_tr, y_tr, phi_val, y_val = make_data()

    def val_loss(w: torch.Tensor) -> torch.Tensor:
        return ((phi_val @ w - y_val) ** 2).mean()

    log_lam = torch.tensor(-9.0, dtype=torch.float64, requires_grad=True)
    outer = to.adam(lr=to.schedule.exponential_decay(0.5, 0.8, transition_steps=5))
    state = outer.init(log_lam)
    w = torch.zeros(DEGREE + 1, dtype=torch.float64)
    history = []
    for step in range(STEPS):
        w_star, res = interop.minimize(
            ridge, w, args=(log_lam, phi_tr, y_tr), method="trust-exact", tol=1e-10
        )
        loss = val_loss(w_star)
        (grad,) = torch.autograd.grad(loss, log_lam)
        if step == 0:
            lam_ref = log_lam.detach().requires_grad_(True)
            (ref,) = torch.autograd.grad(val_loss(closed_form(lam_ref, phi_tr, y_tr)), lam_ref)
            print(f"hypergradient at start: implicit {float(grad):.8e}, closed form "
                  f"{float(ref):.8e}")  # fmt: skip
        lam_now, loss_now = float(log_lam.detach()), float(loss.detach())
        history.append((lam_now, loss_now))
        if step % 5 == 0 or step == STEPS - 1:
            print(f"step {step:2d}: log_lam {lam_now:7.3f}  val mse {loss_now:.4f}  "
                  f"scipy nit {res.nit}")  # fmt: skip
        updates, state = outer.update(grad, state)
        with torch.no_grad():
            log_lam += updates
        w = w_star.detach()  # warm start the next scipy solve

    grid = torch.linspace(-10, 2, 241, dtype=torch.float64)
    curve = torch.stack([val_loss(closed_form(g, phi_tr, y_tr)) for g in grid])
    best = grid[curve.argmin()]
    print(f"learned log_lam {float(log_lam.detach()):.3f}; grid search optimum {float(best):.2f}")

    out = pathlib.Path(__file__).parent / "out"
    out.mkdir(exist_ok=True)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    ax1.plot(grid, curve, "k", label="validation MSE (closed form)")
    hist = torch.tensor(history)
    ax1.plot(hist[:, 0], hist[:, 1], "o-", ms=3, label="Adam on log_lam through scipy")
    ax1.set(xlabel="log lambda", ylabel="validation MSE", yscale="log")
    ax1.legend()
    xs = torch.linspace(-1, 1, 200, dtype=torch.float64)
    phi_xs = torch.stack([xs**k for k in range(DEGREE + 1)], 1)
    ax2.plot(phi_tr[:, 1], y_tr, "k.", label="training data")
    ax2.plot(xs, phi_xs @ closed_form(torch.tensor(-9.0), phi_tr, y_tr), label="log_lam = -9")
    ax2.plot(xs, phi_xs @ w, label=f"learned log_lam = {float(log_lam.detach()):.2f}")
    ax2.plot(xs, torch.sin(3 * xs), "k--", lw=1, label="sin(3x)")
    ax2.set(ylim=(-2, 2), xlabel="x")
    ax2.legend()
    fig.tight_layout()
    fig.savefig(out / "scipy_hyperparameter.png", dpi=120)
    print(f"saved {out / 'scipy_hyperparameter.png'}")


if __name__ == "__main__":
    main()
