"""Weight decay added to the updates, and masking a transformation to some leaves."""

from __future__ import annotations

from typing import Any, NamedTuple

import optree
from torch import Tensor

from torchopt_lite import _kinds
from torchopt_lite._checks import check_nonnegative
from torchopt_lite._dispatch import Leafwise
from torchopt_lite._dispatch._boundary import PARAMS_REQUIRED, flatten_tensors
from torchopt_lite._ops import Ops
from torchopt_lite.base import (
    EmptyState,
    GradientTransformation,
    LeafwiseTransformation,
    extra_args_filter,
    identity,
    register_state_type,
)

Mask = Any  # a tree of bools shaped like params, or a callable params -> such a tree


@register_state_type
class MaskedNode(NamedTuple):
    """Stands in the inner state for a leaf the mask excludes."""


@register_state_type
class MaskedState(NamedTuple):
    """State of :func:`masked`: the inner transformation's state over the selected leaves."""

    inner_state: Any


def _params_required(caller: str) -> ValueError:
    return ValueError(PARAMS_REQUIRED.format(caller=caller))


def _decay(weight_decay: float) -> LeafwiseTransformation:
    def update(g: list[Tensor], state: Any, params: Any, ops: Ops) -> tuple[Any, Any]:
        return ops.add(g, params, alpha=weight_decay), state

    kind = _kinds.AddDecayedWeights(float(weight_decay)) if _kinds.constant(weight_decay) else None
    return LeafwiseTransformation(
        Leafwise(lambda leaves: EmptyState(), update, kind=kind, needs_params="add_decayed_weights")
    )


def add_decayed_weights(
    weight_decay: float = 0.0, mask: Mask | None = None
) -> GradientTransformation:
    r"""Add decoupled weight decay to the updates: :math:`u \leftarrow u + \lambda \theta`.

    Args:
        weight_decay: :math:`\lambda \ge 0`.
        mask: a tree of bools shaped like the params (or a callable ``params -> tree``) that
            selects the leaves to decay; ``None`` decays every leaf.

    Example:
        >>> t = add_decayed_weights(0.1)
        >>> p = torch.ones(2)
        >>> t.update(torch.zeros(2), t.init(p), params=p)[0]
        tensor([0.1000, 0.1000])
    """
    check_nonnegative("add_decayed_weights", "weight_decay", weight_decay, what="weight_decay")
    if _kinds.is_zero(weight_decay):
        return identity()
    inner = _decay(weight_decay)
    return inner if mask is None else masked(inner, mask)


def _mask_leaves(
    mask: Mask | None, params: Any, spec: optree.PyTreeSpec, caller: str
) -> list[bool]:
    if mask is None:
        return [True] * spec.num_leaves
    tree = mask(params) if callable(mask) else mask
    try:  # a mask may be a prefix of the params tree: one bool for a whole subtree
        template = optree.tree_unflatten(spec, [0] * spec.num_leaves)
        full = optree.tree_broadcast_prefix(tree, template, none_is_leaf=True)
    except ValueError:
        mask_spec = optree.tree_structure(tree, none_is_leaf=True)
        raise ValueError(
            f"{caller}: mask must have the tree structure of params or a prefix of it; "
            f"params: {spec}, mask: {mask_spec}."
        ) from None
    return [bool(x) for x in optree.tree_leaves(full, none_is_leaf=True)]


def masked(inner: GradientTransformation, mask: Mask | None = None) -> GradientTransformation:
    """Apply ``inner`` only to the leaves where ``mask`` is ``True``; others pass through.

    ``mask`` is a tree of bools shaped like the params, or a prefix of that tree (one bool for a
    whole subtree), or a callable ``params -> tree``; ``None`` selects every leaf. The inner
    transformation sees a flat tuple of the selected leaves, so its state has one entry per
    selected leaf.

    Example:
        >>> from torchopt_lite.transform import scale
        >>> t = masked(scale(0.0), {"a": True, "b": False})
        >>> g = {"a": torch.ones(1), "b": torch.ones(1)}
        >>> t.update(g, t.init(g))[0]
        {'a': tensor([0.]), 'b': tensor([1.])}
    """

    def init_fn(params: Any) -> MaskedState:
        leaves, spec = flatten_tensors(params, "params", "masked")
        keep = _mask_leaves(mask, params, spec, "masked")
        return MaskedState(inner.init(tuple(x for x, k in zip(leaves, keep, strict=True) if k)))

    pick = extra_args_filter(inner.update)

    def update_fn(
        updates: Any,
        state: MaskedState,
        *,
        params: Any = None,
        inplace: bool = True,
        **extra_args: Any,
    ) -> tuple[Any, MaskedState]:
        leaves, spec = flatten_tensors(updates, "updates", "masked")
        if callable(mask) and params is None:
            raise _params_required("masked")
        keep = _mask_leaves(mask, params if callable(mask) else updates, spec, "masked")
        index = [i for i, k in enumerate(keep) if k]
        sub_params = None
        if params is not None:
            p_leaves = optree.tree_leaves(params, none_is_leaf=True)
            sub_params = tuple(p_leaves[i] for i in index)
        sub, inner_state = inner.update(
            tuple(leaves[i] for i in index),
            state.inner_state,
            params=sub_params,
            inplace=inplace,
            **pick(extra_args),
        )
        out = list(leaves)
        for i, x in zip(index, sub, strict=True):
            out[i] = x
        return optree.tree_unflatten(spec, out), MaskedState(inner_state)

    return GradientTransformation(init_fn, update_fn)
