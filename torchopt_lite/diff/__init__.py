"""Differentiation modes: explicit (unrolled), implicit (custom_root) and zero-order."""

from torchopt_lite.diff import explicit, implicit, zero_order
from torchopt_lite.diff.implicit import ImplicitMetaGradientModule
from torchopt_lite.diff.zero_order import ZeroOrderGradientModule

__all__ = [
    "explicit",
    "implicit",
    "zero_order",
    "ImplicitMetaGradientModule",
    "ZeroOrderGradientModule",
]
