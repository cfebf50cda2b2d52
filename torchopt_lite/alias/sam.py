"""SAM: sharpness-aware minimization as a wrapper of two optimizers (Optax contrib's ``sam``)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any, NamedTuple

import optree
import torch
from torch import Tensor

from torchopt_lite.base import (
    GradientTransformation,
    OptState,
    Params,
    Updates,
    check_state,
    extra_args_filter,
    register_state_type,
)
from torchopt_lite.update import apply_updates


@register_state_type
class SAMState(NamedTuple):
    """State of :func:`sam`.

    ``steps_since_sync``: adversarial steps since the last outer step (0-d int64);
    ``opt_state`` / ``adv_state``: the outer and adversarial optimizers' states; ``cache``: the
    parameters at the last outer step (``None`` in opaque mode).
    """

    steps_since_sync: Tensor
    opt_state: Any
    adv_state: Any
    cache: Any


def _select(cond: Tensor, if_true: Any, if_false: Any) -> Any:
    """``if_true`` where ``cond`` else ``if_false``, leaf by leaf (no host sync)."""
    return optree.tree_map(lambda a, b: torch.where(cond, a, b), if_true, if_false)


def _clone(tree: Any) -> Any:
    return optree.tree_map(torch.clone, tree)


def sam(
    optimizer: GradientTransformation,
    adv_optimizer: GradientTransformation,
    sync_period: int = 2,
    reset_state: bool = True,
    opaque_mode: bool = False,
) -> GradientTransformation:
    r"""SAM: sharpness-aware minimization, alternating adversarial and descent steps.

    Each cycle of ``sync_period`` calls takes ``sync_period - 1`` adversarial (ascent) steps
    from the cached parameters :math:`\theta`, then one outer step that puts the parameters
    back at :math:`\theta` and moves them by the outer optimizer's update, computed from the
    gradient at the perturbed point. With ``adv_optimizer = chain(normalize(), sgd(rho))`` and
    ``sync_period=2`` this is the paper's SAM:

    .. math::
        \tilde\theta_t = \theta_t + \rho\, g(\theta_t) / \lVert g(\theta_t) \rVert_2, \qquad
        \theta_{t+1} = \theta_t + \mathrm{opt}(g(\tilde\theta_t))

    The adversarial optimizer's update is negated (a descent optimizer becomes an ascent step);
    the outer optimizer sees the cached parameters :math:`\theta_t` as ``params``.

    Transparent mode (default): each ``update`` call is one step of the cycle; the training loop
    computes the gradient at the parameters it has and applies the returned updates as usual
    (the parameters visit :math:`\tilde\theta_t`). Like Optax, every call evaluates both
    optimizers and selects the results with ``torch.where`` on the step counter (no host sync,
    ``torch.compile``/``vmap`` friendly), so a call costs both updates.

    Opaque mode: each ``update`` call runs a whole cycle and needs the extra argument
    ``grad_fn(params, i) -> grads``, called ``sync_period - 1`` times at the adversarial
    points; the returned updates are the outer step only (useful when a forward pass has side
    effects such as BatchNorm statistics).

    Args:
        optimizer: the outer optimizer (e.g. ``sgd(lr)``).
        adv_optimizer: the adversarial optimizer (e.g. ``chain(normalize(), sgd(rho))``).
        sync_period: steps per cycle (adversarial steps + 1), ``>= 1``.
        reset_state: re-initialize the adversarial optimizer's state after each outer step.
        opaque_mode: run the whole cycle inside each ``update`` call (needs ``grad_fn``).

    Returns:
        A :class:`~torchopt_lite.base.GradientTransformation` whose ``update`` needs ``params``;
        other extra arguments are forwarded to both optimizers.

    Example:
        >>> from torchopt_lite.alias.sgd import sgd
        >>> from torchopt_lite.transform.normalize import normalize
        >>> from torchopt_lite.combine import chain
        >>> opt = sam(sgd(lr=0.1), chain(normalize(), sgd(lr=0.05)))
        >>> params = {"w": torch.tensor([1.0, 2.0])}
        >>> state = opt.init(params)
        >>> for _ in range(2):  # one adversarial step, then the outer step
        ...     grads = {"w": 2 * params["w"]}  # loss = |w|^2
        ...     updates, state = opt.update(grads, state, params=params, inplace=False)
        ...     params = apply_updates(params, updates, inplace=False)
        >>> params["w"]
        tensor([0.7955, 1.5911])

    References:
        Foret et al., `Sharpness-Aware Minimization for Efficiently Improving Generalization
        <https://arxiv.org/abs/2010.01412>`_, ICLR 2021.

    Note:
        Optax's ``sam`` blends the two branches arithmetically (``c * a + (1 - c) * b``); here
        ``torch.where`` selects them, the same values unless the unselected branch is not
        finite. Optax's ``batch_axis_name`` (``pmean`` across devices) has no counterpart:
        average the gradients in ``grad_fn`` instead. ``torch.optim`` has no SAM.
    """
    if isinstance(sync_period, bool) or not isinstance(sync_period, int):
        raise TypeError(f"sam: sync_period must be an int; got {type(sync_period).__name__}.")
    if sync_period < 1:
        raise ValueError(f"sam: sync_period must be >= 1; got {sync_period}.")
    for name, value in (("optimizer", optimizer), ("adv_optimizer", adv_optimizer)):
        if not isinstance(value, GradientTransformation):
            raise TypeError(
                f"sam: {name} must be a GradientTransformation; got {type(value).__name__}."
            )
    pick_opt = extra_args_filter(optimizer.update)
    pick_adv = extra_args_filter(adv_optimizer.update)

    def init_fn(params: Params) -> SAMState:
        leaves = optree.tree_leaves(params)
        device = leaves[0].device if leaves else None
        return SAMState(
            steps_since_sync=torch.zeros((), dtype=torch.int64, device=device),
            opt_state=optimizer.init(params),
            adv_state=adv_optimizer.init(params),
            cache=None if opaque_mode else _clone(params),
        )

    def check(state: OptState, params: Params | None) -> Params:
        check_state(state)
        if not isinstance(state, SAMState):
            raise TypeError(
                f"sam: state must be a SAMState; got {type(state).__name__}; "
                "pass the state returned by this optimizer's init()."
            )
        if params is None:
            raise ValueError("sam: update needs params=; pass the current parameters.")
        return params

    def transparent_update(
        updates: Updates,
        state: SAMState,
        *,
        params: Params | None = None,
        inplace: bool = True,
        **extra_args: Any,
    ) -> tuple[Updates, SAMState]:
        params = check(state, params)
        extra_args.pop("grad_fn", None)
        with torch.no_grad() if inplace else contextlib.nullcontext():
            steps = state.steps_since_sync
            first, last = steps == 0, steps == sync_period - 1
            # Both optimizers read the same gradients: neither may overwrite them.
            adv_u, adv_state = adv_optimizer.update(
                updates, state.adv_state, params=params, inplace=False, **pick_adv(extra_args)
            )
            opt_u, opt_state = optimizer.update(
                updates, state.opt_state, params=state.cache, inplace=False, **pick_opt(extra_args)
            )
            back = optree.tree_map(lambda c, p, u: c - p + u, state.cache, params, opt_u)
            new_updates = _select(last, back, optree.tree_map(torch.neg, adv_u))
            kept_adv = adv_optimizer.init(params) if reset_state else state.adv_state
            new_state = SAMState(
                steps_since_sync=torch.remainder(steps + 1, sync_period),
                opt_state=_select(last, opt_state, state.opt_state),
                adv_state=_select(last, kept_adv, adv_state),
                cache=_select(first, params, state.cache),
            )
        return new_updates, new_state

    def opaque_update(
        updates: Updates,
        state: SAMState,
        *,
        params: Params | None = None,
        inplace: bool = True,
        **extra_args: Any,
    ) -> tuple[Updates, SAMState]:
        params = check(state, params)
        grad_fn: Callable[[Params, int], Updates] | None = extra_args.pop("grad_fn", None)
        if grad_fn is None:
            raise ValueError(
                "sam: opaque_mode=True needs the extra argument grad_fn(params, i) -> grads; "
                "pass opt.update(grads, state, params=params, grad_fn=grad_fn)."
            )
        adv_params, adv_grads, adv_state = params, updates, state.adv_state
        for i in range(sync_period - 1):
            adv_u, adv_state = adv_optimizer.update(
                adv_grads, adv_state, params=adv_params, inplace=inplace, **pick_adv(extra_args)
            )
            adv_params = apply_updates(adv_params, optree.tree_map(torch.neg, adv_u), inplace=False)
            adv_grads = grad_fn(adv_params, i)
        if reset_state:
            adv_state = adv_optimizer.init(params)
        new_updates, opt_state = optimizer.update(
            adv_grads, state.opt_state, params=params, inplace=inplace, **pick_opt(extra_args)
        )
        return new_updates, SAMState(state.steps_since_sync, opt_state, adv_state, None)

    update_fn = opaque_update if opaque_mode else transparent_update
    return GradientTransformation(init_fn, update_fn)
