"""SGD with a learnable learning rate: one scalar or one tensor per parameter (Meta-SGD)."""

from __future__ import annotations

from typing import Any

import optree
import torch
from torch import Tensor

from torchopt_lite.base import EmptyState, GradientTransformation
from torchopt_lite.typing import OptState, Params, Updates


def per_parameter_sgd(lr: float | Tensor | Params) -> GradientTransformation:
    r"""SGD whose step size is a tensor that can learn: :math:`u_i = -\alpha_i \odot g_i`.

    :math:`\alpha` is a scalar (a float or a 0-d tensor) shared by all parameters, or a tree
    with the structure of the parameters whose leaves broadcast against them (one step size per
    entry, as in Meta-SGD). When :math:`\alpha` requires grad, the unrolled inner loop gives it a
    meta-gradient. The update has no state and works under :func:`torch.func.vmap`.

    Args:
        lr: the step size :math:`\alpha`.

    Returns:
        A :class:`~torchopt_lite.base.GradientTransformation`.

    Example:
        >>> alpha = {"w": torch.tensor([0.1, 0.2])}
        >>> opt = per_parameter_sgd(alpha)
        >>> params = {"w": torch.zeros(2)}
        >>> updates, _ = opt.update({"w": torch.ones(2)}, opt.init(params), inplace=False)
        >>> updates["w"]
        tensor([-0.1000, -0.2000])

    References:
        Li, Zhou, Chen and Li, *Meta-SGD: Learning to Learn Quickly for Few-Shot Learning*,
        2017.
    """
    lr_tree: Any = lr
    scalar = isinstance(lr, float | int) or (isinstance(lr, Tensor) and lr.dim() == 0)
    if isinstance(lr, bool) or not (scalar or optree.tree_leaves(lr_tree)):
        raise TypeError(
            "per_parameter_sgd: lr must be a float, a 0-d tensor or a tree of tensors shaped "
            f"like the params; got {type(lr).__name__}."
        )
    if not scalar:
        for leaf in optree.tree_leaves(lr_tree):
            if not isinstance(leaf, Tensor):
                raise TypeError(
                    "per_parameter_sgd: every leaf of lr must be a tensor; "
                    f"got {type(leaf).__name__}."
                )
    lr_spec = None if scalar else optree.tree_structure(lr_tree)

    def init_fn(params: Params) -> OptState:
        spec = optree.tree_structure(params)
        if lr_spec is not None and spec != lr_spec:
            raise ValueError(
                "per_parameter_sgd: lr must have the tree structure of the params; "
                f"lr: {lr_spec}, params: {spec}."
            )
        return EmptyState()

    def update_fn(
        updates: Updates,
        state: OptState,
        *,
        params: Params | None = None,
        inplace: bool = True,
        **extra_args: Any,
    ) -> tuple[Updates, OptState]:
        leaves, spec = optree.tree_flatten(updates, none_is_leaf=True)
        if lr_spec is None:
            alphas: list[Any] = [lr] * len(leaves)
        else:
            try:
                alphas = spec.flatten_up_to(lr_tree)
            except ValueError as err:
                raise ValueError(
                    "per_parameter_sgd: lr must have the tree structure of the updates; "
                    f"lr: {lr_spec}, updates: {spec}."
                ) from err
        if inplace:
            with torch.no_grad():
                out = [
                    g if g is None else g.mul_(a).neg_()
                    for g, a in zip(leaves, alphas, strict=True)
                ]
        else:
            out = [
                g if g is None else torch.mul(g, a).neg()
                for g, a in zip(leaves, alphas, strict=True)
            ]
        return optree.tree_unflatten(spec, out), state

    return GradientTransformation(init_fn, update_fn)
