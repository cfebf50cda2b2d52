"""Unrolled inner loops on ``torch.func``: one task, or a batch of tasks under ``vmap``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, NamedTuple

import optree
import torch
from torch import Tensor, nn

from torchopt_lite.base import GradientTransformation
from torchopt_lite.diff.explicit._checkpoint import (
    checkpointed_loop,
    resolve_adjoint,
    segment_lengths,
)
from torchopt_lite.diff.explicit._checks import check_truncate_every
from torchopt_lite.typing import OptState, Params

Adjoint = Literal["unroll", "checkpoint", "truncated"]


class InnerLoopResult(NamedTuple):
    r"""What an inner loop returns (with a leading task dimension when batched).

    Attributes:
        params: the adapted parameters :math:`\theta_T`, differentiable with respect to
            :math:`\theta_0` and every tensor the loss or the optimizer used.
        state: the optimizer state after the last step.
        losses: the inner losses :math:`L(\theta_0), \dots, L(\theta_{T-1})`, shape ``(T,)``.
    """

    params: Params
    state: OptState
    losses: Tensor


def _check_common(
    caller: str, optimizer: Any, steps: Any, truncate_every: Any, adjoint: Any, checkpoints: Any
) -> str:
    if not isinstance(optimizer, GradientTransformation):
        raise TypeError(
            f"{caller}: optimizer must be a GradientTransformation (e.g. "
            f"torchopt_lite.sgd(lr=0.1)); got {type(optimizer).__name__}."
        )
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"{caller}: steps must be an int >= 1; got {steps!r}.")
    check_truncate_every(caller, truncate_every)
    return resolve_adjoint(caller, adjoint, truncate_every, checkpoints, steps)


def inner_loop(
    loss_fn: Callable[..., Tensor],
    optimizer: GradientTransformation,
    steps: int,
    *,
    first_order: bool = False,
    adjoint: Adjoint | None = None,
    checkpoints: int | None = None,
    truncate_every: int | None = None,
) -> Callable[..., InnerLoopResult]:
    r"""Build ``adapt(params, *args)``: ``steps`` differentiable optimizer steps on ``loss_fn``.

    .. math::
        g_t = \nabla_\theta L(\theta_t; \text{args}), \qquad
        (u_t, s_{t+1}) = \mathrm{update}(g_t, s_t, \theta_t), \qquad
        \theta_{t+1} = \theta_t + u_t, \qquad s_0 = \mathrm{init}(\theta_0).

    The gradients come from :func:`torch.func.grad` and the updates are out of place
    (``inplace=False``), so ``adapt`` composes with :func:`torch.func.vmap` (see
    :func:`batched_inner_loop`) and ordinary ``backward()`` through it gives the meta-gradient
    with respect to :math:`\theta_0` and to any tensor in ``args`` or in the optimizer (a
    learnable learning rate, a discount factor).

    Args:
        loss_fn: ``loss_fn(params, *args) -> scalar tensor``, typically
            :func:`torch.func.functional_call` of a module (see :func:`functional_loss`).
        optimizer: a functional optimizer, e.g. ``torchopt_lite.sgd(lr=0.1)`` or
            :func:`per_parameter_sgd`.
        steps: number of inner steps :math:`T`.
        first_order: treat each :math:`g_t` as a constant (first-order MAML).
        adjoint: how the backward pass goes through the loop (memory and time measured in
            :ref:`adjoint-modes`):

            * ``"unroll"``: keep the graph of all :math:`T` steps (memory :math:`O(T)`).
            * ``"checkpoint"``: split the loop into ``checkpoints`` segments (default
              :math:`\lceil\sqrt{T}\rceil`) whose inputs are :math:`\theta`, the optimizer
              state and ``args``. After its forward pass a segment drops the tensors its graph
              saved; the backward pass reruns one segment at a time to refill them. Memory
              :math:`O(k + T/k)` step graphs (:math:`O(\sqrt{T})` by default) for about one
              more forward pass of time; the meta-gradient is the unrolled one, second-order
              terms included, also with respect to tensors the loss or the optimizer capture.
              The gradients :math:`g_t` come from :func:`torch.autograd.grad`
              (``torch.func`` transforms do not run under saved-tensor hooks); the rerun
              restores the random and autocast states of the forward pass.
            * ``"truncated"``: detach the parameters and the state after every
              ``truncate_every`` steps (the meta-gradient then flows through the last window
              only).

            ``None``: ``"truncated"`` if ``truncate_every`` is given, else ``"unroll"``.
        checkpoints: number of segments :math:`k` in ``[1, steps]`` for ``"checkpoint"``.
        truncate_every: the window of ``"truncated"``.

    Returns:
        ``adapt(params, *args) -> InnerLoopResult``.

    Raises:
        ValueError: an unknown ``adjoint``; ``truncate_every`` without ``"truncated"`` (or the
            reverse); ``checkpoints`` without ``"checkpoint"`` or outside ``[1, steps]``.
        TypeError: ``checkpoints`` is not an int.
        RuntimeError: (in the backward pass, ``"checkpoint"``) a rerun segment saved another
            number of tensors than its forward pass: ``loss_fn`` is not repeatable.

    Example:
        >>> loss_fn = lambda p, x: ((p["w"] - x) ** 2).sum()
        >>> adapt = inner_loop(loss_fn, torchopt_lite.diff.explicit.per_parameter_sgd(0.25), 1)
        >>> w0 = torch.zeros(2, requires_grad=True)
        >>> out = adapt({"w": w0}, torch.ones(2))
        >>> out.params["w"]  # w0 - 0.25 * 2 (w0 - x)
        tensor([0.5000, 0.5000], grad_fn=<...>)
        >>> torch.autograd.grad(out.params["w"].sum(), w0)[0]  # d(w1)/d(w0) = 1 - 0.5
        tensor([0.5000, 0.5000])
        >>> opt = torchopt_lite.adam(0.1)  # 9 steps in 3 checkpointed segments of 3 steps
        >>> full = inner_loop(loss_fn, opt, 9)({"w": w0}, torch.ones(2))
        >>> ckpt = inner_loop(loss_fn, opt, 9, adjoint="checkpoint")({"w": w0}, torch.ones(2))
        >>> grads = [torch.autograd.grad(o.params["w"].sum(), w0)[0] for o in (full, ckpt)]
        >>> torch.allclose(*grads, rtol=1e-6, atol=0)
        True

    References:
        Chen, Xu, Zhang, Guestrin. Training Deep Nets with Sublinear Memory Cost. 2016
        (:math:`\sqrt{T}` segments). Griewank, Walther. Algorithm 799: revolve. ACM TOMS, 2000.
    """
    mode = _check_common("inner_loop", optimizer, steps, truncate_every, adjoint, checkpoints)
    if mode == "checkpoint":
        run = checkpointed_loop(
            loss_fn, optimizer, segment_lengths(steps, checkpoints), first_order=first_order
        )
        return lambda params, *args: InnerLoopResult(*run(params, *args))
    grad_and_value = torch.func.grad_and_value(loss_fn)

    def adapt(params: Params, *args: Any) -> InnerLoopResult:
        state = optimizer.init(params)
        losses = []
        for t in range(1, steps + 1):
            grads, loss = grad_and_value(params, *args)
            if first_order:
                grads = optree.tree_map(torch.Tensor.detach, grads)
            updates, state = optimizer.update(grads, state, params=params, inplace=False)
            params = optree.tree_map(torch.add, params, updates)
            if truncate_every is not None and t % truncate_every == 0 and t < steps:
                params = optree.tree_map(torch.Tensor.detach, params)
                state = optree.tree_map(torch.Tensor.detach, state)
            losses.append(loss)
        return InnerLoopResult(params, state, torch.stack(losses))

    return adapt


def batched_inner_loop(
    loss_fn: Callable[..., Tensor],
    optimizer: GradientTransformation,
    steps: int,
    *,
    in_dims: int | tuple[Any, ...] | None = 0,
    first_order: bool = False,
    adjoint: Adjoint | None = None,
    checkpoints: int | None = None,
    truncate_every: int | None = None,
    chunk_size: int | None = None,
) -> Callable[..., InnerLoopResult]:
    r"""Adapt a batch of tasks at once: :func:`inner_loop` under :func:`torch.func.vmap`.

    Every task starts from the same :math:`\theta_0` and runs its own inner loop on its own
    data; the result has a leading task dimension. For tasks :math:`\tau_1, \dots, \tau_B`,
    ``sum(outer_loss(result.params[b], query_b))`` then gives
    :math:`\sum_b \nabla_{\theta_0} L^{\text{out}}_b(\theta_T^{(b)})` in one ``backward()``.

    Args:
        loss_fn: ``loss_fn(params, *args) -> scalar tensor`` for **one** task.
        optimizer: a functional optimizer whose out-of-place update works under ``vmap``.
        steps: number of inner steps.
        in_dims: batch dimension of each argument after ``params`` (``vmap``'s ``in_dims`` for
            ``args``; ``None`` marks a shared argument such as a learnable discount).
        first_order: see :func:`inner_loop`.
        adjoint: see :func:`inner_loop`. With ``"checkpoint"`` the loop runs over the stacked
            task parameters (the gradient of the summed task losses is the stack of the
            per-task gradients) instead of ``vmap`` over whole inner loops.
        checkpoints: see :func:`inner_loop`.
        truncate_every: see :func:`inner_loop`.
        chunk_size: adapt this many tasks at a time (``vmap``'s ``chunk_size``) to bound memory.

    Returns:
        ``adapt(params, *task_args) -> InnerLoopResult`` with a leading task dimension.

    Example:
        >>> loss_fn = lambda p, x: ((p["w"] - x) ** 2).sum()
        >>> opt = torchopt_lite.diff.explicit.per_parameter_sgd(0.25)
        >>> adapt = batched_inner_loop(loss_fn, opt, steps=1)
        >>> out = adapt({"w": torch.zeros(2)}, torch.tensor([[1.0, 1.0], [2.0, 4.0]]))
        >>> out.params["w"]
        tensor([[0.5000, 0.5000],
                [1.0000, 2.0000]])
    """
    mode = _check_common(
        "batched_inner_loop", optimizer, steps, truncate_every, adjoint, checkpoints
    )
    if mode == "checkpoint":
        run = checkpointed_loop(
            loss_fn,
            optimizer,
            segment_lengths(steps, checkpoints),
            first_order=first_order,
            in_dims=in_dims,
            batched=True,
            chunk_size=chunk_size,
        )
        return lambda params, *args: InnerLoopResult(*run(params, *args))
    adapt = inner_loop(
        loss_fn, optimizer, steps, first_order=first_order, truncate_every=truncate_every
    )

    def batched(params: Params, *args: Any) -> InnerLoopResult:
        dims = (None, *(in_dims if isinstance(in_dims, tuple) else (in_dims,) * len(args)))
        return torch.func.vmap(adapt, in_dims=dims, chunk_size=chunk_size)(params, *args)

    return batched


def functional_loss(
    module: nn.Module, criterion: Callable[[Tensor, Tensor], Tensor]
) -> Callable[[Params, Tensor, Tensor], Tensor]:
    r"""``loss_fn(params, inputs, targets) = criterion(module_params(inputs), targets)``.

    The module is called through :func:`torch.func.functional_call` with ``params`` (a dict
    ``{name: tensor}`` as from ``dict(module.named_parameters())``) in place of its parameters
    and with its own buffers, so the module itself is never modified.

    Args:
        module: the network.
        criterion: ``criterion(outputs, targets) -> scalar``, e.g.
            :func:`torch.nn.functional.mse_loss`.

    Returns:
        The loss function, for :func:`inner_loop` and :func:`batched_inner_loop`.

    Example:
        >>> net = torch.nn.Linear(1, 1)
        >>> loss_fn = functional_loss(net, torch.nn.functional.mse_loss)
        >>> params = {k: torch.zeros_like(v) for k, v in net.named_parameters()}
        >>> loss_fn(params, torch.ones(3, 1), torch.full((3, 1), 2.0))
        tensor(4.)
    """
    if not isinstance(module, nn.Module):
        raise TypeError(
            f"functional_loss: module must be an nn.Module; got {type(module).__name__}."
        )

    def loss_fn(params: Params, inputs: Tensor, targets: Tensor) -> Tensor:
        buffers = dict(module.named_buffers())
        outputs = torch.func.functional_call(module, (params, buffers), (inputs,))
        return criterion(outputs, targets)

    return loss_fn
