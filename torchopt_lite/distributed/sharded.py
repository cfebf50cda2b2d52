r"""Sharded meta-parameters for task-parallel meta-learning: DTensor shards, gathered per step.

:func:`shard_meta_model` replaces each meta-parameter by a ``DTensor`` sharded along dimension 0
over the ranks of a process group (the layout of FSDP2's ``fully_shard``), so each rank stores and
optimizes :math:`1/W` of the meta-model. :func:`full_parameters` all-gathers them into full,
differentiable tensors for the inner loops; the backward of the gather is a reduce-scatter that
*sums*, so with rank :math:`r`'s mean outer loss :math:`L_r` scaled by :math:`n_r / N` every
shard receives its slice of

.. math::
    \sum_r \frac{n_r}{N} \nabla L_r = \nabla \frac1N \sum_{i=1}^{N} L^{\text{out}}_i .
"""

from __future__ import annotations

from typing import Any

import torch.distributed as dist
from torch import Tensor, nn


def _dtensor() -> Any:
    try:
        import torch.distributed.tensor as dtensor
    except ImportError as error:  # pragma: no cover - every supported torch has DTensor
        raise RuntimeError(
            "shard_meta_model: this PyTorch build has no torch.distributed.tensor (DTensor)."
        ) from error
    return dtensor


def _is_sharded(p: Tensor) -> bool:
    return dist.is_available() and isinstance(p, _dtensor().DTensor)


def shard_meta_model(module: nn.Module, *, process_group: Any = None) -> nn.Module:
    """Shard the meta-parameters of ``module`` across the ranks of a process group, in place.

    Every parameter becomes an ``nn.Parameter`` holding a ``DTensor`` sharded along dimension 0
    (0-dim parameters are replicated) on a one-dimensional device mesh over ``process_group``,
    with the values of rank 0. Parameters shared by several submodules stay shared; buffers are
    left alone. A ``torch.optim`` optimizer built on ``module.parameters()`` afterwards steps
    the shards, and ``p.full_tensor()`` reassembles a parameter.

    The module can no longer be called directly: run it with :func:`torch.func.functional_call`
    on :func:`full_parameters`, in the inner loops as in the outer loss. Without a process group
    (a plain run) the module is returned unchanged, and the same code runs as a world of size 1.

    FSDP2's ``fully_shard`` is not used: its forward hooks gather the parameters into the module
    again and reject a module whose parameters :func:`torch.func.functional_call` has swapped.

    Args:
        module: the meta-model; not wrapped in DDP or FSDP, not sharded already.
        process_group: the group to shard over; the default group if ``None``.

    Returns:
        ``module``, its parameters sharded.

    Example:
        >>> from torchopt_lite.distributed import shard_meta_model
        >>> net = shard_meta_model(torch.nn.Linear(2, 1))  # a plain run: nothing to shard over
        >>> type(net.weight).__name__
        'Parameter'
    """
    name = "shard_meta_model"
    if not isinstance(module, nn.Module):
        raise TypeError(f"{name}: module must be an nn.Module; got {type(module).__name__}.")
    if isinstance(module, nn.parallel.DistributedDataParallel):
        raise TypeError(
            f"{name}: module is wrapped in DistributedDataParallel, which keeps a full copy on "
            "every rank; pass the unwrapped meta-model (ddp.module)."
        )
    params = list(module.parameters())
    if not params:
        raise ValueError(f"{name}: module has no parameters.")
    if any(_is_sharded(p) for p in params):
        raise ValueError(
            f"{name}: module already has sharded (DTensor) parameters: it was sharded before, or "
            "wrapped by FSDP's fully_shard."
        )
    if not (dist.is_available() and dist.is_initialized()):
        if process_group is not None:
            raise ValueError(f"{name}: a process_group was given but none is initialized.")
        return module
    devices = {p.device for p in params}
    if len(devices) != 1:
        raise ValueError(
            f"{name}: the parameters must be on one device; got {sorted(map(str, devices))}."
        )
    dtensor = _dtensor()
    group = dist.group.WORLD if process_group is None else process_group
    mesh = dist.device_mesh.DeviceMesh.from_group(group, devices.pop().type)  # type: ignore[arg-type]
    sharded: dict[int, nn.Parameter] = {}
    for submodule in module.modules():
        for key, p in list(submodule.named_parameters(recurse=False)):
            if id(p) not in sharded:
                placement = dtensor.Shard(0) if p.dim() > 0 else dtensor.Replicate()
                local = dtensor.distribute_tensor(p.detach(), mesh, [placement])
                sharded[id(p)] = nn.Parameter(local, requires_grad=p.requires_grad)
            setattr(submodule, key, sharded[id(p)])
    return module


def full_parameters(module: nn.Module) -> dict[str, Tensor]:
    """The full meta-parameters of a :func:`shard_meta_model` module, gathered differentiably.

    Each sharded parameter is all-gathered into a plain tensor; in the backward its gradient is
    summed over the ranks and scattered back to the shards (``.grad`` of each shard). Scale rank
    :math:`r`'s loss by :math:`n_r / N` to get the meta-gradient of the whole meta-batch.
    Unsharded parameters (a plain run) are returned as they are.

    The gathers are collectives, and so are their backwards: every rank calls this once per
    meta-step and runs one backward of a loss that depends on every returned tensor, a rank
    without tasks included (``0 * sum(p.sum() for p in full.values())``).

    Args:
        module: a module passed to :func:`shard_meta_model`.

    Returns:
        The parameters by name (as :meth:`~torch.nn.Module.named_parameters`), for
        :func:`torch.func.functional_call`.

    Example:
        >>> from torchopt_lite.distributed import full_parameters, shard_meta_model
        >>> net = shard_meta_model(torch.nn.Linear(2, 1))
        >>> full = full_parameters(net)
        >>> torch.func.functional_call(net, full, (torch.ones(1, 2),)).shape
        torch.Size([1, 1])
    """
    if not isinstance(module, nn.Module):
        raise TypeError(
            f"full_parameters: module must be an nn.Module; got {type(module).__name__}."
        )
    full: dict[str, Tensor] = {}
    for key, p in module.named_parameters():
        if _is_sharded(p):  # the backward sums over ranks (Partial) and keeps this rank's shard
            p = p.full_tensor(grad_placements=[_dtensor().Partial()])  # type: ignore[attr-defined]
        full[key] = p
    return full
