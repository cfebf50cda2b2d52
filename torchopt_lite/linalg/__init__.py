"""Iterative linear algebra on trees of tensors: CG, BiCGSTAB and Neumann series."""

from torchopt_lite.linalg import utils
from torchopt_lite.linalg.bicgstab import bicgstab
from torchopt_lite.linalg.cg import cg
from torchopt_lite.linalg.info import SolveInfo, record_solves
from torchopt_lite.linalg.ns import ns, ns_inv
from torchopt_lite.linalg.nystrom import NystromApprox, nystrom, nystrom_precond
from torchopt_lite.linalg.utils import ConvergenceError, ConvergenceWarning

__all__ = [
    "cg",
    "bicgstab",
    "ns",
    "ns_inv",
    "nystrom",
    "nystrom_precond",
    "NystromApprox",
    "ConvergenceError",
    "ConvergenceWarning",
    "SolveInfo",
    "record_solves",
    "utils",
]
