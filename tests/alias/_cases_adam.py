"""Adam-family aliases for the generic tests: adabelief, amsgrad, nadam(w), adamaxw, yogi, adan."""

from __future__ import annotations

import math

import torch

from tests.alias._breadth import BreadthCase

CASES = [
    BreadthCase("adabelief", {"lr": 1e-2}, "default"),
    BreadthCase("adabelief", {"lr": 1e-2, "b1": 0.8, "maximize": True}, "maximize"),
    BreadthCase(
        "amsgrad",
        {"lr": 1e-2},
        "default",
        torch_cls=torch.optim.Adam,
        torch_kwargs={"lr": 1e-2, "amsgrad": True},
    ),
    BreadthCase(
        "amsgrad",
        {"lr": 1e-2, "weight_decay": 0.1, "maximize": True},
        "wd-maximize",
        torch_cls=torch.optim.Adam,
        torch_kwargs={"lr": 1e-2, "amsgrad": True, "weight_decay": 0.1, "maximize": True},
    ),
    BreadthCase("amsgrad", {"lr": 1e-2, "bias_corrected_max": True}, "optax-max"),
    # torch.optim.NAdam keeps its running product of mu_t in the default dtype (float32 unless
    # set otherwise), which is off by ~1e-8 from float64: these cases have no torch_cls; the
    # group's own tests compare with torch.optim.NAdam under a float64 default dtype.
    BreadthCase("nadam", {"lr": 1e-2}, "default"),
    BreadthCase("nadam", {"lr": 1e-2, "weight_decay": 0.1, "maximize": True}, "wd-maximize"),
    BreadthCase("nadam", {"lr": 1e-2, "momentum_decay": math.inf}, "optax-mu"),
    BreadthCase("nadamw", {"lr": 1e-2, "weight_decay": 0.1}, "default"),
    BreadthCase("adamaxw", {"lr": 1e-2, "weight_decay": 0.1}, "default"),
    BreadthCase("adamaxw", {"lr": 1e-2, "weight_decay": 0.1, "maximize": True}, "maximize"),
    BreadthCase("yogi", {"lr": 1e-2}, "default"),
    BreadthCase("yogi", {"lr": 1e-2, "eps_root": 1e-8, "maximize": True}, "maximize"),
    BreadthCase("adan", {"lr": 1e-2}, "default"),
    BreadthCase("adan", {"lr": 1e-2, "weight_decay": 0.1, "maximize": True}, "wd-maximize"),
]
