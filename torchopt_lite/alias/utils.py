"""Building blocks shared by the aliases: sign flip with coupled weight decay, ``-lr`` scaling."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from torchopt_lite import _kinds
from torchopt_lite._checks import check_nonnegative
from torchopt_lite._dispatch import Leafwise
from torchopt_lite._ops import Ops
from torchopt_lite.base import EmptyState, GradientTransformation, LeafwiseTransformation
from torchopt_lite.base import identity as identity
from torchopt_lite.transform.scale import scale, scale_by_schedule
from torchopt_lite.typing import ScalarOrSchedule

__all__ = ["flip_sign_and_add_weight_decay", "scale_by_neg_lr"]


def _set_use_chain_flat(use_chain_flat: bool) -> None:
    """TorchOpt's test switch between its tree and flat-list chains (compatibility name).

    Here there is one path: every chain flattens the pytree once per step, which is what both of
    TorchOpt's settings compute. The flag is checked and otherwise has no effect.
    """
    if not isinstance(use_chain_flat, bool):
        raise TypeError(
            "_set_use_chain_flat: use_chain_flat must be a bool; "
            f"got {type(use_chain_flat).__name__}."
        )


def _get_use_chain_flat() -> bool:
    """Always ``True``: chains here always work on the flattened tree (compatibility name)."""
    return True


def flip_sign_and_add_weight_decay(
    weight_decay: float = 0.0, maximize: bool = False
) -> GradientTransformation:
    r"""Negate the updates if maximizing, then add coupled weight decay.

    .. math:: g \leftarrow \pm g + \lambda \theta

    Example:
        >>> t = flip_sign_and_add_weight_decay(weight_decay=0.5, maximize=True)
        >>> p = torch.ones(2)
        >>> t.update(torch.ones(2), t.init(p), params=p)[0]
        tensor([-0.5000, -0.5000])
    """
    check_nonnegative("flip_sign_and_add_weight_decay", "weight_decay", weight_decay)
    decay = not _kinds.is_zero(weight_decay)
    if not decay and not maximize:
        return identity()

    def update(g: list[Tensor], state: Any, params: Any, ops: Ops) -> tuple[Any, Any]:
        if maximize:
            g = ops.neg(g)
        if decay:
            g = ops.add(g, params, alpha=weight_decay)
        return g, state

    reads_params = "flip_sign_and_add_weight_decay" if decay else ""
    constant = _kinds.constant(weight_decay)
    kind = _kinds.Flip(float(weight_decay), bool(maximize)) if constant else None
    return LeafwiseTransformation(
        Leafwise(
            lambda leaves: EmptyState(), update, kind=kind, needs_params=reads_params, sparse=True
        )
    )


def scale_by_neg_lr(lr: ScalarOrSchedule) -> GradientTransformation:
    r"""Scale by :math:`-\alpha`: a float, a 0-d tensor (learnable) or a schedule ``count -> lr``.

    Example:
        >>> t = scale_by_neg_lr(0.1)
        >>> t.update(torch.ones(1), t.init(torch.ones(1)))[0]
        tensor([-0.1000])
    """
    check_nonnegative("scale_by_neg_lr", "lr", lr, what="learning rate")
    if callable(lr):
        schedule = lr

        def neg_schedule(count: Tensor) -> Any:
            return -schedule(count)

        return scale_by_schedule(neg_schedule)
    return scale(-lr)
