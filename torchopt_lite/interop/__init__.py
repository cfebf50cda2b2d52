"""Bridges to code outside PyTorch: ``scipy.optimize`` with autograd, external numpy params.

scipy is optional: it is imported by the functions that use it, so this package imports
without it.
"""

from torchopt_lite.diff.zero_order import numpy_function
from torchopt_lite.interop.external import ExternalOptimizer
from torchopt_lite.interop.scipy import minimize
from torchopt_lite.interop.scipy_global import (
    basinhopping,
    differential_evolution,
    dual_annealing,
    shgo,
)
from torchopt_lite.interop.scipy_global_optimizer import ScipyGlobalMinimizer
from torchopt_lite.interop.scipy_optimizer import ScipyMinimizer

__all__ = [
    # scipy.optimize.minimize: functional, and torch.optim-style over module parameters
    "minimize",
    "ScipyMinimizer",
    # scipy's global optimizers: functional, and torch.optim-style over module parameters
    "basinhopping",
    "differential_evolution",
    "shgo",
    "dual_annealing",
    "ScipyGlobalMinimizer",
    # code and parameters outside PyTorch
    "ExternalOptimizer",
    "numpy_function",
]
