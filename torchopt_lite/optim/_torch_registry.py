"""Which ``torch.optim`` class is which functional alias: hyperparameters, options, state keys."""

from __future__ import annotations

from typing import Any, NamedTuple

import torch

from torchopt_lite.optim import _named
from torchopt_lite.optim.base import Optimizer

# Options that choose how torch.optim computes a step, not what it computes.
TORCH_FLAGS = ("foreach", "fused", "capturable", "differentiable")
# Alias arguments that do not change the math (gradient tracking, a compatibility no-op).
ALIAS_FLAGS = ("moment_requires_grad", "use_accelerated_op")


class Entry(NamedTuple):
    """A functional alias and the ``torch.optim`` classes with the same math.

    ``hyperparameters`` have the same name and meaning on both sides. ``torch_only`` are the
    ``torch.optim`` options the alias has only at the given value (``amsgrad=False``), and
    ``alias_only`` the alias arguments ``torch.optim`` has only at the given value.
    ``state`` maps ``torch.optim``'s per-parameter state keys to the alias's (see
    :attr:`torchopt_lite.Optimizer.state`); without ``"step"`` there (SGD), the alias's step
    count only tells whether a step was taken, which ``torch.optim`` tells by the presence of
    the state.
    """

    alias: str
    torch_classes: tuple[type[torch.optim.Optimizer], ...]  # the first is what to_torch builds
    oop_class: type[Optimizer]
    hyperparameters: tuple[str, ...]
    torch_only: dict[str, Any]
    alias_only: dict[str, Any]
    state: dict[str, str]


_ADAM_STATE = {"step": "count", "exp_avg": "mu", "exp_avg_sq": "nu"}
_ADAM_LIKE = ("lr", "betas", "eps", "weight_decay", "maximize")

REGISTRY = (
    Entry(
        "sgd",
        (torch.optim.SGD,),
        _named.SGD,
        ("lr", "momentum", "dampening", "weight_decay", "nesterov", "maximize"),
        {},
        {},
        {"momentum_buffer": "trace"},
    ),
    Entry(
        "adam",
        (torch.optim.Adam, torch.optim.AdamW),
        _named.Adam,
        _ADAM_LIKE,
        {"amsgrad": False, "decoupled_weight_decay": False},
        {"eps_root": 0.0},
        _ADAM_STATE,
    ),
    Entry(
        "adamw",
        (torch.optim.AdamW, torch.optim.Adam),
        _named.AdamW,
        _ADAM_LIKE,
        {"amsgrad": False, "decoupled_weight_decay": True},
        {"eps_root": 0.0, "mask": None},
        _ADAM_STATE,
    ),
    Entry(
        "adamax",
        (torch.optim.Adamax,),
        _named.AdaMax,
        _ADAM_LIKE,
        {},
        {},
        {"step": "count", "exp_avg": "mu", "exp_inf": "nu"},
    ),
    Entry(
        "radam",
        (torch.optim.RAdam,),
        _named.RAdam,
        _ADAM_LIKE,
        {"decoupled_weight_decay": False},
        {},
        _ADAM_STATE,
    ),
    Entry(
        "adagrad",
        (torch.optim.Adagrad,),
        _named.AdaGrad,
        ("lr", "lr_decay", "weight_decay", "initial_accumulator_value", "eps", "maximize"),
        {},
        {},
        {"step": "count", "sum": "sum_of_squares"},
    ),
    Entry(
        "adadelta",
        (torch.optim.Adadelta,),
        _named.AdaDelta,
        ("lr", "rho", "eps", "weight_decay", "maximize"),
        {},
        {},
        {"step": "count", "square_avg": "mu", "acc_delta": "nu"},
    ),
    Entry(
        "rmsprop",
        (torch.optim.RMSprop,),
        _named.RMSProp,
        ("lr", "alpha", "eps", "weight_decay", "momentum", "centered", "maximize"),
        {},
        {"initial_scale": 0.0, "nesterov": False},
        {"step": "count", "square_avg": "nu", "grad_avg": "mu", "momentum_buffer": "trace"},
    ),
)
BY_ALIAS = {e.alias: e for e in REGISTRY}
BY_OOP_CLASS: dict[type, Entry] = {e.oop_class: e for e in REGISTRY}


def supported() -> str:
    """The classes that convert, for error messages."""
    torch_names = sorted({f"torch.optim.{c.__name__}" for e in REGISTRY for c in e.torch_classes})
    ours = [f"torchopt_lite.{e.oop_class.__name__}" for e in REGISTRY]
    return ", ".join(torch_names + ours)
