"""Implicit differentiation: ``custom_root``, ``custom_fixed_point`` and implicit meta-modules."""

from torchopt_lite.diff.implicit import nn
from torchopt_lite.diff.implicit.decorator import custom_fixed_point, custom_root
from torchopt_lite.diff.implicit.nn import ImplicitMetaGradientModule

__all__ = ["custom_root", "custom_fixed_point", "ImplicitMetaGradientModule", "nn"]
