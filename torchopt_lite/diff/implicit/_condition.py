"""Condition estimate of A = dF/dx by Lanczos, from matvecs only."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import optree
import torch
from torch import Tensor

from torchopt_lite.linear_solve.utils import make_rmatvec
from torchopt_lite.pytree import tree_ravel


def _detach(leaf: Any) -> Any:
    return leaf.detach() if isinstance(leaf, Tensor) else leaf


def condition_estimate(
    optimality_fn: Callable[..., Any],
    x_star: Any,
    args: tuple[Any, ...],
    iters: int,
    generator: torch.Generator,
) -> tuple[float, int, str]:
    r"""Condition of :math:`A = \partial_x F` from Lanczos' extreme Ritz values.

    Lanczos on :math:`A` itself when a random probe finds :math:`A v = A^\top v` (then
    :math:`\kappa = \max|\mu| / \min|\mu|`), else on :math:`A^\top A` (then
    :math:`\kappa = \sqrt{\mu_{\max} / \mu_{\min}}`, resolvable up to
    :math:`1/\sqrt\epsilon`). Returns the estimate, the iterations and the operator's name.
    """
    flat_x, unravel = tree_ravel(optree.tree_map(torch.Tensor.detach, x_star))
    tree: Any = args
    leaves, spec = optree.tree_flatten(tree)
    args = tuple(optree.tree_unflatten(spec, [_detach(t) for t in leaves]))

    def residual(v: Tensor) -> Tensor:
        return tree_ravel(optimality_fn(unravel(v), *args))[0]

    _, vjp_fn, *_ = torch.func.vjp(residual, flat_x)

    def rmatvec(u: Tensor) -> Tensor:  # A^T u
        return vjp_fn(u)[0]

    matvec = make_rmatvec(rmatvec, torch.zeros_like(flat_x))  # A v, the VJP of u -> A^T u
    n, eps = flat_x.numel(), torch.finfo(flat_x.dtype).eps
    with torch.no_grad():
        probe = torch.randn(n, generator=generator, dtype=flat_x.dtype).to(flat_x.device)
        a_probe, at_probe = matvec(probe), rmatvec(probe)
        gap = torch.linalg.vector_norm(a_probe - at_probe)
        symmetric = bool(gap <= math.sqrt(eps) * torch.linalg.vector_norm(a_probe))

    def normal(v: Tensor) -> Tensor:
        return rmatvec(matvec(v))

    op = rmatvec if symmetric else normal
    q = torch.randn(n, generator=generator, dtype=flat_x.dtype).to(flat_x.device)
    basis = [q / torch.linalg.vector_norm(q)]
    alphas: list[Tensor] = []
    betas: list[Tensor] = []
    steps = min(n, iters)
    with torch.no_grad():
        for j in range(steps):
            w = op(basis[-1])
            alphas.append(torch.dot(basis[-1], w))
            Q = torch.stack(basis)
            w = w - Q.T @ (Q @ w)  # full reorthogonalisation, twice
            w = w - Q.T @ (Q @ w)
            beta = torch.linalg.vector_norm(w)
            scale = torch.stack(alphas).abs().max()
            if j == steps - 1 or not bool(beta > 1e3 * eps * scale):
                break  # the Krylov space is invariant: the Ritz values are eigenvalues
            betas.append(beta)
            basis.append(w / beta)
        T = torch.diag(torch.stack(alphas))
        if betas:
            off = torch.stack(betas)
            T = T + torch.diag(off, 1) + torch.diag(off, -1)
        ritz = torch.linalg.eigvalsh(T)
    if symmetric:
        lo, hi = float(ritz.abs().min()), float(ritz.abs().max())
        return (hi / lo if lo > 0 else math.inf), len(alphas), "A"
    lo, hi = float(ritz[0]), float(ritz[-1])
    return (math.sqrt(hi / lo) if lo > 0 else math.inf), len(alphas), "A^T A"
