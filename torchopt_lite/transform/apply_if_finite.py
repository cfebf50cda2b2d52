"""Skip the steps whose gradients hold a NaN or an infinity (Optax's ``apply_if_finite``)."""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
from torch import Tensor

from torchopt_lite._dispatch._boundary import flatten_tensors
from torchopt_lite._moments import zero_count
from torchopt_lite.base import GradientTransformation, extra_args_filter, register_state_type
from torchopt_lite.transform._select import (
    all_finite,
    expect_state,
    present,
    tree_where,
    where_or_zero,
)


@register_state_type
class ApplyIfFiniteState(NamedTuple):
    """State of :func:`apply_if_finite` (Optax's fields, 0-d tensors).

    Attributes:
        notfinite_count: consecutive non-finite steps (reset to 0 by a finite one).
        last_finite: whether the last step's gradients were finite.
        total_notfinite: non-finite steps since ``init`` (never reset).
        inner_state: the state of the wrapped transformation.
    """

    notfinite_count: Tensor
    last_finite: Tensor
    total_notfinite: Tensor
    inner_state: Any


def apply_if_finite(
    inner: GradientTransformation, max_consecutive_errors: int
) -> GradientTransformation:
    r"""Run ``inner`` only on steps whose gradients are all finite.

    A step whose gradients hold a NaN or an infinity returns zero updates and leaves the inner
    state as it was (selected with ``torch.where``, no host sync), unless it is the
    ``max_consecutive_errors + 1``-th such step in a row: then ``inner``'s update is taken
    anyway (Optax's rule, so that training does not stall silently).

    .. math::
        n_t = \begin{cases} 0 & g_t \text{ finite} \\ n_{t-1} + 1 & \text{otherwise} \end{cases},
        \qquad \text{apply} \iff g_t \text{ finite} \lor n_t > N.

    Args:
        inner: the transformation to protect.
        max_consecutive_errors: :math:`N \ge 0`, the number of consecutive non-finite steps
            skipped before one is taken.

    Returns:
        A transformation whose state is an :class:`ApplyIfFiniteState`.

    Example:
        >>> from torchopt_lite.transform import scale
        >>> t = apply_if_finite(scale(-0.1), max_consecutive_errors=2)
        >>> g = torch.tensor([1.0, float("nan")])
        >>> u, state = t.update(g, t.init(g))
        >>> u, state.notfinite_count, state.total_notfinite
        (tensor([0., 0.]), tensor(1), tensor(1))

    Note:
        ``inner`` runs out of place (its result is selected, so the old state must survive);
        ``inplace=True`` and ``inplace=False`` give the same values.
    """
    if isinstance(max_consecutive_errors, bool) or not isinstance(max_consecutive_errors, int):
        raise TypeError(
            "apply_if_finite: max_consecutive_errors must be an int; "
            f"got {type(max_consecutive_errors).__name__}."
        )
    if max_consecutive_errors < 0:
        raise ValueError(
            f"apply_if_finite: max_consecutive_errors must be >= 0; got {max_consecutive_errors}."
        )

    def init_fn(params: Any) -> ApplyIfFiniteState:
        leaves, _ = flatten_tensors(params, "params", "apply_if_finite")
        count = zero_count(present(leaves))
        return ApplyIfFiniteState(
            notfinite_count=count,
            last_finite=torch.ones((), dtype=torch.bool, device=count.device),
            total_notfinite=count.clone(),
            inner_state=inner.init(params),
        )

    pick = extra_args_filter(inner.update)

    def update_fn(
        updates: Any,
        state: ApplyIfFiniteState,
        *,
        params: Any = None,
        inplace: bool = True,
        **extra_args: Any,
    ) -> tuple[Any, ApplyIfFiniteState]:
        expect_state("apply_if_finite", state, ApplyIfFiniteState)
        leaves, _ = flatten_tensors(updates, "updates", "apply_if_finite")
        finite = all_finite(leaves, state.notfinite_count)
        notfinite_count = torch.where(
            finite, torch.zeros_like(state.notfinite_count), state.notfinite_count + 1
        )
        apply = finite | (notfinite_count > max_consecutive_errors)
        new_updates, new_inner = inner.update(
            updates, state.inner_state, params=params, inplace=False, **pick(extra_args)
        )
        new_state = ApplyIfFiniteState(
            notfinite_count=notfinite_count,
            last_finite=finite,
            total_notfinite=state.total_notfinite + (~finite).to(state.total_notfinite.dtype),
            inner_state=tree_where(apply, new_inner, state.inner_state),
        )
        return where_or_zero(apply, new_updates), new_state

    return GradientTransformation(init_fn, update_fn)
