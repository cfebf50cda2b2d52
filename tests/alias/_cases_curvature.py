"""Curvature-based aliases for the generic tests: sophia and sam.

Sophia's default estimator needs the extra argument ``obj_fn``, which the generic tests do not
pass; these cases plug in :func:`squared_gradient_estimator`, a stand-in that reads only the
gradients, so the layout matrix, class/meta forms, compile and vmap run Sophia's own math (the
estimators are checked in ``test_curvature.py``).
"""

from __future__ import annotations

from typing import Any

import optree

from tests.alias._breadth import BreadthCase
from torchopt_lite.alias.adam import adam
from torchopt_lite.alias.sgd import sgd
from torchopt_lite.base import EmptyState, GradientTransformation
from torchopt_lite.combine import chain
from torchopt_lite.transform.normalize import normalize


def squared_gradient_estimator() -> GradientTransformation:
    """``h = g * g``: a Hessian-diagonal stand-in with no objective (tests only)."""

    def init_fn(params: Any) -> EmptyState:
        return EmptyState()

    def update_fn(
        updates: Any, state: Any, *, params: Any = None, inplace: bool = True, **extra: Any
    ) -> tuple[Any, EmptyState]:
        return optree.tree_map(lambda g: g * g, updates), EmptyState()

    return GradientTransformation(init_fn, update_fn)


CASES = [
    BreadthCase(
        "sophia",
        {"lr": 1e-2, "update_interval": 2, "hessian_diagonal_fn": squared_gradient_estimator()},
        "default",
        complex_ok=False,
    ),
    BreadthCase(
        "sophia",
        {
            "lr": 1e-2,
            "b2": 0.5,
            "eps": 0.1,
            "gamma": 1.0,
            "clip_threshold": None,
            "update_interval": 1,
            "weight_decay": 0.1,
            "maximize": True,
            "hessian_diagonal_fn": squared_gradient_estimator(),
        },
        "unclipped-maximize",
        complex_ok=False,
    ),
    BreadthCase(
        "sam",
        {"optimizer": sgd(0.1), "adv_optimizer": chain(normalize(), sgd(0.05))},
        "default",
    ),
    BreadthCase(
        "sam",
        {
            "optimizer": adam(1e-2),
            "adv_optimizer": chain(normalize(), sgd(0.05)),
            "sync_period": 3,
            "reset_state": False,
        },
        "adam-sync3",
    ),
]
