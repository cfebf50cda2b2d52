"""What the two spawned RPC workers run. RPC sends functions by name, so they live here."""

from __future__ import annotations

import os
import warnings
from typing import Any

import torch

import torchopt_lite.distributed as todist

WORKERS = 2
# A fixed linear model y = x @ W; the batches below are split over the workers.
W = torch.tensor([[1.0], [-2.0], [0.5]], dtype=torch.float64)

_initialized_here = False


def worker_init() -> None:
    global _initialized_here
    _initialized_here = True


def was_initialized() -> bool:
    return _initialized_here


def rank_and_batch(x: torch.Tensor) -> tuple[int, int]:
    return todist.get_world_rank(), x.shape[0]


def fail(message: str) -> None:
    raise ValueError(message)


@todist.parallelize()  # batch_partitioner + mean_reducer
def mean_squared_error(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return ((x @ W - y) ** 2).mean()


@todist.parallelize(todist.batch_partitioner, todist.sum_reducer)
def sum_of_squares_and_count(x: torch.Tensor, y: torch.Tensor) -> dict[str, Any]:
    return {"sse": ((x @ W - y) ** 2).sum(), "count": x.shape[0]}


@todist.parallelize_async(todist.batch_partitioner, reducer=None)
def per_worker_rank(x: torch.Tensor) -> int:
    return todist.get_world_rank()


def replicate_params(w: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> list[Any]:
    """Send ``w`` whole to every part; split only the batch."""
    return [(worker, (w, *a), kw) for worker, a, kw in todist.batch_partitioner(x, y)]


@todist.parallelize(replicate_params, todist.mean_reducer)
def loss_of_params(w: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return ((x @ w - y) ** 2).mean()


@todist.parallelize(todist.dim_partitioner(0, exclusive=True, keepdim=False), todist.mean_reducer)
def task_loss(w_rref: Any, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """One task per call (TorchOpt's MAML pattern: parameters travel as an RRef)."""
    w = w_rref.to_here()
    return ((x @ w - y) ** 2).mean()


def batch(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, generator=g, dtype=torch.float64)
    y = torch.randn(n, 1, generator=g, dtype=torch.float64)
    return x, y


def _expect_error(exc: type[BaseException], fn: Any, *args: Any) -> str:
    try:
        fn(*args)
    except exc as e:
        return str(e)
    raise AssertionError(f"{fn} did not raise {exc.__name__}")


def run_rank_zero() -> dict[str, Any]:
    out: dict[str, Any] = {}
    info = todist.get_world_info()
    out["world_info"] = tuple(info)
    out["worker_name"] = info.worker_name
    out["worker_id_of_worker1"] = todist.get_worker_id("worker1")
    out["worker_id_self"] = todist.get_worker_id()
    out["init_ran"] = [*todist.remote_sync_call(was_initialized, partitioner=1), was_initialized()]

    x, y = batch(6, seed=1)
    out["mse_even"] = mean_squared_error(x, y)
    x5, y5 = batch(5, seed=2)
    out["sums_odd"] = sum_of_squares_and_count(x5, y5)
    out["ranks"] = per_worker_rank(x5).wait()
    out["parts"] = todist.remote_sync_call(rank_and_batch, args=(x5,), reducer=None)
    out["by_name"] = todist.remote_sync_call(rank_and_batch, args=(x5,), partitioner="worker1")
    out["remote_error"] = _expect_error(
        ValueError, lambda: todist.remote_sync_call(fail, args=("boom",), partitioner=1)
    )

    w = W.clone().requires_grad_()
    with todist.autograd.context() as ctx:
        loss = loss_of_params(w, x5, y5)
        todist.autograd.backward(ctx, loss)
    out["loss_of_params"] = loss.detach()
    out["grad_backward"] = w.grad

    w2 = W.clone().requires_grad_()
    xt, yt = batch(4, seed=3)
    xt, yt = xt.reshape(2, 2, 3), yt.reshape(2, 2, 1)  # 2 tasks of 2 samples
    with todist.autograd.context() as ctx:
        loss = task_loss(todist.rpc.RRef(w2 * 1.0), xt, yt)  # * 1.0: send a non-leaf
        (g,) = todist.autograd.grad(ctx, loss, w2)
    out["task_loss"] = loss.detach()
    out["grad_rref"] = g

    out["barrier_empty"] = _expect_error(ValueError, todist.barrier, [])
    out["barrier_str"] = _expect_error(TypeError, todist.barrier, "worker0")
    out["barrier_not_me"] = _expect_error(ValueError, todist.barrier, ["worker1"])
    return out


def main(rank: int, port: int, out_path: str) -> None:
    os.environ.update(
        RANK=str(rank),
        WORLD_SIZE=str(WORKERS),
        LOCAL_RANK=str(rank),
        LOCAL_WORLD_SIZE=str(WORKERS),
        TP_SOCKET_IFNAME="lo",  # TensorPipe and Gloo listen on the loopback interface only
        GLOO_SOCKET_IFNAME="lo",
    )
    # torch's own RPC start-up trips over its deprecated ProcessGroup alias; not ours to fix.
    warnings.filterwarnings("ignore", message="You are using a Backend", category=UserWarning)
    options = todist.rpc.TensorPipeRpcBackendOptions(
        init_method=f"tcp://127.0.0.1:{port}", num_worker_threads=8, rpc_timeout=30
    )

    @todist.auto_init_rpc(worker_init, rpc_backend_options=options)
    def run() -> None:
        if rank == 0:
            torch.save(run_rank_zero(), out_path)

    run()
