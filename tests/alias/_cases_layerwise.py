"""Layer-wise and factored optimizers: lamb, lars, fromage, novograd, sm3, adafactor."""

from __future__ import annotations

from tests.alias._breadth import BreadthCase

CASES = [
    BreadthCase("lamb", {"lr": 1e-2}, "default"),
    BreadthCase("lamb", {"lr": 1e-2, "weight_decay": 0.1, "maximize": True}, "wd-maximize"),
    BreadthCase("lars", {"lr": 0.1}, "default"),
    BreadthCase(
        "lars", {"lr": 0.1, "weight_decay": 1e-2, "momentum": 0.8, "nesterov": True}, "nesterov-wd"
    ),
    BreadthCase("fromage", {"lr": 1e-2}, "default"),
    BreadthCase("novograd", {"lr": 1e-2}, "default"),
    BreadthCase("novograd", {"lr": 1e-2, "weight_decay": 0.1, "maximize": True}, "wd-maximize"),
    BreadthCase("sm3", {"lr": 1e-2}, "default", complex_ok=False),
    BreadthCase(
        "sm3", {"lr": 1e-2, "momentum": 0.5, "maximize": True}, "maximize", complex_ok=False
    ),
    # torch.optim.Adafactor has the same math with the same kwargs (test_layerwise.py checks it),
    # but it divides by zero on an empty parameter (ZeroDivisionError in torch 2.13), so the
    # generic layout matrix, whose layouts include an empty leaf, runs the dense reference.
    BreadthCase("adafactor", {}, "default", complex_ok=False),
    BreadthCase(
        "adafactor",
        {"lr": 0.5, "beta2_decay": -0.5, "d": 1.5, "weight_decay": 0.1, "maximize": True},
        "wd-maximize",
        complex_ok=False,
    ),
]
