"""Zero-order differentiation: gradients of black-box functions from function values.

The module itself is callable, as in TorchOpt: ``torchopt_lite.diff.zero_order(distribution,
method=...)`` is :func:`zero_order`. This works because the module object's class is replaced
by a :class:`types.ModuleType` subclass whose ``__call__`` forwards to :func:`zero_order`.
"""

from __future__ import annotations

import sys as _sys
import types as _types
from collections.abc import Callable as _Callable
from typing import Any as _Any

from torchopt_lite.diff.zero_order import nn
from torchopt_lite.diff.zero_order.decorator import zero_order
from torchopt_lite.diff.zero_order.external import numpy_function
from torchopt_lite.diff.zero_order.nn import ZeroOrderGradientModule, enable_zero_order_gradients

__all__ = ["zero_order", "ZeroOrderGradientModule", "enable_zero_order_gradients", "numpy_function"]


class _CallableModule(_types.ModuleType):
    """This package's module type: calling the module calls :func:`zero_order`."""

    def __call__(self, *args: _Any, **kwargs: _Any) -> _Callable[..., _Any]:
        return zero_order(*args, **kwargs)


_sys.modules[__name__].__class__ = _CallableModule
