"""Randomized Nystrom approximation of a PSD operator, and the preconditioner built from it."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from torchopt_lite.linalg.utils import normalize_matvec
from torchopt_lite.pytree import tree_ravel
from torchopt_lite.typing import TensorTree


class NystromApprox(NamedTuple):
    r"""A rank-:math:`\ell` PSD approximation :math:`\hat A = U \mathrm{diag}(\lambda) U^\top`.

    ``U`` (:math:`n \times \ell`, orthonormal columns) acts on the flattened leaves of the tree
    it was built for (the order of :func:`torchopt_lite.pytree.tree_ravel`); ``eigvals``
    (:math:`\ell`, descending, :math:`\ge 0`) are the approximate top eigenvalues.
    """

    U: Tensor
    eigvals: Tensor


def check_sketch(name: str, rank: int, seed: int) -> None:
    """``rank`` must be a positive int and ``seed`` a non-negative int."""
    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
        raise ValueError(f"{name}: rank must be a positive int; got {rank!r}.")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"{name}: seed must be a non-negative int; got {seed!r}.")


def nystrom(
    A: TensorTree | Callable[[TensorTree], TensorTree],
    x: TensorTree,
    rank: int,
    *,
    seed: int = 0,
) -> NystromApprox:
    r"""Randomized Nystrom approximation of a symmetric PSD operator from ``rank`` matvecs.

    With a Gaussian test matrix orthonormalised, :math:`\Omega \in \mathbb{R}^{n \times \ell}`,
    and the sketch :math:`Y = A \Omega` (:math:`\ell` matvecs, one batched call), the Nystrom
    approximation is

    .. math::
        \hat A = Y (\Omega^\top Y)^{+} Y^\top = U \operatorname{diag}(\lambda) U^\top,

    computed stably (Frangella, Tropp and Udell, Algorithm 2.1): shift
    :math:`Y_\nu = Y + \nu \Omega` with :math:`\nu = \sqrt{n}\,\varepsilon\,\|Y\|_2`, factor
    :math:`\Omega^\top Y_\nu = C C^\top` (Cholesky), take the SVD
    :math:`Y_\nu C^{-\top} = U \Sigma V^\top` and set :math:`\lambda = \max(\Sigma^2 - \nu, 0)`.
    :math:`\hat A \preceq A`, and :math:`\hat A = A` (up to rounding) when
    :math:`\operatorname{rank} A \le \ell`; the error decays with the tail
    :math:`\lambda_{\ell+1}, \lambda_{\ell+2}, \ldots` of the spectrum of :math:`A`.

    Args:
        A: the operator: a callable ``x -> A x`` on trees shaped like ``x`` (it must run under
            :func:`torch.func.vmap`), or a tree of square matrices applied leafwise. Symmetric
            positive semi-definite.
        x: an example tree: its leaves fix :math:`n` (their total size), dtype and device.
        rank: the sketch size :math:`\ell`; clamped to :math:`n` (then :math:`\hat A = A`).
        seed: seed of the Gaussian test matrix (drawn by NumPy's ``default_rng(seed)`` on the
            host, so the sketch is the same on every device and under every transform).

    Returns:
        A :class:`NystromApprox` ``(U, eigvals)`` over the flattened leaves of ``x``.

    Example:
        >>> G = torch.randn(5, 2, dtype=torch.float64)
        >>> U, lam = nystrom(lambda v: G @ (G.T @ v), torch.zeros(5, dtype=torch.float64), 3)
        >>> bool(torch.allclose(U @ torch.diag(lam) @ U.T, G @ G.T))
        True

    Note:
        The test matrix is drawn by NumPy, not by a torch random op, so ``nystrom`` runs under
        :func:`torch.func.vmap`, :func:`~torch.func.jacrev` and ``torch.compile`` (a graph break)
        without a ``randomness`` flag; on an accelerator it costs one host-to-device copy of
        :math:`n \times \ell` numbers. The :math:`\ell` matvecs run as one vmapped call, with
        :math:`\ell` times the memory of one.

    References:
        Frangella, Tropp and Udell, *Randomized Nystrom preconditioning*, SIAM J. Matrix Anal.
        Appl. 44(2), 2023. Tropp, Yurtsever, Udell and Cevher, *Fixed-rank approximation of a
        positive-semidefinite matrix from streaming data*, NeurIPS 2017.
    """
    check_sketch("nystrom", rank, seed)
    matvec = normalize_matvec(A)
    flat_x, unravel = tree_ravel(x)
    n = flat_x.numel()
    ell = min(rank, n)

    def flat_matvec(v: Tensor) -> Tensor:
        return tree_ravel(matvec(unravel(v)))[0]

    gaussian = torch.from_numpy(np.random.default_rng(seed).standard_normal((n, ell)))
    gaussian = gaussian.to(dtype=flat_x.dtype, device=flat_x.device)
    omega = torch.linalg.qr(gaussian).Q
    Y = torch.func.vmap(flat_matvec)(omega.mT).mT  # A @ omega, one batched call
    finfo = torch.finfo(Y.dtype)
    # The shift; floored so that A = 0 (Y = 0) still factors, and gives eigvals = 0.
    nu = torch.clamp_min(n**0.5 * finfo.eps * torch.linalg.matrix_norm(Y, ord=2), finfo.tiny)
    Y_nu = Y + nu * omega
    core = omega.mT @ Y_nu
    try:
        C = torch.linalg.cholesky(0.5 * (core + core.mT))
    except torch.linalg.LinAlgError as err:
        raise ValueError(
            "nystrom: A must be symmetric positive semi-definite, but the sketch "
            "Omega^T A Omega has no Cholesky factor; for a general A use solve_cg with a "
            f"ridge, solve_bicgstab or solve_normal_cg. torch: {err}"
        ) from err
    B = torch.linalg.solve_triangular(C, Y_nu.mT, upper=False).mT  # Y_nu C^{-T}
    U, sigma, _ = torch.linalg.svd(B, full_matrices=False)
    return NystromApprox(U, torch.clamp_min(sigma**2 - nu, 0.0))


def nystrom_precond(approx: NystromApprox, mu: float = 0.0) -> Callable[[Tensor], Tensor]:
    r"""Return :math:`v \mapsto P^{-1} v`, the Nystrom preconditioner of :math:`A + \mu I`.

    .. math::
        P^{-1} = (\lambda_\ell + \mu)\, U (\Lambda + \mu I)^{-1} U^\top + (I - U U^\top),

    which maps the top-:math:`\ell` eigen-directions captured by :math:`\hat A` to eigenvalue
    about :math:`\lambda_\ell + \mu` and leaves the rest alone, so the preconditioned condition
    number is about :math:`(\lambda_\ell + \mu + \|A - \hat A\|) / (\lambda_{\min}(A) + \mu)`
    instead of :math:`(\lambda_1 + \mu) / (\lambda_{\min}(A) + \mu)`. Directions with
    :math:`\lambda_i + \mu = 0` are left unscaled, and :math:`\lambda_\ell + \mu` is the smallest
    positive :math:`\lambda_i + \mu`; no value is read on the host.

    Args:
        approx: the output of :func:`nystrom`.
        mu: the shift :math:`\mu \ge 0` of the system (a ridge).

    Returns:
        A function on flat vectors of length :math:`n`.

    Example:
        >>> A = torch.diag(torch.tensor([100.0, 10.0, 1.0], dtype=torch.float64))
        >>> P_inv = nystrom_precond(nystrom(A, torch.zeros(3, dtype=torch.float64), 3))
        >>> P_inv(A @ torch.ones(3, dtype=torch.float64))   # A is captured: P^{-1} A = I
        tensor([1., 1., 1.], dtype=torch.float64)

    References:
        Frangella, Tropp and Udell, *Randomized Nystrom preconditioning*, SIAM J. Matrix Anal.
        Appl. 44(2), 2023, eq. (5.3).
    """
    if not mu >= 0.0:
        raise ValueError(f"nystrom_precond: mu must be >= 0; got {mu}.")
    U, eigvals = approx
    shifted = eigvals + mu
    positive = shifted > 0
    floor = torch.where(positive, shifted, torch.full_like(shifted, float("inf"))).amin()
    scale = torch.where(positive, floor / torch.where(positive, shifted, 1.0), 1.0) - 1.0

    def apply(v: Tensor) -> Tensor:
        return v + U @ (scale * (U.mT @ v))

    return apply
