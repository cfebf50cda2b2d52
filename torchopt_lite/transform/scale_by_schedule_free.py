"""Schedule-Free: interpolation and averaging in place of momentum and a decaying schedule."""

from __future__ import annotations

from typing import Any, NamedTuple

import optree
import torch
from torch import Tensor

from torchopt_lite import _kinds
from torchopt_lite._checks import check_in_range, check_nonnegative, check_positive_value
from torchopt_lite._dispatch import Leafwise, state_check
from torchopt_lite._dispatch._boundary import flatten
from torchopt_lite._moments import (
    bias_correction,
    coefficient_dtype,
    ema_sq,
    next_count,
    rsqrt_denominator,
    zero_count,
    zeros_like_leaves,
)
from torchopt_lite._ops import Ops
from torchopt_lite.base import LeafwiseTransformation, register_state_type
from torchopt_lite.typing import ScalarOrSchedule


@register_state_type
class ScheduleFreeState(NamedTuple):
    r"""State of :func:`scale_by_schedule_free`.

    Per leaf: the base sequence ``z`` and (AdamW only, else ``()``) the second moment ``nu``;
    shared 0-d tensors: the interpolation :math:`\beta_1` (``b1``, read by
    :func:`schedule_free_eval_params`), the sum of averaging weights ``weight_sum``, the largest
    learning rate so far ``max_lr``, and the step ``count``.
    """

    z: tuple[Tensor, ...]
    nu: tuple[Tensor, ...]
    b1: Tensor
    weight_sum: Tensor
    max_lr: Tensor
    count: Tensor  # type: ignore[assignment]  # TorchOpt's name; shadows tuple.count


def validate(
    caller: str,
    lr: Any,
    warmup_steps: Any,
    b1: float,
    weight_decay: float,
    weight_lr_power: float,
    b2: float | None = None,
    eps: float = 0.0,
) -> None:
    """Check the hyperparameters of a Schedule-Free optimizer (errors name ``caller``)."""
    check_nonnegative(caller, "lr", lr, what="learning rate")
    if warmup_steps is not None:
        if isinstance(warmup_steps, bool) or not isinstance(warmup_steps, int):
            raise TypeError(
                f"{caller}: warmup_steps must be an int or None; got {type(warmup_steps).__name__}."
            )
        if warmup_steps < 1:
            raise ValueError(f"{caller}: warmup_steps must be >= 1; got {warmup_steps}.")
    check_positive_value(caller, "b1", b1)
    check_in_range(caller, "b1", b1, 0.0, 1.0, closed_high=True)
    check_nonnegative(caller, "weight_decay", weight_decay, what="weight_decay")
    check_nonnegative(caller, "weight_lr_power", weight_lr_power)
    if b2 is not None:
        check_in_range(caller, "b2", b2, 0.0, 1.0)
    check_nonnegative(caller, "eps", eps, what="epsilon")


def _filled(value: Any, like: Tensor) -> Tensor:
    """A fresh 0-d tensor like ``like`` holding ``value`` (a number, or a tensor in the graph)."""
    if isinstance(value, Tensor):
        return value.to(dtype=like.dtype, device=like.device).clone()
    return torch.full_like(like, value)


def scale_by_schedule_free(
    lr: ScalarOrSchedule = 1.0,
    warmup_steps: int | None = None,
    b1: float = 0.9,
    weight_decay: float = 0.0,
    weight_lr_power: float = 2.0,
    *,
    b2: float | None = None,
    eps: float = 1e-8,
    moment_requires_grad: bool = False,
) -> LeafwiseTransformation:
    r"""The Schedule-Free step, learning rate and sign included (see :func:`schedule_free_sgd`).

    The base direction is the gradient (SGD) or, with ``b2``, the gradient over the root of its
    bias-corrected second moment (AdamW without momentum); weight decay is added at :math:`y`.
    Its output is the update :math:`y_{t+1} - y_t` to add to the parameters :math:`y`.
    """
    validate("scale_by_schedule_free", lr, warmup_steps, b1, weight_decay, weight_lr_power, b2, eps)

    def init(leaves: Any) -> ScheduleFreeState:
        count = zero_count(leaves)
        zero = torch.zeros((), dtype=coefficient_dtype(count.device), device=count.device)
        nu = () if b2 is None else zeros_like_leaves(leaves, moment_requires_grad)
        return ScheduleFreeState(
            z=tuple(x.clone() for x in leaves),
            nu=nu,
            b1=_filled(b1, zero),
            weight_sum=zero,
            max_lr=zero.clone(),
            count=count,
        )

    def update(
        g: list[Tensor], state: ScheduleFreeState, y: Any, ops: Ops
    ) -> tuple[list[Tensor], ScheduleFreeState]:
        dtype = state.max_lr.dtype
        rate = lr(state.count) if callable(lr) else lr
        if isinstance(rate, Tensor):
            rate = rate.to(device=state.max_lr.device, dtype=dtype)
        else:
            rate = torch.full((), rate, dtype=dtype, device=state.max_lr.device)
        count = next_count(state.count, ops.inplace)
        if warmup_steps is not None:
            rate = rate * torch.clamp(count.to(dtype) / warmup_steps, max=1.0)
        max_lr = torch.maximum(state.max_lr, rate)
        weight = max_lr**weight_lr_power
        weight_sum = state.weight_sum + weight
        positive = weight_sum > 0
        c = torch.where(positive, weight / torch.where(positive, weight_sum, 1.0), 0.0)
        diff = ops.fresh.add(list(state.z), y, alpha=-1.0)  # z_t - y_t, before g is written
        nu: Any = ()
        if b2 is not None:
            nu = ema_sq(ops, list(state.nu), g, b2)
            g = ops.div(
                g, rsqrt_denominator(ops, nu, eps, bias_correction=bias_correction(b2, count))
            )
        if not _kinds.is_zero(weight_decay):
            g = ops.add(g, y, alpha=weight_decay)
        step = ops.mul(g, rate)  # gamma_t d_t
        z = ops.add(list(state.z), step, alpha=-1.0)
        u = ops.add(ops.mul(diff, c), ops.mul(step, b1 * (1.0 - c) - 1.0))
        new = ScheduleFreeState(tuple(z), tuple(nu), state.b1, weight_sum, max_lr, count)
        return u, new

    fields = ("z",) if b2 is None else ("z", "nu")
    check = state_check("scale_by_schedule_free", ScheduleFreeState, *fields)

    return LeafwiseTransformation(
        Leafwise(init, update, check=check, needs_params="scale_by_schedule_free")
    )


def _find_state(state: Any) -> ScheduleFreeState | None:
    if isinstance(state, ScheduleFreeState):
        return state
    if isinstance(state, tuple):
        for part in state:
            found = _find_state(part)
            if found is not None:
                return found
    return None


def schedule_free_eval_params(state: Any, params: Any) -> Any:
    r"""Where to evaluate a Schedule-Free model: :math:`x = (y - (1-\beta_1) z) / \beta_1`.

    Training steps move the parameters :math:`y` (where gradients are taken); the averaged
    sequence :math:`x` is the one to validate, test and ship. ``state`` is the state returned by
    :func:`schedule_free_sgd`, :func:`schedule_free_adamw` (or any chain holding a
    :class:`ScheduleFreeState`), ``params`` the current parameters (the same tree as given to
    ``init``). Differentiable; nothing is written. With an optimizer object (``torch.optim``
    style), per parameter ``p``: ``s = opt.state[p]``, then
    ``(p - (1 - s["b1"]) * s["z"]) / s["b1"]``.

    Example:
        >>> from torchopt_lite.alias.schedule_free_sgd import schedule_free_sgd
        >>> opt = schedule_free_sgd(lr=0.5, b1=0.5)
        >>> params = {"w": torch.tensor([1.0])}
        >>> state = opt.init(params)
        >>> for _ in range(2):
        ...     updates, state = opt.update({"w": torch.tensor([1.0])}, state, params=params)
        ...     params = torchopt_lite.apply_updates(params, updates)
        >>> params["w"], schedule_free_eval_params(state, params)["w"]
        (tensor([0.1250]), tensor([0.2500]))
    """
    found = _find_state(state)
    if found is None:
        raise ValueError(
            "schedule_free_eval_params: state holds no ScheduleFreeState; pass the state of a "
            f"Schedule-Free optimizer (schedule_free_sgd, schedule_free_adamw); got "
            f"{type(state).__name__}."
        )
    leaves, spec = flatten(params)
    present = [i for i, x in enumerate(leaves) if x is not None]
    if len(present) != len(found.z):
        raise ValueError(
            f"schedule_free_eval_params: params have {len(present)} tensors but the state has "
            f"{len(found.z)}; pass the params this optimizer was initialized with."
        )
    b1 = found.b1
    out = list(leaves)
    for i, z in zip(present, found.z, strict=True):
        out[i] = (leaves[i] - (1.0 - b1) * z) / b1
    return optree.tree_unflatten(spec, out)
