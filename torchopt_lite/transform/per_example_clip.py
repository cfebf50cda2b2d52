"""Per-example gradient clipping (differentially private SGD): clip each example, then sum."""

from __future__ import annotations

import math
from typing import Any

import optree
import torch
from torch import Tensor

from torchopt_lite._checks import check_nonnegative


def _batched_leaves(grads: Any, caller: str) -> tuple[list[Tensor], optree.PyTreeSpec]:
    leaves, spec = optree.tree_flatten(grads)
    if not leaves:
        raise ValueError(f"{caller}: grads must have at least one leaf; got {spec}.")
    batch = leaves[0].shape[0] if leaves[0].ndim >= 1 else None
    if batch is None or any(x.ndim < 1 or x.shape[0] != batch for x in leaves):
        shapes = [tuple(x.shape) for x in leaves]
        raise ValueError(
            f"{caller}: every leaf of grads must have the same batch size in dimension 0 "
            f"(per-example gradients, e.g. from torch.func.vmap(torch.func.grad(loss))); "
            f"got shapes {shapes}."
        )
    return leaves, spec


def _example_norms(x: Tensor) -> Tensor:
    """The Euclidean norm of each example (row) of ``x``: shape ``(batch,)``."""
    return torch.linalg.vector_norm(x.reshape(x.shape[0], math.prod(x.shape[1:])), 2, dim=1)


def _clip_and_sum(norms: Tensor, leaves: list[Tensor], bound: Any) -> tuple[list[Tensor], Tensor]:
    """``sum_b min(1, bound / norms[b]) * leaves[b]`` for each leaf, and how many were scaled."""
    over = norms > bound
    safe = torch.where(over, norms, torch.ones_like(norms))  # no 0/0 at zero gradients
    multipliers = torch.where(over, bound / safe, torch.ones_like(norms))
    clipped = [torch.tensordot(multipliers.to(x.dtype), x, dims=1) for x in leaves]
    return clipped, torch.count_nonzero(multipliers < 1.0)


def per_example_global_norm_clip(grads: Any, l2_norm_clip: float | Tensor) -> tuple[Any, Tensor]:
    r"""Clip each example's gradient to global norm ``l2_norm_clip``, then sum over the batch.

    .. math::
        \bar g = \sum_b g_b \min\Bigl(1, \frac{C}{\lVert g_b \rVert_2}\Bigr)

    where :math:`g_b` is example :math:`b`'s gradient: dimension 0 of every leaf of ``grads``
    indexes the examples, and :math:`\lVert g_b \rVert_2` is over all leaves together. This is a
    function, not a transformation: add noise and divide by the batch size afterwards (DP-SGD).
    Differentiable in ``grads`` and in a tensor ``l2_norm_clip``; no host sync.

    Args:
        grads: a tree of per-example gradients, each leaf of shape ``(batch, *param_shape)``.
        l2_norm_clip: :math:`C \ge 0`, a float (``math.inf``: no clipping) or a 0-d tensor.

    Returns:
        ``(summed, num_clipped)``: a tree shaped like one example's gradient holding the sum
        of the clipped per-example gradients, and the number of examples that were scaled down
        (a 0-d int64 tensor).

    Example:
        >>> g = [torch.tensor([[0.0, 0, 0], [0, 3, 4], [4, 0, 3], [3, 4, 0]])]
        >>> per_example_global_norm_clip(g, 1.25)
        ([tensor([1.7500, 1.7500, 1.7500])], tensor(3))

    References:
        Abadi et al., `Deep Learning with Differential Privacy
        <https://arxiv.org/abs/1607.00133>`_, 2016.

    Note:
        Optax's ``per_example_global_norm_clip`` (which counts in int32).
    """
    check_nonnegative("per_example_global_norm_clip", "l2_norm_clip", l2_norm_clip)
    leaves, spec = _batched_leaves(grads, "per_example_global_norm_clip")
    norms = torch.linalg.vector_norm(torch.stack([_example_norms(x) for x in leaves]), 2, dim=0)
    clipped, num_clipped = _clip_and_sum(norms, leaves, l2_norm_clip)
    return optree.tree_unflatten(spec, clipped), num_clipped


def per_example_layer_norm_clip(
    grads: Any, global_l2_norm_clip: float | Tensor, uniform: bool = True
) -> tuple[Any, Any]:
    r"""Clip each example's gradient leaf by leaf (layer by layer), then sum over the batch.

    .. math::
        \bar g_i = \sum_b g_{b,i} \min\Bigl(1, \frac{C_i}{\lVert g_{b,i} \rVert_2}\Bigr),
        \qquad C_i = \begin{cases} C / \sqrt{K} & \text{uniform} \\
        C \sqrt{D_i / D} & \text{otherwise} \end{cases}

    for each of the :math:`K` leaves :math:`i`, with :math:`D_i` the size of one example's
    leaf and :math:`D = \sum_i D_i`; in both cases :math:`\sum_i C_i^2 = C^2`, so the clipped
    per-example gradient has global norm at most :math:`C`. With one leaf this is
    :func:`per_example_global_norm_clip`.

    Args:
        grads: a tree of per-example gradients, each leaf of shape ``(batch, *param_shape)``.
        global_l2_norm_clip: :math:`C \ge 0`, a float or a 0-d tensor.
        uniform: the same bound for every leaf (``True``) or bounds by leaf size.

    Returns:
        ``(summed, num_clipped)``: two trees shaped like ``grads``' structure, the summed clipped
        gradients and, per leaf, the number of examples scaled down (0-d int64 tensors).

    Example:
        >>> g = {"a": torch.tensor([[3.0, 4.0], [0.3, 0.4]]), "b": torch.tensor([[1.0], [0.0]])}
        >>> summed, num_clipped = per_example_layer_norm_clip(g, 2.0**0.5)
        >>> summed["a"], num_clipped["a"]
        (tensor([0.9000, 1.2000]), tensor(1))

    References:
        McMahan et al., `Learning Differentially Private Recurrent Language Models
        <https://arxiv.org/abs/1710.06963>`_, 2018.

    Note:
        Optax's ``per_example_layer_norm_clip``.
    """
    check_nonnegative("per_example_layer_norm_clip", "global_l2_norm_clip", global_l2_norm_clip)
    leaves, spec = _batched_leaves(grads, "per_example_layer_norm_clip")
    sizes = [math.prod(x.shape[1:]) for x in leaves]
    total = sum(sizes)
    summed, counts = [], []
    for x, size in zip(leaves, sizes, strict=True):
        share = 1.0 / len(leaves) if uniform else size / max(total, 1)
        clipped, count = _clip_and_sum(_example_norms(x), [x], global_l2_norm_clip * share**0.5)
        summed.append(clipped[0])
        counts.append(count)
    return optree.tree_unflatten(spec, summed), optree.tree_unflatten(spec, counts)
