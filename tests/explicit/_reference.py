"""Hand-unrolled references: each optimizer's update written out in plain torch ops.

The formulas are torch.optim's documented algorithms (which TorchOpt's functional optimizers
follow for these arguments). Autograd through a loop of these is the reference meta-gradient.
Each ``step(p, g, state, t, **hyper) -> (p, state)`` acts on one tensor; ``t`` counts from 1.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

State = dict[str, Any]


def sgd(p, g, s, t, lr, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False,
        maximize=False):  # fmt: skip
    g = (-g if maximize else g) + weight_decay * p
    if momentum:
        s["b"] = g if t == 1 else momentum * s["b"] + (1 - dampening) * g
        g = g + momentum * s["b"] if nesterov else s["b"]
    return p - lr * g, s


def adam(p, g, s, t, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, maximize=False,
         decoupled=False):  # fmt: skip
    b1, b2 = betas
    g = -g if maximize else g
    if decoupled:
        p = p * (1 - lr * weight_decay)
    else:
        g = g + weight_decay * p
    s["m"] = b1 * s.get("m", 0.0) + (1 - b1) * g
    s["v"] = b2 * s.get("v", 0.0) + (1 - b2) * g * g
    m_hat = s["m"] / (1 - b1**t)
    v_hat = s["v"] / (1 - b2**t)
    return p - lr * m_hat / (v_hat.sqrt() + eps), s


def adamw(p, g, s, t, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, maximize=False):
    return adam(p, g, s, t, lr, betas, eps, weight_decay, maximize, decoupled=True)


def rmsprop(p, g, s, t, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0,
            centered=False):  # fmt: skip
    g = g + weight_decay * p
    s["v"] = alpha * s.get("v", 0.0) + (1 - alpha) * g * g
    if centered:
        s["ga"] = alpha * s.get("ga", 0.0) + (1 - alpha) * g
        avg = (s["v"] - s["ga"] ** 2).sqrt() + eps
    else:
        avg = s["v"].sqrt() + eps
    if momentum:
        s["b"] = momentum * s.get("b", 0.0) + g / avg
        return p - lr * s["b"], s
    return p - lr * g / avg, s


def adagrad(p, g, s, t, lr=1e-2, lr_decay=0.0, weight_decay=0.0, initial_accumulator_value=0.0,
            eps=1e-10):  # fmt: skip
    g = g + weight_decay * p
    clr = lr / (1 + (t - 1) * lr_decay)
    s["sum"] = s.get("sum", initial_accumulator_value) + g * g
    return p - clr * g / (s["sum"].sqrt() + eps), s


def adadelta(p, g, s, t, lr=1.0, rho=0.9, eps=1e-6, weight_decay=0.0):
    g = g + weight_decay * p
    s["v"] = rho * s.get("v", 0.0) + (1 - rho) * g * g
    delta = (s.get("u", 0.0) + eps) ** 0.5 / (s["v"] + eps).sqrt() * g
    s["u"] = rho * s.get("u", 0.0) + (1 - rho) * delta * delta
    return p - lr * delta, s


def adamax(p, g, s, t, lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
    b1, b2 = betas
    g = g + weight_decay * p
    s["m"] = b1 * s.get("m", 0.0) + (1 - b1) * g
    u = g.abs() + eps
    s["u"] = u if t == 1 else torch.maximum(b2 * s["u"], u)
    return p - lr / (1 - b1**t) * s["m"] / s["u"], s


def radam(p, g, s, t, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
    b1, b2 = betas
    g = g + weight_decay * p
    s["m"] = b1 * s.get("m", 0.0) + (1 - b1) * g
    s["v"] = b2 * s.get("v", 0.0) + (1 - b2) * g * g
    m_hat = s["m"] / (1 - b1**t)
    rho_inf = 2 / (1 - b2) - 1
    rho_t = rho_inf - 2 * t * b2**t / (1 - b2**t)
    if rho_t <= 5:
        return p - lr * m_hat, s
    adaptive = math.sqrt(1 - b2**t) / (s["v"].sqrt() + eps)
    rect = math.sqrt((rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t))
    return p - lr * m_hat * adaptive * rect, s


def unroll(
    step: Callable[..., tuple[Tensor, State]],
    hyper: dict[str, Any],
    params0: Sequence[Tensor],
    loss_fn: Callable[[list[Tensor]], Tensor],
    steps: int,
    *,
    first_order: bool = False,
    truncate_every: int | None = None,
) -> list[Tensor]:
    """``steps`` differentiable steps of ``step`` on every tensor of ``params0``."""
    params = list(params0)
    states: list[State] = [{} for _ in params]
    for t in range(1, steps + 1):
        grads = torch.autograd.grad(loss_fn(params), params, create_graph=not first_order)
        new = [step(p, g, s, t, **hyper) for p, g, s in zip(params, grads, states, strict=True)]
        params = [p for p, _ in new]
        if truncate_every is not None and t % truncate_every == 0:
            params = [p.detach().requires_grad_() for p in params]
            states = [{k: v.detach() for k, v in s.items()} for s in states]
    return params
