"""Recent practice: Muon, Prodigy, Schedule-Free SGD and AdamW, for the generic tests.

``torch.optim.Muon`` takes only 2-D parameters (every layout has vectors) and runs its
Newton-Schulz iteration in bfloat16, so Muon's cases run in float64 (``ns_dtype=None``) against
the alias on dense copies; ``tests/alias/test_recent.py`` checks it against ``torch.optim.Muon``.
"""

from __future__ import annotations

from tests.alias._breadth import BreadthCase

CASES = [
    BreadthCase("muon", {"lr": 0.02, "ns_dtype": None}, "default", complex_ok=False),
    BreadthCase(
        "muon",
        {
            "lr": 0.02,
            "ns_dtype": None,
            "nesterov": False,
            "weight_decay": 0.0,
            "adjust_lr_fn": "match_rms_adamw",
            "adam_weight_decay": 0.01,
            "maximize": True,
        },
        "plain-rms",
        complex_ok=False,
    ),
    BreadthCase("prodigy", {"lr": 1.0}, "default"),
    BreadthCase(
        "prodigy",
        {"lr": 1.0, "weight_decay": 0.1, "safeguard_warmup": True, "estim_lr0": 1e-3},
        "wd-safeguard",
    ),
    BreadthCase("schedule_free_sgd", {"lr": 0.1}, "default"),
    BreadthCase(
        "schedule_free_sgd",
        {"lr": 0.1, "warmup_steps": 2, "weight_decay": 0.01, "maximize": True},
        "warmup-wd",
    ),
    BreadthCase("schedule_free_adamw", {"lr": 0.01}, "default"),
    BreadthCase(
        "schedule_free_adamw",
        {"lr": 0.01, "warmup_steps": 2, "weight_decay": 0.1, "b1": 0.95},
        "warmup-wd",
    ),
]
