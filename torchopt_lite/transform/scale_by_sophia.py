"""Sophia's rescaling: momentum over a clipped, periodically refreshed Hessian diagonal."""

from __future__ import annotations

import contextlib
from typing import Any, NamedTuple

import optree
import torch
from torch import Tensor

from torchopt_lite._checks import check_in_range, check_nonnegative, known_value
from torchopt_lite._dispatch import Leafwise, state_check
from torchopt_lite._dispatch._boundary import traced
from torchopt_lite._moments import bias_correction, ema, next_count, zero_moments
from torchopt_lite._ops import Ops, ops_for
from torchopt_lite.base import (
    GradientTransformation,
    LeafwiseTransformation,
    OptState,
    Params,
    Updates,
    check_state,
    extra_args_filter,
    register_state_type,
)
from torchopt_lite.transform.hessian_diagonal import hutchinson_estimator_diag_hessian


@register_state_type
class ScaleBySophiaState(NamedTuple):
    """State of :func:`scale_by_sophia`: ``mu``, ``nu`` (Hessian diagonal), count, estimator.

    ``mu`` is the momentum, ``nu`` the EMA of the Hessian-diagonal estimates, ``count`` the
    step count and ``hessian_fn_state`` the estimator's state.
    """

    mu: tuple[Tensor, ...]
    nu: tuple[Tensor, ...]
    count: Tensor  # type: ignore[assignment]  # TorchOpt's name; shadows tuple.count
    hessian_fn_state: Any


class _Moments(NamedTuple):
    """The per-leaf part of :class:`ScaleBySophiaState` that the leafwise step reads."""

    mu: tuple[Tensor, ...]
    nu: tuple[Tensor, ...]
    count: Tensor  # type: ignore[assignment]  # as above


def sophia_direction(
    ops: Ops,
    g: list[Tensor],
    mu: list[Tensor],
    nu: list[Tensor],
    count: Tensor,
    b1: float,
    eps: float,
    gamma: float,
    clip_threshold: float | None,
) -> list[Tensor]:
    r""":math:`\operatorname{clip}(\hat m / \max(\gamma h, \epsilon), \pm\rho)`, into ``g``.

    ``count`` is the step already incremented; ``clip_threshold=None``: no clipping.
    """
    denom = ops.clamp(ops.fresh.mul(nu, gamma), eps, float("inf"))
    u = ops.mul(ops.div(ops.copy(g, mu), denom), 1.0 / bias_correction(b1, count))
    if clip_threshold is None:
        return u
    return ops.clamp(u, -clip_threshold, clip_threshold)


def _moments_step(
    b1: float, eps: float, gamma: float, clip_threshold: float | None, moment_requires_grad: bool
) -> LeafwiseTransformation:
    def init(leaves: Any) -> _Moments:
        return _Moments(*zero_moments(leaves, moment_requires_grad))

    def update(
        g: list[Tensor], state: _Moments, params: Any, ops: Ops
    ) -> tuple[list[Tensor], _Moments]:
        mu = ema(ops, list(state.mu), g, b1)
        count = next_count(state.count, ops.inplace)
        u = sophia_direction(ops, g, mu, list(state.nu), count, b1, eps, gamma, clip_threshold)
        return u, _Moments(mu=tuple(mu), nu=state.nu, count=count)

    check = state_check("scale_by_sophia", _Moments, "mu", "nu")
    return LeafwiseTransformation(Leafwise(init, update, check=check))


def scale_by_sophia(
    b1: float = 0.965,
    b2: float = 0.99,
    eps: float = 1e-8,
    gamma: float = 0.01,
    clip_threshold: float | None = 1.0,
    update_interval: int = 10,
    hessian_diagonal_fn: GradientTransformation | None = None,
    *,
    moment_requires_grad: bool = False,
) -> GradientTransformation:
    r"""Rescale updates by Sophia's clipped preconditioner (see :func:`sophia`).

    .. math::
        m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t, \quad
        u_t = \operatorname{clip}\Big(\frac{m_t / (1-\beta_1^t)}{\max(\gamma h_{t-1},
        \epsilon)}, \pm\rho\Big), \quad
        h_t = \beta_2 h_{t-1} + (1-\beta_2) \hat h_t \text{ if } (t-1) \bmod k = 0

    ``hessian_diagonal_fn`` (default: :func:`hutchinson_estimator_diag_hessian`) gives
    :math:`\hat h_t`; ``update`` needs ``params`` and forwards extra arguments to it (``obj_fn``
    for the default). The estimator is called with ``inplace=False``, under ``torch.no_grad()``
    when the step is in place (``torch.func`` transforms work there; ``torch.autograd.grad``
    needs ``torch.enable_grad()``).
    """
    check_in_range("scale_by_sophia", "b1", b1, 0.0, 1.0)
    check_in_range("scale_by_sophia", "b2", b2, 0.0, 1.0)
    check_nonnegative("scale_by_sophia", "eps", eps, what="epsilon")
    check_nonnegative("scale_by_sophia", "gamma", gamma)
    threshold = None if clip_threshold is None else known_value(clip_threshold)
    if threshold is not None and not threshold > 0:
        raise ValueError(f"scale_by_sophia: clip_threshold must be > 0; got {clip_threshold}.")
    if isinstance(update_interval, bool) or not isinstance(update_interval, int):
        raise TypeError(
            f"scale_by_sophia: update_interval must be an int; got {update_interval!r}."
        )
    if update_interval < 1:
        raise ValueError(f"scale_by_sophia: update_interval must be >= 1; got {update_interval}.")
    estimator = hessian_diagonal_fn
    if estimator is None:
        estimator = hutchinson_estimator_diag_hessian()
    elif not isinstance(estimator, GradientTransformation):
        raise TypeError(
            "scale_by_sophia: hessian_diagonal_fn must be a GradientTransformation; "
            f"got {type(estimator).__name__}."
        )
    pick = extra_args_filter(estimator.update)
    moments = _moments_step(b1, eps, gamma, clip_threshold, moment_requires_grad)

    def init_fn(params: Params) -> ScaleBySophiaState:
        m = moments.init(params)
        return ScaleBySophiaState(m.mu, m.nu, m.count, estimator.init(params))

    def update_fn(
        updates: Updates,
        state: OptState,
        *,
        params: Params | None = None,
        inplace: bool = True,
        **extra: Any,
    ) -> tuple[Updates, ScaleBySophiaState]:
        check_state(state)
        if not isinstance(state, ScaleBySophiaState):
            raise TypeError(
                f"scale_by_sophia: state must be a ScaleBySophiaState; got "
                f"{type(state).__name__}; pass the state returned by this optimizer's init()."
            )
        if params is None:
            raise ValueError("scale_by_sophia: update needs params=; pass the current parameters.")
        if any(x.is_complex() for x in optree.tree_leaves(params)):
            raise ValueError(
                "scale_by_sophia: complex parameters are not supported (no Hessian-diagonal "
                "estimate for them); use real parameters."
            )
        # The estimator runs first (it reads the gradients the step may overwrite) and out of
        # place (under no_grad for an in-place step), so an error leaves the state as it was.
        every_step = traced()  # no host read under torch.compile / torch.func: select instead
        due: Tensor | bool = state.count % update_interval == 0
        if not every_step:
            due = bool(due)  # the one host read: whether to call obj_fn at all
        h = hessian_state = None
        if due is not False:
            with torch.no_grad() if inplace else contextlib.nullcontext():
                h, hessian_state = estimator.update(
                    updates, state.hessian_fn_state, params=params, inplace=False, **pick(extra)
                )
            _check_estimate(h, state.nu)
        u, m = moments.update(
            updates, _Moments(state.mu, state.nu, state.count), params=params, inplace=inplace
        )
        nu, hessian_state = _refresh(m.nu, h, state, hessian_state, due, b2, inplace)
        return u, ScaleBySophiaState(m.mu, nu, m.count, hessian_state)

    return GradientTransformation(init_fn, update_fn)


def _check_estimate(h: Updates, nu: tuple[Tensor, ...]) -> None:
    leaves = optree.tree_leaves(h)
    shapes = [tuple(x.shape) for x in leaves]
    if shapes != [tuple(v.shape) for v in nu]:
        raise ValueError(
            "scale_by_sophia: hessian_diagonal_fn must return a tree shaped like params; "
            f"got leaf shapes {shapes}, params have {[tuple(v.shape) for v in nu]}."
        )


def _refresh(
    nu: tuple[Tensor, ...],
    h: Updates,
    state: ScaleBySophiaState,
    hessian_state: Any,
    due: Tensor | bool,
    b2: float,
    inplace: bool,
) -> tuple[tuple[Tensor, ...], Any]:
    r""":math:`h_t = \beta_2 h_{t-1} + (1-\beta_2) \hat h_t` when due, and the estimator's state.

    ``due`` is a bool, or a 0-d tensor that selects leaf by leaf (under compile / vmap).
    """
    if due is False:
        return nu, state.hessian_fn_state
    h_leaves = optree.tree_leaves(h)
    ops = ops_for(inplace, per_leaf=traced())
    with torch.no_grad() if inplace else contextlib.nullcontext():
        if isinstance(due, Tensor):  # a select: nu stays exactly nu where not due
            h_leaves = [torch.where(due, x, v) for x, v in zip(h_leaves, nu, strict=True)]
            hessian_state = optree.tree_map(
                lambda a, b: torch.where(due, a, b), hessian_state, state.hessian_fn_state
            )
        new_nu = ema(ops, list(nu), h_leaves, b2)
    return tuple(new_nu), hessian_state
