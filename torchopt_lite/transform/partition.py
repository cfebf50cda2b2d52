"""A different transformation for each group of parameters (Optax's ``partition``)."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from typing import Any, NamedTuple

import optree

from torchopt_lite._dispatch._boundary import flatten, flatten_tensors
from torchopt_lite.base import GradientTransformation, extra_args_filter, register_state_type
from torchopt_lite.transform._select import expect_state
from torchopt_lite.transform.add_decayed_weights import MaskedNode, MaskedState

Labels = Any  # a tree of labels, a prefix of the params tree, or a callable params -> such a tree


@register_state_type
class PartitionState(NamedTuple):
    """State of :func:`partition`: ``{label: MaskedState(inner_state)}`` (Optax's layout)."""

    inner_states: dict[Hashable, MaskedState]


def _leaf_labels(
    param_labels: Labels, tree: Any, spec: optree.PyTreeSpec, keys: Any
) -> list[Hashable]:
    """One label per leaf of ``tree`` (``None`` leaves included), checked against ``keys``."""
    labels = param_labels(tree) if callable(param_labels) else param_labels
    template = optree.tree_unflatten(spec, [0] * spec.num_leaves)
    try:
        full = optree.tree_broadcast_prefix(labels, template, none_is_leaf=True)
    except ValueError:
        label_spec = optree.tree_structure(labels, none_is_leaf=True)
        raise ValueError(
            "partition: param_labels must have the tree structure of params or a prefix of it; "
            f"params: {spec}, labels: {label_spec}."
        ) from None
    leaf_labels = optree.tree_leaves(full, none_is_leaf=True)
    missing = set(leaf_labels) - set(keys)
    if missing:
        raise ValueError(
            "partition: some parameters have no transformation: labels "
            f"{sorted(map(str, missing))} are not keys of transforms {sorted(map(str, keys))}."
        )
    return leaf_labels


def _masked_tree(spec: optree.PyTreeSpec, leaves: list[Any], keep: list[bool]) -> Any:
    """``leaves`` put back in ``spec`` with a :class:`MaskedNode` where ``keep`` is false."""
    return optree.tree_unflatten(
        spec, [x if k else MaskedNode() for x, k in zip(leaves, keep, strict=True)]
    )


def partition(
    transforms: Mapping[Hashable, GradientTransformation],
    param_labels: Labels | Callable[[Any], Labels],
) -> GradientTransformation:
    """Apply a different transformation to each group of parameters.

    Each leaf carries a label; ``transforms[label]`` transforms the leaves with that label. Each
    inner transformation sees a masked tree: the params' structure with only its own leaves,
    a :class:`MaskedNode` standing for every other one, so it keeps state for its leaves only.

    Args:
        transforms: ``{label: transformation}``.
        param_labels: a tree of labels with the params' structure or a prefix of it (one label
            for a whole subtree), or a callable ``params -> such a tree``. In ``update`` the
            callable gets ``params`` when they are passed, else the updates (Optax passes the
            updates).

    Returns:
        A transformation whose state is a :class:`PartitionState`.

    Raises:
        ValueError: a label has no transformation, or the labels do not fit the params.

    Example:
        >>> from torchopt_lite.transform import scale
        >>> t = partition({"a": scale(2.0), "b": scale(-1.0)}, {"w": "a", "bias": "b"})
        >>> g = {"w": torch.ones(1), "bias": torch.ones(1)}
        >>> t.update(g, t.init(g))[0]
        {'w': tensor([2.]), 'bias': tensor([-1.])}
    """
    transforms = dict(transforms)
    for label, t in transforms.items():
        if not isinstance(t, GradientTransformation):
            raise TypeError(
                f"partition: transforms[{label!r}] must be a GradientTransformation; "
                f"got {type(t).__name__}."
            )

    picks = {label: extra_args_filter(t.update) for label, t in transforms.items()}

    def init_fn(params: Any) -> PartitionState:
        leaves, spec = flatten_tensors(params, "params", "partition")
        labels = _leaf_labels(param_labels, params, spec, transforms)
        return PartitionState(
            {
                group: MaskedState(t.init(_masked_tree(spec, leaves, [x == group for x in labels])))
                for group, t in transforms.items()
            }
        )

    def update_fn(
        updates: Any,
        state: PartitionState,
        *,
        params: Any = None,
        inplace: bool = True,
        **extra_args: Any,
    ) -> tuple[Any, PartitionState]:
        expect_state("partition", state, PartitionState)
        leaves, spec = flatten_tensors(updates, "updates", "partition")
        p_leaves: list[Any] | None = None
        if params is not None:
            p_leaves, p_spec = flatten(params)
            if p_spec != spec:
                raise ValueError(
                    "partition: updates must have the tree structure of params; "
                    f"params: {p_spec}, updates: {spec}."
                )
        tree = params if params is not None else updates
        labels = _leaf_labels(param_labels, tree, spec, transforms)
        if set(state.inner_states) != set(transforms):
            raise ValueError(
                f"partition: state has groups {sorted(map(str, state.inner_states))} but this "
                f"partition has {sorted(map(str, transforms))}; pass the state returned by "
                "this transformation's init()."
            )
        out = list(leaves)
        new_states = {}
        for group, t in transforms.items():
            keep = [x == group for x in labels]
            sub_params = None if p_leaves is None else _masked_tree(spec, p_leaves, keep)
            sub, inner_state = t.update(
                _masked_tree(spec, leaves, keep),
                state.inner_states[group].inner_state,
                params=sub_params,
                inplace=inplace,
                **picks[group](extra_args),
            )
            sub_leaves, _ = flatten(sub)
            index = [i for i, k in enumerate(keep) if k]
            if len(sub_leaves) != len(index):
                raise ValueError(
                    f"partition: transforms[{group!r}] returned {len(sub_leaves)} leaves for "
                    f"{len(index)} updates; it must keep the structure of its updates."
                )
            for i, x in zip(index, sub_leaves, strict=True):
                out[i] = x
            new_states[group] = MaskedState(inner_state)
        return optree.tree_unflatten(spec, out), PartitionState(new_states)

    return GradientTransformation(init_fn, update_fn)


multi_transform = partition
