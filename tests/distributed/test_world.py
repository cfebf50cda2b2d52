"""World info from torchrun's variables, rank-gated decorators, and the errors without RPC."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch
import torch.distributed.autograd as dist_autograd
import torch.distributed.rpc as rpc

import torchopt_lite.distributed as todist
from torchopt_lite.distributed import (
    WorldInfo,
    default_worker_name_format,
    get_local_rank,
    get_local_world_size,
    get_world_info,
    get_world_rank,
    get_world_size,
    not_on_rank,
    on_rank,
    rank_all,
    rank_non_zero_only,
    rank_zero_only,
)

ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE")


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch):
    for name in ENV:
        monkeypatch.delenv(name, raising=False)

    def set_env(**values: object) -> None:
        for name, value in values.items():
            monkeypatch.setenv(name, str(value))

    return set_env


def test_single_process_defaults(env) -> None:
    assert get_world_info() == WorldInfo(0, 1, 0, 1)
    assert (get_world_rank(), get_world_size(), get_local_rank(), get_local_world_size()) == (
        0,
        1,
        0,
        1,
    )
    assert get_world_info().worker_name == "worker0"
    env(RANK="", WORLD_SIZE=" ")  # empty counts as unset
    assert get_world_info() == WorldInfo(0, 1, 0, 1)


def test_reads_torchrun_variables_on_every_call(env) -> None:
    env(RANK=5, WORLD_SIZE=12, LOCAL_RANK=1, LOCAL_WORLD_SIZE=4)
    info = get_world_info()
    assert info == WorldInfo(5, 12, 1, 4) and info.rank == 5
    assert info.worker_name == "worker05"
    assert todist.get_rank is todist.get_world_rank
    assert (get_world_rank(), get_world_size(), get_local_rank(), get_local_world_size()) == (
        5,
        12,
        1,
        4,
    )
    env(RANK=6)
    assert get_world_rank() == 6


def test_default_worker_name_format_pads_to_world_size() -> None:
    names = [default_worker_name_format(r, 100, 0, 1) for r in (0, 7, 99)]
    assert names == ["worker000", "worker007", "worker099"]


@pytest.mark.parametrize(
    ("values", "match"),
    [
        ({"RANK": "one"}, "environment variable RANK must be an integer; got 'one'"),
        ({"RANK": 2, "WORLD_SIZE": 2}, r"RANK must be in \[0, WORLD_SIZE\) = \[0, 2\); got 2"),
        ({"WORLD_SIZE": 0}, "WORLD_SIZE must be >= 1; got 0"),
        ({"LOCAL_RANK": -1, "LOCAL_WORLD_SIZE": 2}, r"LOCAL_RANK must be in \[0, LOCAL_WORLD"),
    ],
)
def test_bad_environment(env, values: dict, match: str) -> None:
    env(**values)
    with pytest.raises(ValueError, match=match):
        get_world_info()


def test_rank_decorators_read_the_rank_at_call_time(env) -> None:
    def tag(x: int) -> str:
        """Doc."""
        return f"ran {x}"

    gated = {
        "on_rank(1, 2)": on_rank(1, 2)(tag),
        "not_on_rank(1)": not_on_rank(1)(tag),
        "rank_zero_only": rank_zero_only(tag),
        "rank_non_zero_only": rank_non_zero_only(tag),
        "rank_all": rank_all(tag),
    }
    runs_on = {
        "on_rank(1, 2)": {1, 2},
        "not_on_rank(1)": {0, 2},
        "rank_zero_only": {0},
        "rank_non_zero_only": {1, 2},
        "rank_all": {0, 1, 2},
    }
    for rank in (None, 0, 1, 2):  # None: the single-process defaults
        if rank is not None:
            env(RANK=rank, WORLD_SIZE=3)
        for name, fn in gated.items():
            expected = "ran 7" if (rank or 0) in runs_on[name] else None
            assert fn(7) == expected, (name, rank)
    assert gated["on_rank(1, 2)"].__name__ == "tag" and gated["rank_zero_only"].__doc__ == "Doc."


def test_rank_decorator_errors() -> None:
    with pytest.raises(ValueError, match=r"on_rank: pass at least one rank, e.g. @on_rank\(0\)"):
        on_rank()
    with pytest.raises(
        TypeError, match=r"not_on_rank: ranks must be ints; got <function get_world_info"
    ):
        not_on_rank(get_world_info)  # type: ignore[arg-type]  # @not_on_rank, no parentheses
    with pytest.raises(TypeError, match="ranks must be ints; got True"):
        on_rank(True)


def test_get_worker_id_for_ranks_without_rpc() -> None:
    assert todist.get_worker_id(3) == 3
    with pytest.raises(ValueError, match="get_worker_id: a rank must be >= 0; got -1"):
        todist.get_worker_id(-1)
    with pytest.raises(TypeError, match=r"id must be a rank \(int\), .*; got float"):
        todist.get_worker_id(1.0)  # type: ignore[arg-type]


def test_auto_init_rpc_argument_errors() -> None:
    with pytest.raises(TypeError, match="auto_init_rpc: worker_init_fn must be callable"):
        todist.auto_init_rpc(3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="auto_init_rpc: worker_name_format must be callable"):
        todist.auto_init_rpc(None, "worker{rank}")  # type: ignore[arg-type]


def test_remote_call_argument_errors() -> None:
    if not todist.is_available():
        pytest.skip("torch.distributed.rpc is not available in this build")
    with pytest.raises(TypeError, match="remote_async_call: func must be callable; got int"):
        todist.remote_async_call(3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"Invalid partitioner: 2\.5"):
        todist.remote_async_call(abs, partitioner=2.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"Invalid partitioner: .* returned \[\]; expected"):
        todist.remote_async_call(abs, partitioner=lambda *a, **k: [])

    @todist.parallelize()
    def local(x: torch.Tensor) -> torch.Tensor:
        return x

    with pytest.raises(TypeError, match=r"parallelize: .*<locals>.local must be defined at module"):
        local(torch.ones(2))


def test_without_rpc_everything_remote_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rpc, "is_available", lambda: False)
    monkeypatch.setattr(dist_autograd, "is_available", lambda: False)
    assert not todist.is_available() and not todist.autograd.is_available()

    @todist.auto_init_rpc()
    def main() -> None: ...

    calls = {
        "barrier": todist.barrier,
        "get_worker_id": lambda: todist.get_worker_id("worker1"),
        "remote_async_call": lambda: todist.remote_async_call(abs),
        "remote_sync_call": lambda: todist.remote_sync_call(abs),
        "parallelize": lambda: todist.parallelize()(abs)(torch.ones(2)),
        "parallelize_async": lambda: todist.parallelize_async()(abs)(torch.ones(2)),
        "auto_init_rpc": main,
        "backward": lambda: todist.autograd.backward(0, torch.ones(1)),
        "grad": lambda: todist.autograd.grad(0, torch.ones(1), torch.ones(1)),
    }
    for name, call in calls.items():
        with pytest.raises(RuntimeError, match=f"^{name}: torch.distributed.*not available"):
            call()
    # The pure parts still work.
    assert todist.batch_partitioner(torch.ones(2))[0][0] == 0


def test_import_on_a_build_without_distributed() -> None:
    """A fresh interpreter where torch reports no c10d, RPC or distributed autograd."""
    code = textwrap.dedent(
        """
        import sys
        import torch
        for name in ("_c10d_init", "_rpc_init", "_dist_autograd_init"):
            delattr(torch._C, name)
        for name in [m for m in sys.modules if m.startswith("torch.distributed")]:
            del sys.modules[name]
        import torchopt_lite.distributed as todist
        assert not todist.is_available() and not todist.autograd.is_available()
        assert not hasattr(todist.autograd, "get_gradients")
        assert todist.batch_partitioner(torch.ones(2))[0][0] == 0
        assert todist.sum_reducer([torch.ones(2), torch.ones(2)]).tolist() == [2.0, 2.0]
        try:
            todist.barrier()
        except RuntimeError as e:
            print(e)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("barrier: torch.distributed.rpc is not available")
