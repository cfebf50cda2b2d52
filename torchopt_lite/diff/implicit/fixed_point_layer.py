r"""``fixed_point_layer``: a forward solver for :math:`x = T(x, \theta)` and a backward rule."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import optree
import torch

from torchopt_lite.diff.implicit._fixed_point_loop import FixedPointInfo
from torchopt_lite.diff.implicit.decorator import _normalize_argnums, custom_fixed_point
from torchopt_lite.diff.implicit.fixed_point import FixedPointSolver, anderson
from torchopt_lite.typing import LinearSolver, TensorTree

Backward = Literal["implicit", "phantom", "jfb"]
_BACKWARDS = ("implicit", "phantom", "jfb")


def _phantom_solve(k: int, damping: float) -> LinearSolver:
    r"""``k`` damped Richardson steps on :math:`A^\top u = b`, :math:`A = \partial_x T - I`.

    From :math:`u_0 = 0`, :math:`u_{i+1} = u_i + \lambda (A^\top u_i - b)`; with :math:`b = -g`
    this is :math:`u_k = \lambda \sum_{i<k} ((1 - \lambda) I + \lambda J^\top)^i g`.
    """

    def solve(matvec: Callable[[TensorTree], TensorTree], b: TensorTree) -> TensorTree:
        u = optree.tree_map(lambda bi: -damping * bi, b)
        for _ in range(k - 1):
            u = optree.tree_map(lambda ui, ai, bi: ui + damping * (ai - bi), u, matvec(u), b)
        return u

    return solve


def _jfb_solve(matvec: Callable[[TensorTree], TensorTree], b: TensorTree) -> TensorTree:
    r""":math:`A^\top u = b` with :math:`\partial_x T` taken as 0, i.e. :math:`A = -I`."""
    return optree.tree_map(torch.neg, b)


def fixed_point_layer(
    T: Callable[..., Any],
    solver: FixedPointSolver | None = None,
    *,
    argnums: int | tuple[int, ...] = 1,
    backward: Backward = "implicit",
    solve: LinearSolver | None = None,
    k: int | None = None,
    damping: float | None = None,
) -> Callable[..., tuple[Any, FixedPointInfo]]:
    r"""A layer ``x0, *args -> (x*, info)``: solve :math:`x = T(x, \theta)`, differentiate by rule.

    The forward pass runs ``solver`` (any ``solver(fn, x0) -> (x, info)``, e.g.
    :func:`~torchopt_lite.diff.implicit.anderson`) under :func:`torch.no_grad`; it is never
    unrolled. The backward pass pulls a cotangent :math:`g` of :math:`x^\star` back to the
    arguments in ``argnums`` by one of three rules, with :math:`J = \partial_x T(x^\star, \theta)`
    and :math:`B = \partial_\theta T(x^\star, \theta)`:

    .. math::
        \text{implicit:}\quad & \bar\theta = B^\top u, \quad (I - J)^\top u = g
            \qquad (\partial_\theta x^\star = (I - J)^{-1} B), \\
        \text{phantom:}\quad & \bar\theta = B^\top u, \quad
            u = \lambda \sum_{i=0}^{k-1} \big((1 - \lambda) I + \lambda J^\top\big)^i g, \\
        \text{jfb:}\quad & \bar\theta = B^\top g \qquad (J \text{ taken as } 0).

    The phantom gradient is the VJP of :math:`k` damped steps
    :math:`x \leftarrow (1 - \lambda) x + \lambda T(x, \theta)` started at :math:`x^\star`
    (Geng et al.): :math:`k - 1` VJPs of :math:`T` in :math:`x`, and it tends to the implicit
    gradient as :math:`k \to \infty` when :math:`\|(1 - \lambda) I + \lambda J\| < 1`. JFB
    (Fung et al.) is its :math:`k = 1, \lambda = 1` case: one VJP, a descent direction when
    :math:`T` is contractive enough. All three are the one mechanism,
    :func:`~torchopt_lite.diff.implicit.custom_fixed_point` (so :func:`torch.func.vmap`,
    ``grad``, ``jacrev`` and forward mode compose with the layer), with a different linear solve
    for :math:`(\partial_x T - I)^\top u = -g`: the given ``solve``, :math:`k` Richardson steps
    of step :math:`\lambda`, or :math:`\partial_x T = 0`. The forward value is the solver's
    :math:`x^\star` in every mode.

    Args:
        T: :math:`T(x, \ldots)`, called as ``T(x, *args, **kwargs)`` with the layer's arguments
            after ``x0``; it returns a tree with the structure and shapes of ``x``.
        solver: the forward solver (default: :func:`~torchopt_lite.diff.implicit.anderson`
            with its defaults).
        argnums: index or indices of the layer's positional arguments to differentiate
            (``0`` is ``x0``, never differentiated), as in
            :func:`~torchopt_lite.diff.implicit.custom_root`.
        backward: ``"implicit"``, ``"phantom"`` or ``"jfb"``.
        solve: ``"implicit"`` only: the linear solver (default: normal CG; see
            :func:`~torchopt_lite.diff.implicit.custom_fixed_point`).
        k: ``"phantom"`` only: the number of unrolled steps :math:`k \ge 1` (default 5).
        damping: ``"phantom"`` only: :math:`\lambda \in (0, 1]` (default 0.5).

    Returns:
        The layer ``layer(x0, *args, **kwargs) -> (x_star, info)`` with ``info`` the solver's
        :class:`~torchopt_lite.diff.implicit.FixedPointInfo` (not differentiated).

    Example:
        >>> W = torch.tensor([[0.5, 0.2], [-0.1, 0.4]])
        >>> def T(z, x):                                     # z = tanh(W z + x)
        ...     return torch.tanh(W @ z + x)
        >>> layer = fixed_point_layer(T, anderson(atol=1e-8, rtol=0.0), backward="phantom", k=10)
        >>> x = torch.tensor([0.3, -0.2], requires_grad=True)
        >>> z, info = layer(torch.zeros(2), x)
        >>> bool(info.converged), torch.allclose(z, T(z, x))
        (True, True)
        >>> torch.autograd.grad(z.sum(), x)[0]
        tensor([1.1989, 1.5831])

    References:
        Bai, Kolter & Koltun, "Deep equilibrium models", NeurIPS 2019. Geng, Zhang, Bai, Wang
        & Lin, "On training implicit models", NeurIPS 2021. Fung, Heaton, Li, McKenzie, Osher
        & Yin, "JFB: Jacobian-free backpropagation for implicit networks", AAAI 2022.
    """
    if not callable(T):
        raise TypeError(f"fixed_point_layer: T must be callable; got {type(T).__name__}.")
    if solver is not None and not callable(solver):
        raise TypeError(
            "fixed_point_layer: solver must be a callable solver(fn, x0) -> (x, info), e.g. "
            f"anderson(); got {type(solver).__name__}."
        )
    if backward not in _BACKWARDS:
        raise ValueError(
            f"fixed_point_layer: backward must be one of {_BACKWARDS}; got {backward!r}."
        )
    if backward != "phantom" and (k is not None or damping is not None):
        raise ValueError(
            f"fixed_point_layer: k and damping apply to backward='phantom' only; got "
            f"backward={backward!r} with k={k!r}, damping={damping!r}."
        )
    if backward != "implicit" and solve is not None:
        raise ValueError(
            f"fixed_point_layer: solve applies to backward='implicit' only; got "
            f"backward={backward!r}."
        )
    _normalize_argnums("fixed_point_layer", argnums)
    linear_solve = solve
    if backward == "phantom":
        steps = 5 if k is None else k
        lam = 0.5 if damping is None else damping
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(f"fixed_point_layer: k must be a positive int; got {k!r}.")
        if not 0.0 < lam <= 1.0:
            raise ValueError(f"fixed_point_layer: damping must be in (0, 1]; got {damping}.")
        linear_solve = _phantom_solve(steps, lam)
    elif backward == "jfb":
        linear_solve = _jfb_solve
    forward = anderson() if solver is None else solver

    def fixed_point_solve(x0: Any, *args: Any, **kwargs: Any) -> tuple[Any, FixedPointInfo]:
        return forward(lambda x: T(x, *args, **kwargs), x0)

    return custom_fixed_point(T, argnums, has_aux=True, solve=linear_solve)(fixed_point_solve)
