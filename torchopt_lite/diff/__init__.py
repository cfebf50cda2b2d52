"""Differentiation modes: explicit (unrolled), implicit (custom_root) and zero-order."""

from torchopt_lite.diff import explicit, implicit, zero_order

__all__ = ["explicit", "implicit", "zero_order"]
