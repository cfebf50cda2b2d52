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

from torchopt_lite._ops import plain_autograd
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


Pullback = Callable[[Any], Any]


def _linearize_plain(
    call: RootCall, sol: tuple[Tensor, ...], operands: tuple[Tensor, ...], index: list[int]
) -> tuple[Any, Pullback, Pullback]:
    r"""One graph of :math:`F` at the solution, pulled back to :math:`x` or :math:`\theta` alone.

    Plain eager autograd: ``autograd.grad(..., inputs=...)`` walks only the paths to the inputs
    asked for, so a matvec :math:`A^\top w` never pays for :math:`\partial_\theta F`, and
    :math:`F` is evaluated once instead of once per VJP. A graph is built for a VJP when grad
    mode is on at the call (inside a ``torch.func.vjp`` of the matvec, as normal CG takes).
    """
    x = [s.detach().requires_grad_() for s in sol]
    theta = [operands[j].detach().requires_grad_() for j in index]
    tensors = list(operands)
    for j, t in zip(index, theta, strict=True):
        tensors[j] = t
    with torch.enable_grad():
        out = call.residual(optree.tree_unflatten(call.sol_spec, x), tuple(tensors))
    _check_residual(call, out, sol)
    outs = optree.tree_leaves(out)

    def pullback(inputs: list[Tensor], cotangent: Any, retain: bool) -> list[Tensor]:
        cot, spec = optree.tree_flatten(cotangent)
        if spec != call.sol_spec:
            raise ValueError(
                "custom_root: the linear solver must apply matvec to trees with the structure "
                f"of the solution; solution: {call.sol_spec}, got: {spec}."
            )
        pairs = [(o, c) for o, c in zip(outs, cot, strict=True) if o.requires_grad]
        if not pairs:
            return [torch.zeros_like(t) for t in inputs]
        return list(
            torch.autograd.grad(
                [o for o, _ in pairs],
                inputs,
                [c for _, c in pairs],
                retain_graph=retain,
                create_graph=torch.is_grad_enabled(),
                allow_unused=True,
                materialize_grads=True,
            )
        )

    def vjp_x(w: Any) -> Any:
        return optree.tree_unflatten(call.sol_spec, pullback(x, w, retain=True))

    def vjp_theta(u: Any) -> Any:
        return pullback(theta, u, retain=False)

    return out, vjp_x, vjp_theta


def _linearize_func(
    call: RootCall, sol: tuple[Tensor, ...], operands: tuple[Tensor, ...], index: list[int]
) -> tuple[Any, Pullback, Pullback]:
    """The same VJPs by ``torch.func.vjp``: under transforms and for higher-order backward."""
    solution = optree.tree_unflatten(call.sol_spec, list(sol))

    def residual_of_solution(x: Any) -> Any:
        return call.residual(x, operands)

    out, vjp_fn, *_ = torch.func.vjp(residual_of_solution, solution)
    _check_residual(call, out, sol)

    def residual_of_theta(*theta: Tensor) -> Any:
        tensors = list(operands)
        for j, t in zip(index, theta, strict=True):
            tensors[j] = t
        return call.residual(solution, tuple(tensors))

    def vjp_theta(u: Any) -> Any:
        _, vjp_fn_theta, *_ = torch.func.vjp(residual_of_theta, *(operands[j] for j in index))
        return vjp_fn_theta(u)

    return out, lambda w: vjp_fn(w)[0], vjp_theta


def implicit_vjp(
    call: RootCall,
    sol: tuple[Tensor, ...],
    operands: tuple[Tensor, ...],
    grads: tuple[Tensor, ...],
) -> list[Tensor | None]:
    r"""Cotangents of the differentiated operands: :math:`-B^\top u` with :math:`A^\top u = g`.

    :math:`A = \partial_x F(x^\star, \theta)` and :math:`B = \partial_\theta F(x^\star, \theta)`.
    A first-order backward in eager mode takes both VJPs from one graph of :math:`F`
    (:func:`_linearize_plain`); under ``torch.func`` transforms, ``torch.compile`` or
    ``create_graph=True`` they are ``torch.func.vjp`` s (:func:`_linearize_func`).
    """
    index = [j for j, d in enumerate(call.diff) if d]
    plain = not torch.is_grad_enabled() and plain_autograd((*sol, *operands, *grads))
    linearize = _linearize_plain if plain else _linearize_func
    _, vjp_x, vjp_theta = linearize(call, sol, operands, index)
    neg_g = optree.tree_unflatten(call.sol_spec, [-g for g in grads])
    u = call.solve(vjp_x, neg_g)
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
