"""Modules whose ``forward`` gets zero-order gradients with respect to their parameters."""

from torchopt_lite.diff.zero_order.nn.module import (
    ZeroOrderGradientModule,
    enable_zero_order_gradients,
)

__all__ = ["ZeroOrderGradientModule", "enable_zero_order_gradients"]
