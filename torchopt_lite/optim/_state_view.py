"""Per-parameter views of a group's functional state (for ``Optimizer.state``/``state_dict``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import optree
from torch import Tensor


def _walk(
    state: Any, n: int, prefix: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], Any]]:
    """Yield ``(path, node)`` for per-leaf tuples and shared tensors of a chain state."""
    if isinstance(state, Tensor) or (
        type(state) is tuple
        and len(state) == n
        and n > 0
        and all(isinstance(x, Tensor) for x in state)
    ):
        yield prefix, state
    elif isinstance(state, tuple) and hasattr(state, "_fields"):
        for name, value in zip(state._fields, state, strict=True):
            yield from _walk(value, n, (*prefix, name))
    elif isinstance(state, tuple):
        for i, value in enumerate(state):
            yield from _walk(value, n, (*prefix, str(i)))


def _keys(paths: list[tuple[str, ...]]) -> list[str]:
    """Short names: the field name when unique in the chain, else ``index.field``."""
    last = [p[-1] if p else "" for p in paths]
    return [
        name if last.count(name) == 1 else ".".join(path)
        for name, path in zip(last, paths, strict=True)
    ]


def per_param_entries(state: Any, n: int) -> list[dict[str, Tensor]]:
    """``n`` dicts, one per parameter: its slice of every per-leaf field, and shared tensors."""
    items = list(_walk(state, n))
    keys = _keys([path for path, _ in items])
    entries: list[dict[str, Tensor]] = [{} for _ in range(n)]
    for key, (_, node) in zip(keys, items, strict=True):
        for i in range(n):
            entries[i][key] = node[i] if isinstance(node, tuple) else node
    return entries


def rebuild(template: Any, n: int, entries: list[dict[str, Any]]) -> Any:
    """A state shaped like ``template`` whose tensors are copies of per-parameter ``entries``.

    Each loaded tensor must have the shape of the template's tensor; it is copied in the
    template's dtype and device.
    """
    items = list(_walk(template, n))
    keys = dict(zip((path for path, _ in items), _keys([p for p, _ in items]), strict=True))

    def load(key: str, i: int, like: Tensor) -> Tensor:
        value = entries[i][key]
        if not isinstance(value, Tensor) or value.shape != like.shape:
            got = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
            raise ValueError(
                f"load_state_dict: state entry {key!r} of parameter {i} is {got} where this "
                f"optimizer holds {tuple(like.shape)}; the state_dict comes from other "
                "parameters or another optimizer."
            )
        return value.to(dtype=like.dtype, device=like.device, copy=True)

    def build(node: Any, path: tuple[str, ...]) -> Any:
        if path in keys:
            key = keys[path]
            missing = [i for i, e in enumerate(entries) if key not in e]
            if missing:
                raise ValueError(
                    f"load_state_dict: state entry {key!r} is missing for parameter(s) {missing}; "
                    "the state_dict comes from a different optimizer configuration."
                )
            if isinstance(node, Tensor):
                return load(key, 0, node)
            return tuple(load(key, i, x) for i, x in enumerate(node))
        if isinstance(node, tuple) and hasattr(node, "_fields"):
            return type(node)(
                *(build(v, (*path, f)) for f, v in zip(node._fields, node, strict=True))
            )
        if isinstance(node, tuple):
            return tuple(build(v, (*path, str(i))) for i, v in enumerate(node))
        return node

    return build(template, ())


def check_state_like(where: str, state: Any, expected: Any) -> None:
    """Raise ``ValueError`` unless ``state`` has ``expected``'s structure, shapes and dtypes."""
    leaves, spec = optree.tree_flatten(state, none_is_leaf=True)
    ref_leaves, ref_spec = optree.tree_flatten(expected, none_is_leaf=True)
    if spec != ref_spec:
        raise ValueError(
            f"{where} has structure {spec} but this optimizer's is {ref_spec}; pass a state "
            "from this optimizer and these parameters."
        )
    for x, ref in zip(leaves, ref_leaves, strict=True):
        if not isinstance(ref, Tensor):
            continue
        if not isinstance(x, Tensor) or x.shape != ref.shape or x.dtype != ref.dtype:
            got = f"{tuple(x.shape)} {x.dtype}" if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(
                f"{where} holds {got} where this optimizer holds {tuple(ref.shape)} "
                f"{ref.dtype}; pass a state from these parameters."
            )
