"""L-BFGS."""

from __future__ import annotations

from typing import Any

from torchopt_lite._checks import check_nonnegative
from torchopt_lite.alias.utils import scale_by_neg_lr
from torchopt_lite.base import (
    ChainedGradientTransformation,
    GradientTransformation,
    LeafwiseTransformation,
    identity,
)
from torchopt_lite.transform.scale import scale
from torchopt_lite.transform.scale_by_lbfgs import scale_by_lbfgs
from torchopt_lite.transform.scale_by_zoom_linesearch import (
    ZoomLinesearch,
    scale_by_zoom_linesearch,
)
from torchopt_lite.typing import ScalarOrSchedule


def _reading(t: LeafwiseTransformation, names: tuple[str, ...]) -> LeafwiseTransformation:
    """``t``, declaring the extra arguments read by the line search after it.

    A missing one then raises before the first part writes its state.
    """
    part = t.leafwise().parts[0]
    inner = part.update

    def update(g: Any, state: Any, params: Any, ops: Any, **extra: Any) -> Any:
        return inner(g, state, params, ops)

    return LeafwiseTransformation(part._replace(update=update, extra_args=names))


DEFAULT_LINESEARCH = scale_by_zoom_linesearch(max_linesearch_steps=20, initial_guess_strategy="one")


def lbfgs(
    lr: ScalarOrSchedule | None = None,
    memory_size: int = 10,
    scale_init_precond: bool = True,
    linesearch: GradientTransformation | None = DEFAULT_LINESEARCH,
) -> ChainedGradientTransformation:
    r"""L-BFGS: quasi-Newton steps from a limited memory of curvature pairs (Optax's ``lbfgs``).

    .. math::
        \delta w_j = w_{j+1} - w_j, \quad \delta g_j = g_{j+1} - g_j, \quad
        \rho_j = 1 / \delta g_j^\top \delta w_j, \quad
        V_j = I - \rho_j \delta g_j \delta w_j^\top,

        P_{k,j+1} = V_j^\top P_{k,j} V_j + \rho_j \delta w_j \delta w_j^\top
        \ (j = k-m, \ldots, k-1), \qquad P_{k,k-m} = \gamma_k I,

        \gamma_k = \delta w_{k-1}^\top \delta g_{k-1} / \|\delta g_{k-1}\|^2, \quad
        \gamma_0 = \min(1, 1/\|g_0\|), \qquad
        u_k = -\eta_k P_{k,k}\, g_k,

    where :math:`P_{k,k} g_k` is computed by the two-loop recursion over the last :math:`m`
    pairs (a ring buffer of flattened parameters) and :math:`\eta_k` by the line search
    (default: :func:`scale_by_zoom_linesearch`, strong Wolfe conditions, initial guess 1) or
    is ``lr`` without one.

    Args:
        lr: a fixed step size (float, 0-d tensor or schedule) applied before the line search;
            ``None`` (default) leaves the step to the line search.
        memory_size: :math:`m`, the number of pairs kept.
        scale_init_precond: use :math:`\gamma_k` above, else :math:`\gamma_k = 1`.
        linesearch: a transformation choosing the step size, or ``None`` for none. The
            default needs ``params=``, ``value=`` (the loss), ``grad=`` (its gradient) and
            ``value_fn=`` (``params -> loss``) in every ``update``.

    Example:
        >>> def f(w):
        ...     return ((w - 1.0) ** 2).sum() + (w[0] - w[1]) ** 2
        >>> opt = lbfgs()
        >>> w = torch.zeros(2)
        >>> state = opt.init(w)
        >>> for _ in range(3):
        ...     x = w.detach().requires_grad_()
        ...     value = f(x)
        ...     (grad,) = torch.autograd.grad(value, x)
        ...     updates, state = opt.update(
        ...         grad, state, params=w, value=value, grad=grad, value_fn=f
        ...     )
        ...     w = torchopt_lite.apply_updates(w, updates)
        >>> w
        tensor([1., 1.])

        As the inner solver of :func:`~torchopt_lite.diff.implicit.custom_root` (ridge
        regression; the hypergradient comes from the optimality condition, not the loop):

        >>> X, y = torch.randn(8, 3, dtype=torch.float64), torch.randn(8, dtype=torch.float64)
        >>> def stationarity(w, lam):
        ...     return X.T @ (X @ w - y) + lam * w
        >>> @torchopt_lite.diff.implicit.custom_root(stationarity, argnums=1)
        ... def ridge(w, lam):
        ...     def loss(v):
        ...         return 0.5 * ((X @ v - y) ** 2).sum() + 0.5 * lam * (v**2).sum()
        ...     opt = lbfgs()
        ...     state = opt.init(w)
        ...     for _ in range(20):
        ...         x = w.detach().requires_grad_()
        ...         with torch.enable_grad():  # custom_root runs the solver under no_grad
        ...             value = loss(x)
        ...             (grad,) = torch.autograd.grad(value, x)
        ...         u, state = opt.update(
        ...             grad, state, params=w, value=value, grad=grad, value_fn=loss
        ...         )
        ...         w = torchopt_lite.apply_updates(w, u)
        ...     return w
        >>> lam = torch.tensor(0.5, dtype=torch.float64, requires_grad=True)
        >>> w = ridge(torch.zeros(3, dtype=torch.float64), lam)
        >>> exact = torch.linalg.solve(X.T @ X + lam * torch.eye(3, dtype=torch.float64), X.T @ y)
        >>> torch.allclose(w, exact.detach())
        True
        >>> (hyper,) = torch.autograd.grad(w.sum(), lam)
        >>> (reference,) = torch.autograd.grad(exact.sum(), lam)
        >>> torch.allclose(hyper, reference)
        True

    References:
        Nocedal and Wright, Numerical Optimization, 1999 (Algorithms 7.4, 7.5).
        Liu and Nocedal, On the limited memory BFGS method for large scale optimization, 1989.

    Note:
        As Optax's ``optax.lbfgs`` (same defaults). The step size found by the line search is
        not differentiated, and the search reads one boolean per iteration to stop (a host
        sync), where Optax runs a ``jax.lax.while_loop``. ``torch.optim.LBFGS`` differs (its
        own strong-Wolfe search, a first step scale :math:`\min(1, 1/\|g_0\|_1)\,\mathrm{lr}`,
        pairs kept only when :math:`\delta g^\top \delta w > 10^{-10}`, several iterations
        per ``step``): see
        :class:`torchopt_lite.optim.lbfgs.LBFGS` for its semantics. Complex parameters are
        optimized through their real views. Out of place, the first step's
        :math:`\gamma_0 = \min(1, 1/\|g_0\|)` is differentiated (Optax stops its gradient), so
        ``gradcheck`` holds through the steps.
    """
    if lr is not None:
        check_nonnegative("lbfgs", "lr", lr, what="learning rate")
    step = scale(-1.0) if lr is None else scale_by_neg_lr(lr)
    precondition = scale_by_lbfgs(memory_size=memory_size, scale_init_precond=scale_init_precond)
    if isinstance(linesearch, ZoomLinesearch):
        precondition = _reading(precondition, linesearch.extra_args)
    return ChainedGradientTransformation(
        precondition,
        step,
        identity() if linesearch is None else linesearch,
    )
