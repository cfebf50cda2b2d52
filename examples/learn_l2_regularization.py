"""Learn an L2 regularisation strength by hypergradient descent on a validation loss.

Inner problem (ridge regression on 60 noisy samples of a 40-feature linear model):

    w*(lam) = argmin_w  1/2n |X w - y|^2 + lam/2 |w|^2,

solved by conjugate gradient on its own; the outer loss is the validation mse of w*(lam). The
hypergradient d val / d log(lam) comes from implicit differentiation (custom_root with
solve_cg, as the inner Hessian is symmetric positive definite), and Adam steps on log(lam).
The result is checked against a grid search over lam. Saves
examples/out/learn_l2_regularization.png.

Run: python examples/learn_l2_regularization.py
"""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch

import torchopt_lite as to
from torchopt_lite.diff.implicit import custom_root

torch.manual_seed(0)
torch.set_default_dtype(torch.float64)
N_TRAIN, N_VAL, FEATURES, NOISE, OUTER_STEPS = 60, 200, 40, 1.0, 150

w_true = torch.randn(FEATURES) * (torch.rand(FEATURES) < 0.3)  # a sparse true model
X, X_val = torch.randn(N_TRAIN, FEATURES), torch.randn(N_VAL, FEATURES)
y = X @ w_true + NOISE * torch.randn(N_TRAIN)
y_val = X_val @ w_true + NOISE * torch.randn(N_VAL)


def optimality(w, lam, X, y):
    """Gradient of the inner objective: zero at w*(lam)."""
    return X.T @ (X @ w - y) / X.shape[0] + lam * w


@custom_root(optimality, argnums=1, solve=to.linear_solve.solve_cg(rtol=1e-10))
def inner_solve(w, lam, X, y):
    hessian_vp = lambda v: X.T @ (X @ v) / X.shape[0] + lam * v  # noqa: E731
    return to.linalg.cg(hessian_vp, X.T @ y / X.shape[0], w, rtol=1e-12)


def validation_loss(log_lam):
    w = inner_solve(torch.zeros(FEATURES), log_lam.exp(), X, y)
    return ((X_val @ w - y_val) ** 2).mean()


log_lam = torch.tensor(2.0, requires_grad=True)  # start at lam = 7.4 (underfitting)
opt = torch.optim.Adam([log_lam], lr=0.1)
trace = []
for step in range(1, OUTER_STEPS + 1):
    loss = validation_loss(log_lam)
    opt.zero_grad()
    loss.backward()
    trace.append((float(log_lam.detach().exp()), float(loss.detach())))
    opt.step()
    if step % 25 == 0:
        print(
            f"step {step:3d}  lam {trace[-1][0]:.4f}  validation mse {trace[-1][1]:.4f}", flush=True
        )

# Check against a grid search (and check the hypergradient by finite differences once).
grid = torch.logspace(-3, 1, 80)
with torch.no_grad():
    curve = torch.stack([validation_loss(g.log()) for g in grid])
best = grid[curve.argmin()]
lam_star = float(log_lam.detach().exp())
print(f"hypergradient descent: lam = {lam_star:.4f}; grid search: lam = {float(best):.4f}")
x0 = torch.tensor(-1.0, requires_grad=True)
(g,) = torch.autograd.grad(validation_loss(x0), x0)
eps = 1e-5
fd = (validation_loss(x0.detach() + eps) - validation_loss(x0.detach() - eps)) / (2 * eps)
print(f"d val/d log(lam) at lam=e^-1: implicit {float(g):.8f}, central difference {float(fd):.8f}")

os.makedirs("examples/out", exist_ok=True)
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
ax1.semilogx(grid, curve, "k", label="validation mse (grid)")
ax1.semilogx(
    [t[0] for t in trace],
    [t[1] for t in trace],
    "o-",
    ms=3,
    alpha=0.6,
    label="hypergradient iterates",
)
ax1.axvline(lam_star, color="C1", ls="--", label=f"learned lam = {lam_star:.3f}")
ax1.set(xlabel="lam", ylabel="validation mse", title="validation loss vs L2 strength")
ax1.legend()
ax2.semilogy([t[0] for t in trace])
ax2.set(xlabel="outer step", ylabel="lam", title="lam during hypergradient descent")
fig.tight_layout()
fig.savefig("examples/out/learn_l2_regularization.png", dpi=100)
print("saved examples/out/learn_l2_regularization.png")
