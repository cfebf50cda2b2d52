"""Sign-based, optimistic, noisy, Rprop and ASGD configurations for the generic tests."""

import torch

from tests.alias._breadth import BreadthCase

CASES = [
    BreadthCase("lion", {"lr": 1e-3}, "default"),
    BreadthCase("lion", {"lr": 3e-3, "betas": (0.8, 0.95), "weight_decay": 0.1}, "wd"),
    BreadthCase("lion", {"lr": 1e-3, "weight_decay": 0.0, "maximize": True}, "maximize"),
    BreadthCase("sign_sgd", {"lr": 1e-2}, "default"),
    BreadthCase("sign_sgd", {"lr": 1e-2, "weight_decay": 0.1, "maximize": True}, "wd_maximize"),
    BreadthCase("signum", {"lr": 1e-2}, "default"),
    BreadthCase("signum", {"lr": 1e-2, "beta": 0.5, "weight_decay": 0.1}, "wd"),
    BreadthCase("noisy_sgd", {"lr": 1e-2}, "default"),
    BreadthCase("noisy_sgd", {"lr": 1e-2, "eta": 0.3, "gamma": 1.0, "seed": 7}, "seeded"),
    BreadthCase("noisy_sgd", {"lr": 1e-2, "weight_decay": 0.1, "maximize": True}, "wd_maximize"),
    BreadthCase("optimistic_gradient_descent", {"lr": 1e-2}, "default"),
    BreadthCase(
        "optimistic_gradient_descent",
        {"lr": 1e-2, "alpha": 0.5, "beta": 2.0, "weight_decay": 0.1, "maximize": True},
        "coefficients",
    ),
    BreadthCase("optimistic_adam", {"lr": 1e-2}, "default"),
    BreadthCase("optimistic_adam", {"lr": 1e-2, "optimism": 0.5, "eps_root": 1e-8}, "optimism"),
    BreadthCase(
        "optimistic_adam", {"lr": 1e-2, "nesterov": False, "weight_decay": 0.1}, "no_nesterov"
    ),
    BreadthCase("rprop", {}, "default", torch.optim.Rprop, {}),
    BreadthCase(
        "rprop",
        {"lr": 0.05, "etas": (0.3, 1.5), "step_sizes": (1e-3, 0.06), "maximize": True},
        "clipped_maximize",
        torch.optim.Rprop,
        {"lr": 0.05, "etas": (0.3, 1.5), "step_sizes": (1e-3, 0.06), "maximize": True},
    ),
    # torch.optim.ASGD keeps eta in the default dtype (float32): it matches to 1e-10 in float64
    # only where eta is exact in float32 (lambd = 0, lr a power of 2) and mu = 1 (t0 large).
    BreadthCase(
        "asgd",
        {"lr": 2.0**-6, "lambd": 0.0, "weight_decay": 0.1, "maximize": True},
        "exact_eta",
        torch.optim.ASGD,
        {"lr": 2.0**-6, "lambd": 0.0, "weight_decay": 0.1, "maximize": True},
    ),
    BreadthCase("asgd", {}, "default"),
    BreadthCase("asgd", {"lr": 0.05, "lambd": 0.1, "alpha": 0.5, "t0": 1.0}, "averaging"),
]
