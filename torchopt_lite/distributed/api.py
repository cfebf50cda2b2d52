"""Split a call's arguments over RPC workers, run it remotely, and reduce the results."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeAlias, TypeVar, cast

import optree
import torch
import torch.distributed.rpc as rpc

from torchopt_lite.distributed.world import (
    _require_rpc,
    get_worker_id,
    get_world_rank,
    get_world_size,
)
from torchopt_lite.typing import Future, TensorTree

try:  # the agent's own default timeout; RPC builds define it in torch.distributed.rpc.constants
    from torch.distributed.rpc.constants import UNSET_RPC_TIMEOUT
except ImportError:  # a build without RPC: the same sentinel value
    UNSET_RPC_TIMEOUT = -1.0

T = TypeVar("T")
U = TypeVar("U")
Args: TypeAlias = tuple[Any, ...]
KwArgs: TypeAlias = dict[str, Any]
Partition: TypeAlias = tuple[int | str, Args | None, KwArgs | None]
PartitionFunction: TypeAlias = Callable[..., Sequence[Partition]]
Partitioner: TypeAlias = int | str | PartitionFunction


class TensorDimensionPartitioner:
    r"""Split every tensor argument of a call along one dimension, one part per RPC call.

    Calling the partitioner with a function's ``*args, **kwargs`` returns a list of
    ``(worker, args, kwargs)``: tensors (at any depth of a pytree) are split along ``dim``,
    everything else is passed to every part unchanged. All tensors must have the same size
    :math:`B` along ``dim``.

    * ``exclusive=False``: :math:`P = \min(B, W)` parts for :math:`W` workers, of sizes
      :math:`\lceil B/P \rceil` (the first :math:`B \bmod P`) and :math:`\lfloor B/P
      \rfloor` (the rest), in order; part :math:`i` goes to worker :math:`i`.
    * ``exclusive=True``: :math:`B` parts of one sample each, part :math:`i` to worker
      :math:`i \bmod W`; with ``keepdim=False`` the sample is selected (the dimension is
      dropped) instead of sliced.

    A call without tensor arguments is one part, run on this worker.

    Args:
        dim: the dimension to split, negative values counting from the end.
        exclusive: one part per sample instead of one part per worker.
        keepdim: keep the split dimension in each part. ``False`` requires ``exclusive``.
        workers: ranks or worker names to send parts to; ``None`` for ranks
            ``0 .. WORLD_SIZE - 1``. Names are resolved through RPC when the partitioner is
            called.

    Raises:
        TypeError: ``dim`` is not an int, or ``workers`` is not a sequence of ranks or names.
        ValueError: ``keepdim=False`` without ``exclusive=True``; ``workers`` is empty or holds
            a negative rank. When called: ``dim`` out of range for a tensor, mismatched sizes
            along ``dim``, or an empty batch.

    Example:
        >>> from torchopt_lite.distributed import TensorDimensionPartitioner
        >>> split = TensorDimensionPartitioner(0, keepdim=True, workers=[0, 1])
        >>> [(w, a[0].tolist(), a[1]) for w, a, _ in split(torch.arange(5), "lr")]
        [(0, [0, 1, 2], 'lr'), (1, [3, 4], 'lr')]

    Note:
        With ``exclusive=False`` TorchOpt gives every part :math:`\lfloor B/W \rfloor`
        samples and the last part the remainder; we balance the parts (sizes differ by at
        most one), so no worker gets up to :math:`W-1` extra samples.
    """

    def __init__(
        self,
        dim: int,
        *,
        exclusive: bool = False,
        keepdim: bool = False,
        workers: Sequence[int | str] | None = None,
    ) -> None:
        if isinstance(dim, bool) or not isinstance(dim, int):
            raise TypeError(
                f"TensorDimensionPartitioner: dim must be an int; got {type(dim).__name__}."
            )
        if not keepdim and not exclusive:
            raise ValueError(
                "TensorDimensionPartitioner: keepdim=False should be used with exclusive=True "
                "(a part of several samples needs the dimension); pass keepdim=True or "
                "exclusive=True."
            )
        if workers is not None:
            workers = _check_workers(workers)
        self.dim = dim
        self.exclusive = bool(exclusive)
        self.keepdim = bool(keepdim)
        self.workers = workers

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(dim={self.dim}, exclusive={self.exclusive}, "
            f"keepdim={self.keepdim}, workers={self.workers!r})"
        )

    def __call__(self, *args: Any, **kwargs: Any) -> list[tuple[int, Args, KwArgs]]:
        """Split ``args`` and ``kwargs`` into ``(worker, args, kwargs)`` parts."""
        leaves: list[Any]
        leaves, treespec = optree.tree_flatten(cast(Any, (args, kwargs)))
        batch_size = self._batch_size(leaves)
        if batch_size is None:
            return [(get_world_rank(), args, dict(kwargs))]

        if self.workers is None:
            workers = list(range(get_world_size()))
        else:
            workers = [get_worker_id(worker) for worker in self.workers]

        takes: list[Callable[[torch.Tensor], torch.Tensor]]
        if self.exclusive:
            if self.keepdim:
                takes = [_narrow(self.dim, i, 1) for i in range(batch_size)]
            else:
                takes = [_select(self.dim, i) for i in range(batch_size)]
        else:
            num_parts = min(batch_size, len(workers))
            size, extra = divmod(batch_size, num_parts)  # the first `extra` parts get one more
            starts = [i * size + min(i, extra) for i in range(num_parts + 1)]
            takes = [
                _narrow(self.dim, starts[i], starts[i + 1] - starts[i]) for i in range(num_parts)
            ]

        parts: list[tuple[int, Args, KwArgs]] = []
        for i, take in enumerate(takes):
            part = [take(x) if isinstance(x, torch.Tensor) else x for x in leaves]
            part_args, part_kwargs = cast(
                tuple[Args, KwArgs], optree.tree_unflatten(treespec, part)
            )
            parts.append((workers[i % len(workers)], part_args, part_kwargs))
        return parts

    def _batch_size(self, leaves: list[Any]) -> int | None:
        """The common size along ``dim`` of the tensor leaves (None if there are none)."""
        batch_size: int | None = None
        first_shape: tuple[int, ...] = ()
        for x in leaves:
            if not isinstance(x, torch.Tensor):
                continue
            if not -x.dim() <= self.dim < x.dim():
                raise ValueError(
                    f"TensorDimensionPartitioner: dim={self.dim} is out of range for a tensor "
                    f"argument of shape {tuple(x.shape)}; every tensor argument is split along "
                    "dim. Pass tensors that must not be split inside a non-tensor (e.g. an "
                    "RRef) or use a custom partition function."
                )
            if batch_size is None:
                batch_size, first_shape = x.shape[self.dim], tuple(x.shape)
            elif x.shape[self.dim] != batch_size:
                raise ValueError(
                    f"TensorDimensionPartitioner: batch size mismatch on dim={self.dim}: "
                    f"a tensor of shape {first_shape} has {batch_size}, a tensor of shape "
                    f"{tuple(x.shape)} has {x.shape[self.dim]}."
                )
        if batch_size == 0:
            raise ValueError(
                f"TensorDimensionPartitioner: the batch is empty (size 0 on dim={self.dim}); "
                "there is nothing to send to the workers."
            )
        return batch_size


def _check_workers(workers: Sequence[int | str]) -> list[int | str]:
    if isinstance(workers, str) or not isinstance(workers, Iterable):
        raise TypeError(
            "TensorDimensionPartitioner: workers must be a sequence of ranks or worker names "
            f"(e.g. [0, 1] or ['worker0']); got {workers!r}."
        )
    workers = list(workers)
    if not workers:
        raise ValueError(
            "TensorDimensionPartitioner: workers is empty; pass None to use every rank."
        )
    for worker in workers:
        if isinstance(worker, bool) or not isinstance(worker, int | str):
            raise TypeError(
                f"TensorDimensionPartitioner: workers must hold ranks (int) or worker names "
                f"(str); got {worker!r}."
            )
        if isinstance(worker, int) and worker < 0:
            raise ValueError(f"TensorDimensionPartitioner: a rank must be >= 0; got {worker}.")
    return workers


def _narrow(dim: int, start: int, length: int) -> Callable[[torch.Tensor], torch.Tensor]:
    return lambda x: x.narrow(dim, start, length)


def _select(dim: int, index: int) -> Callable[[torch.Tensor], torch.Tensor]:
    return lambda x: x.select(dim, index)


def dim_partitioner(
    dim: int = 0,
    *,
    exclusive: bool = False,
    keepdim: bool = True,
    workers: Sequence[int | str] | None = None,
) -> PartitionFunction:
    """A :class:`TensorDimensionPartitioner`, with ``keepdim=True`` by default.

    Args:
        dim: the dimension to split.
        exclusive: one part per sample instead of one part per worker.
        keepdim: keep the split dimension in each part. ``False`` requires ``exclusive``.
        workers: ranks or worker names to send parts to; ``None`` for all ranks.

    Returns:
        A partition function ``(*args, **kwargs) -> [(worker, args, kwargs), ...]``.

    Example:
        >>> from torchopt_lite.distributed import dim_partitioner
        >>> split = dim_partitioner(1, exclusive=True, keepdim=False, workers=[0, 1])
        >>> [(w, a[0].tolist()) for w, a, _ in split(torch.tensor([[1, 2, 3]]))]
        [(0, [1]), (1, [2]), (0, [3])]
    """
    return TensorDimensionPartitioner(dim, exclusive=exclusive, keepdim=keepdim, workers=workers)


batch_partitioner: PartitionFunction = dim_partitioner(dim=0, exclusive=False, keepdim=True)
"""Split along the first dimension into one balanced part per worker (at most the batch size)."""

exclusive_batch_partitioner: PartitionFunction = dim_partitioner(dim=0, exclusive=True)
"""Split along the first dimension into one RPC call per sample, keeping the dimension."""


def _reduce(
    caller: str,
    results: Iterable[TensorTree],
    tensor_op: Callable[[torch.Tensor], torch.Tensor],
    scalar_op: Callable[[list[Any]], Any],
) -> TensorTree:
    results = list(results)
    if not results:
        raise ValueError(f"{caller}: there are no results to reduce.")
    first, *rest = results
    spec = optree.tree_structure(first)
    for i, result in enumerate(rest, start=1):
        other = optree.tree_structure(result)
        if other != spec:
            raise ValueError(
                f"{caller}: every result must have the same tree structure; result 0: {spec}, "
                f"result {i}: {other}."
            )

    def reduce_leaf(*xs: Any) -> Any:
        if isinstance(xs[0], torch.Tensor):
            return tensor_op(torch.stack(xs))
        return scalar_op(list(xs))

    return optree.tree_map(reduce_leaf, first, *rest)


def mean_reducer(results: Iterable[TensorTree]) -> TensorTree:
    r"""Average the results of the parts, leaf by leaf: :math:`\frac1P \sum_{i=1}^P r_i`.

    Each result may be a tensor or a pytree of tensors and numbers (e.g. ``(loss, accuracy)``),
    all of the same structure. The average is differentiable, also under distributed autograd.
    When every part returns the mean over its own samples and the parts have equal sizes, this
    is the mean over the whole batch; with unequal parts, return sums and use
    :func:`sum_reducer` (see the docs page on distributed training).

    Args:
        results: the parts' results, in partition order.

    Returns:
        The leaf-wise mean, shaped like one result.

    Raises:
        ValueError: no results, or results of different tree structures.

    Example:
        >>> from torchopt_lite.distributed import mean_reducer
        >>> mean_reducer([(torch.tensor(1.0), 0.5), (torch.tensor(3.0), 1.0)])
        (tensor(2.), 0.75)
    """
    return _reduce("mean_reducer", results, lambda x: x.mean(0), lambda xs: sum(xs) / len(xs))


def sum_reducer(results: Iterable[TensorTree]) -> TensorTree:
    r"""Sum the results of the parts, leaf by leaf: :math:`\sum_{i=1}^P r_i`.

    Args:
        results: the parts' results (tensors or pytrees of one structure), in partition order.

    Returns:
        The leaf-wise sum, shaped like one result.

    Raises:
        ValueError: no results, or results of different tree structures.

    Example:
        >>> from torchopt_lite.distributed import sum_reducer
        >>> sum_reducer([{"n": 2, "g": torch.ones(2)}, {"n": 3, "g": torch.ones(2)}])
        {'n': 5, 'g': tensor([2., 2.])}
    """
    return _reduce("sum_reducer", results, lambda x: x.sum(0), sum)


def _partition(partitioner: Partitioner | None, args: Args, kwargs: KwArgs) -> list[Partition]:
    if partitioner is None:
        partitioner = batch_partitioner
    if isinstance(partitioner, bool):
        raise ValueError(f"Invalid partitioner: {partitioner!r}.")
    if isinstance(partitioner, int | str):
        return [(get_worker_id(partitioner), args, kwargs)]
    if not callable(partitioner):
        raise ValueError(
            f"Invalid partitioner: {partitioner!r}. Pass a rank, a worker name or a function "
            "(*args, **kwargs) -> [(worker, args, kwargs), ...]."
        )
    parts = list(partitioner(*args, **kwargs))
    if not parts or not all(isinstance(p, tuple | list) and len(p) == 3 for p in parts):
        raise ValueError(
            f"Invalid partitioner: {partitioner!r} returned {parts!r}; expected a non-empty "
            "sequence of (worker, args, kwargs)."
        )
    return parts


def _collect(futures: list[Future[Any]], reducer: Callable[[list[Any]], Any] | None) -> Future[Any]:
    """One future of the list of results (or of its reduction), failing as the first failure.

    Not ``Future.then``: an exception raised in a ``then`` callback reaches ``wait()`` as a
    RuntimeError, and a remote ValueError should stay a ValueError.
    """
    result: Future[Any] = torch.futures.Future()

    def finish(gathered: Future[list[Future[Any]]]) -> None:
        try:
            values = [f.wait() for f in gathered.wait()]
            result.set_result(values if reducer is None else reducer(values))
        except Exception as e:  # handed to the caller's wait()
            result.set_exception(e)

    torch.futures.collect_all(futures).add_done_callback(finish)
    return result


def remote_async_call(
    func: Callable[..., T],
    *,
    args: Args | None = None,
    kwargs: KwArgs | None = None,
    partitioner: Partitioner | None = None,
    reducer: Callable[[Iterable[T]], U] | None = None,
    timeout: float | None = UNSET_RPC_TIMEOUT,
) -> Future[list[T]] | Future[U]:
    """Call ``func`` on remote workers, one RPC per part, and return a future of the result.

    The partitioner turns ``(args, kwargs)`` into parts ``(worker, args, kwargs)``; each part
    is sent with :func:`torch.distributed.rpc.rpc_async` (a worker may be this one). The
    future holds the list of the parts' results in partition order, or the reducer's value of
    that list.

    Args:
        func: the function to run; it must be importable by the workers (module level).
        args: positional arguments of the whole call.
        kwargs: keyword arguments of the whole call.
        partitioner: a rank or worker name (the whole call goes there), or a partition
            function; :data:`batch_partitioner` when ``None``.
        reducer: combines the list of results, e.g. :func:`mean_reducer`; ``None`` keeps the
            list.
        timeout: seconds for each RPC; ``None`` or ``UNSET_RPC_TIMEOUT`` use the agent's
            default.

    Returns:
        A :class:`torch.futures.Future` of the (reduced) results, on this worker.

    Raises:
        RuntimeError: RPC is unavailable or not initialized.
        TypeError: ``func`` is not callable.
        ValueError: an invalid partitioner, or one that returned no parts.

    Example:
        >>> from torchopt_lite.distributed import mean_reducer, remote_async_call
        >>> fut = remote_async_call(torch.square, args=(torch.arange(4.0),),
        ...                         reducer=mean_reducer)  # doctest: +SKIP
        >>> fut.wait()  # on 2 workers: mean of [0, 1] and [4, 9]  # doctest: +SKIP
        tensor([2., 5.])
    """
    _require_rpc("remote_async_call")
    if not callable(func):
        raise TypeError(f"remote_async_call: func must be callable; got {type(func).__name__}.")
    if timeout is None:
        timeout = UNSET_RPC_TIMEOUT
    parts = _partition(partitioner, tuple(args or ()), dict(kwargs or {}))
    futures = [
        rpc.rpc_async(worker, func, args=part_args, kwargs=part_kwargs, timeout=timeout)
        for worker, part_args, part_kwargs in parts
    ]
    return _collect(futures, reducer)


def remote_sync_call(
    func: Callable[..., T],
    *,
    args: Args | None = None,
    kwargs: KwArgs | None = None,
    partitioner: Partitioner | None = None,
    reducer: Callable[[Iterable[T]], U] | None = None,
    timeout: float | None = UNSET_RPC_TIMEOUT,
) -> list[T] | U:
    """:func:`remote_async_call`, waited for: returns the (reduced) results.

    Args:
        func: the function to run, importable by the workers.
        args: positional arguments of the whole call.
        kwargs: keyword arguments of the whole call.
        partitioner: a rank, a worker name or a partition function (default
            :data:`batch_partitioner`).
        reducer: combines the list of results; ``None`` returns the list.
        timeout: seconds for each RPC; ``None`` or ``UNSET_RPC_TIMEOUT`` use the default.

    Returns:
        The list of the parts' results, or the reducer's value of it.

    Example:
        >>> from torchopt_lite.distributed import remote_sync_call
        >>> remote_sync_call(torch.neg, args=(torch.ones(1),), partitioner=1)  # doctest: +SKIP
        [tensor([-1.])]
    """
    _require_rpc("remote_sync_call")
    return remote_async_call(
        func, args=args, kwargs=kwargs, partitioner=partitioner, reducer=reducer, timeout=timeout
    ).wait()


def _call_unwrapped(wrapped: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a parallelized function's original body (on the remote worker)."""
    return cast("Callable[..., T]", wrapped.__wrapped__)(*args, **kwargs)  # type: ignore[attr-defined]


def _check_importable(caller: str, wrapped: Callable[..., Any]) -> None:
    """RPC pickles functions by name: the decorated function must be found under its name."""
    found: Any = sys.modules.get(wrapped.__module__)
    for name in wrapped.__qualname__.split("."):
        found = getattr(found, name, None)
    if found is not wrapped:
        raise TypeError(
            f"{caller}: {wrapped.__module__}.{wrapped.__qualname__} must be defined at module "
            "level (and not wrapped by another decorator) so that RPC workers can import it."
        )


def _parallelize(
    caller: str,
    partitioner: Partitioner | None,
    reducer: Callable[[Iterable[Any]], Any] | None,
    timeout: float | None,
    *,
    wait: bool,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    if partitioner is None:
        partitioner = batch_partitioner
        if reducer is None:
            reducer = mean_reducer
    if reducer is not None and not callable(reducer):
        raise TypeError(f"{caller}: reducer must be callable or None; got {reducer!r}.")

    def decorator(func: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(func)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            _require_rpc(caller)
            _check_importable(caller, wrapped)
            future = remote_async_call(
                functools.partial(_call_unwrapped, wrapped),
                args=args,
                kwargs=kwargs,
                partitioner=partitioner,
                reducer=reducer,
                timeout=timeout,
            )
            return future.wait() if wait else future

        return wrapped

    return decorator


def parallelize_async(
    partitioner: Partitioner | None = None,
    reducer: Callable[[Iterable[T]], U] | None = None,
    timeout: float | None = UNSET_RPC_TIMEOUT,
) -> Callable[[Callable[..., T]], Callable[..., Future[list[T]] | Future[U]]]:
    """Decorate a function so that a call runs it on the workers and returns a future.

    A call ``f(*args, **kwargs)`` becomes :func:`remote_async_call` of ``f``'s body with the
    same arguments. The body travels by name, so ``f`` must be defined at module level.

    Args:
        partitioner: a rank, a worker name or a partition function. When ``None``,
            :data:`batch_partitioner`, and then ``reducer`` defaults to :func:`mean_reducer`.
        reducer: combines the list of results; ``None`` keeps the list (unless the
            partitioner is ``None`` too).
        timeout: seconds for each RPC; ``None`` or ``UNSET_RPC_TIMEOUT`` use the default.

    Returns:
        A decorator.

    Example:
        >>> import torchopt_lite.distributed as todist
        >>> @todist.parallelize_async()
        ... def batch_loss(x):
        ...     return (x**2).mean()
        >>> batch_loss(torch.arange(4.0)).wait()  # 2 workers: mean(0.5, 6.5)  # doctest: +SKIP
        tensor(3.5000)
    """
    return _parallelize("parallelize_async", partitioner, reducer, timeout, wait=False)


def parallelize(
    partitioner: Partitioner | None = None,
    reducer: Callable[[Iterable[T]], U] | None = None,
    timeout: float | None = UNSET_RPC_TIMEOUT,
) -> Callable[[Callable[..., T]], Callable[..., list[T] | U]]:
    r"""Decorate a function so that a call runs it on the workers and returns the result.

    With the defaults, a call splits every tensor argument along its first dimension into one
    part per worker, runs the function on each part and averages the results
    (:func:`mean_reducer`): data parallelism in one line. Inside a
    :class:`torchopt_lite.distributed.autograd.context`, the result stays differentiable
    through the remote calls. Also named ``parallelize_sync``.

    Args:
        partitioner: a rank, a worker name or a partition function. When ``None``,
            :data:`batch_partitioner`, and then ``reducer`` defaults to :func:`mean_reducer`.
        reducer: combines the list of results; ``None`` returns the list (unless the
            partitioner is ``None`` too).
        timeout: seconds for each RPC; ``None`` or ``UNSET_RPC_TIMEOUT`` use the default.

    Returns:
        A decorator.

    Example:
        >>> import torchopt_lite.distributed as todist
        >>> @todist.parallelize(todist.batch_partitioner, todist.sum_reducer)
        ... def squared_error(x, y):
        ...     return ((x - y) ** 2).sum()
        >>> squared_error(torch.zeros(5), torch.ones(5))  # any number of workers  # doctest: +SKIP
        tensor(5.)

    Note:
        TorchOpt makes the body picklable by renaming it and adding it to its module. We leave
        the function and its module alone: the body is reached through the decorated function,
        which must therefore be importable under its own name (module level).
    """
    return _parallelize("parallelize", partitioner, reducer, timeout, wait=True)


parallelize_sync = parallelize
