"""End to end on localhost: two processes spawned by torch.multiprocessing, TensorPipe on 127.0.0.1.

Rank 0 runs the calls in ``_rpc_workers.run_rank_zero`` once (module fixture) and saves what it
saw; each test below checks one part of it against the same computation in this process.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
import torch.multiprocessing as mp

import torchopt_lite.distributed as todist

from ._rpc_workers import WORKERS, W, batch, main
from ._spawn import free_loopback_port, join_or_fail

TIMEOUT_S = 90  # the spawn takes ~10 s on 2 cores; a hang must not hold the suite


@pytest.fixture(scope="module")
def seen(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    if not todist.is_available():
        pytest.skip("torch.distributed RPC is not available in this PyTorch build")
    out = Path(tmp_path_factory.mktemp("rpc")) / "rank0.pt"
    context = mp.spawn(main, args=(free_loopback_port(), str(out)), nprocs=WORKERS, join=False)
    join_or_fail(context, TIMEOUT_S, f"the {WORKERS} RPC workers")
    return torch.load(out, weights_only=False)


def _mse(w: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return ((x @ w - y) ** 2).mean()


def test_world_and_worker_names(seen) -> None:
    assert seen["world_info"] == (0, 2, 0, 2)
    assert seen["worker_name"] == "worker0"
    assert (seen["worker_id_self"], seen["worker_id_of_worker1"]) == (0, 1)
    assert seen["init_ran"] == [True, True]  # worker_init_fn ran on both workers


def test_parallelize_mean_equals_single_process(seen) -> None:
    x, y = batch(6, seed=1)  # 3 + 3 samples: the mean of the two means is the mean
    torch.testing.assert_close(seen["mse_even"], _mse(W, x, y), rtol=1e-14, atol=0)


def test_parallelize_sum_of_pytrees_on_an_odd_batch(seen) -> None:
    x, y = batch(5, seed=2)
    assert seen["sums_odd"]["count"] == 5
    torch.testing.assert_close(
        seen["sums_odd"]["sse"], ((x @ W - y) ** 2).sum(), rtol=1e-14, atol=0
    )


def test_parts_go_to_both_workers(seen) -> None:
    assert seen["ranks"] == [0, 1]  # parallelize_async, no reducer: one result per worker
    assert seen["parts"] == [(0, 3), (1, 2)]  # (rank, samples) of the balanced split of 5
    assert seen["by_name"] == [(1, 5)]  # partitioner="worker1": the whole call there


def test_remote_exception_keeps_its_type(seen) -> None:
    assert "ValueError('boom')" in seen["remote_error"]


def test_distributed_backward_equals_local_gradient(seen) -> None:
    x, y = batch(5, seed=2)  # split 3 + 2: the mean of means, differentiated through RPC
    w = W.clone().requires_grad_()
    per_part = [_mse(w, x[:3], y[:3]), _mse(w, x[3:], y[3:])]
    expected = (per_part[0] + per_part[1]) / 2
    (g,) = torch.autograd.grad(expected, w)
    torch.testing.assert_close(seen["loss_of_params"], expected.detach(), rtol=1e-14, atol=0)
    torch.testing.assert_close(seen["grad_backward"], g, rtol=1e-13, atol=1e-15)


def test_distributed_grad_through_an_rref(seen) -> None:
    x, y = batch(4, seed=3)
    x, y = x.reshape(2, 2, 3), y.reshape(2, 2, 1)
    w = W.clone().requires_grad_()
    expected = (_mse(w, x[0], y[0]) + _mse(w, x[1], y[1])) / 2
    (g,) = torch.autograd.grad(expected, w)
    torch.testing.assert_close(seen["task_loss"], expected.detach(), rtol=1e-14, atol=0)
    torch.testing.assert_close(seen["grad_rref"], g, rtol=1e-13, atol=1e-15)


def test_barrier_errors_with_rpc_running(seen) -> None:
    assert seen["barrier_empty"] == "barrier: worker_names is empty; pass None to synchronize all."
    assert seen["barrier_str"].startswith("barrier: worker_names must be an iterable")
    assert seen["barrier_not_me"] == (
        "barrier: worker_names must include this worker ('worker0'); got ['worker1']."
    )
