"""The one autograd.Function behind custom_root, and the implicit VJP it computes.

The solver runs outside the Function (under ``no_grad``); the Function is an identity on the
solution leaves whose backward is the implicit-function-theorem VJP and whose ``jvp`` is the
implicit-function-theorem JVP (forward mode). Every tensor the
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


def _jvp(fn: Callable[..., Any], primals: tuple[Any, ...], tangents: tuple[Any, ...]) -> Any:
    r"""``torch.func.jvp(fn, primals, tangents)``, returning ``(out, tangent_out)``.

    Under :mod:`torch.autograd.forward_ad` (a dual level is open, no ``torch.func`` transform)
    PyTorch does not support a nested forward-mode level, so the product is then taken as a VJP
    of a VJP: the VJP of the linear map :math:`u \mapsto J^\top u` (at any :math:`u`) applied
    to :math:`v` is :math:`J v`.
    """
    try:
        return torch.func.jvp(fn, primals, tangents)
    except RuntimeError as error:
        if "Nested forward mode AD is not supported" not in str(error):
            raise
    out, vjp_fn, *_ = torch.func.vjp(fn, *primals)
    zeros = optree.tree_map(torch.zeros_like, out)
    _, vjp_vjp_fn, *_ = torch.func.vjp(vjp_fn, zeros)
    (tangent_out,) = vjp_vjp_fn(tuple(tangents))
    return out, tangent_out


def implicit_jvp(
    call: RootCall,
    sol: tuple[Tensor, ...],
    operands: tuple[Tensor, ...],
    tangents: tuple[Tensor | None, ...],
) -> tuple[Tensor, ...]:
    r"""Tangents of the solution leaves: :math:`t` with :math:`A t = -B v`.

    ``tangents`` holds :math:`v`, one entry per operand tensor (``None``: zero). Tangents of
    operands outside ``argnums`` are ignored, as their cotangents are in :func:`implicit_vjp`.
    ``matvec(t)`` is :math:`A t`, a JVP of :math:`F` in :math:`x`, so the linear solver sees
    :math:`A` itself (not its transpose as in reverse mode).
    """
    solution = optree.tree_unflatten(call.sol_spec, list(sol))
    index = [j for j, d in enumerate(call.diff) if d and tangents[j] is not None]
    if not index:
        return tuple(torch.zeros_like(s) for s in sol)

    def residual_of_theta(*theta: Tensor) -> Any:
        tensors = list(operands)
        for j, t in zip(index, theta, strict=True):
            tensors[j] = t
        return call.residual(solution, tuple(tensors))

    out, b_v = _jvp(
        residual_of_theta,
        tuple(operands[j] for j in index),
        tuple(tangents[j] for j in index),
    )
    _check_residual(call, out, sol)

    def residual_of_solution(x: Any) -> Any:
        return call.residual(x, operands)

    def matvec(t: Any) -> Any:
        return _jvp(residual_of_solution, (solution,), (t,))[1]

    neg_b_v = optree.tree_map(torch.neg, b_v)
    t = call.solve(matvec, neg_b_v)
    return tuple(optree.tree_leaves(t))


class ImplicitRoot(torch.autograd.Function):
    """Identity on the solution leaves; backward and jvp by the implicit function theorem."""

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
        # The solution is saved as the outputs, so that a transform above this one (jacfwd of
        # grad, jacrev of jacfwd) sees its dependence on the operands in the saved tensors.
        ctx.save_for_backward(*output, *inputs[1 + call.n_sol :])
        ctx.save_for_forward(*output, *inputs[1 + call.n_sol :])

    @staticmethod
    def backward(ctx: Any, *grads: Tensor) -> tuple[Tensor | None, ...]:
        call: RootCall = ctx.call
        saved = ctx.saved_tensors
        sol, operands = saved[: call.n_sol], saved[call.n_sol :]
        operand_grads = implicit_vjp(call, sol, operands, grads)
        return (None, *([None] * call.n_sol), *operand_grads)

    @staticmethod
    def jvp(ctx: Any, *tangents: Tensor | None) -> tuple[Tensor, ...]:
        # Tangents of the solution inputs (the solver's output) are dropped: the solution
        # moves with the operands only (implicit function theorem), whatever the initial guess.
        call: RootCall = ctx.call
        saved = ctx.saved_tensors
        sol, operands = saved[: call.n_sol], saved[call.n_sol :]
        return implicit_jvp(call, sol, operands, tangents[1 + call.n_sol :])
