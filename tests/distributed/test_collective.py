"""The collectives path: local gloo processes on 127.0.0.1 against a single-process run.

One spawn per world size (2 and 4) runs the meta-training variants of ``_collective_workers``
once (module fixtures); each test compares one part of what rank 0 saw with the same meta-batch
trained here, without a process group, in float64.
"""

from __future__ import annotations

import multiprocessing
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.multiprocessing as mp
from torch import nn

import torchopt_lite.distributed as todist
from torchopt_lite.distributed import collective

from . import _collective_workers as workers
from ._spawn import free_loopback_port, join_or_fail

TIMEOUT_S = 60  # the 4-process run takes ~10 s on 2 cores; a hang must not hold the suite


def _spawn(fn: Any, args: tuple[Any, ...], nprocs: int) -> None:
    # A fork server that has imported torch once starts the ranks in ~1 s instead of ~5 s each.
    multiprocessing.set_forkserver_preload(["torch", "torchopt_lite", workers.__name__])
    context = mp.start_processes(
        fn, args=args, nprocs=nprocs, join=False, start_method="forkserver"
    )
    join_or_fail(context, TIMEOUT_S, f"the {nprocs} ranks")


def _run_ranks(world_size: int, folder: Path) -> dict[str, Any]:
    if not torch.distributed.is_available():
        pytest.skip("torch.distributed is not available in this PyTorch build")
    out, checkpoint = folder / "rank0.pt", folder / "meta.pt"
    args = (world_size, free_loopback_port(), str(out), str(checkpoint))
    _spawn(workers.main, args, nprocs=world_size)
    result = torch.load(out, weights_only=False)
    result["world_size"] = world_size
    return result


@pytest.fixture(scope="module")
def seen2(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """What rank 0 of 2 saw: every variant (overlap, buckets, DDP, checkpoint) runs here."""
    return _run_ranks(2, Path(tmp_path_factory.mktemp("collective2")))


@pytest.fixture(scope="module")
def seen4(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """What rank 0 of 4 saw: the four inner-loop kinds only (4 processes on 2 cores are slow)."""
    return _run_ranks(4, Path(tmp_path_factory.mktemp("collective4")))


@pytest.fixture(params=[2, 4], ids=["2ranks", "4ranks"])
def seen(request: pytest.FixtureRequest) -> dict[str, Any]:
    return request.getfixturevalue(f"seen{request.param}")


@pytest.fixture(scope="module")
def reference() -> dict[str, Any]:
    """Every variant trained in this process (no process group: a world of size 1)."""
    assert not torch.distributed.is_initialized()
    runs = {kind: workers.meta_train(kind) for kind in workers.KINDS}
    return {k: workers._public(v) for k, v in runs.items()}


def _assert_same_run(got: dict[str, Any], expected: dict[str, Any]) -> None:
    assert len(got["grads"]) == len(expected["grads"]) == workers.META_STEPS
    for step_got, step_expected in zip(got["grads"], expected["grads"], strict=True):
        for g, e in zip(step_got, step_expected, strict=True):
            torch.testing.assert_close(g, e, rtol=1e-10, atol=1e-12)
    for p, e in zip(got["params"], expected["params"], strict=True):
        torch.testing.assert_close(p, e, rtol=1e-10, atol=1e-12)


def test_process_group_from_torchrun_variables(seen) -> None:
    assert seen["initialized"] and seen["again"]
    assert seen["world"] == (0, seen["world_size"])


@pytest.mark.parametrize("kind", list(workers.KINDS))
def test_meta_gradient_equals_single_process(seen, reference, kind: str) -> None:
    _assert_same_run(seen[kind], reference[kind])


@pytest.mark.parametrize(
    "variant", ["no_overlap_small_buckets", "overlap_small_buckets", "per_task_backward"]
)
def test_buckets_overlap_and_repeated_backward_agree(seen2, reference, variant: str) -> None:
    _assert_same_run(seen2[variant], reference["meta_sgd"])
    if "small" in variant:
        assert seen2[variant]["buckets"] == 4  # one per parameter of the MLP


def test_distributed_data_parallel_around_the_meta_model(seen2, reference) -> None:
    """DDP reduces the final meta-gradient only (inner ``autograd.grad`` calls fire no hooks)."""
    _assert_same_run(seen2["ddp"], reference["meta_sgd"])  # uneven 3 + 2, losses scaled W n_r / N
    assert "pass the unwrapped meta-model (ddp.module)" in seen2["ddp_error"]


def test_checkpoint_resume_on_every_rank(seen2, reference) -> None:
    resumed = seen2["resumed"]
    for p, e in zip(resumed["params"], reference["meta_adam"]["params"], strict=True):
        torch.testing.assert_close(p, e, rtol=1e-10, atol=1e-12)
    assert seen2["spread"] == 0.0  # all ranks loaded and stepped to the same parameters


@pytest.mark.parametrize("hang", [False, True], ids=["dies", "hangs"])
def test_dead_or_hung_rank_raises_within_the_timeout(tmp_path: Path, hang: bool) -> None:
    out = tmp_path / "rank0.pt"
    _spawn(workers.die_or_hang, (free_loopback_port(), str(out), hang), nprocs=2)
    result = torch.load(out, weights_only=False)
    assert result["error"] is not None
    assert "the all_reduce of bucket 0 did not complete on rank 0" in result["error"]
    assert "a peer rank died or hangs" in result["error"]
    assert result["cause"] != "None"  # chained from the backend's error
    assert result["seconds"] < 13.0  # process group timeout: 3 s


# --- a world of size 1 and the pieces -----------------------------------------------------------


@pytest.mark.parametrize("num_tasks", range(0, 11))
@pytest.mark.parametrize("world_size", [1, 2, 3, 4, 7])
def test_task_shard_is_a_balanced_contiguous_partition(num_tasks: int, world_size: int) -> None:
    shares = [todist.task_shard(num_tasks, r, world_size) for r in range(world_size)]
    assert [i for s in shares for i in s] == list(range(num_tasks))
    sizes = [len(s) for s in shares]
    assert max(sizes) - min(sizes) <= 1
    assert sizes == sorted(sizes, reverse=True)  # earlier ranks take the extra tasks


def test_task_shard_examples_and_defaults() -> None:
    assert [list(todist.task_shard(5, r, 4)) for r in range(4)] == [[0, 1], [2], [3], [4]]
    assert list(todist.task_shard(2, 3, 4)) == []
    assert todist.task_shard(5) == range(5)  # no process group: rank 0 of 1


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"num_tasks": -1}, ValueError, "num_tasks must be >= 0"),
        ({"num_tasks": 2.0}, TypeError, "num_tasks must be an integer"),
        ({"num_tasks": 2, "world_size": 0}, ValueError, "world_size must be >= 1"),
        ({"num_tasks": 2, "rank": -1, "world_size": 2}, ValueError, "rank must be >= 0"),
        ({"num_tasks": 2, "rank": 2, "world_size": 2}, ValueError, r"rank must be < world_size"),
        ({"num_tasks": 2, "rank": True}, TypeError, "rank must be an integer"),
    ],
)
def test_task_shard_errors(kwargs: dict, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        todist.task_shard(**kwargs)


def test_task_generator_depends_on_seed_step_and_task_only() -> None:
    def draw(seed: int, step: int, task: int) -> torch.Tensor:
        return torch.rand(4, generator=todist.task_generator(seed, step, task))

    torch.testing.assert_close(draw(1, 2, 3), draw(1, 2, 3), rtol=0, atol=0)
    base = draw(1, 2, 3)
    for other in [draw(0, 2, 3), draw(1, 3, 3), draw(1, 2, 4), draw(1, 3, 2)]:
        assert not torch.equal(base, other)
    # The task's data does not depend on which rank of which world takes it.
    for world_size in (1, 2, 4):
        for rank in range(world_size):
            for task in todist.task_shard(5, rank, world_size):
                torch.testing.assert_close(
                    workers.sinusoid(1, task), workers.sinusoid(1, task), rtol=0, atol=0
                )
                torch.testing.assert_close(draw(0, 1, task), draw(0, 1, task), rtol=0, atol=0)


@pytest.mark.parametrize(
    ("args", "error", "match"),
    [((-1, 0, 0), ValueError, "seed must be >= 0"), ((0, 0.5, 0), TypeError, "step must be an")],
)
def test_task_generator_errors(args: tuple, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        todist.task_generator(*args)


def test_world_of_one_without_a_process_group(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in ("WORLD_SIZE", "RANK", "MASTER_ADDR"):
        monkeypatch.delenv(variable, raising=False)
    assert todist.init_process_group() is False
    assert not torch.distributed.is_initialized()
    assert (todist.collective_rank(), todist.collective_world_size()) == (0, 1)
    net = nn.Linear(3, 2).double()
    frozen = nn.Parameter(torch.ones(2, dtype=torch.float64))  # no gradient reaches it
    net(torch.ones(4, 3, dtype=torch.float64)).sum().backward()
    expected = [0.25 * p.grad for p in net.parameters()]
    reducer = todist.MetaGradientAllReduce([*net.parameters(), frozen])
    reducer.all_reduce(0.25)  # scale only
    for p, e in zip(net.parameters(), expected, strict=True):
        torch.testing.assert_close(p.grad, e, rtol=0, atol=0)
    torch.testing.assert_close(frozen.grad, torch.zeros(2, dtype=torch.float64), rtol=0, atol=0)


@pytest.mark.parametrize("overlap", [True, False])
def test_sync_without_a_process_group_scales(overlap: bool) -> None:
    net = nn.Linear(2, 1)
    reducer = todist.MetaGradientAllReduce(net, overlap=overlap)
    with reducer.sync(weight=0.5):
        net(torch.ones(3, 2)).sum().backward()
    torch.testing.assert_close(net.bias.grad, torch.tensor([1.5]), rtol=0, atol=0)


def test_buckets_split_by_cap_dtype_and_keep_every_parameter_once() -> None:
    a, b = torch.zeros(300, requires_grad=True), torch.zeros(300, requires_grad=True)
    c = torch.zeros(10, dtype=torch.float64, requires_grad=True)
    one_each = todist.MetaGradientAllReduce([a, b, c, a], bucket_cap_mb=1000 / 2**20)
    assert [[id(p) for p in bucket] for bucket in one_each.buckets] == [[id(c)], [id(b)], [id(a)]]
    together = todist.MetaGradientAllReduce([a, b, c])
    assert [len(bucket) for bucket in together.buckets] == [1, 2]  # float64 apart from float32


def test_single_process_run_is_the_mean_over_the_meta_batch() -> None:
    """The reference itself: one process, weight 1, equals the hand-written mean of task losses."""
    run = workers.meta_train("meta_sgd", steps=1)
    net = workers.mlp()
    losses = workers.KINDS["meta_sgd"][1](net, 0, range(workers.NUM_TASKS))
    expected = torch.autograd.grad(sum(losses) / workers.NUM_TASKS, list(net.parameters()))
    for g, e in zip(run["grads"][0], expected, strict=True):
        torch.testing.assert_close(g, e, rtol=1e-12, atol=0)


def test_checkpoint_round_trip_resumes_exactly(tmp_path: Path) -> None:
    straight = workers.meta_train("meta_adam")
    first = workers.meta_train("meta_adam", steps=2)
    path = tmp_path / "meta.pt"
    todist.save_checkpoint(
        path, step=2, meta_params=first["model"], meta_optimizer=first["outer"], extra={"seed": 0}
    )
    assert [f.name for f in tmp_path.iterdir()] == ["meta.pt"]  # no temporary file left
    net = workers.mlp()
    outer = torch.optim.Adam(net.parameters(), lr=0.01)
    extra: dict[str, Any] = {}
    step = todist.load_checkpoint(path, meta_params=net, meta_optimizer=outer, extra=extra)
    assert (step, extra) == (2, {"seed": 0})
    resumed = workers.meta_train("meta_adam", steps=1, model=net, outer=outer, first_step=step)
    for p, e in zip(resumed["params"], straight["params"], strict=True):
        torch.testing.assert_close(p, e, rtol=0, atol=0)


def test_checkpoint_errors(tmp_path: Path) -> None:
    net = nn.Linear(1, 1)
    path = tmp_path / "meta.pt"
    with pytest.raises(TypeError, match=r"meta_params must be an nn\.Module"):
        todist.save_checkpoint(path, step=0, meta_params=[net.weight])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="step must be >= 0"):
        todist.save_checkpoint(path, step=-1, meta_params=net)
    with pytest.raises(TypeError, match="extra must be a dict"):
        todist.save_checkpoint(path, step=0, meta_params=net, extra=[1])  # type: ignore[arg-type]
    todist.save_checkpoint(path, step=0, meta_params=net)
    with pytest.raises(TypeError, match=r"meta_params must be an nn\.Module"):
        todist.load_checkpoint(path, meta_params=None)  # type: ignore[arg-type]
    outer = torch.optim.SGD(net.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="holds no optimizer state"):
        todist.load_checkpoint(path, meta_params=net, meta_optimizer=outer)


def test_rank_zero_print(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    todist.rank_zero_print("step", 3)
    monkeypatch.setattr(collective, "collective_rank", lambda: 1)
    todist.rank_zero_print("not shown")
    assert capsys.readouterr().out == "step 3\n"


def test_init_process_group_errors() -> None:
    with pytest.raises(TypeError, match="timeout must be a number"):
        todist.init_process_group(timeout="5")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="timeout must be positive"):
        todist.init_process_group(timeout=0.0)
    with pytest.raises(TypeError, match="backend must be a string"):
        todist.init_process_group(backend=1)  # type: ignore[arg-type]


def test_reducer_errors() -> None:
    net = nn.Linear(1, 1)
    name = "MetaGradientAllReduce"
    with pytest.raises(ValueError, match=f"{name}: params is empty"):
        todist.MetaGradientAllReduce([])
    with pytest.raises(TypeError, match="params must hold tensors"):
        todist.MetaGradientAllReduce([1.0])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="params must be an iterable of tensors"):
        todist.MetaGradientAllReduce(net.weight)
    with pytest.raises(ValueError, match="leaf tensors that require grad"):
        todist.MetaGradientAllReduce([net.weight * 2])
    with pytest.raises(ValueError, match="bucket_cap_mb must be positive"):
        todist.MetaGradientAllReduce(net, bucket_cap_mb=0)
    with pytest.raises(TypeError, match="bucket_cap_mb must be a number"):
        todist.MetaGradientAllReduce(net, bucket_cap_mb=None)  # type: ignore[arg-type]
    reducer = todist.MetaGradientAllReduce(net)
    with pytest.raises(ValueError, match="weight must be finite and >= 0"):
        reducer.all_reduce(-0.5)
    with (
        pytest.raises(TypeError, match="weight must be a number"),
        reducer.sync(weight=None),  # type: ignore[arg-type]
    ):
        pass
