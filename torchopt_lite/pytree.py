"""Pytree helpers: all of ``optree`` plus arithmetic on trees of tensors.

Conventions, used throughout torchopt_lite:

* A tree is any nesting of tuples, lists, dicts, NamedTuples (and other optree-registered
  nodes) whose leaves are tensors.
* ``None`` is **not** a leaf (optree's ``none_is_leaf=False``): it is an empty subtree, so a
  ``None`` gradient (a parameter that received no gradient) is skipped by every transform and
  ``apply_updates`` leaves the matching parameter alone.
* Binary helpers require both trees to have the same structure and raise ``ValueError`` naming
  both structures otherwise.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import optree
import torch
from optree import *  # noqa: F403  (this module is optree's namespace, by design)
from torch import Tensor

__all__ = [
    *optree.__all__,
    "tree_flatten_as_tuple",
    "tree_pos",
    "tree_neg",
    "tree_add",
    "tree_add_scalar_mul",
    "tree_sub",
    "tree_sub_scalar_mul",
    "tree_mul",
    "tree_matmul",
    "tree_scalar_mul",
    "tree_truediv",
    "tree_vdot",
    "tree_vdot_real",
    "tree_wait",
    "tree_ravel",
    "tree_as_rref",
    "tree_to_here",
]


def tree_flatten_as_tuple(
    tree: Any,
    is_leaf: Callable[[Any], bool] | None = None,
    *,
    none_is_leaf: bool = False,
    namespace: str = "",
) -> tuple[tuple[Any, ...], optree.PyTreeSpec]:
    """Flatten a tree to ``(leaves_as_tuple, treespec)``."""
    leaves, treespec = optree.tree_flatten(
        tree, is_leaf, none_is_leaf=none_is_leaf, namespace=namespace
    )
    return tuple(leaves), treespec


def tree_pos(tree: Any) -> Any:
    """Apply unary ``+`` to every leaf."""
    return optree.tree_map(torch.positive, tree)


def tree_neg(tree: Any) -> Any:
    """Negate every leaf."""
    return optree.tree_map(torch.neg, tree)


def tree_add(*trees: Any) -> Any:
    """Leafwise sum of any number of trees of the same structure."""
    head, *rest = trees
    return optree.tree_map(lambda x, *xs: sum(xs, x), head, *rest)


def tree_add_scalar_mul(tree_x: Any, tree_y: Any, alpha: Any = None) -> Any:
    """Leafwise ``x + alpha * y``."""
    if alpha is None:
        return optree.tree_map(torch.add, tree_x, tree_y)
    return optree.tree_map(lambda x, y: x + alpha * y, tree_x, tree_y)


def tree_sub(tree_x: Any, tree_y: Any) -> Any:
    """Leafwise ``x - y``."""
    return optree.tree_map(torch.sub, tree_x, tree_y)


def tree_sub_scalar_mul(tree_x: Any, tree_y: Any, alpha: Any = None) -> Any:
    """Leafwise ``x - alpha * y``."""
    if alpha is None:
        return optree.tree_map(torch.sub, tree_x, tree_y)
    return optree.tree_map(lambda x, y: x - alpha * y, tree_x, tree_y)


def tree_mul(*trees: Any) -> Any:
    """Leafwise product of any number of trees of the same structure."""
    head, *rest = trees

    def prod(x: Tensor, *xs: Tensor) -> Tensor:
        for y in xs:
            x = x * y
        return x

    return optree.tree_map(prod, head, *rest)


def tree_matmul(*trees: Any) -> Any:
    """Leafwise matrix product of any number of trees of the same structure."""
    head, *rest = trees

    def chain_matmul(x: Tensor, *xs: Tensor) -> Tensor:
        for y in xs:
            x = x @ y
        return x

    return optree.tree_map(chain_matmul, head, *rest)


def tree_scalar_mul(scalar: Any, tree: Any) -> Any:
    """Multiply every leaf by ``scalar``."""
    return optree.tree_map(lambda x: scalar * x, tree)


def tree_truediv(tree_x: Any, tree_y: Any) -> Any:
    """Leafwise ``x / y``."""
    return optree.tree_map(torch.true_divide, tree_x, tree_y)


def tree_vdot(tree_x: Any, tree_y: Any) -> Tensor:
    r"""Real inner product :math:`\sum_i \mathrm{Re}\langle x_i, y_i\rangle` as a 0-d tensor.

    Stays on device (no host sync) and is differentiable, unlike :func:`tree_vdot_real`.

    Example:
        >>> tree_vdot({"a": torch.ones(2)}, {"a": torch.full((2,), 3.0)})
        tensor(6.)
    """
    leaves_x, spec_x = optree.tree_flatten(tree_x)
    leaves_y, spec_y = optree.tree_flatten(tree_y)
    if spec_x != spec_y:
        raise ValueError(
            f"tree_vdot: trees must have the same structure; got {spec_x} and {spec_y}."
        )
    if not leaves_x:
        return torch.zeros(())
    terms = [
        torch.vdot(x.reshape(-1), y.reshape(-1)).real
        if x.is_complex()
        else torch.dot(x.reshape(-1), y.reshape(-1))
        for x, y in zip(leaves_x, leaves_y, strict=True)
    ]
    return torch.stack(terms).sum() if len(terms) > 1 else terms[0]


def tree_vdot_real(tree_x: Any, tree_y: Any) -> float:
    """Real inner product as a Python float (TorchOpt's signature; forces a host sync).

    Prefer :func:`tree_vdot`, which returns a tensor and keeps the graph.
    """
    return float(tree_vdot(tree_x, tree_y))


def tree_wait(future_tree: Any) -> Any:
    """Wait for every ``torch.futures.Future`` leaf and return the tree of results."""
    return optree.tree_map(
        lambda fut: fut.wait(),
        future_tree,
        is_leaf=lambda x: isinstance(x, torch.futures.Future),
    )


def tree_ravel(tree: Any) -> tuple[Tensor, Callable[[Tensor], Any]]:
    """Concatenate all leaves into one 1-d tensor; return it and the inverse map.

    The inverse restores shapes, dtypes and the structure. All leaves are promoted to a common
    dtype in the flat vector.

    Example:
        >>> flat, unravel = tree_ravel({"w": torch.ones(2, 2), "b": torch.zeros(3)})
        >>> flat.shape
        torch.Size([7])
        >>> unravel(flat)["w"].shape
        torch.Size([2, 2])
    """
    leaves, treespec = optree.tree_flatten(tree)
    shapes = [leaf.shape for leaf in leaves]
    dtypes = [leaf.dtype for leaf in leaves]
    sizes = [leaf.numel() for leaf in leaves]
    if leaves:
        common = dtypes[0]
        for dt in dtypes[1:]:
            common = torch.promote_types(common, dt)
        flat = torch.cat([leaf.reshape(-1).to(common) for leaf in leaves])
    else:
        flat = torch.zeros(0)

    def unravel(vector: Tensor) -> Any:
        chunks = torch.split(vector, sizes) if sizes else []
        out = [
            chunk.reshape(shape).to(dtype)
            for chunk, shape, dtype in zip(chunks, shapes, dtypes, strict=True)
        ]
        return optree.tree_unflatten(treespec, out)

    return flat, unravel


def tree_as_rref(tree: Any) -> Any:
    """Wrap every leaf in a ``torch.distributed.rpc.RRef`` (a remote reference to it).

    Needs ``torch.distributed.rpc`` (initialised with ``rpc.init_rpc`` before use).
    """
    from torch.distributed.rpc import RRef

    return optree.tree_map(RRef, tree)


def tree_to_here(rref_tree: Any, timeout: float | None = None) -> Any:
    """Fetch every ``RRef`` leaf's value to this worker (``RRef.to_here``).

    Args:
        rref_tree: a tree of ``RRef``.
        timeout: seconds to wait per leaf; ``None`` uses the RPC agent's default.
    """
    from torch.distributed import rpc

    wait = rpc.api.UNSET_RPC_TIMEOUT if timeout is None else timeout
    return optree.tree_map(lambda x: x.to_here(timeout=wait), rref_tree)
