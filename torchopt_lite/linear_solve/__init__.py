"""Linear solvers ``solve(matvec, b) -> x`` for implicit differentiation."""

from torchopt_lite.linear_solve import utils
from torchopt_lite.linear_solve.bicgstab import solve_bicgstab
from torchopt_lite.linear_solve.cg import solve_cg
from torchopt_lite.linear_solve.identity import solve_identity
from torchopt_lite.linear_solve.inv import solve_inv
from torchopt_lite.linear_solve.normal_cg import solve_normal_cg
from torchopt_lite.linear_solve.nystrom import solve_nystrom_pcg

__all__ = [
    "solve_cg",
    "solve_normal_cg",
    "solve_inv",
    "solve_bicgstab",
    "solve_nystrom_pcg",
    "solve_identity",
    "utils",
]
