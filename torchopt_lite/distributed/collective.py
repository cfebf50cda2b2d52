r"""Task-parallel meta-learning on ``torch.distributed`` collectives, launched by ``torchrun``.

Each rank adapts its own share of the meta-batch and differentiates its own outer loss; the
meta-gradients are then summed over ranks with bucketed ``all_reduce``. For a meta-batch of
:math:`N` tasks split into shares of :math:`n_r` tasks, with :math:`L_r` the mean outer loss over
rank :math:`r`'s tasks,

.. math::
    L = \frac1N \sum_{i=1}^{N} L^{\text{out}}_i = \sum_r \frac{n_r}{N} L_r,
    \qquad \nabla L = \sum_r \frac{n_r}{N} \nabla L_r .
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import math
import os
from collections.abc import Iterable, Iterator
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

_TORCHRUN_VARIABLES = ("WORLD_SIZE", "RANK", "MASTER_ADDR")


def _initialized() -> bool:
    return dist.is_available() and dist.is_initialized()


def init_process_group(backend: str | None = None, *, timeout: float = 300.0) -> bool:
    """Join the default process group that ``torchrun`` describes, if there is one.

    Under ``torchrun`` (the environment has ``WORLD_SIZE``, ``RANK`` and ``MASTER_ADDR``) and with
    no group yet, this calls :func:`torch.distributed.init_process_group` with ``backend``, or
    ``"nccl"`` when CUDA is available and ``"gloo"`` otherwise. A plain ``python script.py`` run
    creates nothing: every function of the collectives path then acts as a world of size 1.
    Calling it again does nothing.

    Args:
        backend: ``"gloo"``, ``"nccl"``, ... or ``None`` to choose by device.
        timeout: seconds a collective may wait for its peers before it fails (a dead or hung
            rank makes the others raise after this long instead of hanging).

    Returns:
        Whether a process group is initialized now.

    Example:
        >>> from torchopt_lite.distributed import init_process_group
        >>> init_process_group()  # a plain run: no torchrun variables
        False
    """
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError(f"init_process_group: timeout must be a number; got {timeout!r}.")
    if not (math.isfinite(timeout) and timeout > 0):
        raise ValueError(f"init_process_group: timeout must be positive; got {timeout!r}.")
    if backend is not None and not isinstance(backend, str):
        raise TypeError(f"init_process_group: backend must be a string or None; got {backend!r}.")
    if _initialized():
        return True
    if not all(os.environ.get(v) for v in _TORCHRUN_VARIABLES):
        return False
    if not dist.is_available():
        raise RuntimeError(
            "init_process_group: torchrun's variables are set but this PyTorch build has no "
            "torch.distributed."
        )
    if backend is None:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    dist.init_process_group(backend=backend, timeout=datetime.timedelta(seconds=timeout))
    return True


def collective_rank() -> int:
    """This process's rank in the default process group, or 0 without one.

    Example:
        >>> torchopt_lite.distributed.collective_rank()
        0
    """
    return dist.get_rank() if _initialized() else 0


def collective_world_size() -> int:
    """The number of processes in the default process group, or 1 without one.

    Example:
        >>> torchopt_lite.distributed.collective_world_size()
        1
    """
    return dist.get_world_size() if _initialized() else 1


def _check_int(caller: str, name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{caller}: {name} must be an integer; got {value!r}.")
    if value < minimum:
        raise ValueError(f"{caller}: {name} must be >= {minimum}; got {value}.")
    return value


def task_shard(num_tasks: int, rank: int | None = None, world_size: int | None = None) -> range:
    r"""The contiguous, balanced share of the task indices ``0 .. num_tasks - 1`` for one rank.

    With :math:`N` tasks on :math:`W` ranks, :math:`N = qW + m` (:math:`0 \le m < W`), rank
    :math:`r` gets :math:`n_r = q + [r < m]` tasks starting at :math:`rq + \min(r, m)`: the
    shares differ by at most one, earlier ranks take the extra tasks, and a rank gets an empty
    range when :math:`N < W`. Weight rank :math:`r`'s mean loss by :math:`n_r / N`
    (``len(share) / num_tasks``) to get the mean over the whole meta-batch.

    Args:
        num_tasks: the size :math:`N` of the meta-batch.
        rank: the rank; defaults to :func:`collective_rank`.
        world_size: the number of ranks; defaults to :func:`collective_world_size`.

    Returns:
        The global task indices of this rank.

    Example:
        >>> from torchopt_lite.distributed import task_shard
        >>> [list(task_shard(5, r, 2)) for r in range(2)]
        [[0, 1, 2], [3, 4]]
    """
    _check_int("task_shard", "num_tasks", num_tasks, 0)
    world_size = collective_world_size() if world_size is None else world_size
    _check_int("task_shard", "world_size", world_size, 1)
    rank = collective_rank() if rank is None else rank
    _check_int("task_shard", "rank", rank, 0)
    if rank >= world_size:
        raise ValueError(f"task_shard: rank must be < world_size ({world_size}); got {rank}.")
    q, m = divmod(num_tasks, world_size)
    start = rank * q + min(rank, m)
    return range(start, start + q + (rank < m))


def task_generator(
    seed: int, step: int, task: int, device: torch.device | str | None = None
) -> torch.Generator:
    """A random generator seeded by ``(seed, step, task)`` alone: a task's data for any world size.

    The seed is a hash (BLAKE2b) of the three integers, so generators of different tasks or
    steps are unrelated, and the task with global index ``task`` draws the same numbers on
    whichever rank :func:`task_shard` puts it.

    Args:
        seed: the run's seed.
        step: the meta-step.
        task: the global task index (an element of :func:`task_shard`).
        device: the generator's device (CPU by default).

    Returns:
        A fresh, seeded :class:`torch.Generator`.

    Example:
        >>> from torchopt_lite.distributed import task_generator
        >>> a = torch.rand(2, generator=task_generator(0, step=3, task=7))
        >>> torch.equal(a, torch.rand(2, generator=task_generator(0, step=3, task=7)))
        True
    """
    for name, value in (("seed", seed), ("step", step), ("task", task)):
        _check_int("task_generator", name, value, 0)
    digest = hashlib.blake2b(f"{seed},{step},{task}".encode(), digest_size=8).digest()
    generator = torch.Generator(device=device if device is not None else "cpu")
    generator.manual_seed(int.from_bytes(digest, "little") & (2**63 - 1))
    return generator


def rank_zero_print(*args: Any, **kwargs: Any) -> None:
    """:func:`print` on collective rank 0 only (every process in a plain run).

    Example:
        >>> torchopt_lite.distributed.rank_zero_print("meta-step", 1)
        meta-step 1
    """
    if collective_rank() == 0:
        print(*args, **kwargs)


class MetaGradientAllReduce:
    r"""Sum the meta-gradients of all ranks, weighted by their share of the meta-batch.

    Rank :math:`r` adapts its :math:`n_r` tasks of a meta-batch of :math:`N`, differentiates
    :math:`L_r`, the mean outer loss over its tasks, and leaves :math:`\nabla L_r` in the
    meta-parameters' ``.grad``. Inside :meth:`sync` with ``weight`` :math:`= n_r / N` (or by
    :meth:`all_reduce` after the backward) every rank's ``.grad`` becomes

    .. math::
        \sum_r \frac{n_r}{N} \nabla L_r = \nabla \frac1N \sum_{i=1}^{N} L^{\text{out}}_i,

    the single-process meta-gradient of the whole meta-batch, identical on all ranks, for any
    uneven split. Second-order terms are exact: each :math:`\nabla L_r` is a complete local
    meta-gradient, differentiated through the rank's inner loops (their ``create_graph=True``
    gradients, ``vmap``-ed adaptation or implicit ``custom_root`` solves), and only these final
    ``.grad`` tensors of the meta-parameters are reduced; nothing inside an inner loop ever is.
    ``DistributedDataParallel`` around the meta-model is the alternative: its hooks fire on the
    meta-parameters' gradient accumulation, which the inner loops' ``autograd.grad`` calls never
    trigger, but it averages with weight :math:`1/W` and needs a backward on every rank; see
    ``docs/distributed.rst``. Use one or the other, never both on the same parameters.

    The gradients are flattened into buckets of about ``bucket_cap_mb`` megabytes (parameters of
    one dtype and device per bucket, in reverse order of registration, the order a backward
    usually produces them), scaled by ``weight`` and summed with ``all_reduce(SUM)``. With
    ``overlap=True``, :meth:`sync` launches a bucket's ``all_reduce`` asynchronously from
    :meth:`torch.Tensor.register_post_accumulate_grad_hook` hooks as soon as all its gradients
    are accumulated (buckets start in index order on every rank, as collectives must), so
    communication overlaps the rest of the backward; on exit it launches the rest, waits and
    writes the sums back. A parameter without a gradient on a rank contributes zeros, so a rank
    with an empty share still takes part (``sync(weight=0.0)`` around no backward, or
    ``all_reduce(0.0)``); after the reduction every parameter has a ``.grad`` (zeros where no
    rank had one). Without a process group (or with one process) the gradients are only scaled.

    Zero the gradients before each meta-step: the reducer reduces whatever ``.grad`` holds. A
    gradient accumulated again after its bucket was launched (several ``backward`` calls in one
    :meth:`sync`) is detected, agreed on by all ranks with one small extra ``all_reduce`` and
    reduced again, so the result stays exact.

    A rank that dies or hangs makes the others raise a ``RuntimeError`` naming the bucket within
    the process group's timeout (``init_process_group(timeout=...)``) instead of hanging.

    Args:
        params: the meta-parameters (leaf tensors), or a module whose parameters that require
            grad are used. Build the reducer before the inner loops replace a module's
            parameters by adapted tensors.
        bucket_cap_mb: the approximate size of one bucket, in megabytes (MiB).
        overlap: launch buckets during the backward (:meth:`sync`) instead of after it.
        process_group: the group to reduce over; the default group if ``None``.

    Example:
        >>> from torchopt_lite.distributed import MetaGradientAllReduce, task_shard
        >>> net = torch.nn.Linear(2, 1)
        >>> reducer = MetaGradientAllReduce(net)
        >>> share = task_shard(4)  # all 4 tasks in a plain run
        >>> with reducer.sync(weight=len(share) / 4):
        ...     net(torch.ones(len(share), 2)).mean().backward()
        >>> net.bias.grad
        tensor([1.])
    """

    def __init__(
        self,
        params: Iterable[Tensor] | nn.Module,
        *,
        bucket_cap_mb: float = 25.0,
        overlap: bool = True,
        process_group: Any = None,
    ) -> None:
        name = "MetaGradientAllReduce"
        if isinstance(params, nn.parallel.DistributedDataParallel):
            raise TypeError(
                f"{name}: params is a DistributedDataParallel module, which already averages "
                "the gradients over ranks in its own hooks; reducing them again would count every "
                "rank twice. Either pass the unwrapped meta-model (ddp.module) and do not wrap it "
                "in DDP, or use DDP alone (see docs/distributed.rst, 'DistributedDataParallel')."
            )
        if isinstance(params, nn.Module):
            params = [p for p in params.parameters() if p.requires_grad]
        elif isinstance(params, Tensor):
            raise TypeError(f"{name}: params must be an iterable of tensors or a module.")
        unique: dict[int, Tensor] = {}
        for p in params:
            if not isinstance(p, Tensor):
                raise TypeError(f"{name}: params must hold tensors; got {type(p).__name__}.")
            if not (p.is_leaf and p.requires_grad):
                raise ValueError(
                    f"{name}: params must be leaf tensors that require grad (the meta-parameters, "
                    "not adapted ones); build the reducer before the inner loops."
                )
            unique.setdefault(id(p), p)
        if not unique:
            raise ValueError(f"{name}: params is empty.")
        if isinstance(bucket_cap_mb, bool) or not isinstance(bucket_cap_mb, (int, float)):
            raise TypeError(f"{name}: bucket_cap_mb must be a number; got {bucket_cap_mb!r}.")
        if not (math.isfinite(bucket_cap_mb) and bucket_cap_mb > 0):
            raise ValueError(f"{name}: bucket_cap_mb must be positive; got {bucket_cap_mb!r}.")
        self.params = list(unique.values())
        self.overlap = bool(overlap)
        self.process_group = process_group
        self.buckets = self._make_buckets(bucket_cap_mb * 2**20)
        self._bucket_of = {id(p): i for i, b in enumerate(self.buckets) for p in b}

    def _make_buckets(self, cap_bytes: float) -> list[list[Tensor]]:
        buckets: list[list[Tensor]] = []
        open_bucket: dict[tuple[torch.dtype, torch.device], tuple[list[Tensor], list[int]]] = {}
        for p in reversed(self.params):
            key = (p.dtype, p.device)
            if key not in open_bucket:
                open_bucket[key] = ([], [0])
                buckets.append(open_bucket[key][0])
            bucket, size = open_bucket[key]
            if bucket and size[0] + p.numel() * p.element_size() > cap_bytes:
                open_bucket[key] = ([], [0])
                buckets.append(open_bucket[key][0])
                bucket, size = open_bucket[key]
            bucket.append(p)
            size[0] += p.numel() * p.element_size()
        return buckets

    def _world(self) -> tuple[int, int]:
        if not _initialized():
            return 0, 1
        group = self.process_group
        return dist.get_rank(group), dist.get_world_size(group)

    @staticmethod
    def _check_weight(weight: Any) -> float:
        if isinstance(weight, bool) or not isinstance(weight, (int, float)):
            raise TypeError(f"MetaGradientAllReduce: weight must be a number; got {weight!r}.")
        if not (math.isfinite(weight) and weight >= 0):
            raise ValueError(
                f"MetaGradientAllReduce: weight must be finite and >= 0; got {weight!r}."
            )
        return float(weight)

    def _flatten(self, index: int, weight: float) -> Tensor:
        bucket = self.buckets[index]
        flat = torch.cat(
            [
                p.grad.detach().reshape(-1)
                if p.grad is not None
                else torch.zeros(p.numel(), dtype=p.dtype, device=p.device)
                for p in bucket
            ]
        )
        return flat.mul_(weight)

    def _write_back(self, index: int, flat: Tensor) -> None:
        offset = 0
        for p in self.buckets[index]:
            view = flat[offset : offset + p.numel()].view_as(p)
            offset += p.numel()
            if p.grad is None:
                p.grad = view.clone()
            else:
                p.grad.detach().copy_(view)

    def _fail(self, index: int, rank: int, error: BaseException) -> RuntimeError:
        return RuntimeError(
            f"MetaGradientAllReduce: the all_reduce of bucket {index} did not complete on rank "
            f"{rank} within the process group's timeout (init_process_group(timeout=...)): a "
            "peer rank died or hangs; check the other ranks' logs for the first error. "
            f"({type(error).__name__}: {error})"
        )

    def _reduce_now(self, indices: Iterable[int], weight: float, rank: int) -> None:
        for index in indices:
            flat = self._flatten(index, weight)
            try:
                dist.all_reduce(flat, op=dist.ReduceOp.SUM, group=self.process_group)
            except Exception as error:
                raise self._fail(index, rank, error) from error
            self._write_back(index, flat)

    def all_reduce(self, weight: float = 1.0) -> None:
        """Scale every meta-gradient by ``weight`` and sum it over ranks, after the backward.

        Every rank must call it (a rank without tasks with ``weight=0.0``).

        Args:
            weight: this rank's share of the meta-batch, :math:`n_r / N`.

        Example:
            >>> net = torch.nn.Linear(1, 1)
            >>> net(torch.ones(1, 1)).sum().backward()
            >>> torchopt_lite.distributed.MetaGradientAllReduce(net).all_reduce(0.5)
            >>> net.bias.grad
            tensor([0.5000])
        """
        weight = self._check_weight(weight)
        rank, world_size = self._world()
        if world_size == 1:
            for p in self.params:
                if p.grad is None:
                    p.grad = torch.zeros_like(p)
                else:
                    p.grad.detach().mul_(weight)
            return
        self._reduce_now(range(len(self.buckets)), weight, rank)

    @contextlib.contextmanager
    def sync(self, weight: float = 1.0) -> Iterator[None]:
        """Reduce the meta-gradients of the backward run inside this block, on exit.

        Every rank must enter and leave it once per meta-step. If the block raises, nothing is
        reduced (the other ranks then fail with the timeout error).

        Args:
            weight: this rank's share of the meta-batch, :math:`n_r / N`.

        Example:
            See :class:`MetaGradientAllReduce`.
        """
        weight = self._check_weight(weight)
        rank, world_size = self._world()
        if world_size == 1 or not self.overlap:
            yield
            self.all_reduce(weight)
            return
        pending: dict[int, tuple[Any, Tensor]] = {}  # bucket -> (work, flat buffer)
        ready = [0] * len(self.buckets)
        stale = [False] * len(self.buckets)
        seen: set[int] = set()

        def launch_ready() -> None:
            index = len(pending)
            while index < len(self.buckets) and ready[index] == len(self.buckets[index]):
                flat = self._flatten(index, weight)
                try:
                    work = dist.all_reduce(
                        flat, op=dist.ReduceOp.SUM, group=self.process_group, async_op=True
                    )
                except Exception as error:
                    raise self._fail(index, rank, error) from error
                pending[index] = (work, flat)
                index += 1

        def hook(p: Tensor) -> None:
            index = self._bucket_of[id(p)]
            if index in pending:
                stale[index] = True
            elif id(p) not in seen:
                seen.add(id(p))
                ready[index] += 1
                launch_ready()

        handles = [p.register_post_accumulate_grad_hook(hook) for p in self.params]
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()
        ready[:] = [len(b) for b in self.buckets]
        launch_ready()
        for index in range(len(self.buckets)):
            work, _ = pending[index]
            try:
                work.wait()
            except Exception as error:
                raise self._fail(index, rank, error) from error
        # The ranks must agree on which buckets to reduce again (a gradient accumulated after its
        # bucket was launched, on any rank); one small all_reduce(MAX) of flags says.
        flags = torch.tensor(stale, dtype=torch.uint8, device=self.buckets[0][0].device)
        try:
            dist.all_reduce(flags, op=dist.ReduceOp.MAX, group=self.process_group)
        except Exception as error:
            raise self._fail(len(self.buckets), rank, error) from error
        again = [i for i, flag in enumerate(flags.tolist()) if flag]
        for index in range(len(self.buckets)):
            if index not in again:
                self._write_back(index, pending[index][1])
        self._reduce_now(again, weight, rank)
