"""A parameter's entries of ``Optimizer.state``: assigning one writes it into the group state."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import Tensor

from torchopt_lite.optim._state_view import _keys, _walk


class ParamState(dict[str, Tensor]):
    """``state[p]``: a dict whose item assignment replaces the tensor in the functional state.

    ``torch.optim`` code moves state by assigning entries (Lightning's teardown does
    ``state[p][key] = value.to("cpu")``); the assignment reaches the optimizer through ``write``.
    """

    def __init__(self, entries: dict[str, Tensor], write: Callable[[str, Any], None]) -> None:
        super().__init__(entries)
        self._write = write

    def __setitem__(self, key: str, value: Any) -> None:
        self._write(key, value)
        super().__setitem__(key, value)

    def __reduce__(self) -> tuple[Any, ...]:
        return dict, (
            dict(self),
        )  # copies and pickles are plain dicts, detached from the optimizer


def replace_entry(state: Any, n: int, i: int, key: str, value: Any) -> Any:
    """``state`` with parameter ``i``'s entry ``key`` replaced by ``value`` (a shared one for all).

    Raises:
        ValueError: ``key`` is not an entry of this state, or ``value`` has another shape.
        TypeError: ``value`` is not a tensor.
    """
    items = list(_walk(state, n))
    paths = dict(zip(_keys([path for path, _ in items]), items, strict=True))
    if key not in paths:
        raise ValueError(
            f"Optimizer.state: {key!r} is not a state entry of this optimizer; its entries are "
            f"{sorted(paths)}."
        )
    target, node = paths[key]
    old = node if isinstance(node, Tensor) else node[i]
    if not isinstance(value, Tensor):
        raise TypeError(
            f"Optimizer.state: entry {key!r} must be a tensor; got {type(value).__name__}."
        )
    if value.shape != old.shape:
        raise ValueError(
            f"Optimizer.state: entry {key!r} has shape {tuple(old.shape)}; got "
            f"{tuple(value.shape)}."
        )

    def build(node: Any, path: tuple[str, ...]) -> Any:
        if path == target:
            if isinstance(node, Tensor):
                return value
            return tuple(value if j == i else x for j, x in enumerate(node))
        if not isinstance(node, tuple) or target[: len(path)] != path:
            return node
        if hasattr(node, "_fields"):
            fields = zip(node._fields, node, strict=True)
            return type(node)(*(build(v, (*path, f)) for f, v in fields))
        return tuple(build(v, (*path, str(j))) for j, v in enumerate(node))

    return build(state, ())
