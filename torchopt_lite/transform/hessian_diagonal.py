"""Estimators of the Hessian diagonal (Sophia's curvature): Hutchinson and Gauss-Newton-Bartlett."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any, NamedTuple

import optree
import torch
from torch import Tensor

from torchopt_lite._moments import next_count
from torchopt_lite.base import (
    EmptyState,
    GradientTransformation,
    OptState,
    Params,
    Updates,
    check_state,
    register_state_type,
)

Sampler = Callable[[Tensor, Tensor, list[Tensor]], list[Tensor]]
"""``sampler(seed, count, leaves) -> probes``: one probe per leaf, shaped and typed like it."""

_MASK32 = 0xFFFFFFFF


def _mul32(x: Tensor, c: int) -> Tensor:
    """``x * c mod 2**32`` for ``0 <= x < 2**32`` in int64 (16-bit halves: no overflow)."""
    return (x * (c & 0xFFFF) + (((x * (c >> 16)) & 0xFFFF) << 16)) & _MASK32


def _mix32(x: Tensor) -> Tensor:
    """A 32-bit integer hash (xor-shift-multiply) of each element of ``x`` in ``[0, 2**32)``."""
    x = x ^ (x >> 16)
    x = _mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mul32(x, 0x846CA68B)
    return x ^ (x >> 16)


def rademacher_like(seed: Tensor, count: Tensor, leaves: list[Tensor]) -> list[Tensor]:
    r"""Rademacher probes (:math:`\pm 1`, each with probability 1/2), one per leaf.

    A pure function of ``(seed, count, leaf index, element index)`` computed with integer
    tensor ops on the leaves' device: reproducible, no generator state, no host sync, and it
    works under ``torch.compile`` and ``torch.func.vmap``.

    Example:
        >>> z = rademacher_like(torch.tensor(0), torch.tensor(0), [torch.zeros(3)])
        >>> bool(z[0].abs().eq(1).all())
        True
    """
    key = _mix32(_mix32(seed & _MASK32) ^ ((seed >> 32) & _MASK32))
    key = _mix32(key ^ (count & _MASK32))
    probes = []
    for i, x in enumerate(leaves):
        leaf_key = _mix32(key ^ i)
        index = torch.arange(x.numel(), dtype=torch.int64, device=x.device)
        bits = _mix32((_mul32(index, 0x9E3779B9) + leaf_key) & _MASK32)
        sign = 1 - 2 * ((bits >> 31) & 1)
        probes.append(sign.to(x.dtype).reshape(x.shape))
    return probes


@register_state_type
class HutchinsonState(NamedTuple):
    """State of :func:`hutchinson_estimator_diag_hessian`: the seed and the probes drawn."""

    seed: Tensor
    count: Tensor  # type: ignore[assignment]  # shadows tuple.count, as TorchOpt's states do


def _leaves_of(params: Params, caller: str) -> tuple[list[Tensor], optree.PyTreeSpec]:
    if params is None:
        raise ValueError(f"{caller}: update needs params=; pass the current parameters.")
    leaves, spec = optree.tree_flatten(params)
    if any(x.is_complex() for x in leaves):
        raise ValueError(
            f"{caller}: complex parameters are not supported (the Hessian of a real loss in "
            "complex parameters has no diagonal estimator here); use real parameters."
        )
    return leaves, spec


def _objective(obj_fn: Any, name: str, caller: str) -> Callable[[Params], Tensor]:
    if obj_fn is None:
        raise ValueError(
            f"{caller}: update needs the extra argument {name}=; pass "
            f"opt.update(grads, state, params=params, {name}=lambda p: loss(p, batch))."
        )
    if not callable(obj_fn):
        raise TypeError(f"{caller}: {name} must be a callable params -> loss; got {obj_fn!r}.")
    return obj_fn


def _mode(inplace: bool) -> contextlib.AbstractContextManager[Any]:
    return torch.no_grad() if inplace else contextlib.nullcontext()


def hutchinson_estimator_diag_hessian(
    seed: int = 0, *, sampler: Sampler | None = None
) -> GradientTransformation:
    r"""Hutchinson's estimator of the Hessian diagonal (Sophia-H's curvature).

    .. math::
        \hat h = z \odot (\nabla^2 f(\theta)\, z), \qquad
        \mathbb{E}[\hat h] = \operatorname{diag} \nabla^2 f(\theta)

    with Rademacher probes :math:`z` (so :math:`z_i^2 = 1` and the estimate is unbiased; the
    variance of :math:`\hat h_i` is :math:`\sum_{j \ne i} H_{ij}^2`). The Hessian-vector product
    is forward-over-reverse, ``torch.func.jvp(torch.func.grad(obj_fn), (params,), (z,))``, so
    ``obj_fn`` must be a function ``torch.func`` can transform (``functional_call`` of a
    module works). The incoming updates are ignored; the output is :math:`\hat h`.

    ``update`` needs ``params`` and the extra argument ``obj_fn`` (``params -> scalar loss``).
    Out of place (``inplace=False``) the estimate is differentiable with respect to the
    parameters (third derivatives of ``obj_fn`` flow).

    Args:
        seed: the probes are a function of ``seed`` and the number of estimates drawn, both held
            in the state as tensors.
        sampler: ``sampler(seed, count, leaves) -> probes`` replaces :func:`rademacher_like`
            (any distribution with :math:`\mathbb{E}[z z^\top] = I` keeps the estimate
            unbiased; tests inject fixed probes).

    Example:
        >>> est = hutchinson_estimator_diag_hessian()
        >>> params = torch.tensor([1.0, 2.0])
        >>> h, state = est.update(None, est.init(params), params=params,
        ...                       obj_fn=lambda p: (p**3).sum())
        >>> h  # exact here: the Hessian of a separable function is diagonal
        tensor([ 6., 12.])

    References:
        Hutchinson, `A stochastic estimator of the trace of the influence matrix for Laplacian
        smoothing splines <https://doi.org/10.1080/03610918908812806>`_, 1989.
        Liu et al., `Sophia <https://arxiv.org/abs/2305.14342>`_, 2023.

    Note:
        Optax draws its probes from a JAX key split at each call; here they come from a
        counter-based hash of ``(seed, count)`` (:func:`rademacher_like`), so the same ``seed``
        gives the same probes but not Optax's. Complex parameters raise ``ValueError``.
    """
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(
            f"hutchinson_estimator_diag_hessian: seed must be an int; got {type(seed).__name__}."
        )
    draw = rademacher_like if sampler is None else sampler
    caller = "hutchinson_estimator_diag_hessian"

    def init_fn(params: Params) -> HutchinsonState:
        leaves = optree.tree_leaves(params)
        device = leaves[0].device if leaves else None
        return HutchinsonState(
            seed=torch.tensor(seed, dtype=torch.int64, device=device),
            count=torch.zeros((), dtype=torch.int64, device=device),
        )

    def update_fn(
        updates: Updates,
        state: OptState,
        *,
        params: Params | None = None,
        inplace: bool = True,
        obj_fn: Callable[[Params], Tensor] | None = None,
        **extra_args: Any,
    ) -> tuple[Updates, HutchinsonState]:
        check_state(state)
        leaves, spec = _leaves_of(params, caller)
        f = _objective(obj_fn, "obj_fn", caller)
        with _mode(inplace):
            z = optree.tree_unflatten(spec, draw(state.seed, state.count, leaves))
            hz = torch.func.jvp(torch.func.grad(f), (params,), (z,))[1]
            h = optree.tree_map(torch.mul, z, hz)
            count = next_count(state.count, inplace)
        return h, HutchinsonState(seed=state.seed, count=count)

    return GradientTransformation(init_fn, update_fn)


def gauss_newton_bartlett_estimator_diag_hessian(batch_size: int) -> GradientTransformation:
    r"""The Gauss-Newton-Bartlett estimator of the Hessian diagonal (Sophia-G's curvature).

    For a cross-entropy loss over a batch of :math:`B` inputs, with labels
    :math:`\hat y_b` sampled from the model's own predictive distribution
    :math:`\operatorname{softmax}(f(\theta, x_b))`:

    .. math::
        \hat L(\theta) = \tfrac1B \textstyle\sum_b \ell(f(\theta, x_b), \hat y_b), \qquad
        \hat h = B\, \nabla \hat L(\theta) \odot \nabla \hat L(\theta)

    whose expectation over the sampled labels is the diagonal of the Gauss-Newton matrix
    (Bartlett's identity). Sampling the labels depends on the model's head, so the caller
    does it: ``update`` needs ``params`` and the extra argument ``sampled_obj_fn``
    (``params -> \hat L``, the loss on the sampled labels). One gradient, no Hessian-vector
    product; the incoming updates are ignored.

    Args:
        batch_size: :math:`B`, the number of inputs averaged in ``sampled_obj_fn``.

    Example:
        >>> est = gauss_newton_bartlett_estimator_diag_hessian(batch_size=1)
        >>> params = torch.tensor([1.0, 2.0])
        >>> est.update(None, est.init(params), params=params,
        ...            sampled_obj_fn=lambda p: p.sum())[0]
        tensor([1., 1.])

    References:
        Liu et al., `Sophia <https://arxiv.org/abs/2305.14342>`_, 2023 (Algorithm 2).

    Note:
        Optax has no Gauss-Newton-Bartlett estimator. Complex parameters raise ``ValueError``.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int):
        raise TypeError(
            "gauss_newton_bartlett_estimator_diag_hessian: batch_size must be an int; "
            f"got {type(batch_size).__name__}."
        )
    caller = "gauss_newton_bartlett_estimator_diag_hessian"
    if batch_size < 1:
        raise ValueError(f"{caller}: batch_size must be >= 1; got {batch_size}.")

    def init_fn(params: Params) -> EmptyState:
        return EmptyState()

    def update_fn(
        updates: Updates,
        state: OptState,
        *,
        params: Params | None = None,
        inplace: bool = True,
        sampled_obj_fn: Callable[[Params], Tensor] | None = None,
        **extra_args: Any,
    ) -> tuple[Updates, EmptyState]:
        _leaves_of(params, caller)
        f = _objective(sampled_obj_fn, "sampled_obj_fn", caller)
        with _mode(inplace):
            g = torch.func.grad(f)(params)
            h = optree.tree_map(lambda x: x * x * batch_size, g)
        return h, EmptyState()

    return GradientTransformation(init_fn, update_fn)
