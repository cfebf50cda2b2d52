"""``solve_identity``: the first-order (Hessian-free) hypergradient, a scaled identity solve."""

from __future__ import annotations

import optree

from torchopt_lite.linear_solve._common import bind_system
from torchopt_lite.linear_solve.utils import Matvec
from torchopt_lite.typing import LinearSolver, TensorTree


def solve_identity(
    *,
    alpha: float = 1.0,
    matvec: Matvec | None = None,
    b: TensorTree | None = None,
) -> LinearSolver:
    r"""Return ``solve(matvec, b) = alpha * b``: replace :math:`A^{-1}` by :math:`\alpha I`.

    In :func:`~torchopt_lite.diff.implicit.custom_root` the hypergradient of an outer loss
    :math:`L(x^\star(\theta), \theta)` becomes

    .. math::
        \nabla_\theta L - B^\top A^{-\top} \nabla_x L
        \;\approx\; \nabla_\theta L - \alpha\, B^\top \nabla_x L,
        \qquad A = \partial_x F,\ B = \partial_\theta F,

    which costs one VJP of :math:`F` in :math:`\theta` and no matvec with :math:`A` (no
    Hessian-vector products). It is the Neumann series
    :math:`\alpha \sum_{k \le K} (I - \alpha A)^k` with :math:`K = 0` terms
    (``solve_inv(ns=True, maxiter=0, alpha=alpha)``), and, with :math:`\alpha` the inner
    learning rate, the T1-T2 hypergradient of Luketina et al. (one step of gradient descent
    differentiated); ``alpha=0`` drops the implicit term altogether.

    **Bias.** In the eigenbasis of a symmetric :math:`A` (eigenvalues :math:`\lambda_i`),
    :math:`\alpha I - A^{-1} = -(I - \alpha A) A^{-1}`: the component of the solve along
    eigenvector :math:`i` is off by the factor :math:`1 - \alpha \lambda_i` (the Neumann series
    with :math:`K` terms by :math:`(1 - \alpha\lambda_i)^{K+1}`). With :math:`\alpha = 1 /
    \lambda_{\max}` only the top directions are right and the error in a direction with small
    curvature approaches 100%; the approximation is good only for a well-conditioned :math:`A`
    or when :math:`\nabla_x L` lies in its top eigenspace. It is biased, not noisy: more
    samples do not reduce the error, and the sign of a hypergradient entry may flip.

    Args:
        alpha: the scale :math:`\alpha \ge 0` (an inner step size, or :math:`1 / \lambda_{\max}`).
        matvec: a system's ``matvec`` to bind (TorchOpt's form); it is never called.
        b: a right-hand side to bind in the same way.

    Returns:
        A linear solver ``solve(matvec, b) -> x``.

    Example:
        >>> solve_identity(alpha=0.1)(lambda x: 10 * x, torch.tensor([1.0, 2.0]))
        tensor([0.1000, 0.2000])

    Note:
        Not in TorchOpt.

    References:
        Luketina, Berglund, Greff and Raiko, *Scalable gradient-based tuning of continuous
        regularization hyperparameters*, ICML 2016. Lorraine, Vicol and Duvenaud, *Optimizing
        millions of hyperparameters by implicit differentiation*, AISTATS 2020 (the Neumann
        family this is the first term of).
    """
    if not alpha >= 0.0:
        raise ValueError(f"solve_identity: alpha must be >= 0; got {alpha}.")

    def solve(matvec: Matvec, b: TensorTree) -> TensorTree:
        return optree.tree_map(lambda t: alpha * t, b)

    return bind_system("solve_identity", solve_identity, dict(alpha=alpha), solve, matvec, b)
