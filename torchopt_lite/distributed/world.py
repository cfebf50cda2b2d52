"""Who am I in the world: torchrun's environment, rank-gated decorators and RPC start-up."""

from __future__ import annotations

import atexit
import functools
import os
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar, cast

import torch.distributed as dist
import torch.distributed.autograd as dist_autograd
import torch.distributed.rpc as rpc

if TYPE_CHECKING:
    from torch.distributed.rpc import BackendType, RpcBackendOptions

F = TypeVar("F", bound=Callable[..., Any])

NO_RPC = (
    "{caller}: torch.distributed.rpc is not available in this PyTorch build "
    "(torchopt_lite.distributed.is_available() is False). Install a PyTorch build with "
    "distributed support (the default Linux and macOS wheels have it)."
)


def is_available() -> bool:
    """Whether this PyTorch build has ``torch.distributed``, its RPC and distributed autograd.

    Everything that talks to other workers needs all three; the partitioners, reducers and
    world helpers work without them.

    Example:
        >>> isinstance(torchopt_lite.distributed.is_available(), bool)
        True
    """
    return dist.is_available() and rpc.is_available() and dist_autograd.is_available()


def _require_rpc(caller: str) -> None:
    if not (dist.is_available() and rpc.is_available()):
        raise RuntimeError(NO_RPC.format(caller=caller))


def default_worker_name_format(
    world_rank: int,
    world_size: int,
    local_rank: int,
    local_world_size: int,
) -> str:
    """Name a worker ``worker<rank>``, zero-padded to the width of ``world_size``.

    This is the format :func:`auto_init_rpc` registers workers under unless told otherwise.
    ``local_rank`` and ``local_world_size`` are accepted so that a custom format can use them.

    Example:
        >>> from torchopt_lite.distributed import default_worker_name_format
        >>> default_worker_name_format(world_rank=3, world_size=12, local_rank=1,
        ...                            local_world_size=4)
        'worker03'
    """
    del local_rank, local_world_size
    return f"worker{world_rank:0{len(str(world_size))}d}"


# The format the last auto_init_rpc call registered this process under (RPC itself is
# process-global, so is the name it knows us by).
_worker_name_format: Callable[..., str] = default_worker_name_format


class WorldInfo(NamedTuple):
    """This process's place in the world, as torchrun describes it.

    The fields are ``world_rank`` (``RANK``), ``world_size`` (``WORLD_SIZE``), ``local_rank``
    (``LOCAL_RANK``, the rank on this node) and ``local_world_size`` (``LOCAL_WORLD_SIZE``).

    Example:
        >>> from torchopt_lite.distributed import WorldInfo
        >>> WorldInfo(world_rank=1, world_size=4, local_rank=1, local_world_size=2).worker_name
        'worker1'
    """

    world_rank: int
    world_size: int
    local_rank: int
    local_world_size: int

    @property
    def rank(self) -> int:
        """The global rank (an alias of ``world_rank``)."""
        return self.world_rank

    @property
    def worker_name(self) -> str:
        """This rank's RPC name, under the format :func:`auto_init_rpc` was given."""
        return _worker_name_format(
            world_rank=self.world_rank,
            world_size=self.world_size,
            local_rank=self.local_rank,
            local_world_size=self.local_world_size,
        )


_ENVIRONMENT = (("RANK", 0), ("WORLD_SIZE", 1), ("LOCAL_RANK", 0), ("LOCAL_WORLD_SIZE", 1))


def _env_int(variable: str, default: int) -> int:
    raw = os.environ.get(variable, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(
            f"get_world_info: environment variable {variable} must be an integer; got {raw!r}."
        ) from None


def get_world_info() -> WorldInfo:
    """Read this process's rank and world size from torchrun's environment variables.

    ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` and ``LOCAL_WORLD_SIZE`` (set by ``torchrun`` and
    by :func:`torch.multiprocessing.spawn` users who follow its convention). A variable that
    is unset or empty takes its single-process default: rank 0 of a world of size 1.

    Returns:
        A :class:`WorldInfo`.

    Raises:
        ValueError: a variable is not an integer, or a rank is outside ``[0, size)``.

    Example:
        >>> from torchopt_lite.distributed import get_world_info
        >>> info = get_world_info()  # a plain process: rank 0 of 1
        >>> (info.world_rank, info.world_size, info.local_rank, info.local_world_size)
        (0, 1, 0, 1)

    Note:
        The variables are read on every call; TorchOpt reads them once at import.
    """
    info = WorldInfo(*(_env_int(variable, default) for variable, default in _ENVIRONMENT))
    for rank_name, rank, size_name, size in (
        ("RANK", info.world_rank, "WORLD_SIZE", info.world_size),
        ("LOCAL_RANK", info.local_rank, "LOCAL_WORLD_SIZE", info.local_world_size),
    ):
        if size < 1:
            raise ValueError(f"get_world_info: {size_name} must be >= 1; got {size}.")
        if not 0 <= rank < size:
            raise ValueError(
                f"get_world_info: {rank_name} must be in [0, {size_name}) = [0, {size}); "
                f"got {rank}. Unset RANK, WORLD_SIZE, LOCAL_RANK and LOCAL_WORLD_SIZE to run "
                "as a single process."
            )
    return info


def get_world_rank() -> int:
    """The global rank of this process (``RANK``, 0 by default). Also named ``get_rank``.

    Example:
        >>> torchopt_lite.distributed.get_world_rank()
        0
    """
    return get_world_info().world_rank


get_rank = get_world_rank


def get_world_size() -> int:
    """The number of processes in the job (``WORLD_SIZE``, 1 by default).

    Example:
        >>> torchopt_lite.distributed.get_world_size()
        1
    """
    return get_world_info().world_size


def get_local_rank() -> int:
    """The rank of this process on its node (``LOCAL_RANK``, 0 by default).

    Example:
        >>> torchopt_lite.distributed.get_local_rank()
        0
    """
    return get_world_info().local_rank


def get_local_world_size() -> int:
    """The number of processes on this node (``LOCAL_WORLD_SIZE``, 1 by default).

    Example:
        >>> torchopt_lite.distributed.get_local_world_size()
        1
    """
    return get_world_info().local_world_size


def get_worker_id(id: str | int | None = None) -> int:
    """The RPC worker id of a worker given by rank or by name.

    Args:
        id: a rank (returned as is), a worker name (looked up in the running RPC agent), or
            ``None`` for this worker.

    Returns:
        The worker's id, which equals its rank.

    Raises:
        TypeError: ``id`` is not an int, a str or None.
        RuntimeError: a name was given and RPC is unavailable or not initialized.

    Example:
        >>> torchopt_lite.distributed.get_worker_id(1)
        1
    """
    if isinstance(id, bool) or not isinstance(id, int | str | None):
        raise TypeError(
            f"get_worker_id: id must be a rank (int), a worker name (str) or None; "
            f"got {type(id).__name__}."
        )
    if isinstance(id, int):
        if id < 0:
            raise ValueError(f"get_worker_id: a rank must be >= 0; got {id}.")
        return id
    _require_rpc("get_worker_id")
    return int(rpc.get_worker_info(id).id)


def barrier(worker_names: Iterable[str] | None = None) -> None:
    """Block until every named worker reaches this call and its pending RPC work is done.

    Args:
        worker_names: the workers to synchronize, including this one; ``None`` for all.

    Raises:
        RuntimeError: RPC is unavailable or not initialized.
        ValueError: ``worker_names`` is empty or does not name this worker.
        TypeError: ``worker_names`` is a str or holds something other than str.

    Example:
        >>> from torchopt_lite.distributed import barrier
        >>> barrier()  # doctest: +SKIP

    Note:
        Built on ``torch.distributed.rpc.api._all_gather``, the helper behind RPC's own
        graceful shutdown (TorchOpt uses the same one via ``_barrier``); unlike ``_barrier``
        it does not swallow a failed synchronization.
    """
    _require_rpc("barrier")
    names: set[str] | None = None
    if worker_names is not None:
        if isinstance(worker_names, str):
            raise TypeError(
                "barrier: worker_names must be an iterable of worker names, not one str; "
                f"wrap it: barrier([{worker_names!r}])."
            )
        names = set(worker_names)
        if not names:
            raise ValueError("barrier: worker_names is empty; pass None to synchronize all.")
        bad = sorted(repr(n) for n in names if not isinstance(n, str))
        if bad:
            raise TypeError(f"barrier: worker_names must hold str names; got {', '.join(bad)}.")
        me = rpc.get_worker_info().name
        if me not in names:
            raise ValueError(
                f"barrier: worker_names must include this worker ({me!r}); got {sorted(names)}."
            )
    rpc.api._all_gather(None, names)


def _shutdown_at_exit() -> None:
    if rpc.api._is_current_rpc_agent_set():  # the user may have shut RPC down already
        rpc.shutdown(graceful=True)


def auto_init_rpc(
    worker_init_fn: Callable[[], None] | None = None,
    worker_name_format: Callable[..., str] = default_worker_name_format,
    *,
    backend: BackendType | None = None,
    rpc_backend_options: RpcBackendOptions | None = None,
) -> Callable[[F], F]:
    """Decorate a process's entry point so that it joins the RPC world before it runs.

    The wrapped function reads :func:`get_world_info`, calls :func:`torch.distributed.rpc.init_rpc`
    with this rank's name, runs ``worker_init_fn`` on every worker between two barriers, and
    then runs the function. RPC is shut down gracefully when the process exits, so workers
    that return early keep serving requests until everyone is done.

    Args:
        worker_init_fn: run on every worker after RPC is up (seeding, device choice, ...).
        worker_name_format: ``(world_rank, world_size, local_rank, local_world_size) -> name``,
            called with keyword arguments; see :func:`default_worker_name_format`.
        backend: passed to ``init_rpc`` (TensorPipe when ``None``).
        rpc_backend_options: passed to ``init_rpc``, e.g.
            ``TensorPipeRpcBackendOptions(init_method="tcp://127.0.0.1:29500")``. When
            ``None``, ``init_rpc`` reads ``MASTER_ADDR`` and ``MASTER_PORT``.

    Returns:
        A decorator.

    Raises:
        TypeError: ``worker_init_fn`` or ``worker_name_format`` is not callable.
        RuntimeError: (when the decorated function is called) RPC is unavailable.

    Example:
        >>> import torchopt_lite.distributed as todist
        >>> @todist.auto_init_rpc()
        ... def main():
        ...     return todist.get_world_rank()
        >>> main()  # under torchrun or torch.multiprocessing.spawn  # doctest: +SKIP
    """
    if worker_init_fn is not None and not callable(worker_init_fn):
        raise TypeError(
            f"auto_init_rpc: worker_init_fn must be callable or None; "
            f"got {type(worker_init_fn).__name__}."
        )
    if not callable(worker_name_format):
        raise TypeError(
            f"auto_init_rpc: worker_name_format must be callable; "
            f"got {type(worker_name_format).__name__}."
        )

    def decorator(func: F) -> F:
        @functools.wraps(func)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            global _worker_name_format
            _require_rpc("auto_init_rpc")
            info = get_world_info()
            name = worker_name_format(
                world_rank=info.world_rank,
                world_size=info.world_size,
                local_rank=info.local_rank,
                local_world_size=info.local_world_size,
            )
            if not isinstance(name, str) or not name:
                raise TypeError(
                    f"auto_init_rpc: worker_name_format must return a non-empty str; got {name!r}."
                )
            rpc.init_rpc(
                name=name,
                rank=info.world_rank,
                world_size=info.world_size,
                backend=backend,
                rpc_backend_options=rpc_backend_options,
            )
            _worker_name_format = worker_name_format
            atexit.register(_shutdown_at_exit)
            if worker_init_fn is not None:
                barrier()
                worker_init_fn()
            barrier()
            return func(*args, **kwargs)

        return cast(F, _record_errors(wrapped))

    return decorator


def _record_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Let torchrun report the worker's traceback (torch.distributed.elastic's ``record``)."""
    try:
        from torch.distributed.elastic.multiprocessing.errors import record
    except ImportError:  # a build without torch.distributed
        return func
    return record(func)


def _on_ranks(caller: str, ranks: tuple[Any, ...], *, inverse: bool) -> Callable[[F], F]:
    if not ranks:
        raise ValueError(f"{caller}: pass at least one rank, e.g. @{caller}(0).")
    bad = [r for r in ranks if isinstance(r, bool) or not isinstance(r, int)]
    if bad:
        raise TypeError(
            f"{caller}: ranks must be ints; got {bad[0]!r}. Write @{caller}(0), with the "
            "parentheses, or use @rank_zero_only."
        )
    wanted = frozenset(ranks)

    def decorator(func: F) -> F:
        @functools.wraps(func)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            if (get_world_rank() in wanted) != inverse:
                return func(*args, **kwargs)
            return None

        return cast(F, wrapped)  # the same call signature; returns None on other ranks

    return decorator


def on_rank(*ranks: int) -> Callable[[F], F]:
    """Decorate a function to run only on the given ranks; elsewhere it returns ``None``.

    The rank is read when the function is called, not when it is decorated.

    Args:
        *ranks: the global ranks that run the function.

    Returns:
        A decorator.

    Raises:
        ValueError: no rank given.
        TypeError: a rank is not an int (e.g. ``@on_rank`` without parentheses).

    Example:
        >>> from torchopt_lite.distributed import on_rank
        >>> @on_rank(0)
        ... def hello():
        ...     return "hello from rank 0"
        >>> hello()  # a plain process is rank 0
        'hello from rank 0'
    """
    return _on_ranks("on_rank", ranks, inverse=False)


def not_on_rank(*ranks: int) -> Callable[[F], F]:
    """Decorate a function to run on every rank except the given ones (there it returns None).

    Args:
        *ranks: the global ranks that skip the function.

    Returns:
        A decorator.

    Raises:
        ValueError: no rank given.
        TypeError: a rank is not an int.

    Example:
        >>> from torchopt_lite.distributed import not_on_rank
        >>> @not_on_rank(0)
        ... def work():
        ...     return "work"
        >>> print(work())  # skipped on rank 0
        None
    """
    return _on_ranks("not_on_rank", ranks, inverse=True)


def rank_all(func: F) -> F:
    """Run the function on every rank: the identity decorator, for symmetry.

    Example:
        >>> from torchopt_lite.distributed import rank_all
        >>> rank_all(abs)(-1)
        1
    """
    return func


def rank_zero_only(func: F) -> F:
    """Run the function only on rank 0 (logging, checkpoints); elsewhere it returns ``None``.

    Example:
        >>> from torchopt_lite.distributed import rank_zero_only
        >>> @rank_zero_only
        ... def log(msg):
        ...     return f"[rank 0] {msg}"
        >>> log("step 1")
        '[rank 0] step 1'
    """
    return on_rank(0)(func)


def rank_non_zero_only(func: F) -> F:
    """Run the function on every rank but 0; on rank 0 it returns ``None``.

    Example:
        >>> from torchopt_lite.distributed import rank_non_zero_only
        >>> print(rank_non_zero_only(abs)(-1))
        None
    """
    return not_on_rank(0)(func)
