"""Per-leaf optimizer state: a field per transformation is a tuple of one tensor per leaf.

A per-leaf field is a tuple of ``n`` tensors in the leaves' order; anything else in a state (a
0-d count, an ``EmptyState``) is shared by all leaves. These helpers subset, merge and walk such
states, and check one against the leaves before a step writes.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

from torch import Tensor

from torchopt_lite._dispatch._boundary import Facts, each, same


def is_leaf_tuple(node: Any, n: int) -> bool:
    """Whether ``node`` is a per-leaf field of a state over ``n`` leaves."""
    return type(node) is tuple and len(node) == n and n > 0 and isinstance(node[0], Tensor)


def map_leaf_tuples(state: Any, n: int, fn: Callable[[tuple[Tensor, ...]], Any]) -> Any:
    """``state`` with every per-leaf field replaced by ``fn(field)``."""
    if is_leaf_tuple(state, n):
        return fn(state)
    if isinstance(state, tuple) and hasattr(state, "_fields"):
        return type(state)(*(map_leaf_tuples(x, n, fn) for x in state))
    if type(state) is tuple:
        return tuple(map_leaf_tuples(x, n, fn) for x in state)
    return state


def select(state: Any, index: Sequence[int], n: int) -> Any:
    """The state restricted to the leaves at ``index``."""
    return map_leaf_tuples(state, n, lambda field: tuple(field[i] for i in index))


def merge(old: Any, new: Any, index: Sequence[int], n: int) -> Any:
    """Write a subset state ``new`` (for the leaves at ``index``) back into the full ``old``."""
    if is_leaf_tuple(old, n):
        merged = list(old)
        for i, x in zip(index, new, strict=True):
            merged[i] = x
        return tuple(merged)
    if isinstance(old, tuple) and hasattr(old, "_fields"):
        return type(old)(*(merge(o, x, index, n) for o, x in zip(old, new, strict=True)))
    if type(old) is tuple:
        return tuple(merge(o, x, index, n) for o, x in zip(old, new, strict=True))
    return new


def check_leaf_state(
    caller: str, state_type: type, fields: tuple[str, ...], facts: Facts, state: Any
) -> None:
    """``state`` is a ``state_type`` whose per-leaf ``fields`` match the leaves.

    Dtypes, devices and sizes must match: a state from other parameters would otherwise be
    broadcast, or read out of bounds by a fused kernel. The first field's shapes are compared
    whole; the others' element counts (fields come from one ``init``, so a state that passes
    with permuted shapes in a second field has been assembled by hand).
    """
    if not isinstance(state, state_type):
        raise ValueError(
            f"{caller}: state is {type(state).__name__}, expected {state_type.__name__}; pass "
            "the state returned by this optimizer's init(), not another optimizer's."
        )
    leaves = facts.leaves
    for k, field in enumerate(fields):
        buffers = getattr(state, field)
        if type(buffers) is not tuple:
            raise ValueError(
                f"{caller}: state.{field} is {type(buffers).__name__}, expected a tuple of "
                "tensors; pass the state returned by this optimizer's init()."
            )
        if len(buffers) != len(leaves):
            raise ValueError(
                f"{caller}: updates have {len(leaves)} leaves but state.{field} has "
                f"{len(buffers)}; updates must have the same tree structure as the params given "
                "to init()."
            )
        if (
            (same("size", buffers, leaves) if k == 0 else each("numel", buffers) == facts.numels)
            and each("dtype", buffers) == facts.dtypes
            and each("get_device", buffers) == facts.devices
            and (facts.on_cpu or [x.device for x in leaves] == [y.device for y in buffers])
        ):
            continue
        for i, (g, b) in enumerate(zip(leaves, buffers, strict=True)):
            size = g.shape != b.shape if k == 0 else g.numel() != b.numel()
            if size or g.dtype != b.dtype or g.device != b.device:
                raise ValueError(
                    f"{caller}: update leaf {i} is {_describe(g)} but state.{field}[{i}] is "
                    f"{_describe(b)}; updates must match the params given to init()."
                )


def state_check(caller: str, state_type: type, *fields: str) -> Callable[[Facts, Any], None]:
    """A ``Leafwise.check``: :func:`check_leaf_state` for this transformation's state."""
    return functools.partial(check_leaf_state, caller, state_type, fields)


def _describe(x: Tensor) -> str:
    return f"{tuple(x.shape)} {x.dtype} on {x.device}"
