"""Bridges to code outside PyTorch: ``scipy.optimize`` with autograd, external numpy params.

scipy is optional: it is imported by the functions that use it, so this package imports
without it.
"""

from torchopt_lite.interop.scipy import minimize

__all__ = ["minimize"]
