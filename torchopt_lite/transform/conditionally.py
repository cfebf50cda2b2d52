"""Run a transformation only at the steps a condition selects (Optax's conditional wrappers)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import optree
import torch
from torch import Tensor

from torchopt_lite._dispatch._boundary import flatten_tensors
from torchopt_lite._moments import zero_count
from torchopt_lite.base import GradientTransformation, extra_args_filter, register_state_type
from torchopt_lite.transform._select import expect_state, present, tree_where

ConditionFn = Callable[..., Any]  # step (0-d int64 tensor) -> 0-d bool tensor or bool


@register_state_type
class ConditionallyTransformState(NamedTuple):
    """State of :func:`conditionally_transform`: the inner state and the step counter."""

    inner_state: Any
    step: Tensor


@register_state_type
class ConditionallyMaskState(NamedTuple):
    """State of :func:`conditionally_mask`: the step counter and the inner state."""

    step: Tensor
    inner_state: Any


def _condition(caller: str, fn: ConditionFn, step: Tensor, extra: dict[str, Any]) -> Tensor | bool:
    cond = fn(step, **extra)
    if isinstance(cond, bool):
        return cond
    if not isinstance(cond, Tensor) or cond.dtype != torch.bool or cond.dim() != 0:
        got = f"{cond.dtype} of shape {tuple(cond.shape)}" if isinstance(cond, Tensor) else cond
        raise TypeError(
            f"{caller}: should_transform_fn must return a bool or a 0-d bool tensor; got {got}."
        )
    return cond


def _zeros(updates: Any) -> Any:
    return optree.tree_map(torch.zeros_like, updates)


def _conditional(
    caller: str,
    inner: GradientTransformation,
    should_transform_fn: ConditionFn,
    reject: Callable[[Any], Any],
    forward_extra_args: bool,
) -> tuple[Callable[[Any], Any], Callable[..., Any]]:
    """``init``/``update``: run ``inner`` where the condition holds, else ``reject(updates)``.

    Where the condition fails the inner state is kept.
    """
    pick = extra_args_filter(inner.update)

    def init_fn(params: Any) -> tuple[Any, Tensor]:
        leaves, _ = flatten_tensors(params, "params", caller)
        return inner.init(params), zero_count(present(leaves))

    def update_fn(
        updates: Any,
        inner_state: Any,
        step: Tensor,
        params: Any,
        inplace: bool,
        extra_args: dict[str, Any],
    ) -> tuple[Any, Any]:
        extra = pick(extra_args)
        cond = _condition(
            caller, should_transform_fn, step, extra_args if forward_extra_args else {}
        )
        if isinstance(cond, bool):  # a static condition needs no selection
            if cond:
                return inner.update(updates, inner_state, params=params, inplace=inplace, **extra)
            return reject(updates), inner_state
        new_updates, new_inner = inner.update(
            updates, inner_state, params=params, inplace=False, **extra
        )
        return (
            tree_where(cond, new_updates, reject(updates)),
            tree_where(cond, new_inner, inner_state),
        )

    return init_fn, update_fn


def conditionally_transform(
    inner: GradientTransformation,
    should_transform_fn: ConditionFn,
    forward_extra_args: bool = False,
) -> GradientTransformation:
    """Run ``inner`` at the steps ``should_transform_fn(step)`` selects; pass updates through else.

    At a step not selected, the updates and the inner state pass through unchanged. ``step``
    counts the calls of ``update`` before this one (a 0-d int64 tensor).

    Args:
        inner: the transformation to run conditionally.
        should_transform_fn: ``step -> bool`` or a 0-d bool tensor (selected with
            ``torch.where``, no host sync).
        forward_extra_args: also pass the extra keyword arguments of ``update`` (such as
            ``value``) to ``should_transform_fn``.

    Returns:
        A transformation whose state is a :class:`ConditionallyTransformState`.

    Example:
        >>> from torchopt_lite.transform import scale
        >>> t = conditionally_transform(scale(10.0), lambda step: step >= 1)
        >>> g = torch.ones(1)
        >>> u0, state = t.update(g, t.init(g))
        >>> u1, state = t.update(g, state)
        >>> u0, u1
        (tensor([1.]), tensor([10.]))

    Note:
        With a tensor condition, ``inner`` runs out of place and its result is selected, so
        ``inplace=True`` never loses the state of a step that is not taken.
    """
    init, update = _conditional(
        "conditionally_transform",
        inner,
        should_transform_fn,
        lambda updates: updates,
        forward_extra_args,
    )

    def init_fn(params: Any) -> ConditionallyTransformState:
        return ConditionallyTransformState(*init(params))

    def update_fn(
        updates: Any,
        state: ConditionallyTransformState,
        *,
        params: Any = None,
        inplace: bool = True,
        **extra_args: Any,
    ) -> tuple[Any, ConditionallyTransformState]:
        expect_state("conditionally_transform", state, ConditionallyTransformState)
        out, inner_state = update(
            updates, state.inner_state, state.step, params, inplace, extra_args
        )
        return out, ConditionallyTransformState(inner_state, state.step + 1)

    return GradientTransformation(init_fn, update_fn)


def conditionally_mask(
    inner: GradientTransformation,
    should_transform_fn: ConditionFn,
    forward_extra_args: bool = False,
) -> GradientTransformation:
    """Run ``inner`` at the steps ``should_transform_fn(step)`` selects; zero the updates else.

    At a step not selected, the updates are zeros and the inner state passes through unchanged.

    Args:
        inner: the transformation to run conditionally.
        should_transform_fn: ``step -> bool`` or a 0-d bool tensor.
        forward_extra_args: also pass ``update``'s extra keyword arguments to
            ``should_transform_fn``.

    Returns:
        A transformation whose state is a :class:`ConditionallyMaskState`.

    Example:
        >>> from torchopt_lite.transform import scale
        >>> t = conditionally_mask(scale(10.0), lambda step: step >= 1)
        >>> g = torch.ones(1)
        >>> u0, state = t.update(g, t.init(g))
        >>> u0
        tensor([0.])
    """
    init, update = _conditional(
        "conditionally_mask", inner, should_transform_fn, _zeros, forward_extra_args
    )

    def init_fn(params: Any) -> ConditionallyMaskState:
        inner_state, step = init(params)
        return ConditionallyMaskState(step, inner_state)

    def update_fn(
        updates: Any,
        state: ConditionallyMaskState,
        *,
        params: Any = None,
        inplace: bool = True,
        **extra_args: Any,
    ) -> tuple[Any, ConditionallyMaskState]:
        expect_state("conditionally_mask", state, ConditionallyMaskState)
        out, inner_state = update(
            updates, state.inner_state, state.step, params, inplace, extra_args
        )
        return out, ConditionallyMaskState(state.step + 1, inner_state)

    return GradientTransformation(init_fn, update_fn)
