"""Modules with meta-parameters, and stateless reparametrization helpers."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from torchopt_lite.nn.module import MetaGradientModule
from torchopt_lite.nn.stateless import reparameterize, reparametrize, swap_state

if TYPE_CHECKING:
    from torchopt_lite.diff.implicit.nn.module import ImplicitMetaGradientModule
    from torchopt_lite.diff.zero_order.nn import ZeroOrderGradientModule

__all__ = [
    "MetaGradientModule",
    "ImplicitMetaGradientModule",
    "ZeroOrderGradientModule",
    "reparametrize",
    "reparameterize",
    "swap_state",
]


def __getattr__(name: str) -> Any:
    # Imported on first use: the implicit module subclasses MetaGradientModule (import cycle).
    if name == "ImplicitMetaGradientModule":
        from torchopt_lite.diff.implicit.nn.module import ImplicitMetaGradientModule

        return ImplicitMetaGradientModule
    if name == "ZeroOrderGradientModule":
        from torchopt_lite.diff.zero_order.nn import ZeroOrderGradientModule

        return ZeroOrderGradientModule
    raise AttributeError(f"module 'torchopt_lite.nn' has no attribute {name!r}")
