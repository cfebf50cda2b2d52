"""Sharded meta-parameters: 2 local gloo processes against a single-process run, in float64."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import torchopt_lite.distributed as todist

from . import _sharded_workers as workers
from ._spawn import free_loopback_port
from .test_collective import _spawn


@pytest.fixture(scope="module")
def seen(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """What rank 0 of 2 saw after 3 meta-steps on 5 tasks (3 + 2)."""
    if not torch.distributed.is_available():
        pytest.skip("torch.distributed is not available in this PyTorch build")
    out = Path(tmp_path_factory.mktemp("sharded")) / "rank0.pt"
    _spawn(workers.main, (2, free_loopback_port(), str(out)), nprocs=2)
    return torch.load(out, weights_only=False)


@pytest.fixture(scope="module")
def reference() -> dict[str, Any]:
    return workers.sharded_train()


def test_parameters_are_sharded(seen: dict[str, Any]) -> None:
    # rank 0 holds the first half of each dimension 0: 8 of 16 rows, 1 of 1 for the last layer
    assert seen["local_shapes"] == [(8, 1), (8,), (1, 16), (1,)]


def test_meta_gradients_and_params_match_one_process(
    seen: dict[str, Any], reference: dict[str, Any]
) -> None:
    for got, want in zip(seen["grads"], reference["grads"], strict=True):
        for g, w in zip(got, want, strict=True):
            torch.testing.assert_close(g, w, rtol=1e-10, atol=1e-12)
    for p, q in zip(seen["params"], reference["params"], strict=True):
        torch.testing.assert_close(p, q, rtol=1e-10, atol=1e-12)
    assert not torch.equal(reference["params"][0], workers.mlp()[0].weight.detach())  # it moved


def test_errors_on_ranks(seen: dict[str, Any]) -> None:
    assert "already has sharded" in seen["again_error"]
    assert "DistributedDataParallel" in seen["ddp_error"]


def test_plain_run_is_a_world_of_one() -> None:
    net = nn.Linear(2, 1)
    assert todist.shard_meta_model(net) is net
    full = todist.full_parameters(net)
    assert full["weight"] is net.weight and full["bias"] is net.bias


def test_bad_input() -> None:
    with pytest.raises(TypeError, match=r"nn\.Module"):
        todist.shard_meta_model(torch.ones(2))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="no parameters"):
        todist.shard_meta_model(nn.Tanh())
    with pytest.raises(ValueError, match="none is initialized"):
        todist.shard_meta_model(nn.Linear(1, 1), process_group=object())
    with pytest.raises(TypeError, match=r"nn\.Module"):
        todist.full_parameters({"w": torch.ones(1)})  # type: ignore[arg-type]
