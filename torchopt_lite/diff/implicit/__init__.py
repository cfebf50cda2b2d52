"""Implicit differentiation: ``custom_root``, ``custom_fixed_point`` and implicit meta-modules."""

from torchopt_lite.diff.implicit.decorator import custom_fixed_point, custom_root

__all__ = ["custom_root", "custom_fixed_point"]
