"""Learn Adam's learning rate and betas by differentiating through a 5-step inner loop.

Few-shot regression: each task is a linear model ``y = <w_task, x> + noise`` on anisotropic
features (scales from 0.1 to 3), seen through 30 support points. The inner loop fits a linear
model from zero with 5 steps of Adam whose hyperparameters are tensors in the optimizer state
(``inject_hyperparams``):

    lr = exp(log_lr),  beta1 = sigmoid(u1),  beta2 = sigmoid(u2).

The outer loss is the query error after adaptation, averaged over a batch of tasks; its
gradient with respect to ``(log_lr, u1, u2)`` flows through the 5 unrolled out-of-place Adam
steps, and an outer Adam updates them. At the start the meta-gradient is checked against finite
differences; at the end the learned hyperparameters are compared, on held-out tasks, with the
starting ones and with a small grid of learning rates.

Run: ``python examples/learn_optimizer_hyperparameters.py`` (CPU, under a minute). Writes
``examples/out/learn_optimizer_hyperparameters.png``.
"""

from __future__ import annotations

import math
import pathlib

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch
from torch import Tensor, nn
from torch.func import functional_call

import torchopt_lite as to

INNER_STEPS, SUPPORT, QUERY, TASKS, OUTER_STEPS, DIM = 5, 30, 100, 8, 100, 20


def sample_tasks(n: int, gen: torch.Generator) -> list[tuple[Tensor, ...]]:
    """``n`` regression tasks: (support x, support y, query x, query y)."""
    scales = torch.logspace(-1, math.log10(3.0), DIM, dtype=torch.float64)
    tasks = []
    for _ in range(n):
        w = torch.randn(DIM, 1, generator=gen, dtype=torch.float64) + 1.0
        x = torch.randn(SUPPORT + QUERY, DIM, generator=gen, dtype=torch.float64) * scales
        y = x @ w + 0.1 * torch.randn(SUPPORT + QUERY, 1, generator=gen, dtype=torch.float64)
        tasks.append((x[:SUPPORT], y[:SUPPORT], x[SUPPORT:], y[SUPPORT:]))
    return tasks


def make_net() -> tuple[nn.Module, dict[str, Tensor]]:
    net = nn.Linear(DIM, 1, bias=False).double()
    return net, {"weight": torch.zeros(1, DIM, dtype=torch.float64, requires_grad=True)}


def adapted_query_loss(
    net: nn.Module, init: dict[str, Tensor], hyper: Tensor, task: tuple[Tensor, ...]
) -> Tensor:
    """Query loss after INNER_STEPS of Adam with lr, beta1, beta2 taken from ``hyper``."""
    meta = hyper.requires_grad  # keep the graph of the inner steps only for a meta-gradient
    log_lr, u1, u2 = hyper
    opt = to.inject_hyperparams(to.adam)(
        lr=log_lr.exp(), betas=(torch.sigmoid(u1), torch.sigmoid(u2))
    )
    xs, ys, xq, yq = task
    params = dict(init)
    state = opt.init(params)
    for _ in range(INNER_STEPS):
        loss = ((functional_call(net, params, (xs,)) - ys) ** 2).mean()
        grads = torch.autograd.grad(loss, list(params.values()), create_graph=meta)
        updates, state = opt.update(
            dict(zip(params, grads, strict=True)), state, params=params, inplace=False
        )
        params = to.apply_updates(params, updates, inplace=False)
    return ((functional_call(net, params, (xq,)) - yq) ** 2).mean()


def mean_loss(net: nn.Module, init: dict, hyper: Tensor, tasks: list) -> Tensor:
    """The outer loss; without a graph to ``hyper`` when it does not require grad."""
    loss = torch.stack([adapted_query_loss(net, init, hyper, t) for t in tasks]).mean()
    return loss if hyper.requires_grad else loss.detach()


def check_meta_gradient(net: nn.Module, init: dict, hyper: Tensor, tasks: list) -> float:
    """Largest relative gap between the meta-gradient and central finite differences."""
    (grad,) = torch.autograd.grad(mean_loss(net, init, hyper, tasks), hyper)
    gap = 0.0
    for i in range(3):
        e = torch.zeros(3, dtype=torch.float64)
        e[i] = 1e-5
        h = hyper.detach()
        fd = mean_loss(net, init, h + e, tasks) - mean_loss(net, init, h - e, tasks)
        fd = fd.item() / 2e-5
        gap = max(gap, abs(float(grad[i]) - fd) / max(abs(fd), 1e-8))
    return gap


def main() -> None:
    gen = torch.Generator().manual_seed(1)
    net, init = make_net()
    held_out = sample_tasks(64, torch.Generator().manual_seed(123))
    start = [math.log(0.05), 2.2, 6.9]  # lr 0.05, beta1 0.9, beta2 0.999
    hyper = torch.tensor(start, dtype=torch.float64, requires_grad=True)
    gap = check_meta_gradient(net, init, hyper, sample_tasks(2, gen))
    print(f"meta-gradient vs finite differences: max relative gap {gap:.2e}")
    assert gap < 1e-4, "the meta-gradient disagrees with finite differences"

    outer = to.Adam([hyper], lr=0.1)
    history: dict[str, list[float]] = {"loss": [], "lr": [], "beta1": [], "beta2": []}
    for step in range(OUTER_STEPS):
        loss = mean_loss(net, init, hyper, sample_tasks(TASKS, gen))
        outer.zero_grad()
        loss.backward()
        outer.step()
        with torch.no_grad():
            lr, b1, b2 = hyper[0].exp(), torch.sigmoid(hyper[1]), torch.sigmoid(hyper[2])
        for k, v in zip(history, (loss, lr, b1, b2), strict=True):
            history[k].append(float(v.detach()))
        if step % 10 == 0 or step == OUTER_STEPS - 1:
            print(
                f"outer step {step:3d}  query loss {loss.item():7.4f}  lr {float(lr):.4f}  "
                f"beta1 {float(b1):.3f}  beta2 {float(b2):.4f}"
            )

    before = float(mean_loss(net, init, torch.tensor(start, dtype=torch.float64), held_out))
    after = float(mean_loss(net, init, hyper.detach(), held_out))
    grid = {
        lr: float(
            mean_loss(
                net, init, torch.tensor([math.log(lr), *start[1:]], dtype=torch.float64), held_out
            )
        )
        for lr in (0.01, 0.03, 0.1, 0.3, 1.0)
    }
    print(f"held-out query loss: start {before:.4f}, learned {after:.4f}")
    print("grid over lr (start betas): " + ", ".join(f"{k:g}: {v:.4f}" for k, v in grid.items()))
    assert after < before, "learning the hyperparameters did not lower the held-out loss"
    assert after <= min(grid.values()) * 1.05, "the learned setting loses to a plain lr grid"

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    axes[0].plot(history["loss"], label="learned (training tasks)")
    axes[0].axhline(before, color="gray", ls="--", label="start (held out)")
    axes[0].axhline(after, color="C2", ls=":", label="learned (held out)")
    axes[0].set(xlabel="outer step", ylabel="query MSE after 5 Adam steps", yscale="log")
    axes[0].legend()
    axes[1].plot(history["lr"])
    axes[1].set(xlabel="outer step", ylabel="learning rate", yscale="log")
    axes[2].plot(history["beta1"], label=r"$\beta_1$")
    axes[2].plot(history["beta2"], label=r"$\beta_2$")
    axes[2].set(xlabel="outer step", ylabel="beta")
    axes[2].legend()
    fig.suptitle("Adam's hyperparameters learned by meta-gradient (inject_hyperparams)")
    fig.tight_layout()
    out = pathlib.Path(__file__).parent / "out" / "learn_optimizer_hyperparameters.png"
    out.parent.mkdir(exist_ok=True)
    fig.savefig(out, dpi=120)
    print(f"saved {out}")


if __name__ == "__main__":
    main()
