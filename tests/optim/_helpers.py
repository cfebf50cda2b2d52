"""The OOP class of each registry alias, and a step loop shared by the OOP tests."""

from __future__ import annotations

from typing import Any

import torch

import torchopt_lite
from tests.alias._registry import Case

OOP_CLASSES: dict[str, type[torchopt_lite.Optimizer]] = {
    "sgd": torchopt_lite.SGD,
    "adam": torchopt_lite.Adam,
    "adamw": torchopt_lite.AdamW,
    "rmsprop": torchopt_lite.RMSProp,
    "adagrad": torchopt_lite.AdaGrad,
    "adadelta": torchopt_lite.AdaDelta,
    "adamax": torchopt_lite.AdaMax,
    "radam": torchopt_lite.RAdam,
}


def make_oop(case: Case, params: Any, **overrides: Any) -> torchopt_lite.Optimizer:
    """The case's OOP optimizer (its kwargs, then ``oop_kwargs``, then ``overrides``)."""
    return OOP_CLASSES[case.alias](params, **{**case.kwargs, **case.oop_kwargs, **overrides})


def leaf_params(params: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Fresh leaf tensors that require grad, with the values of ``params``."""
    return {k: v.detach().clone().requires_grad_(True) for k, v in params.items()}


def run_steps(
    opt: torch.optim.Optimizer, ps: dict[str, torch.Tensor], grads: list[dict]
) -> list[dict]:
    """Set ``.grad`` from ``grads`` and step; the parameters after each step."""
    out = []
    for g in grads:
        for k, p in ps.items():
            p.grad = g[k].clone()
        opt.step()
        out.append({k: v.detach().clone() for k, v in ps.items()})
    return out
