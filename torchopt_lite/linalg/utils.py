"""Helpers shared by the iterative linear solvers: shapes, matvecs, convergence."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import optree
import torch
from torch import Tensor

from torchopt_lite.typing import TensorTree


class ConvergenceError(RuntimeError):
    """An iterative solver did not reach its tolerance within ``maxiter`` iterations."""


class ConvergenceWarning(RuntimeWarning):
    """An iterative solver did not converge and ``on_nonconvergence="warn"`` asked to go on."""


def cat_shapes(tree: TensorTree) -> tuple[int, ...]:
    """Concatenate the shapes of the leaves of a tree of tensors (TorchOpt's helper).

    Example:
        >>> cat_shapes({"a": torch.zeros(2, 3), "b": torch.zeros(4)})
        (2, 3, 4)
    """
    leaves = optree.tree_leaves(tree)
    return tuple(itertools.chain.from_iterable(tuple(leaf.shape) for leaf in leaves))


def normalize_matvec(
    matvec: TensorTree | Callable[[TensorTree], TensorTree],
) -> Callable[[TensorTree], TensorTree]:
    """Return ``matvec`` if callable, else the block-diagonal product with a tree of matrices.

    A tree of square matrices ``A`` acts leafwise: leaf ``i`` of the result is ``A_i @ x_i``.

    Example:
        >>> mv = normalize_matvec({"a": 2 * torch.eye(2)})
        >>> mv({"a": torch.ones(2)})
        {'a': tensor([2., 2.])}
    """
    if callable(matvec):
        return matvec
    mats, spec = optree.tree_flatten(matvec)
    for mat in mats:
        if not isinstance(mat, Tensor):
            raise TypeError(
                "normalize_matvec: a linear operator must be callable or a tree of square "
                f"matrices; got a leaf of type {type(mat).__name__}."
            )
        if mat.ndim != 2 or mat.shape[0] != mat.shape[1]:
            raise ValueError(
                "normalize_matvec: a linear operator given as tensors must hold square "
                f"matrices; got shape {tuple(mat.shape)}."
            )

    def block_matvec(x: TensorTree) -> TensorTree:
        xs, x_spec = optree.tree_flatten(x)
        if len(xs) != len(mats):
            raise ValueError(
                f"matvec: x has {len(xs)} leaves but the operator has {len(mats)} blocks; "
                f"x: {x_spec}, operator: {spec}."
            )
        return optree.tree_unflatten(x_spec, [m @ v for m, v in zip(mats, xs, strict=True)])

    return block_matvec


def can_sync(leaves: list[Tensor]) -> bool:
    """Whether reading a value on the host is allowed (not under torch.func or torch.compile)."""
    if torch.compiler.is_compiling():
        return False
    return not any(torch._C._functorch.is_functorch_wrapped_tensor(x) for x in leaves)
