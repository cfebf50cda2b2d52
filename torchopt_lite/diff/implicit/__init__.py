"""Implicit differentiation: ``custom_root``, ``custom_fixed_point`` and implicit meta-modules."""

from torchopt_lite.diff.implicit import nn
from torchopt_lite.diff.implicit.decorator import custom_fixed_point, custom_root
from torchopt_lite.diff.implicit.diagnostics import HypergradientReport, check_hypergradient
from torchopt_lite.diff.implicit.fixed_point import (
    FixedPointInfo,
    anderson,
    broyden,
    fixed_point_iteration,
)
from torchopt_lite.diff.implicit.fixed_point_layer import fixed_point_layer
from torchopt_lite.diff.implicit.nn import ImplicitMetaGradientModule

__all__ = [
    "custom_root",
    "custom_fixed_point",
    "fixed_point_layer",
    "anderson",
    "broyden",
    "fixed_point_iteration",
    "FixedPointInfo",
    "check_hypergradient",
    "HypergradientReport",
    "ImplicitMetaGradientModule",
    "nn",
]
