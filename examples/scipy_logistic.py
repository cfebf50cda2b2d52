"""Logistic regression (an nn.Module) trained by scipy solvers with autograd derivatives.

Three ways to fit the same L2-regularised logistic regression on a synthetic two-moons-like
data set with polynomial features:

* ``ScipyMinimizer`` (L-BFGS-B): the ``torch.optim`` interface, ``step(closure)`` on the
  module's parameters;
* ``interop.minimize`` with trust-ncg on ``torch.func.functional_call``: Hessian-vector
  products of the module's loss by forward-over-reverse autograd;
* 300 steps of ``torchopt_lite.adam``, for comparison.

The scipy solutions agree to solver tolerance; Adam is still approaching them. The decision
boundary is plotted.

Run: ``python examples/scipy_logistic.py`` (CPU, a few seconds). Writes
``examples/out/scipy_logistic.png``.
"""

from __future__ import annotations

import pathlib
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch
from torch.func import functional_call

import torchopt_lite as to
from torchopt_lite import interop

LAM = 1e-2


def features(x: torch.Tensor) -> torch.Tensor:
    """Cubic polynomial features of 2-D points."""
    a, b = x[:, :1], x[:, 1:]
    return torch.cat([a, b, a * a, a * b, b * b, a**3, a * a * b, a * b * b, b**3], dim=1)


def make_data(n: int = 400) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    t = torch.rand(n, generator=g, dtype=torch.float64) * torch.pi
    label = torch.rand(n, generator=g, dtype=torch.float64) < 0.5
    x = torch.stack([torch.cos(t), torch.sin(t)], 1)
    x = torch.where(label[:, None], x, torch.stack([1 - torch.cos(t), 0.5 - torch.sin(t)], 1))
    x = x + 0.15 * torch.randn(n, 2, generator=g, dtype=torch.float64)
    return x, label.double()


def loss_fn(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    logits = model(features(x)).squeeze(-1)
    data = torch.nn.functional.binary_cross_entropy_with_logits(logits, y)
    return data + 0.5 * LAM * (model.weight**2).sum()


def new_model() -> torch.nn.Linear:
    torch.manual_seed(1)
    return torch.nn.Linear(9, 1).double()


def main() -> None:
    x, y = make_data()

    # 1. torch.optim interface
    model = new_model()
    opt = interop.ScipyMinimizer(model.parameters(), method="L-BFGS-B", options={"gtol": 1e-9})

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = loss_fn(model, x, y)
        loss.backward()
        return loss

    start = time.perf_counter()
    loss_lbfgs = opt.step(closure)
    print(
        f"ScipyMinimizer L-BFGS-B : loss {float(loss_lbfgs):.6f}  nit {opt.result.nit:4d}  "
        f"{1e3 * (time.perf_counter() - start):6.1f} ms"
    )

    # 2. functional: a dict of parameters, trust-ncg with Hessian-vector products
    template = new_model()
    params = {k: v.detach() for k, v in template.named_parameters()}

    def objective(p: dict[str, torch.Tensor]) -> torch.Tensor:
        logits = functional_call(template, p, (features(x),)).squeeze(-1)
        data = torch.nn.functional.binary_cross_entropy_with_logits(logits, y)
        return data + 0.5 * LAM * (p["weight"] ** 2).sum()

    start = time.perf_counter()
    sol, res = interop.minimize(objective, params, method="trust-ncg", tol=1e-9)
    print(
        f"minimize trust-ncg       : loss {res.fun:.6f}  nit {res.nit:4d}  "
        f"{1e3 * (time.perf_counter() - start):6.1f} ms  (nhev {res.nhev})"
    )
    gap = (sol["weight"] - model.weight.detach()).abs().max()
    print(f"max |w_trust-ncg - w_L-BFGS-B| = {float(gap):.2e}")

    # 3. Adam for comparison
    adam_model = new_model()
    adam_opt = to.Adam(adam_model.parameters(), lr=0.05)
    start = time.perf_counter()
    for step in range(300):
        adam_opt.zero_grad()
        loss = loss_fn(adam_model, x, y)
        loss.backward()
        adam_opt.step()
        if step % 100 == 0:
            print(f"  adam step {step:3d}: loss {float(loss.detach()):.6f}")
    print(
        f"Adam, 300 steps          : loss {float(loss_fn(adam_model, x, y).detach()):.6f}  "
        f"{1e3 * (time.perf_counter() - start):6.1f} ms"
    )
    with torch.no_grad():
        acc = ((model(features(x)).squeeze(-1) > 0).double() == y).double().mean()
    print(f"training accuracy (L-BFGS-B): {float(acc):.3f}")

    out = pathlib.Path(__file__).parent / "out"
    out.mkdir(exist_ok=True)
    gx, gy = torch.meshgrid(
        torch.linspace(-1.5, 2.5, 200, dtype=torch.float64),
        torch.linspace(-1.2, 1.7, 200, dtype=torch.float64),
        indexing="xy",
    )
    grid = torch.stack([gx.reshape(-1), gy.reshape(-1)], 1)
    with torch.no_grad():
        z_lbfgs = model(features(grid)).reshape(gx.shape)
        z_adam = adam_model(features(grid)).reshape(gx.shape)
    fig, ax = plt.subplots(figsize=(7, 5))
    ax.scatter(x[:, 0], x[:, 1], c=y, cmap="coolwarm", s=8)
    ax.contour(gx, gy, z_lbfgs, levels=[0], colors="k")
    ax.contour(gx, gy, z_adam, levels=[0], colors="g", linestyles="--")
    ax.plot([], [], "k", label="scipy L-BFGS-B / trust-ncg (optimum)")
    ax.plot([], [], "g--", label="Adam, 300 steps")
    ax.set(title="Logistic regression, cubic features", xlabel="x1", ylabel="x2")
    ax.legend(loc="lower left")
    fig.tight_layout()
    fig.savefig(out / "scipy_logistic.png", dpi=120)
    print(f"saved {out / 'scipy_logistic.png'}")


if __name__ == "__main__":
    main()
