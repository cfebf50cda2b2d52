"""Building blocks for linear solvers given only ``matvec(x) = A x``."""

from __future__ import annotations

from collections.abc import Callable

import optree
import torch
from torch import Tensor

from torchopt_lite._ops import plain_autograd
from torchopt_lite.pytree import tree_ravel
from torchopt_lite.typing import TensorTree

Matvec = Callable[[TensorTree], TensorTree]


def make_rmatvec(matvec: Matvec, example_x: TensorTree) -> Matvec:
    r"""Return :math:`y \mapsto A^\top y` given :math:`x \mapsto A x` (a VJP of the linear map).

    The VJP graph is built once here, at ``example_x`` (any point: the map is linear), and each
    call of the result is one backward pass over it.

    Example:
        >>> A = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
        >>> make_rmatvec(lambda x: A @ x, torch.zeros(2))(torch.tensor([1.0, 0.0]))
        tensor([1., 2.])
    """
    if not torch.is_grad_enabled() and plain_autograd(optree.tree_leaves(example_x)):
        return _plain_rmatvec(matvec, example_x)
    _, vjp_fn, *_ = torch.func.vjp(matvec, example_x)
    return lambda y: vjp_fn(y)[0]


def _plain_rmatvec(matvec: Matvec, example_x: TensorTree) -> Matvec:
    """:func:`make_rmatvec` by plain autograd, without ``torch.func`` wrapping per call.

    Taken in eager mode when no graph is asked for; a call builds a graph only when grad mode
    is on at that call.
    """
    xs, x_spec = optree.tree_flatten(example_x)
    xs = [x.detach().requires_grad_() for x in xs]
    with torch.enable_grad():
        out, out_spec = optree.tree_flatten(matvec(optree.tree_unflatten(x_spec, xs)))

    def rmatvec(y: TensorTree) -> TensorTree:
        ys, y_spec = optree.tree_flatten(y)
        if y_spec != out_spec:
            raise ValueError(
                f"rmatvec: y must have the structure of matvec's output; output: {out_spec}, "
                f"y: {y_spec}."
            )
        pairs = [(o, c) for o, c in zip(out, ys, strict=True) if o.requires_grad]
        if not pairs:
            return optree.tree_unflatten(x_spec, [torch.zeros_like(x) for x in xs])
        grads = torch.autograd.grad(
            [o for o, _ in pairs],
            xs,
            [c for _, c in pairs],
            retain_graph=True,
            create_graph=torch.is_grad_enabled(),
            allow_unused=True,
            materialize_grads=True,
        )
        return optree.tree_unflatten(x_spec, list(grads))

    return rmatvec


def make_normal_matvec(matvec: Matvec, rmatvec: Matvec | None = None) -> Matvec:
    r"""Return :math:`y \mapsto A^\top A y`.

    Args:
        matvec: :math:`x \mapsto A x`.
        rmatvec: :math:`y \mapsto A^\top y` if known (e.g. from :func:`make_rmatvec`, built
            once); otherwise each call takes a fresh VJP of ``matvec`` (TorchOpt's behaviour).

    Example:
        >>> A = torch.tensor([[1.0, 2.0], [0.0, 1.0]])
        >>> make_normal_matvec(lambda x: A @ x)(torch.tensor([1.0, 0.0]))
        tensor([1., 2.])
    """
    if rmatvec is not None:
        known = rmatvec
        return lambda y: known(matvec(y))

    def normal_matvec(y: TensorTree) -> TensorTree:
        ay, vjp_fn, *_ = torch.func.vjp(matvec, y)
        return vjp_fn(ay)[0]

    return normal_matvec


def make_ridge_matvec(matvec: Matvec, ridge: float = 0.0) -> Matvec:
    r"""Return :math:`y \mapsto A y + \mathrm{ridge}\, y`.

    Example:
        >>> make_ridge_matvec(lambda x: 2 * x, ridge=0.5)(torch.ones(2))
        tensor([2.5000, 2.5000])
    """
    return lambda y: optree.tree_map(lambda ay, yi: ay + ridge * yi, matvec(y), y)


def materialize_matvec(
    matvec: Matvec, x: TensorTree
) -> tuple[Tensor, Matvec, Callable[[TensorTree], Tensor], Callable[[Tensor], TensorTree]]:
    r"""Build the dense matrix of ``matvec`` over the flattened leaves of ``x``.

    Returns ``(A, flat_matvec, ravel, unravel)`` where ``A`` is :math:`n \times n` for
    :math:`n` = the total number of elements of ``x`` (all leaves, cross-leaf blocks included),
    ``flat_matvec(v) = A v`` on flat vectors, and ``ravel``/``unravel`` map trees to flat
    vectors and back. ``A`` is built by applying ``matvec`` to the :math:`n` basis vectors under
    ``torch.func.vmap`` (one batched call).

    Example:
        >>> A, *_ = materialize_matvec(lambda t: {"a": 2 * t["a"] + t["b"], "b": t["b"]},
        ...                            {"a": torch.zeros(1), "b": torch.zeros(1)})
        >>> A
        tensor([[2., 1.],
                [0., 1.]])

    Note:
        TorchOpt's ``materialize_matvec`` keeps only the diagonal block of each leaf, so its
        ``solve_inv`` ignores coupling between leaves.
    """
    flat_x, unravel = tree_ravel(x)

    def ravel(tree: TensorTree) -> Tensor:
        return tree_ravel(tree)[0]

    def flat_matvec(v: Tensor) -> Tensor:
        return ravel(matvec(unravel(v)))

    eye = torch.eye(flat_x.numel(), dtype=flat_x.dtype, device=flat_x.device)
    A = torch.func.vmap(flat_matvec)(eye).mT
    return A, flat_matvec, ravel, unravel
