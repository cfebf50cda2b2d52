"""Euclidean projections onto orthants, boxes, l2 balls, lines and half-spaces, on trees."""

from __future__ import annotations

from typing import Any

import optree
import torch
from torch import Tensor

from torchopt_lite.projections._common import real_leaves
from torchopt_lite.pytree import tree_vdot


def projection_non_negative(tree: Any) -> Any:
    r"""Project a tree onto the non-negative orthant: :math:`\max(x, 0)` elementwise.

    .. math::
        \operatorname*{argmin}_p \lVert x - p \rVert_2^2 \quad \text{subject to} \quad p \ge 0

    Args:
        tree: a tensor or a tree of real tensors.

    Example:
        >>> projection_non_negative({"a": torch.tensor([-1.0, 2.0])})
        {'a': tensor([0., 2.])}

    Note:
        ``optax.projections.projection_non_negative``.
    """
    real_leaves(tree, "projection_non_negative")
    return optree.tree_map(torch.relu, tree)


def _clamp(x: Tensor, lower: Any, upper: Any) -> Tensor:
    if isinstance(lower, Tensor) or isinstance(upper, Tensor):  # torch takes no mix
        lower = torch.as_tensor(lower, dtype=x.dtype, device=x.device)
        upper = torch.as_tensor(upper, dtype=x.dtype, device=x.device)
    return torch.clamp(x, lower, upper)


def _broadcast(bound: Any, tree: Any, caller: str, name: str) -> Any:
    try:  # a number or a tensor covers every leaf; a tree covers its own subtrees
        return optree.tree_broadcast_prefix(bound, tree)
    except ValueError:
        raise ValueError(
            f"{caller}: {name} must be a number, a tensor or a tree whose structure is a prefix "
            f"of the tree's; tree: {optree.tree_structure(tree)}, "
            f"{name}: {optree.tree_structure(bound)}."
        ) from None


def projection_box(tree: Any, lower: Any, upper: Any) -> Any:
    r"""Project a tree onto the box :math:`[l, u]`: ``torch.clamp`` elementwise.

    .. math::
        \operatorname*{argmin}_p \lVert x - p \rVert_2^2 \quad \text{subject to} \quad
        l \le p \le u

    Args:
        tree: a tensor or a tree of real tensors.
        lower: :math:`l`, a number, a tensor (broadcast to each leaf) or a tree shaped like
            ``tree`` (or a prefix of it).
        upper: :math:`u`, likewise. Where :math:`l > u` the result is :math:`u`.

    Example:
        >>> projection_box(torch.tensor([-2.0, 0.5, 3.0]), -1.0, 1.0)
        tensor([-1.0000,  0.5000,  1.0000])

    Note:
        ``optax.projections.projection_box``, except that a number (or a tensor) bound covers
        every leaf of a tree here (Optax's covers a single array only). Differentiable in
        ``tree``, and in ``lower`` and ``upper`` where they are tensors.
    """
    real_leaves(tree, "projection_box")
    lo = _broadcast(lower, tree, "projection_box", "lower")
    hi = _broadcast(upper, tree, "projection_box", "upper")
    return optree.tree_map(_clamp, tree, lo, hi)


def projection_hypercube(tree: Any, scale: Any = 1.0) -> Any:
    r"""Project a tree onto the hypercube :math:`[0, s]` (:func:`projection_box` with ``0, s``).

    Args:
        tree: a tensor or a tree of real tensors.
        scale: :math:`s`, a number, a tensor or a tree (as ``upper`` in :func:`projection_box`).

    Example:
        >>> projection_hypercube(torch.tensor([-2.0, 0.5, 3.0]))
        tensor([0.0000, 0.5000, 1.0000])

    Note:
        ``optax.projections.projection_hypercube``.
    """
    return projection_box(tree, 0.0, scale)


def projection_linf_ball(tree: Any, scale: Any = 1.0) -> Any:
    r"""Project a tree onto the l-infinity ball :math:`\{\lVert y \rVert_\infty \le s\}`.

    :func:`projection_box` with ``-s, s``.

    Example:
        >>> projection_linf_ball(torch.tensor([-2.0, 0.5]), 1.0)
        tensor([-1.0000,  0.5000])

    Note:
        ``optax.projections.projection_linf_ball``.
    """
    neg = optree.tree_map(torch.neg, scale) if not isinstance(scale, int | float) else -scale
    return projection_box(tree, neg, scale)


def _squared_norm(tree: Any) -> Tensor:
    """:math:`\\sum |x|^2` over every element of every leaf (complex: the modulus)."""
    leaves = optree.tree_leaves(tree)
    terms = [
        torch.sum(torch.view_as_real(x) ** 2) if x.is_complex() else torch.sum(x * x)
        for x in leaves
    ]
    return torch.stack([t.to(terms[0].dtype) for t in terms]).sum()


def _scaled(tree: Any, factor: Tensor) -> Any:
    return optree.tree_map(lambda x: x * factor.to(x.real.dtype), tree)


def projection_l2_ball(tree: Any, scale: float | Tensor = 1.0) -> Any:
    r"""Project a tree onto the l2 ball of radius ``scale``.

    .. math::
        \operatorname*{argmin}_y \lVert x - y \rVert_2^2 \quad \text{subject to} \quad
        \lVert y \rVert_2 \le s, \qquad
        y = x \cdot s / \max(\lVert x \rVert_2, s)

    with :math:`\lVert x \rVert_2` the norm of all leaves together (complex leaves count
    :math:`|z|^2`). No host sync; differentiable (on the sphere itself, the derivative is the
    identity's, the inside one).

    Args:
        tree: a tensor or a tree of tensors.
        scale: :math:`s > 0`, the radius.

    Example:
        >>> projection_l2_ball({"a": torch.tensor([3.0]), "b": torch.tensor([4.0])})
        {'a': tensor([0.6000]), 'b': tensor([0.8000])}

    Note:
        ``optax.projections.projection_l2_ball``.
    """
    if isinstance(scale, int | float) and not scale > 0:
        raise ValueError(f"projection_l2_ball: scale must be > 0; got {scale}.")
    if not optree.tree_leaves(tree):
        return tree
    sq = _squared_norm(tree)
    bound = torch.as_tensor(scale, dtype=sq.dtype, device=sq.device) ** 2
    outside = sq > bound
    norm = torch.sqrt(torch.where(outside, sq, bound))
    return _scaled(tree, scale / norm)


def projection_l2_sphere(tree: Any, scale: float | Tensor = 1.0) -> Any:
    r"""Project a tree onto the l2 sphere: :math:`y = x \cdot s / \lVert x \rVert_2`.

    The norm is over all leaves together. At :math:`x = 0` every point of the sphere is
    nearest; the result is then NaN, as in Optax.

    Args:
        tree: a tensor or a tree of tensors.
        scale: :math:`s`, the radius.

    Example:
        >>> projection_l2_sphere(torch.tensor([0.3, 0.4]))
        tensor([0.6000, 0.8000])

    Note:
        ``optax.projections.projection_l2_sphere``.
    """
    if not optree.tree_leaves(tree):
        return tree
    return _scaled(tree, scale / torch.sqrt(_squared_norm(tree)))


def _same_structure(x: Any, a: Any, caller: str) -> None:
    if optree.tree_structure(x) != optree.tree_structure(a):
        raise ValueError(
            f"{caller}: x and a must have the same tree structure; got "
            f"{optree.tree_structure(x)} and {optree.tree_structure(a)}."
        )


def projection_vector(x: Any, a: Any) -> Any:
    r"""Project a tree onto the line spanned by the tree ``a``.

    .. math::
        \operatorname{proj}_a x = \frac{\langle x, a \rangle}{\langle a, a \rangle}\, a

    with :math:`\langle \cdot, \cdot \rangle` the real inner product over all leaves
    (:func:`torchopt_lite.pytree.tree_vdot`).

    Example:
        >>> projection_vector(torch.tensor([1.0, 2.0]), torch.tensor([0.0, 3.0]))
        tensor([0., 2.])

    Note:
        ``optax.projections.projection_vector``.
    """
    _same_structure(x, a, "projection_vector")
    return _scaled(a, tree_vdot(x, a) / tree_vdot(a, a))


def _hyperplane_step(x: Any, a: Any, b: Any) -> Tensor:
    return (b - tree_vdot(x, a)) / tree_vdot(a, a)


def projection_hyperplane(x: Any, a: Any, b: float | Tensor) -> Any:
    r"""Project a tree onto the hyperplane :math:`\{y : \langle a, y \rangle = b\}`.

    .. math::
        y = x + \frac{b - \langle a, x \rangle}{\langle a, a \rangle}\, a

    Example:
        >>> projection_hyperplane(torch.tensor([1.0, 2.0]), torch.tensor([1.0, 1.0]), 1.0)
        tensor([0., 1.])

    Note:
        ``optax.projections.projection_hyperplane``.
    """
    _same_structure(x, a, "projection_hyperplane")
    step = _scaled(a, _hyperplane_step(x, a, b))
    return optree.tree_map(torch.add, x, step)


def projection_halfspace(x: Any, a: Any, b: float | Tensor) -> Any:
    r"""Project a tree onto the half-space :math:`\{y : \langle a, y \rangle \le b\}`.

    .. math::
        y = x + \min\Bigl(0, \frac{b - \langle a, x \rangle}{\langle a, a \rangle}\Bigr)\, a

    Example:
        >>> projection_halfspace(torch.tensor([1.0, 2.0]), torch.tensor([1.0, 1.0]), 5.0)
        tensor([1., 2.])

    Note:
        ``optax.projections.projection_halfspace``.
    """
    _same_structure(x, a, "projection_halfspace")
    step = _scaled(a, torch.clamp(_hyperplane_step(x, a, b), max=0.0))
    return optree.tree_map(torch.add, x, step)
