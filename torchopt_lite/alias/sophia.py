"""Sophia: a clipped diagonal second-order optimizer (Optax contrib's ``sophia``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import Tensor

from torchopt_lite._checks import check_nonnegative
from torchopt_lite.alias.utils import flip_sign_and_add_weight_decay, scale_by_neg_lr
from torchopt_lite.base import (
    ChainedGradientTransformation,
    GradientTransformation,
    OptState,
    Params,
    Updates,
    extra_args_filter,
)
from torchopt_lite.transform.add_decayed_weights import Mask, add_decayed_weights
from torchopt_lite.transform.hessian_diagonal import hutchinson_estimator_diag_hessian
from torchopt_lite.transform.scale_by_sophia import scale_by_sophia
from torchopt_lite.typing import ScalarOrSchedule

_OBJECTIVES = ("obj_fn", "sampled_obj_fn")


def _negated_objectives(estimator: GradientTransformation) -> GradientTransformation:
    """``estimator`` run on :math:`-f` (maximizing :math:`f` minimizes :math:`-f`)."""
    pick = extra_args_filter(estimator.update)

    def update_fn(
        updates: Updates,
        state: OptState,
        *,
        params: Params | None = None,
        inplace: bool = True,
        **extra_args: Any,
    ) -> tuple[Updates, OptState]:
        for name in _OBJECTIVES:
            f = extra_args.get(name)
            if callable(f):
                extra_args[name] = _negated(f)
        return estimator.update(updates, state, params=params, inplace=inplace, **pick(extra_args))

    return GradientTransformation(estimator.init, update_fn)


def _negated(f: Callable[[Params], Tensor]) -> Callable[[Params], Tensor]:
    return lambda p: -f(p)


def sophia(
    lr: ScalarOrSchedule,
    b1: float = 0.965,
    b2: float = 0.99,
    eps: float = 1e-8,
    weight_decay: float = 1e-4,
    weight_decay_mask: Mask | None = None,
    gamma: float = 0.01,
    clip_threshold: float | None = 1.0,
    update_interval: int = 10,
    hessian_diagonal_fn: GradientTransformation | None = None,
    *,
    maximize: bool = False,
    moment_requires_grad: bool = False,
) -> ChainedGradientTransformation:
    r"""Sophia: momentum preconditioned by a periodically estimated Hessian diagonal, clipped.

    .. math::
        m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t, \qquad
        u_t = -\alpha_t \Big[\operatorname{clip}\Big(
            \frac{m_t / (1-\beta_1^t)}{\max(\gamma h_{t-1}, \epsilon)}, \pm\rho\Big)
            + \lambda \theta_{t-1}\Big],

        h_t = \beta_2 h_{t-1} + (1-\beta_2) \hat h_t \ \text{every } k \text{ steps (at
        } t = 1, k+1, 2k+1, \dots), \text{ else } h_t = h_{t-1},

    where :math:`\hat h_t` estimates the diagonal of the Hessian of the loss at
    :math:`\theta_{t-1}`: by default Hutchinson's :math:`z \odot (\nabla^2 f\, z)` (Sophia-H,
    :func:`~torchopt_lite.transform.hessian_diagonal.hutchinson_estimator_diag_hessian`), or
    the Gauss-Newton-Bartlett estimate (Sophia-G,
    :func:`~torchopt_lite.transform.hessian_diagonal.gauss_newton_bartlett_estimator_diag_hessian`).

    ``update`` needs ``params`` and the estimator's extra argument, for the default
    ``obj_fn`` (``params -> scalar loss`` on the current batch)::

        updates, state = opt.update(grads, state, params=params,
                                    obj_fn=lambda p: loss_fn(p, batch))

    Args:
        lr: step size :math:`\alpha` (float, 0-d tensor or schedule).
        b1: momentum decay :math:`\beta_1` in ``[0, 1)``.
        b2: decay :math:`\beta_2` in ``[0, 1)`` of the Hessian-diagonal EMA (applied every
            ``update_interval`` steps, so its effective per-step value is
            :math:`1 - (1 - \beta_2)/k`).
        eps: floor :math:`\epsilon` of the denominator.
        weight_decay: decoupled weight decay :math:`\lambda` (added after clipping).
        weight_decay_mask: a tree of bools (or a callable ``params -> tree``) selecting the
            leaves to decay; ``None`` decays all.
        gamma: :math:`\gamma`, the scale of the Hessian diagonal in the denominator.
        clip_threshold: :math:`\rho > 0`; ``None`` disables clipping.
        update_interval: :math:`k \ge 1`, steps between Hessian estimates.
        hessian_diagonal_fn: the estimator, a transformation ``update(grads, state, *, params,
            **extra) -> (diag estimate, state)``; default Hutchinson's with seed 0.
        maximize: maximize the objective (the gradients and the estimator's objective are
            negated).
        moment_requires_grad: create the moments with ``requires_grad=True``.

    Example:
        >>> opt = sophia(lr=0.1)
        >>> params = torch.tensor([1.0, -2.0])
        >>> state = opt.init(params)
        >>> loss = lambda p: (p**2).sum()
        >>> updates, state = opt.update(2 * params, state, params=params, obj_fn=loss)
        >>> updates  # the first step has h = 0: clipped to lr * sign(m) (+ decay)
        tensor([-0.1000,  0.1000])

    References:
        Liu et al., `Sophia: A Scalable Stochastic Second-order Optimizer for Language Model
        Pre-training <https://arxiv.org/abs/2305.14342>`_, ICLR 2024.

    Note:
        Follows ``optax.contrib.sophia`` (Rademacher probes, clipping at :math:`\pm\rho` in
        units of the step, decay after clipping); ``torch.optim`` has no Sophia. Optax's
        ``mu_dtype``, ``verbose`` and ``print_win_rate_every_n_steps`` are not offered. In
        eager mode each step reads the 0-d step count on the host once, to decide whether to
        call the objective (the one host synchronization, on an accelerator); under
        ``torch.compile`` and ``torch.func`` transforms the estimate is computed at every step
        and selected with ``torch.where`` (the same values). Complex parameters raise
        ``ValueError``.
    """
    check_nonnegative("sophia", "lr", lr, what="learning rate")
    check_nonnegative("sophia", "weight_decay", weight_decay, what="weight_decay")
    estimator = hessian_diagonal_fn
    if maximize and (estimator is None or isinstance(estimator, GradientTransformation)):
        estimator = _negated_objectives(estimator or hutchinson_estimator_diag_hessian())
    return ChainedGradientTransformation(
        flip_sign_and_add_weight_decay(weight_decay=0.0, maximize=maximize),
        scale_by_sophia(
            b1,
            b2,
            eps,
            gamma,
            clip_threshold,
            update_interval,
            estimator,
            moment_requires_grad=moment_requires_grad,
        ),
        add_decayed_weights(weight_decay, weight_decay_mask),
        scale_by_neg_lr(lr),
    )
