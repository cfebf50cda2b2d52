"""Partitioners and reducers as pure functions: which slices go where, and what reduces to what."""

from __future__ import annotations

import pickle

import pytest
import torch

import torchopt_lite.distributed as todist
from torchopt_lite.distributed import (
    TensorDimensionPartitioner,
    batch_partitioner,
    dim_partitioner,
    mean_reducer,
    sum_reducer,
)


@pytest.fixture
def world_of(monkeypatch: pytest.MonkeyPatch):
    def set_world(size: int, rank: int = 0) -> None:
        monkeypatch.setenv("WORLD_SIZE", str(size))
        monkeypatch.setenv("RANK", str(rank))

    return set_world


def test_batch_partitioner_balanced_contiguous_parts(world_of) -> None:
    world_of(3)
    x = torch.arange(14.0).reshape(7, 2)
    parts = batch_partitioner(x, torch.arange(7), 0.5, scale=torch.arange(7) * 10, name="a")
    assert [w for w, _, _ in parts] == [0, 1, 2]
    expected_rows = [range(0, 3), range(3, 5), range(5, 7)]  # sizes 3, 2, 2
    for (_, args, kwargs), rows in zip(parts, expected_rows, strict=True):
        idx = torch.tensor(list(rows))
        assert torch.equal(args[0], x[idx])
        assert torch.equal(args[1], idx)
        assert args[2] == 0.5
        assert torch.equal(kwargs["scale"], idx * 10)
        assert kwargs["name"] == "a"
    assert torch.equal(torch.cat([a[0] for _, a, _ in parts]), x)


def test_batch_smaller_than_world_gives_one_sample_per_part(world_of) -> None:
    world_of(4)
    parts = batch_partitioner(torch.tensor([[1.0, 2.0], [3.0, 4.0]]))
    assert [(w, a[0].tolist()) for w, a, _ in parts] == [(0, [[1.0, 2.0]]), (1, [[3.0, 4.0]])]


def test_nested_pytrees_are_split_leafwise(world_of) -> None:
    world_of(2)
    batch = {"x": torch.arange(4), "pair": (torch.arange(4) + 10, None, "tag")}
    parts = batch_partitioner(batch)
    assert [p[1][0]["x"].tolist() for p in parts] == [[0, 1], [2, 3]]
    assert [p[1][0]["pair"][0].tolist() for p in parts] == [[10, 11], [12, 13]]
    assert all(p[1][0]["pair"][1:] == (None, "tag") for p in parts)


@pytest.mark.parametrize(
    ("keepdim", "shape"), [(True, (2, 1)), (False, (2,))], ids=["keepdim", "select"]
)
def test_exclusive_one_part_per_sample_round_robin(world_of, keepdim: bool, shape) -> None:
    world_of(2)
    x = torch.arange(6).reshape(2, 3)
    parts = dim_partitioner(1, exclusive=True, keepdim=keepdim)(x)
    assert [w for w, _, _ in parts] == [0, 1, 0]
    for j, (_, args, _) in enumerate(parts):
        assert args[0].shape == shape
        assert torch.equal(args[0].reshape(-1), x[:, j])


def test_negative_dim_counts_from_the_end(world_of) -> None:
    world_of(2)
    x = torch.arange(24).reshape(2, 3, 4)
    parts = dim_partitioner(-1)(x)
    assert torch.equal(parts[0][1][0], x[..., :2])
    assert torch.equal(parts[1][1][0], x[..., 2:])


def test_explicit_workers_and_no_tensors(world_of) -> None:
    world_of(8, rank=5)
    parts = dim_partitioner(workers=[3, 6])(torch.arange(3))
    assert [(w, a[0].tolist()) for w, a, _ in parts] == [(3, [0, 1]), (6, [2])]
    kwargs = {"k": 1}
    [(worker, args, kw)] = batch_partitioner(2.0, **kwargs)
    assert (worker, args, kw) == (5, (2.0,), kwargs)  # runs here, on rank 5


def test_defaults_match_torchopt() -> None:
    assert dim_partitioner().keepdim and not dim_partitioner().exclusive
    with pytest.raises(ValueError, match="keepdim=False should be used with exclusive=True"):
        TensorDimensionPartitioner(0)  # TorchOpt's class default keepdim=False needs exclusive
    assert todist.exclusive_batch_partitioner.exclusive  # type: ignore[attr-defined]
    assert repr(batch_partitioner) == (
        "TensorDimensionPartitioner(dim=0, exclusive=False, keepdim=True, workers=None)"
    )


def test_partitioner_pickles(world_of) -> None:
    world_of(2)
    split = dim_partitioner(1, exclusive=True, keepdim=False, workers=[1, 0])
    clone = pickle.loads(pickle.dumps(split))
    x = torch.arange(6).reshape(3, 2)
    for a, b in zip(split(x), clone(x), strict=True):
        assert a[0] == b[0] and torch.equal(a[1][0], b[1][0])


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"dim": 0.0}, TypeError, "dim must be an int; got float"),
        ({"dim": True}, TypeError, "dim must be an int; got bool"),
        ({"dim": 0, "workers": []}, ValueError, "workers is empty; pass None"),
        ({"dim": 0, "workers": "worker0"}, TypeError, "workers must be a sequence"),
        ({"dim": 0, "workers": [0, 1.0]}, TypeError, r"ranks \(int\) or worker names"),
        ({"dim": 0, "workers": [0, -1]}, ValueError, "a rank must be >= 0; got -1"),
    ],
)
def test_construction_errors(kwargs: dict, error: type, match: str) -> None:
    dim = kwargs.pop("dim")
    with pytest.raises(error, match=match):
        dim_partitioner(dim, **kwargs)


@pytest.mark.parametrize(
    ("dim", "args", "match"),
    [
        (2, (torch.zeros(3, 2),), r"dim=2 is out of range for a tensor argument of shape \(3, 2\)"),
        (0, (torch.zeros(3), torch.tensor(1.0)), r"out of range .* shape \(\)"),
        (0, (torch.zeros(3), torch.zeros(4)), r"batch size mismatch on dim=0: .*\(3,\) has 3"),
        (0, (torch.zeros(0, 2),), r"the batch is empty \(size 0 on dim=0\)"),
    ],
)
def test_call_errors(world_of, dim: int, args: tuple, match: str) -> None:
    world_of(2)
    with pytest.raises(ValueError, match=match):
        dim_partitioner(dim)(*args)


# -- reducers --------------------------------------------------------------------------------


def test_reducers_on_tensors_and_pytrees() -> None:
    a, b, c = torch.randn(3, 2, dtype=torch.float64).unbind()
    assert torch.equal(mean_reducer([a, b, c]), torch.stack([a, b, c]).mean(0))
    assert torch.equal(sum_reducer(iter([a, b, c])), torch.stack([a, b, c]).sum(0))
    results = [{"loss": a, "acc": 0.5, "aux": None}, {"loss": b, "acc": 1.0, "aux": None}]
    mean = mean_reducer(results)
    assert torch.equal(mean["loss"], (a + b) / 2) and mean["acc"] == 0.75 and mean["aux"] is None
    total = sum_reducer(results)
    assert torch.equal(total["loss"], a + b) and total["acc"] == 1.5


def test_reducer_gradient_is_one_over_p() -> None:
    xs = [torch.ones(2, requires_grad=True) for _ in range(4)]
    mean_reducer(xs).sum().backward()
    assert all(torch.equal(x.grad, torch.full((2,), 0.25)) for x in xs)


@pytest.mark.parametrize("reducer", [mean_reducer, sum_reducer])
def test_reducer_errors(reducer) -> None:
    name = reducer.__name__
    with pytest.raises(ValueError, match=f"{name}: there are no results to reduce"):
        reducer([])
    with pytest.raises(ValueError, match=f"{name}: every result must have the same tree"):
        reducer([(torch.ones(1), 1.0), (torch.ones(1),)])


# -- the math of the docs: split, compute per part, reduce ----------------------------------


def _run_locally(fn, partitioner, reducer, *args):
    """What remote_sync_call does, without RPC: call fn on every part, then reduce."""
    return reducer([fn(*a, **kw) for _, a, kw in partitioner(*args)])


def _mse(w: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return ((x @ w - y) ** 2).mean()


def _sse(w: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return ((x @ w - y) ** 2).sum()


def _replicate_w(w, x, y):
    return [(r, (w, *a), kw) for r, a, kw in batch_partitioner(x, y)]


@pytest.mark.parametrize("batch", [6, 7])
def test_split_and_reduce_recovers_full_batch_loss_and_gradient(world_of, seed, batch) -> None:
    world_of(3)
    x, y = torch.randn(batch, 4, dtype=torch.float64), torch.randn(batch, 1, dtype=torch.float64)
    w = torch.randn(4, 1, dtype=torch.float64, requires_grad=True)
    full = _mse(w, x, y)
    (g_full,) = torch.autograd.grad(full, w)

    # Sums of per-sample losses, divided by B: exact for any split.
    summed = _run_locally(_sse, _replicate_w, sum_reducer, w, x, y) / batch
    (g_sum,) = torch.autograd.grad(summed, w)
    torch.testing.assert_close(summed, full, rtol=1e-14, atol=0)
    torch.testing.assert_close(g_sum, g_full, rtol=1e-14, atol=1e-15)

    # Mean of per-part means: exact only when the parts have equal sizes (B = 6 on 3 workers).
    averaged = _run_locally(_mse, _replicate_w, mean_reducer, w, x, y)
    (g_mean,) = torch.autograd.grad(averaged, w)
    if batch % 3 == 0:
        torch.testing.assert_close(averaged, full, rtol=1e-14, atol=0)
        torch.testing.assert_close(g_mean, g_full, rtol=1e-14, atol=1e-15)
    else:
        sizes = [a[1].shape[0] for _, a, _ in _replicate_w(w, x, y)]
        assert sizes == [3, 2, 2]
        assert not torch.allclose(averaged, full)
