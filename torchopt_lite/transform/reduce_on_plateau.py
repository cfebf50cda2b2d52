"""Reduce the step size when a monitored value stops improving."""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import torch
from torch import Tensor

from torchopt_lite._dispatch import Leafwise
from torchopt_lite._ops import Ops
from torchopt_lite.base import LeafwiseTransformation, register_state_type
from torchopt_lite.transform.scale_by_polyak import _as


@register_state_type
class ReduceLROnPlateauState(NamedTuple):
    """State of :func:`reduce_on_plateau` (0-d tensors, shared by all leaves).

    Attributes:
        scale: the factor the updates are multiplied by.
        best_value: the best (lowest) accumulated value so far.
        plateau_count: accumulations without improvement.
        cooldown_count: accumulations left before reductions resume.
        count: values accumulated into ``avg_value`` since the last comparison.
        avg_value: their running mean.
    """

    scale: Tensor
    best_value: Tensor
    plateau_count: Tensor
    cooldown_count: Tensor
    count: Tensor  # type: ignore[assignment]  # Optax's name; shadows tuple.count
    avg_value: Tensor


def reduce_on_plateau(
    factor: float = 0.1,
    patience: int = 10,
    rtol: float = 1e-4,
    atol: float = 0.0,
    cooldown: int = 0,
    accumulation_size: int = 1,
    min_scale: float = 0.0,
) -> LeafwiseTransformation:
    r"""Scale the updates down by ``factor`` when the loss has stopped improving.

    ``update`` takes the monitored value as ``value=`` (a loss, or a validation metric). Every
    ``accumulation_size`` values, their mean :math:`\bar f` is compared with the best so far:

    .. math::
        \text{improved} \iff \bar f < (1 - r) f_{\text{best}} - a

    After ``patience`` comparisons without improvement (outside a cooldown) the scale becomes
    :math:`\max(s \cdot \text{factor}, s_{\min})` and a cooldown of ``cooldown`` comparisons
    starts. The updates are multiplied by :math:`s` at every step. Chain it after an optimizer:
    ``chain(adam(1e-3), reduce_on_plateau(patience=5))``.

    Args:
        factor: the reduction, in ``(0, 1)``.
        patience: comparisons without improvement before a reduction.
        rtol: relative improvement required, in ``[0, 1]``.
        atol: absolute improvement required (``rtol`` and ``atol`` not both 0).
        cooldown: comparisons after a reduction during which the plateau count stays 0.
        accumulation_size: values averaged per comparison (e.g. minibatch losses of an epoch).
        min_scale: the scale never goes below this.

    Example:
        >>> opt = reduce_on_plateau(factor=0.5, patience=1)
        >>> g = torch.ones(1)
        >>> state = opt.init(g)
        >>> for loss in [3.0, 2.0, 2.5, 2.5]:
        ...     u, state = opt.update(torch.ones(1), state, value=loss)
        >>> state.scale
        tensor(0.2500)

    Note:
        Optax's ``optax.contrib.reduce_on_plateau`` semantics (compared step by step in the
        tests); the state lives in 0-d tensors and the logic in ``torch.where``, so a step needs
        no host sync and works under ``vmap`` and ``torch.compile``.
    """
    if not 0.0 < factor < 1.0:
        raise ValueError(f"reduce_on_plateau: factor must be in (0, 1); got {factor}.")
    if rtol < 0.0 or atol < 0.0:
        raise ValueError(
            f"reduce_on_plateau: rtol and atol must be >= 0; got rtol={rtol}, atol={atol}."
        )
    if rtol == 0.0 and atol == 0.0:
        raise ValueError("reduce_on_plateau: rtol and atol must not both be 0.")
    if rtol > 1.0:
        raise ValueError(f"reduce_on_plateau: rtol must be <= 1; got {rtol}.")
    for name, v in (("patience", patience), ("cooldown", cooldown)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise ValueError(f"reduce_on_plateau: {name} must be an int >= 0; got {v!r}.")
    if isinstance(accumulation_size, bool) or not isinstance(accumulation_size, int):
        raise ValueError(
            f"reduce_on_plateau: accumulation_size must be an int >= 1; got {accumulation_size!r}."
        )
    if accumulation_size < 1:
        raise ValueError(
            f"reduce_on_plateau: accumulation_size must be an int >= 1; got {accumulation_size}."
        )
    if min_scale < 0.0:
        raise ValueError(f"reduce_on_plateau: min_scale must be >= 0; got {min_scale}.")

    def init(leaves: Any) -> ReduceLROnPlateauState:
        floats = [x.dtype for x in leaves if x.is_floating_point()] or [torch.float32]
        low = min(floats, key=lambda d: torch.finfo(d).bits)
        high = functools.reduce(torch.promote_types, floats)
        device = leaves[0].device if leaves else None

        def i64() -> Tensor:
            return torch.zeros((), dtype=torch.int64, device=device)

        return ReduceLROnPlateauState(
            scale=torch.ones((), dtype=low, device=device),
            best_value=torch.full((), float("inf"), dtype=high, device=device),
            plateau_count=i64(),
            cooldown_count=i64(),
            count=i64(),
            avg_value=torch.zeros((), dtype=high, device=device),
        )

    def update(
        g: list[Tensor], state: ReduceLROnPlateauState, params: Any, ops: Ops, *, value: Any
    ) -> tuple[list[Tensor], ReduceLROnPlateauState]:
        s = state
        count = s.count + 1
        value = _as(value, s.avg_value)
        avg = (s.count * s.avg_value + value) / count
        compare = count == accumulation_size
        improved = avg < (1 - rtol) * s.best_value - atol
        best = torch.where(compare & improved, avg, s.best_value)
        plateau = torch.where(improved, torch.zeros_like(s.plateau_count), s.plateau_count + 1)
        cooling = s.cooldown_count > 0
        reduce = ~cooling & (plateau == patience)
        reduced = torch.where(reduce, s.scale * factor, s.scale).clamp(min=min_scale)
        new_scale = torch.where(cooling, s.scale, reduced)
        new_plateau = torch.where(cooling | reduce, torch.zeros_like(plateau), plateau)
        new_cooldown = torch.where(
            cooling, s.cooldown_count - 1, torch.where(reduce, cooldown, 0)
        ).to(torch.int64)
        zero = torch.zeros_like(count)
        state = ReduceLROnPlateauState(
            scale=torch.where(compare, new_scale, s.scale),
            best_value=best,
            plateau_count=torch.where(compare, new_plateau, s.plateau_count),
            cooldown_count=torch.where(compare, new_cooldown, s.cooldown_count),
            count=torch.where(compare, zero, count),
            avg_value=torch.where(compare, torch.zeros_like(avg), avg),
        )
        return ops.mul(g, state.scale), state

    def check(facts: Any, state: Any) -> None:
        if not isinstance(state, ReduceLROnPlateauState):
            raise ValueError(
                f"reduce_on_plateau: state is {type(state).__name__}, expected "
                "ReduceLROnPlateauState; pass the state returned by this optimizer's init()."
            )

    return LeafwiseTransformation(Leafwise(init, update, check=check, extra_args=("value",)))
