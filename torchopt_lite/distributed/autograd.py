"""Distributed autograd: TorchOpt's ``backward`` and ``grad`` over a distributed context."""

from __future__ import annotations

import threading

import torch
import torch.distributed.autograd as dist_autograd
from torch.distributed.autograd import context as context  # TorchOpt's re-export

from torchopt_lite.typing import TensorOrTensors, TupleOfOptionalTensors

if dist_autograd.is_available():
    from torch.distributed.autograd import DistAutogradContext as DistAutogradContext
    from torch.distributed.autograd import get_gradients as get_gradients

_GRAD_LOCK = threading.Lock()  # RPC threads may accumulate into the same .grad at once


def is_available() -> bool:
    """Whether this PyTorch build has distributed autograd (``torch.distributed.autograd``).

    Example:
        >>> isinstance(torchopt_lite.distributed.autograd.is_available(), bool)
        True
    """
    return bool(dist_autograd.is_available())


def _require_autograd(caller: str) -> None:
    if not is_available():
        raise RuntimeError(
            f"{caller}: torch.distributed.autograd is not available in this PyTorch build; "
            "install a build with distributed support."
        )


def _as_tuple(tensors: TensorOrTensors) -> tuple[torch.Tensor, ...]:
    return (tensors,) if isinstance(tensors, torch.Tensor) else tuple(tensors)


def _check_requires_grad(inputs: tuple[torch.Tensor, ...]) -> None:
    if not all(t.requires_grad for t in inputs):
        raise RuntimeError("One of the differentiated Tensors does not require grad")


def backward(
    autograd_ctx_id: int,
    tensors: TensorOrTensors,
    retain_graph: bool = False,
    inputs: TensorOrTensors | None = None,
) -> None:
    """Run a distributed backward pass and accumulate this worker's gradients into ``.grad``.

    :func:`torch.distributed.autograd.backward` keeps gradients inside the context; this
    function also adds the ones for this worker's leaves into their ``.grad``, as
    :meth:`torch.Tensor.backward` does, so a ``torch.optim`` or torchopt_lite optimizer can
    step afterwards.

    Args:
        autograd_ctx_id: the id from ``with context() as autograd_ctx_id``.
        tensors: the roots (usually one scalar loss).
        retain_graph: keep the graph for another backward pass.
        inputs: accumulate only into these leaves; ``None`` for every local leaf.

    Raises:
        RuntimeError: distributed autograd is unavailable, ``inputs`` is empty, or an input
            does not require grad.

    Example:
        >>> import torchopt_lite.distributed as todist
        >>> with todist.autograd.context() as ctx:  # doctest: +SKIP
        ...     loss = parallel_loss(params, batch)  # a @todist.parallelize function
        ...     todist.autograd.backward(ctx, loss)
        ...     optimizer.step()
    """
    _require_autograd("backward")
    wanted: set[int] | None = None
    if inputs is not None:
        input_tuple = _as_tuple(inputs)
        if not input_tuple:
            raise RuntimeError("'inputs' argument to backward() cannot be empty.")
        _check_requires_grad(input_tuple)
        wanted = {id(t) for t in input_tuple}

    dist_autograd.backward(autograd_ctx_id, list(_as_tuple(tensors)), retain_graph=retain_graph)
    local_grads = get_gradients(autograd_ctx_id)
    with _GRAD_LOCK:
        for leaf, g in local_grads.items():
            if wanted is not None and id(leaf) not in wanted:
                continue
            leaf.grad = g if leaf.grad is None else leaf.grad.add(g)


def grad(
    autograd_ctx_id: int,
    outputs: TensorOrTensors,
    inputs: TensorOrTensors,
    retain_graph: bool = False,
    allow_unused: bool = False,
) -> TupleOfOptionalTensors:
    """Run a distributed backward pass and return the gradients of ``inputs`` on this worker.

    The analogue of :func:`torch.autograd.grad`: nothing is written to ``.grad``.

    Args:
        autograd_ctx_id: the id from ``with context() as autograd_ctx_id``.
        outputs: the roots (usually one scalar loss).
        inputs: the local leaves to differentiate with respect to.
        retain_graph: keep the graph for another backward pass.
        allow_unused: return ``None`` for an input the outputs do not depend on, instead of
            raising.

    Returns:
        One gradient (or ``None``) per input.

    Raises:
        RuntimeError: distributed autograd is unavailable, an input does not require grad, or
            an input is unused and ``allow_unused`` is false.

    Example:
        >>> import torchopt_lite.distributed as todist
        >>> with todist.autograd.context() as ctx:  # doctest: +SKIP
        ...     (g,) = todist.autograd.grad(ctx, parallel_loss(w, batch), w)
    """
    _require_autograd("grad")
    input_tuple = _as_tuple(inputs)
    _check_requires_grad(input_tuple)
    dist_autograd.backward(autograd_ctx_id, list(_as_tuple(outputs)), retain_graph=retain_graph)
    local_grads = get_gradients(autograd_ctx_id)
    grads: list[torch.Tensor | None] = []
    for t in input_tuple:
        g = local_grads.get(t)
        if g is None and not allow_unused:
            raise RuntimeError(
                "One of the differentiated Tensors appears to not have been used in the graph. "
                "Set allow_unused=True if this is the desired behavior."
            )
        grads.append(g)
    return tuple(grads)
