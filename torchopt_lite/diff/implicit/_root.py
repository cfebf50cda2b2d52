"""The one autograd.Function behind custom_root, and the implicit VJP it computes.

The solver runs outside the Function (under ``no_grad``); the Function is an identity on the
solution leaves whose backward is the implicit-function-theorem VJP. Every tensor the
optimality function reads (differentiated or not) is an input of ``apply``, so ``torch.func``
transforms see all of them, and the per-call configuration travels as one non-tensor input.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import optree
import torch
from torch import Tensor

from torchopt_lite.typing import LinearSolver


@dataclass(frozen=True)
class RootCall:
    """Everything a backward pass needs besides the tensors (a non-tensor ``apply`` input)."""

    optimality_fn: Callable[..., Any]
    solve: LinearSolver
    sol_spec: optree.PyTreeSpec
    n_sol: int
    operands_spec: optree.PyTreeSpec  # of (args[1:], kwargs), None kept as an empty node
    tensor_slots: tuple[int, ...]  # positions of tensor leaves among the operand leaves
    constants: tuple[Any, ...]  # the other operand leaves, in order
    diff: tuple[bool, ...]  # per tensor leaf: in one of the argnums args
    n_leaves: int

    def operands(self, tensors: tuple[Tensor, ...]) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """Rebuild ``(args[1:], kwargs)`` from the operand tensors."""
        leaves: list[Any] = [None] * self.n_leaves
        slots = set(self.tensor_slots)
        consts = iter(self.constants)
        for i in range(self.n_leaves):
            if i not in slots:
                leaves[i] = next(consts)
        for i, t in zip(self.tensor_slots, tensors, strict=True):
            leaves[i] = t
        args, kwargs = optree.tree_unflatten(self.operands_spec, leaves)
        return tuple(args), dict(kwargs)

    def residual(self, solution: Any, tensors: tuple[Tensor, ...]) -> Any:
        """``optimality_fn(solution, *args[1:], **kwargs)`` with the given operand tensors."""
        args, kwargs = self.operands(tensors)
        return self.optimality_fn(solution, *args, **kwargs)


def _check_residual(call: RootCall, out: Any, sol: tuple[Tensor, ...]) -> None:
    leaves, spec = optree.tree_flatten(out)
    if spec != call.sol_spec or not all(isinstance(t, Tensor) for t in leaves):
        raise ValueError(
            "custom_root: optimality_fn must return a tree of tensors with the structure of the "
            f"solution; solution: {call.sol_spec}, optimality_fn returned: {spec}."
        )
    for r, s in zip(leaves, sol, strict=True):
        if r.shape != s.shape:
            raise ValueError(
                "custom_root: optimality_fn must return tensors shaped like the solution; "
                f"got a residual of shape {tuple(r.shape)} for a solution leaf of shape "
                f"{tuple(s.shape)}."
            )


def implicit_vjp(
    call: RootCall,
    sol: tuple[Tensor, ...],
    operands: tuple[Tensor, ...],
    grads: tuple[Tensor, ...],
) -> list[Tensor | None]:
    r"""Cotangents of the differentiated operands: :math:`-B^\top u` with :math:`A^\top u = g`.

    :math:`A = \partial_x F(x^\star, \theta)` and :math:`B = \partial_\theta F(x^\star, \theta)`.
    """
    solution = optree.tree_unflatten(call.sol_spec, list(sol))

    def residual_of_solution(x: Any) -> Any:
        return call.residual(x, operands)

    out, vjp_x, *_ = torch.func.vjp(residual_of_solution, solution)
    _check_residual(call, out, sol)
    neg_g = optree.tree_unflatten(call.sol_spec, [-g for g in grads])
    u = call.solve(lambda w: vjp_x(w)[0], neg_g)

    index = [j for j, d in enumerate(call.diff) if d]

    def residual_of_theta(*theta: Tensor) -> Any:
        tensors = list(operands)
        for j, t in zip(index, theta, strict=True):
            tensors[j] = t
        return call.residual(solution, tuple(tensors))

    _, vjp_theta, *_ = torch.func.vjp(residual_of_theta, *(operands[j] for j in index))
    theta_grads = vjp_theta(u)
    result: list[Tensor | None] = [None] * len(operands)
    for j, g in zip(index, theta_grads, strict=True):
        result[j] = g
    return result


class ImplicitRoot(torch.autograd.Function):
    """Identity on the solution leaves; backward by the implicit function theorem."""

    generate_vmap_rule = True

    @staticmethod
    def forward(call: RootCall, *tensors: Tensor) -> tuple[Tensor, ...]:
        # detach(), not view_as(): the outputs share the solution's memory without being views,
        # so callers may detach_() them in place (TorchOpt's module-form iMAML does).
        return tuple(t.detach() for t in tensors[: call.n_sol])

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Any) -> None:
        call = inputs[0]
        ctx.call = call
        ctx.save_for_backward(*inputs[1:])

    @staticmethod
    def backward(ctx: Any, *grads: Tensor) -> tuple[Tensor | None, ...]:
        call: RootCall = ctx.call
        saved = ctx.saved_tensors
        sol, operands = saved[: call.n_sol], saved[call.n_sol :]
        operand_grads = implicit_vjp(call, sol, operands, grads)
        return (None, *([None] * call.n_sol), *operand_grads)
