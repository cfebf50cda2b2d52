"""Lookahead: ``k`` fast steps forward, one step back toward the slow weights."""

from __future__ import annotations

from typing import Any, NamedTuple

import optree
import torch
from torch import Tensor

from torchopt_lite._checks import check_in_range, coefficient
from torchopt_lite._dispatch._boundary import PARAMS_REQUIRED, flatten, flatten_tensors
from torchopt_lite._moments import zero_count
from torchopt_lite.base import GradientTransformation, extra_args_filter, register_state_type
from torchopt_lite.transform._select import check_positive_int, expect_state, present, tree_where


@register_state_type
class LookaheadState(NamedTuple):
    """State of :func:`lookahead`.

    Attributes:
        fast_state: the state of the fast optimizer.
        steps_since_sync: fast steps since the last synchronisation (0-d int64).
        slow: the slow weights, one tensor per (non-``None``) parameter leaf in leaf order.
    """

    fast_state: Any
    steps_since_sync: Tensor
    slow: tuple[Tensor, ...]


def lookahead(
    fast_optimizer: GradientTransformation,
    sync_period: int,
    slow_step_size: float | Tensor,
    reset_state: bool = False,
) -> GradientTransformation:
    r"""Lookahead: the fast optimizer steps; every ``sync_period`` steps the weights move back.

    The parameters are the fast weights :math:`\theta`; the slow weights :math:`\phi` live in the
    state. At every ``sync_period``-th step, after the fast step :math:`\theta + u`:

    .. math::
        \phi \leftarrow \phi + \alpha (\theta + u - \phi), \qquad \theta \leftarrow \phi,

    that is, the returned update is :math:`\phi_{\text{new}} - \theta`; at the other steps it is
    the fast optimizer's :math:`u`.

    Args:
        fast_optimizer: the inner optimizer.
        sync_period: :math:`k \ge 1`, fast steps between synchronisations.
        slow_step_size: :math:`\alpha \in [0, 1]`, a float or a 0-d tensor (injected or
            learned: the steps are differentiable in it).
        reset_state: re-``init`` the fast optimizer's state at each synchronisation.

    Returns:
        A transformation whose ``update`` needs ``params`` (the fast weights); its state is a
        :class:`LookaheadState` (``state.slow``: the slow weights, for evaluation). ``init``
        copies the params into ``state.slow`` without detaching them, so meta-gradients reach
        the initial params; pass detached params to ``init`` to cut that path.

    Example:
        >>> from torchopt_lite.transform import scale
        >>> t = lookahead(scale(-1.0), sync_period=2, slow_step_size=0.5)
        >>> p = torch.zeros(1)
        >>> state = t.init(p)
        >>> u, state = t.update(torch.ones(1), state, params=p)
        >>> p = p + u  # the fast step: -1
        >>> u, state = t.update(torch.ones(1), state, params=p)
        >>> p + u, state.slow  # fast weights at -2, then back to 0 + 0.5 * (-2 - 0)
        (tensor([-1.]), (tensor([-1.]),))

    References:
        Zhang, Lucas, Hinton and Ba, `Lookahead Optimizer: k steps forward, 1 step back
        <https://arxiv.org/abs/1907.08610>`_, NeurIPS 2019.

    Note:
        Optax keeps the two weight sets in the params (``LookaheadParams(fast, slow)``) and
        returns updates for both; here the params are the fast weights alone and the slow ones
        live in the state, so ``lookahead`` composes with ``apply_updates``, the
        ``torch.optim``-style classes and the meta-optimizers like any other transformation.
        The values are Optax's (checked in the tests). Do not change the updates before
        applying them: the synchronising step assumes the params become :math:`\theta + u`.
        A ``None`` gradient is a zero fast step: its update is a tensor (zeros, or the move to
        the slow weights at a synchronisation).
    """
    if not isinstance(fast_optimizer, GradientTransformation):
        raise TypeError(
            "lookahead: fast_optimizer must be a GradientTransformation; "
            f"got {type(fast_optimizer).__name__}."
        )
    check_positive_int("lookahead", "sync_period", sync_period)
    check_in_range("lookahead", "slow_step_size", slow_step_size, 0.0, 1.0, closed_high=True)
    alpha = coefficient(slow_step_size)  # a tensor (injected, learned) stays in the graph

    def init_fn(params: Any) -> LookaheadState:
        leaves, _ = flatten_tensors(params, "params", "lookahead")
        leaves = present(leaves)
        return LookaheadState(
            fast_state=fast_optimizer.init(params),
            steps_since_sync=zero_count(leaves),
            slow=tuple(x.clone() for x in leaves),  # differentiable: meta-gradients reach params
        )

    pick = extra_args_filter(fast_optimizer.update)

    def update_fn(
        updates: Any,
        state: LookaheadState,
        *,
        params: Any = None,
        inplace: bool = True,
        **extra_args: Any,
    ) -> tuple[Any, LookaheadState]:
        expect_state("lookahead", state, LookaheadState)
        if params is None:
            raise ValueError(PARAMS_REQUIRED.format(caller="lookahead"))
        p_leaves, p_spec = flatten(params)
        fast = present(p_leaves)
        if len(fast) != len(state.slow):
            raise ValueError(
                f"lookahead: params have {len(fast)} tensors but the state holds "
                f"{len(state.slow)} slow weights; pass the state returned by init(params)."
            )
        sync = state.steps_since_sync == sync_period - 1
        fast_init = fast_optimizer.init(params) if reset_state else None
        u, fast_state = fast_optimizer.update(
            updates, state.fast_state, params=params, inplace=inplace, **pick(extra_args)
        )
        u_leaves, u_spec = flatten(u)
        if u_spec != p_spec:
            raise ValueError(
                "lookahead: updates must have the tree structure of params; "
                f"params: {p_spec}, updates: {u_spec}."
            )
        out: list[Any] = list(u_leaves)
        slow = []
        j = 0
        for i, (p, g) in enumerate(zip(p_leaves, u_leaves, strict=True)):
            if p is None:
                continue
            s = state.slow[j]
            j += 1
            moved = p if g is None else p + g
            new_s = torch.where(sync, s + alpha * (moved - s), s)
            out[i] = torch.where(sync, new_s - p, moved - p if g is None else g)
            slow.append(new_s)
        if reset_state:
            fast_state = tree_where(sync, fast_init, fast_state)
        new_state = LookaheadState(
            fast_state=fast_state,
            steps_since_sync=torch.remainder(state.steps_since_sync + 1, sync_period),
            slow=tuple(slow),
        )
        return optree.tree_unflatten(p_spec, out), new_state

    return GradientTransformation(init_fn, update_fn)
