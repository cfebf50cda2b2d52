"""Helpers of the wrappers that choose between two states on a tensor condition (no host sync)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import optree
import torch
from torch import Tensor

from torchopt_lite.base import UPDATE_BEFORE_INIT, UninitializedState


def tree_where(cond: Tensor, new: Any, old: Any) -> Any:
    """``torch.where(cond, new, old)`` on every tensor of two trees of the same structure.

    ``cond`` is a 0-d bool tensor (batched under ``vmap``); the result keeps ``old``'s dtypes.
    Non-tensor leaves (``None`` subtrees excepted) are taken from ``new``.
    """

    def pick(n: Any, o: Any) -> Any:
        if not isinstance(n, Tensor) or not isinstance(o, Tensor):
            return n
        if n.dtype != o.dtype:
            n = n.to(o.dtype)
        return torch.where(cond if cond.device == n.device else cond.to(n.device), n, o)

    return optree.tree_map(pick, new, old)


def where_or_zero(cond: Tensor, tree: Any) -> Any:
    """``tree`` where ``cond``, zeros elsewhere (``torch.where``: a NaN not chosen stays out)."""

    def pick(x: Any) -> Any:
        if not isinstance(x, Tensor):
            return x
        c = cond if cond.device == x.device else cond.to(x.device)
        return torch.where(c, x, x.new_zeros(()))

    return optree.tree_map(pick, tree)


def all_finite(leaves: Sequence[Any], like: Tensor) -> Tensor:
    """Whether every element of every tensor leaf is finite: one 0-d bool tensor on ``like``'s
    device (one reduction per leaf, no host sync)."""
    flags = [torch.isfinite(x).all() for x in leaves if x is not None]
    if not flags:
        return torch.ones((), dtype=torch.bool, device=like.device)
    return torch.stack([f.to(like.device) for f in flags]).all()


def present(leaves: Sequence[Any]) -> list[Tensor]:
    """The leaves that are not ``None``."""
    return [x for x in leaves if x is not None]


def expect_state(caller: str, state: Any, cls: type) -> None:
    """Raise ``ValueError`` unless ``state`` is a ``cls`` (the state ``init`` returned)."""
    if isinstance(state, cls):
        return
    if state is None or isinstance(state, UninitializedState):
        raise ValueError(UPDATE_BEFORE_INIT.format(got=repr(state)))
    raise ValueError(
        f"{caller}: state must be of type {cls.__name__}; got {type(state).__name__}; "
        "pass the state returned by this transformation's init()."
    )


def check_positive_int(caller: str, name: str, value: Any) -> None:
    """Raise ``TypeError``/``ValueError`` unless ``value`` is an ``int`` >= 1."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{caller}: {name} must be an int; got {type(value).__name__}.")
    if value < 1:
        raise ValueError(f"{caller}: {name} must be >= 1; got {value}.")
