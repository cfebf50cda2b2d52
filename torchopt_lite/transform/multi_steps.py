"""Gradient accumulation over mini-steps (Optax's ``MultiSteps``) and its skip rules."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import optree
import torch
from torch import Tensor

from torchopt_lite._dispatch._boundary import flatten_tensors
from torchopt_lite._moments import zero_count
from torchopt_lite.base import GradientTransformation, extra_args_filter, register_state_type
from torchopt_lite.transform._select import (
    check_positive_int,
    expect_state,
    present,
    tree_where,
    where_or_zero,
)

# (updates, gradient_step, params) -> (0-d bool tensor: skip this mini-step, skip_state tree)
ShouldSkipUpdateFunction = Callable[[Any, Tensor, Any], tuple[Tensor, Any]]


@register_state_type
class MultiStepsState(NamedTuple):
    """State of :class:`MultiSteps` (Optax's fields).

    Attributes:
        mini_step: mini-steps accumulated since the last inner step (0-d int64).
        gradient_step: inner steps taken (0-d int64).
        inner_opt_state: the state of the wrapped optimizer.
        acc_grads: the accumulated gradients, one tensor per leaf in leaf order.
        skip_state: what ``should_skip_update_fn`` returned last (``()`` without one).
    """

    mini_step: Tensor
    gradient_step: Tensor
    inner_opt_state: Any
    acc_grads: tuple[Tensor, ...]
    skip_state: Any = ()


def skip_not_finite(updates: Any, gradient_step: Tensor, params: Any) -> tuple[Tensor, Any]:
    """A ``should_skip_update_fn`` for :class:`MultiSteps`: skip updates with a NaN or an inf.

    Returns:
        ``(should_skip, {"should_skip": ..., "num_not_finite": ...})`` as 0-d tensors.
    """
    del gradient_step, params
    counts = [(~torch.isfinite(x)).sum() for x in optree.tree_leaves(updates)]
    num_not_finite = torch.stack(counts).sum() if counts else torch.zeros((), dtype=torch.int64)
    should_skip = num_not_finite > 0
    return should_skip, {"should_skip": should_skip, "num_not_finite": num_not_finite}


def skip_large_updates(
    updates: Any, gradient_step: Tensor, params: Any, max_squared_norm: float
) -> tuple[Tensor, Any]:
    r"""A ``should_skip_update_fn``: skip unless :math:`\|u\|_2^2 <` ``max_squared_norm``.

    Bind ``max_squared_norm`` with ``functools.partial``. A NaN norm is skipped too.

    Returns:
        ``(should_skip, {"should_skip": ..., "norm_squared": ...})`` as 0-d tensors.
    """
    del gradient_step, params
    squares = [torch.sum(torch.abs(x) ** 2) for x in optree.tree_leaves(updates)]
    norm_sq = torch.stack(squares).sum() if squares else torch.zeros((), dtype=torch.float64)
    should_skip = ~(norm_sq < max_squared_norm)
    return should_skip, {"should_skip": should_skip, "norm_squared": norm_sq}


class MultiSteps:
    r"""Accumulate gradients over mini-steps; step the wrapped optimizer every ``k`` of them.

    Each ``update`` adds the gradients to an accumulator (their running mean, or their sum).
    At the ``k``-th mini-step the accumulator goes through ``opt`` and its updates come out;
    every other mini-step returns zeros and leaves ``opt``'s state unchanged. The choice is made
    with ``torch.where`` (no host sync), so ``opt`` runs out of place at every mini-step.

    .. math::
        \bar g_{n+1} = \bar g_n + (g - \bar g_n) / (n + 1) \quad (\text{mean}), \qquad
        \bar g_{n+1} = \bar g_n + g \quad (\text{sum}).

    Args:
        opt: the wrapped optimizer.
        every_k_schedule: ``k >= 1``, or a callable ``gradient_step -> k`` (an int or a 0-d
            integer tensor) to vary the number of mini-steps.
        use_grad_mean: average the accumulated gradients (else sum them).
        should_skip_update_fn: ``(updates, gradient_step, params) -> (skip, skip_state)``,
            e.g. :func:`skip_not_finite`; a skipped mini-step changes nothing but ``skip_state``.
        accumulator_dtype: dtype of the accumulator; ``None`` (default): each leaf's own.

    Example:
        >>> from torchopt_lite.transform import scale
        >>> ms = MultiSteps(scale(-1.0), every_k_schedule=2)
        >>> g = torch.ones(1)
        >>> u0, state = ms.update(torch.tensor([1.0]), ms.init(g))
        >>> u1, state = ms.update(torch.tensor([3.0]), state)
        >>> u0, u1, bool(ms.has_updated(state))
        (tensor([0.]), tensor([-2.]), True)

    Note:
        Optax accumulates in float32 by default; here the accumulator takes each leaf's dtype.
        A ``None`` gradient leaf counts as zeros.
    """

    def __init__(
        self,
        opt: GradientTransformation,
        every_k_schedule: int | Callable[[Tensor], Any],
        use_grad_mean: bool = True,
        should_skip_update_fn: ShouldSkipUpdateFunction | None = None,
        accumulator_dtype: torch.dtype | None = None,
    ) -> None:
        """Wrap ``opt`` (see the class docstring)."""
        if not isinstance(opt, GradientTransformation):
            raise TypeError(
                f"MultiSteps: opt must be a GradientTransformation; got {type(opt).__name__}."
            )
        if not callable(every_k_schedule):
            check_positive_int("MultiSteps", "every_k_schedule", every_k_schedule)
        self._opt = opt
        self._pick = extra_args_filter(opt.update)
        self._every_k_schedule = every_k_schedule
        self._use_grad_mean = use_grad_mean
        self._should_skip_update_fn = should_skip_update_fn
        self._accumulator_dtype = accumulator_dtype

    @property
    def inner_opt(self) -> GradientTransformation:
        """The wrapped optimizer."""
        return self._opt

    def init(self, params: Any) -> MultiStepsState:
        """Zero accumulators and counters, and ``opt.init(params)``."""
        leaves, _ = flatten_tensors(params, "params", "MultiSteps")
        acc = tuple(torch.zeros_like(x, dtype=self._accumulator_dtype) for x in present(leaves))
        gradient_step = zero_count(present(leaves))
        skip_state: Any = ()
        if self._should_skip_update_fn is not None:
            zeros = optree.tree_map(torch.zeros_like, params)
            _, skip_state = self._should_skip_update_fn(zeros, gradient_step, params)
        return MultiStepsState(
            mini_step=gradient_step.clone(),
            gradient_step=gradient_step,
            inner_opt_state=self._opt.init(params),
            acc_grads=acc,
            skip_state=skip_state,
        )

    @staticmethod
    def _skip(
        fn: ShouldSkipUpdateFunction, updates: Any, state: MultiStepsState, params: Any
    ) -> tuple[Tensor, Any]:
        skip, skip_state = fn(updates, state.gradient_step, params)
        if not isinstance(skip, Tensor) or skip.dtype != torch.bool or skip.dim() != 0:
            got = f"{skip.dtype} of shape {tuple(skip.shape)}" if isinstance(skip, Tensor) else skip
            raise TypeError(
                f"MultiSteps: should_skip_update_fn must return a 0-d bool tensor first; got {got}."
            )
        return skip, skip_state

    def update(
        self,
        updates: Any,
        state: MultiStepsState,
        *,
        params: Any = None,
        inplace: bool = True,
        **extra_args: Any,
    ) -> tuple[Any, MultiStepsState]:
        """Accumulate ``updates``; every ``k`` mini-steps return ``opt``'s updates, else zeros."""
        expect_state("MultiSteps", state, MultiStepsState)
        leaves, spec = flatten_tensors(updates, "updates", "MultiSteps")
        if len(leaves) != len(state.acc_grads):
            raise ValueError(
                f"MultiSteps: updates have {len(leaves)} leaves but the state accumulates "
                f"{len(state.acc_grads)}; pass the state returned by init() for these params."
            )
        k = self._every_k_schedule
        k_steps = k(state.gradient_step) if callable(k) else k
        skip = skip_state = None
        if self._should_skip_update_fn is not None:
            skip, skip_state = self._skip(self._should_skip_update_fn, updates, state, params)

        n = state.mini_step
        acc = []
        for a, g in zip(state.acc_grads, leaves, strict=True):
            if g is None:
                g = torch.zeros_like(a)
            acc.append(a + (g - a) / (n + 1) if self._use_grad_mean else a + g)
        cast = [a if g is None else a.to(g.dtype) for a, g in zip(acc, leaves, strict=True)]
        inner_updates, inner_state = self._opt.update(
            optree.tree_unflatten(spec, cast),
            state.inner_opt_state,
            params=params,
            inplace=False,
            **self._pick(extra_args),
        )
        emit = n == k_steps - 1
        zero = torch.zeros((), dtype=torch.int64, device=n.device)
        mini_step = torch.remainder(n + 1, k_steps)
        acc_grads = tuple(torch.where(emit, torch.zeros_like(a), a) for a in acc)
        if skip is not None:
            emit = emit & ~skip
            mini_step = torch.where(skip, n, mini_step)
            acc_grads = tree_where(skip, state.acc_grads, acc_grads)
        new_state = MultiStepsState(
            mini_step=mini_step,
            gradient_step=state.gradient_step + torch.where(emit, zero + 1, zero),
            inner_opt_state=tree_where(emit, inner_state, state.inner_opt_state),
            acc_grads=acc_grads,
            skip_state=skip_state if skip is not None else state.skip_state,
        )
        return where_or_zero(emit, inner_updates), new_state

    def has_updated(self, state: MultiStepsState) -> Tensor:
        """Whether the last ``update`` stepped the wrapped optimizer (a 0-d bool tensor)."""
        return (state.mini_step == 0) & (state.gradient_step > 0)

    def gradient_transformation(self) -> GradientTransformation:
        """This wrapper as a :class:`~torchopt_lite.base.GradientTransformation`."""
        return GradientTransformation(self.init, self.update)
