"""L-BFGS's preconditioning: the two-loop recursion over a ring buffer of past differences."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import torch
from torch import Tensor

from torchopt_lite._dispatch import Leafwise
from torchopt_lite._dispatch._boundary import Facts
from torchopt_lite._lbfgs import push, two_loop
from torchopt_lite._moments import next_count, zero_count
from torchopt_lite._ops import Ops
from torchopt_lite.base import LeafwiseTransformation, register_state_type


@register_state_type
class ScaleByLBFGSState(NamedTuple):
    r"""State of :func:`scale_by_lbfgs`, over the leaves flattened into one vector of size ``n``.

    ``params``/``updates``: the previous step's :math:`w_{k-1}`, :math:`u_{k-1}`;
    ``diff_params_memory``/``diff_updates_memory``: ``(memory_size, n)`` ring buffers of
    :math:`\delta w`, :math:`\delta u`; ``weights_memory``: their :math:`\rho`; ``count``: k.
    """

    count: Tensor  # type: ignore[assignment]  # TorchOpt's name; shadows tuple.count
    params: Tensor
    updates: Tensor
    diff_params_memory: Tensor
    diff_updates_memory: Tensor
    weights_memory: Tensor


def flatten(leaves: Sequence[Tensor]) -> Tensor:
    """The leaves (complex ones as real views) as one vector, in their promoted dtype."""
    if not leaves:
        return torch.zeros(0)
    return torch.cat([(torch.view_as_real(x) if x.is_complex() else x).reshape(-1) for x in leaves])


def unflatten(vector: Tensor, like: Sequence[Tensor]) -> list[Tensor]:
    """Split ``vector`` into tensors shaped (and typed) like ``like``."""
    pieces = vector.split([x.numel() for x in like]) if like else []
    return [p.view(x.shape).to(x.dtype) for p, x in zip(pieces, like, strict=True)]


def scale_by_lbfgs(
    memory_size: int = 10, scale_init_precond: bool = True
) -> LeafwiseTransformation:
    r"""Precondition updates by L-BFGS's inverse-Hessian estimate (see :func:`lbfgs`).

    .. math::
        \delta w_{k-1} = w_k - w_{k-1}, \quad \delta u_{k-1} = u_k - u_{k-1}, \quad
        \rho_{k-1} = 1 / \delta u_{k-1}^\top \delta w_{k-1}, \quad
        \Delta_k = P_k u_k \ \text{(two-loop recursion, initial scale}\ \gamma_k)

    Complex leaves are handled through their real views (the inner products are
    :math:`\operatorname{Re}\langle a, b \rangle`). Reads the parameters (``params=``).
    """
    if isinstance(memory_size, bool) or not isinstance(memory_size, int) or memory_size < 1:
        raise ValueError(f"scale_by_lbfgs: memory_size must be an int >= 1; got {memory_size!r}.")
    m = memory_size

    def init(leaves: Sequence[Tensor]) -> ScaleByLBFGSState:
        flat = flatten(leaves).detach()
        device = flat.device
        return ScaleByLBFGSState(
            count=zero_count(leaves),
            params=torch.zeros_like(flat),
            updates=torch.zeros_like(flat),
            diff_params_memory=flat.new_zeros((m, flat.numel())),
            diff_updates_memory=flat.new_zeros((m, flat.numel())),
            weights_memory=torch.zeros(m, dtype=flat.dtype, device=device),
        )

    def update(
        g: list[Tensor], state: ScaleByLBFGSState, params: list[Tensor], ops: Ops
    ) -> tuple[list[Tensor], ScaleByLBFGSState]:
        u, w = flatten(g), flatten(params).to(state.params.dtype)
        u = u.to(state.params.dtype)
        first = state.count == 0
        zero = u.new_zeros(())
        dw = torch.where(first, zero, w - state.params)
        du = torch.where(first, zero, u - state.updates)
        curvature = du.dot(dw)
        singular = curvature == 0.0
        rho = torch.where(singular | first, zero, 1.0 / torch.where(singular, 1.0, curvature))
        prev = (state.count - 1) % m
        dw_mem = push(state.diff_params_memory, prev, dw, ops.inplace)
        du_mem = push(state.diff_updates_memory, prev, du, ops.inplace)
        rho_mem = push(state.weights_memory, prev, rho, ops.inplace)
        gamma: Tensor | float = 1.0
        if scale_init_precond:
            norm2 = du.dot(du)
            positive = norm2 > 0.0
            gamma = torch.where(positive, curvature / torch.where(positive, norm2, 1.0), 1.0)
            capped = torch.clamp(1.0 / u.norm(), max=1.0)  # first step: a ball of radius 1
            gamma = torch.where(first, capped, gamma)
        out = two_loop(u, dw_mem, du_mem, rho_mem, gamma, state.count % m)
        new = ScaleByLBFGSState(
            count=next_count(state.count, ops.inplace),
            params=w,
            updates=u,
            diff_params_memory=dw_mem,
            diff_updates_memory=du_mem,
            weights_memory=rho_mem,
        )
        return unflatten(out, g), new  # fresh: g may also be the grad= of a line search

    def check(facts: Facts, state: Any) -> None:
        if not isinstance(state, ScaleByLBFGSState):
            raise ValueError(
                f"scale_by_lbfgs: state is {type(state).__name__}, not ScaleByLBFGSState; pass "
                "the state returned by this optimizer's init()."
            )
        doubled = facts.complex or [False] * len(facts.numels)  # complex: 2 reals per entry
        n = sum(k * (2 if c else 1) for k, c in zip(facts.numels, doubled, strict=True))
        if state.params.numel() != n or state.diff_params_memory.shape != (m, n):
            raise ValueError(
                f"scale_by_lbfgs: the updates have {n} elements but the state was built for "
                f"{state.params.numel()} (memory {tuple(state.diff_params_memory.shape)}); "
                "updates must match the params given to init()."
            )

    return LeafwiseTransformation(
        Leafwise(init, update, check=check, needs_params="scale_by_lbfgs")
    )
