"""Zero updates: ``set_to_zero``, and freezing some parameters (Optax's ``freeze``)."""

from __future__ import annotations

from typing import Any

import optree
import torch
from torch import Tensor

from torchopt_lite._dispatch import Leafwise
from torchopt_lite._ops import Ops
from torchopt_lite.base import (
    EmptyState,
    GradientTransformation,
    LeafwiseTransformation,
)
from torchopt_lite.transform.add_decayed_weights import Mask, masked
from torchopt_lite.transform.partition import partition


def _zero(g: list[Tensor], state: Any, params: Any, ops: Ops) -> tuple[list[Tensor], Any]:
    if ops.inplace:
        return [x.zero_() for x in g], state
    return [torch.zeros_like(x) for x in g], state


def set_to_zero() -> LeafwiseTransformation:
    """Replace every update by zeros (stateless); a NaN becomes 0 too.

    Example:
        >>> t = set_to_zero()
        >>> t.update(torch.tensor([1.0, float("nan")]), None)[0]
        tensor([0., 0.])
    """
    return LeafwiseTransformation(Leafwise(lambda leaves: EmptyState(), _zero, sparse=True))


def freeze(mask: Mask) -> GradientTransformation:
    """Zero the updates of the leaves where ``mask`` is ``True`` (they stay constant).

    Args:
        mask: ``True`` to freeze (a single bool for every leaf), or a tree of bools with the
            params' structure or a prefix of it, or a callable ``params -> such a tree``.

    Returns:
        ``masked(set_to_zero(), mask)``: stateless; chain it with the optimizer. To keep no
        optimizer state for the frozen leaves, use :func:`selective_transform`.

    Example:
        >>> t = freeze({"a": True, "b": False})
        >>> g = {"a": torch.ones(1), "b": torch.ones(1)}
        >>> t.update(g, t.init(g))[0]
        {'a': tensor([0.]), 'b': tensor([1.])}
    """
    return masked(set_to_zero(), mask)


def selective_transform(
    optimizer: GradientTransformation, *, freeze_mask: Mask
) -> GradientTransformation:
    """Run ``optimizer`` on the leaves where ``freeze_mask`` is ``False``; zero the others.

    The frozen leaves get zero updates and no optimizer state:
    ``partition({"train": optimizer, "freeze": set_to_zero()}, labels)``.

    Args:
        optimizer: the transformation of the trained leaves.
        freeze_mask: ``True`` to freeze: a bool, or a tree of bools with the params' structure or
            a prefix of it (static, as in Optax).

    Returns:
        A transformation whose state is a :class:`~torchopt_lite.transform.partition.PartitionState`
        with groups ``"train"`` and ``"freeze"``.

    Example:
        >>> from torchopt_lite.transform import trace
        >>> t = selective_transform(trace(0.9), freeze_mask={"a": True, "b": False})
        >>> g = {"a": torch.ones(1), "b": torch.ones(1)}
        >>> state = t.init(g)
        >>> len(state.inner_states["train"].inner_state.trace)
        1
    """
    if callable(freeze_mask):
        raise TypeError(
            "selective_transform: freeze_mask must be a bool or a tree of bools (static), "
            "not a callable."
        )
    labels = optree.tree_map(lambda m: "freeze" if m else "train", freeze_mask)
    return partition({"train": optimizer, "freeze": set_to_zero()}, labels)
