"""A tour of torchopt_lite in one minute: the main demo (`make demo`).

1. Functional and torch.optim-style Adam give the same trajectory as torch.optim.Adam.
2. Explicit differentiation: learn an inner learning rate through 5 unrolled SGD steps.
3. Implicit differentiation: learn a ridge penalty through `custom_root` (no unrolling), checked
   against the closed-form hypergradient.
4. Zero-order: train through a non-differentiable loss with an antithetic ES estimator.

Writes examples/out/quickstart.png.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch

import torchopt_lite as to
from torchopt_lite.diff.implicit import custom_root
from torchopt_lite.diff.zero_order import zero_order

torch.manual_seed(0)
OUT = Path(__file__).parent / "out"
DTYPE = torch.float64

# Synthetic regression data: y = X w* + noise.
X = torch.randn(64, 8, dtype=DTYPE)
w_star = torch.randn(8, dtype=DTYPE)
y = X @ w_star + 0.1 * torch.randn(64, dtype=DTYPE)
X_val = torch.randn(64, 8, dtype=DTYPE)
y_val = X_val @ w_star + 0.1 * torch.randn(64, dtype=DTYPE)


def mse(w: torch.Tensor, a: torch.Tensor = X, b: torch.Tensor = y) -> torch.Tensor:
    return ((a @ w - b) ** 2).mean()


# 1. Functional, OOP and torch.optim Adam -------------------------------------------------------
print("1. Adam three ways")
w_f = torch.zeros(8, dtype=DTYPE)
opt = to.adam(lr=0.05)
state = opt.init(w_f)
w_o = torch.zeros(8, dtype=DTYPE, requires_grad=True)
oop = to.Adam([w_o], lr=0.05)
w_t = torch.zeros(8, dtype=DTYPE, requires_grad=True)
ref = torch.optim.Adam([w_t], lr=0.05)
losses_adam = []
for _ in range(200):
    g = torch.func.grad(mse)(w_f)
    updates, state = opt.update(g, state)
    w_f = to.apply_updates(w_f, updates)
    for w, o in ((w_o, oop), (w_t, ref)):
        o.zero_grad()
        mse(w).backward()
        o.step()
    losses_adam.append(float(mse(w_f)))
with torch.no_grad():
    gap = max(float((w_f - w_t).abs().max()), float((w_o - w_t).abs().max()))
print(f"   loss {losses_adam[0]:.3f} -> {losses_adam[-1]:.4f}; max gap to torch.optim {gap:.1e}")

# 2. Explicit: meta-learn the inner learning rate of 5 unrolled SGD steps -----------------------
print("2. Explicit differentiation: learning an inner learning rate")
log_lr = torch.tensor(math.log(0.01), dtype=DTYPE, requires_grad=True)
meta = to.adam(lr=0.1)
meta_state = meta.init(log_lr)
meta_losses, lrs = [], []
for _ in range(60):
    inner = to.sgd(lr=log_lr.exp())
    w = torch.zeros(8, dtype=DTYPE, requires_grad=True)
    inner_state = inner.init(w)
    for _ in range(5):
        (g,) = torch.autograd.grad(mse(w), w, create_graph=True)
        u, inner_state = inner.update(g, inner_state, inplace=False)
        w = to.apply_updates(w, u, inplace=False)
    outer = mse(w, X_val, y_val)
    (hyper,) = torch.autograd.grad(outer, log_lr)
    u, meta_state = meta.update(hyper, meta_state)
    with torch.no_grad():
        log_lr.add_(u)
    meta_losses.append(float(outer.detach()))
    lrs.append(float(log_lr.detach().exp()))
print(f"   validation loss after 5 steps {meta_losses[0]:.3f} -> {meta_losses[-1]:.3f}")
print(f"   learned inner lr {lrs[0]:.3f} -> {lrs[-1]:.3f}")


# 3. Implicit: hypergradient of a ridge solution, no unrolling ----------------------------------
print("3. Implicit differentiation: ridge penalty by custom_root")


def stationarity(w: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
    return torch.func.grad(lambda v: mse(v) + lam * (v**2).sum())(w)


@custom_root(stationarity, argnums=1, solve=to.linear_solve.solve_cg(rtol=1e-12))
def ridge(w0: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
    a = X.T @ X / len(X) + lam * torch.eye(8, dtype=DTYPE)  # any solver works: here exact
    return torch.linalg.solve(a, X.T @ y / len(X))


def closed_form_hypergrad(lam: torch.Tensor) -> torch.Tensor:
    lam = lam.detach().requires_grad_(True)
    a = X.T @ X / len(X) + lam * torch.eye(8, dtype=DTYPE)
    return torch.autograd.grad(mse(torch.linalg.solve(a, X.T @ y / len(X)), X_val, y_val), lam)[0]


log_lam = torch.tensor(0.0, dtype=DTYPE, requires_grad=True)
hyper_opt = to.adam(lr=0.2)
hyper_state = hyper_opt.init(log_lam)
val_losses = []
for it in range(40):
    lam = log_lam.exp()
    val = mse(ridge(torch.zeros(8, dtype=DTYPE), lam), X_val, y_val)
    (hyper,) = torch.autograd.grad(val, log_lam)
    if it == 0:
        exact = closed_form_hypergrad(lam) * lam.detach()
        print(f"   hypergradient {float(hyper):+.8f} vs closed form {float(exact):+.8f}")
    u, hyper_state = hyper_opt.update(hyper, hyper_state)
    with torch.no_grad():
        log_lam.add_(u)
    val_losses.append(float(val.detach()))
lam_final = float(log_lam.detach().exp())
print(f"   validation loss {val_losses[0]:.4f} -> {val_losses[-1]:.4f}, lambda {lam_final:.4f}")

# 4. Zero-order: a loss autograd cannot see (rounded predictions) -------------------------------
print("4. Zero-order: antithetic ES through a non-differentiable loss")


@zero_order(torch.distributions.Normal(0.0, 1.0), method="antithetic", num_samples=32, sigma=0.05)
def rounded_loss(w: torch.Tensor) -> torch.Tensor:
    return ((torch.round(4 * (X @ w)) / 4 - y) ** 2).mean()


w_z = torch.zeros(8, dtype=DTYPE, requires_grad=True)
es_opt = to.Adam([w_z], lr=0.05)
es_losses = []
for it in range(150):
    es_opt.zero_grad()
    loss = rounded_loss(w_z)
    loss.backward()
    es_opt.step()
    es_losses.append(float(loss.detach()))
    if it % 50 == 0:
        print(f"   iteration {it:3d}: loss {float(loss.detach()):.4f}")
print(f"   loss {es_losses[0]:.3f} -> {es_losses[-1]:.4f}")

OUT.mkdir(exist_ok=True)
fig, axes = plt.subplots(1, 4, figsize=(16, 3.6))
panels = [
    (losses_adam, "Adam (functional = OOP = torch.optim)", "training MSE"),
    (meta_losses, "Explicit: meta-learned inner lr", "validation MSE after 5 steps"),
    (val_losses, "Implicit: learned ridge penalty", "validation MSE"),
    (es_losses, "Zero-order: ES through rounding", "rounded-prediction MSE"),
]
for ax, (values, title, ylabel) in zip(axes, panels, strict=True):
    ax.plot(values)
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("iteration")
    ax.set_ylabel(ylabel)
    ax.set_yscale("log")
fig.tight_layout()
fig.savefig(OUT / "quickstart.png", dpi=110)
print(f"saved {OUT / 'quickstart.png'}")
