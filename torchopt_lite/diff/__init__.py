"""Differentiation modes: explicit (unrolled), implicit (custom_root) and zero-order."""
