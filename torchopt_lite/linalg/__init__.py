"""Iterative linear algebra on trees of tensors: CG, BiCGSTAB and Neumann series."""

from torchopt_lite.linalg import utils
from torchopt_lite.linalg.bicgstab import bicgstab
from torchopt_lite.linalg.cg import cg
from torchopt_lite.linalg.ns import ns, ns_inv
from torchopt_lite.linalg.utils import ConvergenceError

__all__ = ["cg", "bicgstab", "ns", "ns_inv", "ConvergenceError", "utils"]
