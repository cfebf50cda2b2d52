"""Sum the updates of ``k`` steps and emit them every ``k``-th step (Optax's ``apply_every``)."""

from __future__ import annotations

from typing import Any, NamedTuple

import optree
import torch
from torch import Tensor

from torchopt_lite._dispatch._boundary import flatten_tensors
from torchopt_lite._moments import zero_count
from torchopt_lite.base import GradientTransformation, register_state_type
from torchopt_lite.transform._select import check_positive_int, expect_state, present


@register_state_type
class ApplyEveryState(NamedTuple):
    """State of :func:`apply_every`: the step in the cycle and the summed updates per leaf."""

    count: Tensor  # type: ignore[assignment]  # Optax's name; shadows tuple.count
    grad_acc: tuple[Tensor, ...]


def apply_every(k: int = 1) -> GradientTransformation:
    """Sum updates over ``k`` steps; return the sum every ``k``-th step and zeros in between.

    Unlike :class:`~torchopt_lite.transform.multi_steps.MultiSteps`, the transformations chained
    before and after this one still step every time. A ``None`` update counts as zeros.

    Args:
        k: the period, ``>= 1``.

    Returns:
        A transformation whose state is an :class:`ApplyEveryState`.

    Example:
        >>> t = apply_every(2)
        >>> u0, state = t.update(torch.tensor([1.0]), t.init(torch.zeros(1)))
        >>> u1, state = t.update(torch.tensor([2.0]), state)
        >>> u0, u1
        (tensor([0.]), tensor([3.]))
    """
    check_positive_int("apply_every", "k", k)

    def init_fn(params: Any) -> ApplyEveryState:
        leaves, _ = flatten_tensors(params, "params", "apply_every")
        leaves = present(leaves)
        return ApplyEveryState(zero_count(leaves), tuple(torch.zeros_like(x) for x in leaves))

    def update_fn(
        updates: Any,
        state: ApplyEveryState,
        *,
        params: Any = None,
        inplace: bool = True,
        **extra_args: Any,
    ) -> tuple[Any, ApplyEveryState]:
        expect_state("apply_every", state, ApplyEveryState)
        leaves, spec = flatten_tensors(updates, "updates", "apply_every")
        if len(leaves) != len(state.grad_acc):
            raise ValueError(
                f"apply_every: updates have {len(leaves)} leaves but the state holds "
                f"{len(state.grad_acc)}; pass the state returned by init() for these params."
            )
        c = torch.remainder(state.count, k)
        keep, emit = c != 0, c == k - 1
        acc = tuple(
            torch.where(keep, a, torch.zeros_like(a)) + (0 if g is None else g)
            for a, g in zip(state.grad_acc, leaves, strict=True)
        )
        out = [torch.where(emit, a, torch.zeros_like(a)) for a in acc]
        new_state = ApplyEveryState(torch.remainder(state.count + 1, k), acc)
        return optree.tree_unflatten(spec, out), new_state

    return GradientTransformation(init_fn, update_fn)
