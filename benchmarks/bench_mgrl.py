"""MGRL meta-step (a meta-learned discount) from TorchOpt's ``examples/MGRL``, vs TorchOpt 0.7.3.

One outer iteration of that example: a value network ``Linear(10, 1)``, one differentiable
``MetaSGD(lr=0.5)`` step on the MSE to returns bootstrapped with discounts ``sigmoid(gamma)``,
the MSE to the undiscounted returns, ``SGD([gamma], lr=0.5)`` on it, and
``recover_state_dict``. The rollouts are drawn once (the same tensors for both libraries), so
the time is the libraries' own: tiny tensors, per-step overhead. A last row runs the same
step in plain torch: the floor of this math.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from benchmarks._timing import has, report, single_thread, timeit_interleaved

STEPS = 9


def _rollout(trajectory: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
    """Bootstrapped returns ``G_i = r_i + gamma_i sg[G_{i+1}]`` (the example's ``rollout``)."""
    out = [trajectory[-1]]
    for i in reversed(range(STEPS)):
        out.append(trajectory[i] + gamma[i] * out[-1].clone().detach_())
    out.reverse()
    return torch.hstack(out).view(10, 1)


def _data(dtype: torch.dtype = torch.float32) -> list[tuple[torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(0)
    draws = []
    for _ in range(2):  # inner rollout, outer rollout
        out = torch.empty(5, 2, dtype=dtype)
        out[:, 0] = torch.randn(5, generator=gen, dtype=dtype)
        out[:, 1] = 0.1
        draws.append((out.view(10, 1), F.one_hot(torch.arange(10), 10).to(dtype)))
    return draws


def _meta_step(lib: Any, dtype: torch.dtype = torch.float32) -> tuple[Callable[[], None], Any]:
    torch.manual_seed(0)
    net = nn.Linear(10, 1).to(dtype)
    inner = lib.MetaSGD(net, lr=5e-1)
    gamma = torch.zeros(STEPS, dtype=dtype, requires_grad=True)
    outer = lib.SGD([gamma], lr=5e-1)
    net_state = lib.extract_state_dict(net)
    (traj, state), (traj_q, state_q) = _data(dtype)

    def step() -> None:
        backup = _rollout(traj, torch.sigmoid(gamma))
        inner.step(F.mse_loss(net(state), backup))
        loss = F.mse_loss(net(state_q), _rollout(traj_q, torch.ones_like(gamma)))
        outer.zero_grad()
        loss.backward()
        outer.step()
        lib.recover_state_dict(net, net_state)

    return step, gamma


def _by_hand(dtype: torch.dtype = torch.float32) -> tuple[Callable[[], None], torch.Tensor]:
    """The same step in plain torch (``autograd.grad`` and ``p - lr g``): the floor."""
    torch.manual_seed(0)
    net = nn.Linear(10, 1).to(dtype)
    w0, b0 = net.weight, net.bias
    gamma = torch.zeros(STEPS, dtype=dtype, requires_grad=True)
    (traj, state), (traj_q, state_q) = _data(dtype)

    def step() -> None:
        inner = F.mse_loss(F.linear(state, w0, b0), _rollout(traj, torch.sigmoid(gamma)))
        gw, gb = torch.autograd.grad(inner, (w0, b0), create_graph=True)
        w, b = w0 - 0.5 * gw, b0 - 0.5 * gb
        loss = F.mse_loss(F.linear(state_q, w, b), _rollout(traj_q, torch.ones_like(gamma)))
        gamma.grad = None
        loss.backward()
        with torch.no_grad():
            gamma.sub_(0.5 * gamma.grad)

    return step, gamma


def main() -> None:
    import torchopt_lite

    single_thread()
    libs: dict[str, Any] = {"torchopt_lite": torchopt_lite}
    if has("torchopt"):
        import torchopt

        libs = {"torchopt 0.7.3": torchopt, **libs}
    # Agreement in float64: gamma after 20 outer steps.
    gammas = {}
    makers = {name: (lambda d, lib=lib: _meta_step(lib, d)) for name, lib in libs.items()}
    makers["plain torch, same math (floor)"] = _by_hand
    for name, make in makers.items():
        step, gamma = make(torch.float64)
        for _ in range(20):
            step()
        gammas[name] = gamma.detach()
    ref = next(iter(gammas.values()))
    for name, g in gammas.items():
        err = float((g - ref).abs().max() / ref.abs().max())
        print(f"  float64 gamma after 20 meta-steps, {name}: max relative difference {err:.1e}")
    steps = {name: make(torch.float32)[0] for name, make in makers.items()}
    times = timeit_interleaved(steps, rounds=15, number=50)
    report(
        "MGRL meta-step, float32 (Linear(10, 1), 1 MetaSGD step, SGD on the discounts)",
        times,
        next(iter(times)),
        target="<= 0.80x torchopt 0.7.3",
    )


if __name__ == "__main__":
    main()
