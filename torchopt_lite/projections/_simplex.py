"""Projection onto the simplex (sort-based) with its exact Jacobian, and the l1 ball on top."""

from __future__ import annotations

from typing import Any

import optree
import torch
from torch import Tensor

from torchopt_lite.projections._common import real_leaves, where_tree
from torchopt_lite.pytree import tree_ravel


def _unit_simplex(v: Tensor) -> Tensor:
    r"""Euclidean projection of the vector ``v`` onto :math:`\{p \ge 0, \sum p = 1\}`.

    Sort descending, find the largest :math:`\rho` with
    :math:`u_\rho > (\sum_{j \le \rho} u_j - 1)/\rho`, shift by that threshold and clip at 0
    (Held et al. 1974; Duchi et al. 2008). ``O(n log n)``, no host sync, batchable by vmap.
    """
    u = torch.sort(v, descending=True).values
    css = torch.cumsum(u, dim=0)
    k = torch.arange(1, v.shape[0] + 1, dtype=v.dtype, device=v.device)
    rho = torch.clamp(torch.count_nonzero(u - (css - 1) / k > 0), min=1)  # >= 1 but for NaN
    theta = (css.gather(0, (rho - 1).reshape(1)) - 1) / rho.to(v.dtype)
    return torch.clamp(v - theta, min=0)


def _support_product(out: Tensor, v: Tensor) -> Tensor:
    r""":math:`J v` with the simplex projection's Jacobian :math:`J = \operatorname{diag}(s) -
    s s^\top / |s|`, :math:`s` the support of the projection: ``v`` minus its mean over the
    support, zero off it. :math:`J` is symmetric, so this is also the VJP."""
    s = (out > 0).to(v.dtype)
    return s * (v - (s * v).sum() / s.sum())


class _UnitSimplex(torch.autograd.Function):
    """:func:`_unit_simplex` with the closed-form derivative (autograd through ``sort`` and
    the data-dependent threshold would be wrong at ties)."""

    generate_vmap_rule = True

    @staticmethod
    def forward(v: Tensor) -> Tensor:
        return _unit_simplex(v)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
        ctx.save_for_backward(output)
        ctx.save_for_forward(output)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        (out,) = ctx.saved_tensors
        return _support_product(out, grad)

    @staticmethod
    def jvp(ctx: Any, tangent: Tensor) -> Tensor:
        (out,) = ctx.saved_tensors
        return _support_product(out, tangent)


def _check_scale(caller: str, scale: Any) -> None:
    if isinstance(scale, int | float) and not scale > 0:
        raise ValueError(f"{caller}: scale must be > 0; got {scale}.")


def projection_simplex(tree: Any, scale: float | Tensor = 1.0) -> Any:
    r"""Project a tree onto the simplex of radius ``scale``.

    .. math::
        \operatorname*{argmin}_p \lVert x - p \rVert_2^2 \quad \text{subject to} \quad
        p \ge 0,\ \textstyle\sum p = s

    over all elements of all leaves together (the tree is one vector). Sort-based, exact.
    Its derivative is the closed form: on the support of the result
    :math:`m = [p > 0]`, :math:`J v = m \odot (v - \operatorname{mean}_{m}(v))` (zero off it),
    also at ties, where autograd through the sort would not be; first-order forward and
    reverse mode, and ``torch.func.vmap``. ``torch.compile(fullgraph=True)`` traces it without
    autograd; with autograd recording, dynamo (torch 2.13) cannot trace an
    ``autograd.Function`` with a custom ``jvp`` and breaks the graph there.

    Args:
        tree: a tensor or a tree of real tensors.
        scale: :math:`s > 0`, the sum of the result (a float or a 0-d tensor).

    Returns:
        The projection, a tree shaped like ``tree`` (each leaf in its own dtype).

    Example:
        >>> projection_simplex({"w": torch.tensor([2.5, 3.2]), "b": torch.tensor(0.5)})
        {'w': tensor([0.1500, 0.8500]), 'b': tensor(0.)}

    References:
        Held, Wolfe and Crowder, `Validation of subgradient optimization
        <https://doi.org/10.1007/BF01580223>`_, 1974; Duchi et al., `Efficient Projections onto
        the l1-Ball for Learning in High Dimensions
        <https://doi.org/10.1145/1390156.1390191>`_, 2008.

    Note:
        ``optax.projections.projection_simplex``.
    """
    _check_scale("projection_simplex", scale)
    real_leaves(tree, "projection_simplex")
    flat, unravel = tree_ravel(tree)
    if flat.numel() == 0:
        return tree
    return unravel(scale * _UnitSimplex.apply(flat / scale))


def projection_l1_sphere(tree: Any, scale: float | Tensor = 1.0) -> Any:
    r"""Project a tree onto the l1 sphere :math:`\{y : \lVert y \rVert_1 = s\}`.

    The simplex projection of :math:`|x|` with the signs of :math:`x` put back (for
    :math:`x = 0` the sign is 0: the result lies on the sphere for any :math:`x` whose l1 norm
    is at least :math:`s`).

    Args:
        tree: a tensor or a tree of real tensors.
        scale: :math:`s > 0`, the radius.

    Example:
        >>> projection_l1_sphere(torch.tensor([2.0, -1.5]))
        tensor([ 0.7500, -0.2500])

    Note:
        ``optax.projections.projection_l1_sphere``.
    """
    _check_scale("projection_l1_sphere", scale)
    real_leaves(tree, "projection_l1_sphere")
    magnitude = projection_simplex(optree.tree_map(torch.abs, tree), scale)
    return optree.tree_map(lambda x, p: torch.sign(x) * p, tree, magnitude)


def projection_l1_ball(tree: Any, scale: float | Tensor = 1.0) -> Any:
    r"""Project a tree onto the l1 ball.

    .. math::
        \operatorname*{argmin}_y \lVert x - y \rVert_2^2 \quad \text{subject to} \quad
        \lVert y \rVert_1 \le s

    :math:`x` itself inside the ball, else :func:`projection_l1_sphere`; the choice is a
    ``torch.where`` (no host sync). Its derivative is the simplex projection's, with signs.

    Args:
        tree: a tensor or a tree of real tensors.
        scale: :math:`s > 0`, the radius.

    Example:
        >>> projection_l1_ball({"w": torch.tensor([2.5, 3.2]), "b": torch.tensor(0.5)})
        {'w': tensor([0.1500, 0.8500]), 'b': tensor(0.)}

    Note:
        ``optax.projections.projection_l1_ball``.
    """
    _check_scale("projection_l1_ball", scale)
    leaves = real_leaves(tree, "projection_l1_ball")
    if not leaves:
        return tree
    l1 = torch.stack([x.abs().sum().to(leaves[0].dtype) for x in leaves]).sum()
    return where_tree(l1 <= scale, tree, projection_l1_sphere(tree, scale))
