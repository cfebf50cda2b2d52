"""adjoint="checkpoint": the meta-gradient of the full unroll, with the graph kept per segment."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import optree
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.profiler import ProfilerActivity, profile

import torchopt_lite
from torchopt_lite.base import GradientTransformation
from torchopt_lite.diff.explicit import (
    batched_inner_loop,
    functional_loss,
    inner_loop,
    per_parameter_sgd,
)
from torchopt_lite.diff.explicit._checkpoint import segment_lengths


@pytest.fixture(autouse=True)
def _float64() -> Any:
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


GEN = torch.Generator().manual_seed(3)
X = torch.randn(3, 6, 2, generator=GEN, dtype=torch.float64)
Y = torch.sin(2 * X.sum(-1, keepdim=True))
XQ = torch.randn(3, 6, 2, generator=GEN, dtype=torch.float64)
YQ = torch.sin(2 * XQ.sum(-1, keepdim=True))

OPTIMIZERS: dict[str, Callable[[], GradientTransformation]] = {
    "sgd": lambda: torchopt_lite.sgd(0.1),
    "momentum": lambda: torchopt_lite.sgd(0.05, momentum=0.9),
    "adam": lambda: torchopt_lite.adam(0.02),
}
CASES = [
    (name, steps, k)
    for name in OPTIMIZERS
    for steps in (1, 7, 30)
    for k in sorted({1, 3, steps})
    if k <= steps
]


def make_net() -> nn.Module:
    torch.manual_seed(5)
    return nn.Sequential(nn.Linear(2, 6), nn.Tanh(), nn.Linear(6, 1)).double()


def regularized(net: nn.Module, lam: Tensor) -> Callable[..., Tensor]:
    """MSE plus ``lam * |theta|^2``: ``lam`` reaches the loop only through this closure."""
    mse = functional_loss(net, F.mse_loss)

    def loss_fn(params: dict[str, Tensor], x: Tensor, y: Tensor) -> Tensor:
        penalty = sum(p.pow(2).sum() for p in params.values())
        return mse(params, x, y) + lam * penalty

    return loss_fn


def meta_gradient(adjoint: Any, opt_name: str, steps: int, k: int | None) -> list[Tensor]:
    """d(outer loss)/d(theta_0, lam, x): the data tensor ``x`` requires grad too."""
    net = make_net()
    params0 = dict(net.named_parameters())
    lam = torch.tensor(0.05, requires_grad=True)
    x = X[0].clone().requires_grad_()
    adapt = inner_loop(
        regularized(net, lam), OPTIMIZERS[opt_name](), steps, adjoint=adjoint, checkpoints=k
    )
    out = adapt(params0, x, Y[0])
    outer = functional_loss(net, F.mse_loss)(out.params, XQ[0], YQ[0]) + out.losses.sum()
    return list(torch.autograd.grad(outer, [*params0.values(), lam, x]))


def assert_all_close(
    got: Sequence[Tensor], want: Sequence[Tensor], rtol: float, atol: float
) -> None:
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, rtol=rtol, atol=atol)


@pytest.mark.parametrize(("opt_name", "steps", "k"), CASES)
def test_checkpoint_meta_gradient_equals_full_unroll(opt_name: str, steps: int, k: int) -> None:
    want = meta_gradient("unroll", opt_name, steps, None)
    got = meta_gradient("checkpoint", opt_name, steps, k)
    assert all(g.abs().max() > 1e-6 for g in want)  # every input reaches the outer loss
    assert_all_close(got, want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("opt_name", list(OPTIMIZERS))
def test_default_sqrt_segments_and_second_order_terms(opt_name: str) -> None:
    want = meta_gradient("unroll", opt_name, 12, None)
    assert_all_close(meta_gradient("checkpoint", opt_name, 12, None), want, 1e-10, 1e-12)
    # The first-order meta-gradient differs from it by more than the tolerance: the
    # equality above includes the Hessian terms the rebuilt segments carry.
    net = make_net()
    params0 = dict(net.named_parameters())
    lam = torch.tensor(0.05, requires_grad=True)
    first = inner_loop(regularized(net, lam), OPTIMIZERS[opt_name](), 12, first_order=True)
    out = first(params0, X[0].clone(), Y[0])
    fo = torch.autograd.grad(
        functional_loss(net, F.mse_loss)(out.params, XQ[0], YQ[0]) + out.losses.sum(),
        list(params0.values()),
    )
    assert max((a - b).abs().max() for a, b in zip(fo, want, strict=False)) > 1e-4


def test_segment_lengths() -> None:
    assert segment_lengths(30, None) == [5, 5, 5, 5, 5, 5]
    assert segment_lengths(10, None) == [3, 3, 2, 2]
    assert segment_lengths(1, None) == [1]
    assert segment_lengths(7, 3) == [3, 2, 2]
    assert segment_lengths(7, 7) == [1] * 7


def test_first_order_checkpoint_equals_first_order_unroll() -> None:
    net = make_net()
    params0 = dict(net.named_parameters())
    loss_fn = functional_loss(net, F.mse_loss)
    grads = []
    for adjoint in ("unroll", "checkpoint"):
        out = inner_loop(loss_fn, torchopt_lite.adam(0.02), 9, first_order=True, adjoint=adjoint)(
            params0, X[0], Y[0]
        )
        grads.append(torch.autograd.grad(loss_fn(out.params, XQ[0], YQ[0]), list(params0.values())))
    assert_all_close(grads[1], grads[0], rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name", ["per_parameter_sgd", "adam"])
def test_learnable_lr_captured_by_the_optimizer(name: str) -> None:
    net = make_net()
    params0 = dict(net.named_parameters())
    loss_fn = functional_loss(net, F.mse_loss)
    lr = torch.tensor(0.2 if name == "per_parameter_sgd" else 0.02, requires_grad=True)
    opt = per_parameter_sgd(lr) if name == "per_parameter_sgd" else torchopt_lite.adam(lr)
    grads = []
    modes: tuple[tuple[Any, Any], ...] = (("unroll", None), ("checkpoint", 2))
    for adjoint, k in modes:
        adapt = inner_loop(loss_fn, opt, 8, adjoint=adjoint, checkpoints=k)
        out = adapt(params0, X[0], Y[0])
        grads.append(
            torch.autograd.grad(loss_fn(out.params, XQ[0], YQ[0]), [lr, *params0.values()])
        )
    assert_all_close(grads[1], grads[0], rtol=1e-10, atol=1e-14)


def test_params_without_grad_and_state_match() -> None:
    """theta_0 need not require grad; the final params and optimizer state equal the unroll's."""
    w = torch.tensor(0.7, requires_grad=True)

    def loss_fn(params: dict[str, Tensor], a: Tensor) -> Tensor:
        return (w * params["v"] - a).pow(2).sum() + params["v"].pow(4).sum()

    a = torch.tensor([1.0, -2.0, 0.5])
    full = inner_loop(loss_fn, torchopt_lite.adam(0.05), 10)({"v": torch.zeros(3)}, a)
    ckpt = inner_loop(loss_fn, torchopt_lite.adam(0.05), 10, adjoint="checkpoint", checkpoints=4)(
        {"v": torch.zeros(3)}, a
    )
    assert_all_close(optree.tree_leaves(ckpt.state), optree.tree_leaves(full.state), 1e-13, 1e-15)
    torch.testing.assert_close(ckpt.losses, full.losses, rtol=1e-13, atol=1e-15)
    (g_full,) = torch.autograd.grad(full.params["v"].sum(), w)
    (g_ckpt,) = torch.autograd.grad(ckpt.params["v"].sum(), w)
    torch.testing.assert_close(g_ckpt, g_full, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("opt_name", ["momentum", "adam"])
@pytest.mark.parametrize("chunk_size", [None, 2])
def test_batched_checkpoint_equals_batched_unroll(opt_name: str, chunk_size: int | None) -> None:
    net = make_net()
    params0 = dict(net.named_parameters())
    lam = torch.tensor(0.05, requires_grad=True)
    loss_fn = regularized(net, lam)
    query = functional_loss(net, F.mse_loss)
    results = []
    modes: tuple[tuple[Any, Any], ...] = (("unroll", None), ("checkpoint", 3))
    for adjoint, k in modes:
        adapt = batched_inner_loop(
            loss_fn,
            OPTIMIZERS[opt_name](),
            7,
            adjoint=adjoint,
            checkpoints=k,
            chunk_size=chunk_size,
        )
        out = adapt(params0, X, Y)
        outer = torch.func.vmap(query)(out.params, XQ, YQ).sum()
        grads = torch.autograd.grad(outer, [*params0.values(), lam])
        results.append((out, grads))
    (full, g_full), (ckpt, g_ckpt) = results
    assert ckpt.losses.shape == full.losses.shape == (3, 7)
    torch.testing.assert_close(ckpt.losses, full.losses, rtol=1e-12, atol=1e-14)
    assert_all_close(optree.tree_leaves(ckpt.params), optree.tree_leaves(full.params), 1e-12, 1e-14)
    assert_all_close(optree.tree_leaves(ckpt.state), optree.tree_leaves(full.state), 1e-12, 1e-14)
    assert_all_close(list(g_ckpt), list(g_full), rtol=1e-10, atol=1e-13)


def test_batched_checkpoint_with_a_shared_argument() -> None:
    """in_dims=None for a learnable discount shared by every task."""
    rewards = torch.randn(2, 4, 5, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    features = torch.randn(4, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64)

    def loss_fn(params: dict[str, Tensor], gamma: Tensor, r: Tensor) -> Tensor:
        returns = r @ gamma ** torch.arange(5, dtype=torch.float64)
        return 0.5 * (returns - features @ params["w"]).pow(2).sum()

    gamma = torch.tensor(0.8, requires_grad=True)
    grads = []
    for adjoint in ("unroll", "checkpoint"):
        adapt = batched_inner_loop(
            loss_fn, torchopt_lite.adam(0.05), 6, in_dims=(None, 0), adjoint=adjoint
        )
        out = adapt({"w": torch.zeros(3)}, gamma, rewards)
        grads.append(torch.autograd.grad(out.params["w"].pow(2).sum(), gamma)[0])
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-10, atol=1e-14)


def test_truncated_equals_truncate_every() -> None:
    """Truncation cuts theta_0 off; lam (in the loss) keeps the last window's meta-gradient."""
    net = make_net()
    params0 = dict(net.named_parameters())
    lam = torch.tensor(0.05, requires_grad=True)
    loss_fn = regularized(net, lam)
    query = functional_loss(net, F.mse_loss)
    spellings: list[dict[str, Any]] = [
        {"truncate_every": 3},
        {"adjoint": "truncated", "truncate_every": 3},
        {},
    ]
    grads = []
    for kwargs in spellings:
        out = inner_loop(loss_fn, torchopt_lite.adam(0.02), 8, **kwargs)(params0, X[0], Y[0])
        grads.append(torch.autograd.grad(query(out.params, XQ[0], YQ[0]), lam)[0])
    torch.testing.assert_close(grads[1], grads[0], rtol=0, atol=0)
    assert (grads[2] - grads[0]).abs() > 1e-6  # the window matters
    batched = []
    for kwargs in spellings[:2]:
        out = batched_inner_loop(loss_fn, torchopt_lite.adam(0.02), 8, **kwargs)(params0, X, Y)
        batched.append(torch.autograd.grad(out.params["2.weight"].sum(), lam)[0])
    torch.testing.assert_close(batched[1], batched[0], rtol=0, atol=0)


def allocations(adjoint: Any, steps: int) -> tuple[int, int, int]:
    """Bytes allocated by a meta-gradient, from the CPU allocator's events (torch.profiler).

    Returns what the forward pass leaves allocated (the graph's saved tensors, the boundaries),
    the peak over forward and backward, and what is left when the outputs are gone.
    """
    net = nn.Sequential(nn.Linear(4, 64), nn.Tanh(), nn.Linear(64, 1)).double()
    params0 = dict(net.named_parameters())
    x = torch.randn(64, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    loss_fn = functional_loss(net, F.mse_loss)
    adapt = inner_loop(loss_fn, torchopt_lite.adam(1e-3), steps, adjoint=adjoint)
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        outer = loss_fn(adapt(params0, x, x[:, :1]).params, x, x[:, :1])
        with torch.profiler.record_function("backward"):
            grads = torch.autograd.grad(outer, list(params0.values()))
        del outer, grads
    events = sorted(
        (e.start_ns(), e.name(), e.nbytes())
        for e in prof.profiler.kineto_results.events()
        if e.name() in ("[memory]", "backward")
    )
    current = peak = held = 0
    for _, name, nbytes in events:
        if name == "backward":
            held = current
        else:
            current += nbytes
            peak = max(peak, current)
    return held, peak, current


MEASURE = """
import json, torch
torch.set_default_dtype(torch.float64)
from tests.explicit.test_checkpoint_adjoint import allocations
print(json.dumps([allocations("unroll", 36), allocations("checkpoint", 36)]))
"""


def test_checkpoint_bounds_memory() -> None:
    """Measured, not assumed: 36 steps in 6 segments, against the full unroll.

    In a fresh process: the profiler's event buffers, once freed, leave heap that later RSS
    tests in this process (test_memory.py) would fill without growing.
    """
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [sys.executable, "-c", MEASURE], capture_output=True, text=True, check=True, timeout=300,
        cwd=root,
    )  # fmt: skip
    (held_unroll, peak_unroll, left_unroll), (held, peak, left) = json.loads(
        out.stdout.splitlines()[-1]
    )
    assert held_unroll > 10 * held > 0, (held_unroll, held)  # 6 boundaries vs 36 step graphs
    assert peak_unroll > 3 * peak, (peak_unroll, peak)  # one segment rebuilt at a time
    assert left == left_unroll == 0  # nothing kept alive by a reference cycle


def test_adjoint_argument_errors() -> None:
    loss_fn = functional_loss(make_net(), F.mse_loss)
    opt = torchopt_lite.sgd(0.1)
    with pytest.raises(
        ValueError, match=r"inner_loop: adjoint must be one of 'unroll', 'checkpoint'"
    ):
        inner_loop(loss_fn, opt, 3, adjoint="revolve")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"adjoint must be one of .*; got 1"):
        inner_loop(loss_fn, opt, 3, adjoint=1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"adjoint='truncated' needs truncate_every=k"):
        inner_loop(loss_fn, opt, 3, adjoint="truncated")
    with pytest.raises(ValueError, match=r"truncate_every=2 applies to adjoint='truncated' only"):
        inner_loop(loss_fn, opt, 3, adjoint="checkpoint", truncate_every=2)
    with pytest.raises(ValueError, match=r"checkpoints=2 applies to adjoint='checkpoint' only"):
        inner_loop(loss_fn, opt, 3, checkpoints=2)
    with pytest.raises(TypeError, match=r"checkpoints must be None or an int in \[1, steps\]"):
        inner_loop(loss_fn, opt, 3, adjoint="checkpoint", checkpoints=2.0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"checkpoints must be .*; got bool"):
        inner_loop(loss_fn, opt, 3, adjoint="checkpoint", checkpoints=True)
    with pytest.raises(
        ValueError, match=r"checkpoints must be None or an int in \[1, steps=3\]; got 4"
    ):
        inner_loop(loss_fn, opt, 3, adjoint="checkpoint", checkpoints=4)
    with pytest.raises(ValueError, match=r"got 0"):
        inner_loop(loss_fn, opt, 3, adjoint="checkpoint", checkpoints=0)
    with pytest.raises(ValueError, match=r"batched_inner_loop: adjoint must be one of"):
        batched_inner_loop(loss_fn, opt, 3, adjoint="full")  # type: ignore[arg-type]


@pytest.mark.parametrize("with_losses", [False, True])
def test_each_segment_is_rerun_once(with_losses: bool) -> None:
    """Time, counted: the backward pass reruns every step once (one more forward pass)."""
    net = make_net()
    params0 = dict(net.named_parameters())
    mse = functional_loss(net, F.mse_loss)
    calls = [0]

    def loss_fn(params: dict[str, Tensor], x: Tensor, y: Tensor) -> Tensor:
        calls[0] += 1
        return mse(params, x, y)

    out = inner_loop(loss_fn, torchopt_lite.adam(0.02), 12, adjoint="checkpoint", checkpoints=3)(
        params0, X[0], Y[0]
    )
    assert calls[0] == 12
    outer = mse(out.params, XQ[0], YQ[0]) + (out.losses.sum() if with_losses else 0)
    torch.autograd.grad(outer, list(params0.values()))
    assert calls[0] == 24


def test_a_loss_that_changes_on_rerun_raises() -> None:
    calls = [0]

    def loss_fn(params: dict[str, Tensor]) -> Tensor:
        calls[0] += 1
        extra = params["w"].pow(3).sum() * 0 if calls[0] > 2 else 0
        return params["w"].pow(2).sum() + extra

    w0 = torch.ones(2, requires_grad=True)
    out = inner_loop(loss_fn, torchopt_lite.sgd(0.1), 2, adjoint="checkpoint")({"w": w0})
    with pytest.raises(RuntimeError, match="rerunning a segment in the backward pass saved"):
        torch.autograd.grad(out.params["w"].sum(), w0)


def test_a_random_loss_is_replayed_with_the_same_noise() -> None:
    """Noise drawn in the loss (dropout-like): the rerun restores the random state."""
    net = make_net()
    params0 = dict(net.named_parameters())
    mse = functional_loss(net, F.mse_loss)

    def noisy(params: dict[str, Tensor], x: Tensor, y: Tensor) -> Tensor:
        return mse(params, x + 0.1 * torch.randn_like(x), y)

    grads = []
    for adjoint in ("unroll", "checkpoint"):
        torch.manual_seed(0)
        out = inner_loop(noisy, torchopt_lite.adam(0.02), 8, adjoint=adjoint)(params0, X[0], Y[0])
        torch.manual_seed(1)  # the backward pass draws from another state
        grads.append(torch.autograd.grad(mse(out.params, XQ[0], YQ[0]), list(params0.values())))
    assert_all_close(grads[1], grads[0], rtol=1e-10, atol=1e-12)


def test_repeated_backward_and_second_meta_derivative() -> None:
    """retain_graph reruns the segments again; create_graph differentiates the meta-gradient."""
    a = torch.randn(5, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    b = torch.randn(5, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    lam = torch.tensor(0.3, requires_grad=True)

    def loss_fn(params: dict[str, Tensor], x: Tensor) -> Tensor:
        w = params["w"]
        return (a @ torch.tanh(w) - x).pow(2).sum() + lam * w.pow(2).sum()

    results = []
    modes: tuple[tuple[Any, Any], ...] = (("unroll", None), ("checkpoint", 2))
    for adjoint, k in modes:
        w0 = torch.ones(3, requires_grad=True)
        out = inner_loop(loss_fn, torchopt_lite.adam(0.05), 6, adjoint=adjoint, checkpoints=k)(
            {"w": w0}, b
        )
        outer = out.params["w"].pow(2).sum()
        first = torch.autograd.grad(outer, [lam, w0], retain_graph=True)
        again = torch.autograd.grad(outer, [lam, w0], retain_graph=True)
        outer.backward(retain_graph=True)
        (g_lam,) = torch.autograd.grad(outer, lam, create_graph=True)
        (h_lam,) = torch.autograd.grad(g_lam, lam)
        assert lam.grad is not None and w0.grad is not None
        results.append([*first, *again, h_lam, lam.grad.clone(), w0.grad])
        lam.grad = None
    assert results[0][-3].abs() > 1.0  # the second derivative is not trivially zero
    assert_all_close(results[1], results[0], rtol=1e-10, atol=1e-13)


def test_autocast_state_is_restored_for_the_rerun() -> None:
    """A loop run under CPU autocast (bfloat16) is rerun under it in the backward pass."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 1)).float()
    params0 = dict(net.named_parameters())
    x = torch.randn(32, 4, dtype=torch.float32)
    loss_fn = functional_loss(net, F.mse_loss)
    grads = []
    for adjoint in ("unroll", "checkpoint"):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = inner_loop(loss_fn, torchopt_lite.sgd(0.1), 6, adjoint=adjoint)(
                params0, x, x[:, :1]
            )
            outer = loss_fn(out.params, x, x[:, :1])
        grads.append(torch.autograd.grad(outer, list(params0.values())))
    assert_all_close(grads[1], grads[0], rtol=0, atol=0)  # the same bfloat16 operations
