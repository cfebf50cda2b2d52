"""Zoom line search: a step size meeting the strong Wolfe conditions (Optax's semantics)."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, NamedTuple

import optree
import torch
from torch import Tensor

from torchopt_lite._zoom import Zoom, search
from torchopt_lite.base import GradientTransformation, register_state_type

NEEDS_EXTRA = (
    "scale_by_zoom_linesearch: update needs params=, value=, grad= and value_fn= (the loss, "
    "its gradient at params and the function params -> loss); got none for {names}."
)


@register_state_type
class ZoomLinesearchInfo(NamedTuple):
    """Diagnostics of the last search: steps taken and the errors left (0 when met)."""

    num_linesearch_steps: Tensor
    decrease_error: Tensor
    curvature_error: Tensor


@register_state_type
class ScaleByZoomLinesearchState(NamedTuple):
    """State of :func:`scale_by_zoom_linesearch`.

    The step size found, the value and gradient at the accepted point (per leaf), and
    :class:`ZoomLinesearchInfo`.
    """

    learning_rate: Tensor
    value: Tensor
    grad: tuple[Tensor, ...]
    info: ZoomLinesearchInfo


def _value_and_grad(
    value_fn: Callable[..., Tensor], leaves: list[Tensor], spec: Any, kwargs: dict[str, Any]
) -> tuple[Tensor, list[Tensor]]:
    with torch.enable_grad():
        x = [leaf.detach().requires_grad_(True) for leaf in leaves]
        value = value_fn(optree.tree_unflatten(spec, x), **kwargs)
        if not value.requires_grad:  # a function constant in params
            return value.detach(), [torch.zeros_like(leaf) for leaf in leaves]
        grads = torch.autograd.grad(value, x, allow_unused=True)
    return value.detach(), [
        torch.zeros_like(xi) if gi is None else gi for xi, gi in zip(x, grads, strict=True)
    ]


def _accepted(fn: Callable[..., Any], kwargs: dict[str, Any]) -> dict[str, Any]:
    """The keyword arguments ``fn`` takes (all of them when it has ``**kwargs``)."""
    parameters = inspect.signature(fn).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return kwargs
    return {k: v for k, v in kwargs.items() if k in parameters}


class ZoomLinesearch(GradientTransformation):
    """The transformation :func:`scale_by_zoom_linesearch` returns.

    ``extra_args`` names the keyword arguments its ``update`` needs (an optimizer chaining it
    checks them first).
    """

    extra_args = ("value", "grad", "value_fn")


def scale_by_zoom_linesearch(
    max_linesearch_steps: int,
    max_learning_rate: float | None = None,
    tol: float = 0.0,
    increase_factor: float = 2.0,
    slope_rtol: float = 1e-4,
    curv_rtol: float = 0.9,
    approx_dec_rtol: float | None = 1e-6,
    stepsize_precision: float = 1e-5,
    initial_guess_strategy: str = "keep",
) -> ZoomLinesearch:
    r"""Scale updates :math:`u` by a step size :math:`\eta` meeting the strong Wolfe conditions.

    .. math::
        f(w + \eta u) \le f(w) + c_1 \eta \langle u, \nabla f(w) \rangle + \epsilon, \qquad
        |\langle \nabla f(w + \eta u), u \rangle| \le c_2 |\langle \nabla f(w), u \rangle|
        + \epsilon

    (:math:`c_1` = ``slope_rtol``, :math:`c_2` = ``curv_rtol``, :math:`\epsilon` = ``tol``).
    Close to a minimum the decrease condition may be replaced by Hager and Zhang's approximate
    one, :math:`\langle \nabla f(w + \eta u), u \rangle \le (2 c_1 - 1) \langle \nabla f(w),
    u\rangle`, once :math:`f(w + \eta u) \le f(w) + c_3 |f(w)|` (:math:`c_3` =
    ``approx_dec_rtol``; ``None`` turns this off). Algorithms 3.5 (bracketing: the step grows by
    ``increase_factor`` from the initial guess) and 3.6 (zoom: cubic, else quadratic, else
    bisection interpolation) of Nocedal and Wright. If no step meets both conditions within
    ``max_linesearch_steps`` (or the interval shrinks below ``stepsize_precision``), the best
    step meeting the decrease condition is taken, as in Optax.

    ``update(updates, state, *, params, value, grad, value_fn, **fn_kwargs)``: ``value`` and
    ``grad`` are the loss and its gradient at ``params``; ``value_fn(params, **fn_kwargs)``
    returns the loss (it is differentiated with :func:`torch.autograd.grad`); of the other
    keyword arguments, those ``value_fn`` takes are passed to it and the rest are ignored
    (Optax raises for them; here one training loop may pass extra arguments that other parts
    of a chain read). The state keeps
    the value and gradient at the accepted point. The step size is not differentiated
    (out of place, the result is differentiable with respect to ``updates`` only), and the
    search reads one boolean per iteration to stop (a host sync), where Optax runs a
    ``while_loop``.

    Args:
        max_linesearch_steps: the most function evaluations per search (>= 1).
        max_learning_rate: an upper bound on the step size, or ``None``.
        tol: :math:`\epsilon`.
        increase_factor: growth of the step while bracketing.
        slope_rtol: :math:`c_1`.
        curv_rtol: :math:`c_2`.
        approx_dec_rtol: :math:`c_3`, or ``None``.
        stepsize_precision: interval length below which a decreasing step is accepted.
        initial_guess_strategy: ``"one"`` (start at 1, for quasi-Newton directions) or
            ``"keep"`` (start at the previous step size).

    Example:
        >>> def f(w):
        ...     return (w**2).sum()
        >>> ls = scale_by_zoom_linesearch(max_linesearch_steps=15)
        >>> w = torch.tensor([1.0, 2.0])
        >>> state = ls.init(w)
        >>> g = 2 * w
        >>> u, state = ls.update(-g, state, params=w, value=f(w), grad=g, value_fn=f)
        >>> w + u
        tensor([0., 0.])

    References:
        Nocedal and Wright, Numerical Optimization, 1999 (Algorithms 3.5, 3.6).
        Hager and Zhang, Algorithm 851: CG_DESCENT, 2006.
    """
    caller = "scale_by_zoom_linesearch"
    if (
        isinstance(max_linesearch_steps, bool)
        or not isinstance(max_linesearch_steps, int)
        or max_linesearch_steps < 1
    ):
        raise ValueError(
            f"{caller}: max_linesearch_steps must be an int >= 1; got {max_linesearch_steps!r}."
        )
    if initial_guess_strategy not in ("one", "keep"):
        raise ValueError(
            f"{caller}: initial_guess_strategy must be 'one' or 'keep'; got "
            f"{initial_guess_strategy!r}."
        )
    cfg = Zoom(
        max_linesearch_steps,
        max_learning_rate,
        tol,
        increase_factor,
        slope_rtol,
        curv_rtol,
        approx_dec_rtol,
        stepsize_precision,
    )

    def init(params: Any) -> ScaleByZoomLinesearchState:
        leaves = optree.tree_leaves(params)
        like = leaves[0] if leaves else torch.zeros(())
        dtype = like.real.dtype if like.is_complex() else like.dtype
        scalar = like.new_zeros((), dtype=dtype)
        count = torch.zeros((), dtype=torch.int64, device=like.device)
        return ScaleByZoomLinesearchState(
            learning_rate=scalar + 1.0,
            value=scalar + torch.inf,
            grad=tuple(torch.zeros_like(x) for x in leaves),
            info=ZoomLinesearchInfo(count, scalar + torch.inf, scalar + torch.inf),
        )

    def update(
        updates: Any,
        state: ScaleByZoomLinesearchState,
        *,
        params: Any = None,
        inplace: bool = True,
        value: Tensor | None = None,
        grad: Any = None,
        value_fn: Callable[..., Tensor] | None = None,
        **fn_kwargs: Any,
    ) -> tuple[Any, ScaleByZoomLinesearchState]:
        if params is None or value is None or grad is None or value_fn is None:
            given = {"params": params, "value": value, "grad": grad, "value_fn": value_fn}
            missing = ", ".join(k for k, v in given.items() if v is None)
            raise ValueError(NEEDS_EXTRA.format(names=missing))
        fn_kwargs = _accepted(value_fn, fn_kwargs)
        u, spec = optree.tree_flatten(updates)
        w = [x.detach() for x in optree.tree_leaves(params)]
        g0 = [x.detach() for x in optree.tree_leaves(grad)]
        ud = [x.detach() for x in u]
        lr = state.learning_rate
        f0 = torch.as_tensor(value).detach().to(device=lr.device, dtype=lr.dtype)
        guess = lr.detach() if initial_guess_strategy == "keep" else torch.ones_like(lr)

        def value_and_grad(x: list[Tensor]) -> tuple[Tensor, list[Tensor]]:
            return _value_and_grad(value_fn, x, spec, fn_kwargs)

        s = search(cfg, w, ud, f0, g0, guess, value_and_grad)
        eta = s.stepsize
        scaled = [x.mul_(eta) if inplace else x * eta for x in u]
        new_state = ScaleByZoomLinesearchState(
            learning_rate=eta,
            value=s.value,
            grad=tuple(s.grad),
            info=ZoomLinesearchInfo(s.count, s.decrease_error, s.curvature_error),
        )
        return optree.tree_unflatten(spec, scaled), new_state

    return ZoomLinesearch(init, update)
