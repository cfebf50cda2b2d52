"""One list of optimizer cases drives the reference, gradient and property tests."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

import torchopt_lite


@dataclass(frozen=True)
class Case:
    """An alias configuration and its ``torch.optim`` counterpart with the same math."""

    alias: str
    kwargs: dict[str, Any]
    torch_cls: type[torch.optim.Optimizer]
    torch_kwargs: dict[str, Any]
    desc: str
    oop_kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return f"{self.alias}-{self.desc}"

    def make(self, **overrides: Any) -> torchopt_lite.base.GradientTransformation:
        return getattr(torchopt_lite, self.alias)(**{**self.kwargs, **overrides})


SGD, Adam, AdamW = torch.optim.SGD, torch.optim.Adam, torch.optim.AdamW
RMSprop, Adagrad, Adadelta = torch.optim.RMSprop, torch.optim.Adagrad, torch.optim.Adadelta
Adamax, RAdam = torch.optim.Adamax, torch.optim.RAdam

CASES = [
    Case("sgd", {"lr": 0.1}, SGD, {"lr": 0.1}, "plain"),
    Case("sgd", {"lr": 0.1, "momentum": 0.9}, SGD, {"lr": 0.1, "momentum": 0.9}, "momentum"),
    Case(
        "sgd",
        {"lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 0.1},
        SGD,
        {"lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 0.1},
        "nesterov-wd",
    ),
    Case(
        "sgd",
        {"lr": 0.1, "momentum": 0.8, "dampening": 0.3, "maximize": True},
        SGD,
        {"lr": 0.1, "momentum": 0.8, "dampening": 0.3, "maximize": True},
        "dampening-maximize",
    ),
    Case("adam", {"lr": 0.01}, Adam, {"lr": 0.01}, "default"),
    Case(
        "adam",
        {"lr": 0.02, "betas": (0.8, 0.99), "weight_decay": 0.1, "maximize": True},
        Adam,
        {"lr": 0.02, "betas": (0.8, 0.99), "weight_decay": 0.1, "maximize": True},
        "wd-maximize",
    ),
    Case("adamw", {"lr": 0.01}, AdamW, {"lr": 0.01}, "default"),
    Case(
        "adamw",
        {"lr": 0.02, "weight_decay": 0.3, "maximize": True},
        AdamW,
        {"lr": 0.02, "weight_decay": 0.3, "maximize": True},
        "wd-maximize",
    ),
    Case("rmsprop", {"lr": 0.01}, RMSprop, {"lr": 0.01}, "default"),
    Case(
        "rmsprop",
        {"lr": 0.01, "momentum": 0.9, "centered": True, "weight_decay": 0.1},
        RMSprop,
        {"lr": 0.01, "momentum": 0.9, "centered": True, "weight_decay": 0.1},
        "centered-momentum-wd",
    ),
    Case(
        "rmsprop",
        {"lr": 0.01, "alpha": 0.9, "maximize": True},
        RMSprop,
        {"lr": 0.01, "alpha": 0.9, "maximize": True},
        "maximize",
    ),
    Case("adagrad", {"lr": 0.1}, Adagrad, {"lr": 0.1}, "default"),
    Case(
        "adagrad",
        {"lr": 0.1, "lr_decay": 0.05, "weight_decay": 0.1, "initial_accumulator_value": 0.2},
        Adagrad,
        {"lr": 0.1, "lr_decay": 0.05, "weight_decay": 0.1, "initial_accumulator_value": 0.2},
        "decay-wd-init",
    ),
    Case("adagrad", {"lr": 0.1, "maximize": True}, Adagrad, {"lr": 0.1, "maximize": True}, "max"),
    Case("adadelta", {"lr": 1.0}, Adadelta, {"lr": 1.0}, "default"),
    Case(
        "adadelta",
        {"lr": 0.5, "rho": 0.8, "weight_decay": 0.1},
        Adadelta,
        {"lr": 0.5, "rho": 0.8, "weight_decay": 0.1},
        "rho-wd",
    ),
    # TorchOpt's adamax/radam defaults use eps=1e-6; torch.optim uses 1e-8: pass eps explicitly.
    Case("adamax", {"lr": 0.02, "eps": 1e-8}, Adamax, {"lr": 0.02, "eps": 1e-8}, "default"),
    Case(
        "adamax",
        {"lr": 0.02, "eps": 1e-8, "weight_decay": 0.1},
        Adamax,
        {"lr": 0.02, "eps": 1e-8, "weight_decay": 0.1},
        "wd",
    ),
    Case("radam", {"lr": 0.01, "eps": 1e-8}, RAdam, {"lr": 0.01, "eps": 1e-8}, "default"),
    Case(
        "radam",
        {"lr": 0.01, "eps": 1e-8, "betas": (0.9, 0.9), "weight_decay": 0.1},
        RAdam,
        {"lr": 0.01, "eps": 1e-8, "betas": (0.9, 0.9), "weight_decay": 0.1},
        "rectified-early-wd",
    ),
]


def make_params(seed: int = 0, dtype: torch.dtype = torch.float64) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {
        "w": torch.randn(3, 4, generator=gen, dtype=dtype),
        "b": torch.randn(5, generator=gen, dtype=dtype),
        "s": torch.randn((), generator=gen, dtype=dtype),
    }


def make_grads(
    params: dict[str, torch.Tensor], steps: int, seed: int = 1
) -> list[dict[str, torch.Tensor]]:
    gen = torch.Generator().manual_seed(seed)
    return [
        {k: torch.randn(v.shape, generator=gen, dtype=v.dtype) for k, v in params.items()}
        for _ in range(steps)
    ]


def trajectory(
    opt: Any, params: dict, grads: list[dict], *, inplace: bool, **extra: Any
) -> tuple[list[dict], Any]:
    """A functional optimizer over a gradient stream: the params after each step (copies) and
    the final state. Inputs are copied first, so in-place steps leave the caller's untouched."""
    params = {k: v.clone() for k, v in params.items()}
    state = opt.init(params)
    out = []
    for g in grads:
        g = {k: v.clone() for k, v in g.items()}
        updates, state = opt.update(g, state, params=params, inplace=inplace, **extra)
        params = torchopt_lite.apply_updates(params, updates, inplace=inplace)
        out.append({k: v.clone() for k, v in params.items()})
    return out, state


def torch_optim_trajectory(case: Case, params: dict, grads: list[dict], **extra: Any) -> list[dict]:
    """Parameters after each step of the ``torch.optim`` counterpart."""
    ps = {k: v.clone().requires_grad_(True) for k, v in params.items()}
    opt = case.torch_cls(list(ps.values()), **{**case.torch_kwargs, **extra})
    out = []
    for g in grads:
        for k, p in ps.items():
            p.grad = g[k].clone()
        opt.step()
        out.append({k: v.detach().clone() for k, v in ps.items()})
    return out
