"""clip_grad_norm against torch.nn.utils.clip_grad_norm_ (values and gradient); hooks fire."""

from __future__ import annotations

import pytest
import torch

import torchopt_lite
from torchopt_lite.hook import nan_to_num_hook, register_hook, zero_nan_hook


def _grads(scale: float) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return {
        "w": scale * torch.randn(3, 4, generator=gen, dtype=torch.float64),
        "b": scale * torch.randn(5, generator=gen, dtype=torch.float64),
    }


@pytest.mark.parametrize("inplace", [True, False], ids=["inplace", "pure"])
@pytest.mark.parametrize("norm_type", [2.0, 1.0, float("inf")])
@pytest.mark.parametrize("max_norm", [0.5, 1e3], ids=["clipped", "unclipped"])
def test_clip_grad_norm_matches_torch(max_norm: float, norm_type: float, inplace: bool) -> None:
    grads = _grads(3.0)
    ref = {k: v.clone().requires_grad_(True) for k, v in grads.items()}
    for k, p in ref.items():
        p.grad = grads[k].clone()
    total = torch.nn.utils.clip_grad_norm_(list(ref.values()), max_norm, norm_type)
    t = torchopt_lite.clip_grad_norm(max_norm, norm_type)
    got, _ = t.update({k: v.clone() for k, v in grads.items()}, t.init(grads), inplace=inplace)
    for k in grads:
        torch.testing.assert_close(got[k], ref[k].grad, rtol=1e-14, atol=1e-15)
    clipped = float(total) > max_norm
    assert clipped == (max_norm == 0.5)


def test_clip_grad_norm_gradient() -> None:
    """The out-of-place clip is differentiable through the norm (TorchOpt's is not)."""
    grads = {k: v.requires_grad_(True) for k, v in _grads(3.0).items()}
    t = torchopt_lite.clip_grad_norm(0.5)
    clipped, _ = t.update(grads, t.init(grads), inplace=False)
    weights = {
        k: torch.linspace(-1, 1, v.numel()).double().reshape(v.shape) for k, v in grads.items()
    }
    loss = sum((clipped[k] * weights[k]).sum() for k in grads)
    got = torch.autograd.grad(loss, list(grads.values()))

    flat = torch.cat([v.reshape(-1) for v in grads.values()])
    coef = torch.clamp(0.5 / (torch.linalg.vector_norm(flat) + 1e-6), max=1.0)
    ref_loss = sum((grads[k] * coef * weights[k]).sum() for k in grads)
    expected = torch.autograd.grad(ref_loss, list(grads.values()))
    for g, e in zip(got, expected, strict=True):
        torch.testing.assert_close(g, e, rtol=1e-12, atol=1e-14)
    leaves = tuple(v.detach().clone().requires_grad_(True) for v in grads.values())

    def f(*xs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out, _ = t.update(list(xs), t.init(list(xs)), inplace=False)
        return tuple(out)

    assert torch.autograd.gradcheck(f, leaves)


def test_clip_in_a_chain_matches_torch_then_sgd() -> None:
    opt = torchopt_lite.chain(torchopt_lite.clip_grad_norm(1.0), torchopt_lite.sgd(lr=0.1))
    grads = _grads(5.0)
    params = {k: torch.zeros_like(v) for k, v in grads.items()}
    ref = {k: torch.zeros_like(v).requires_grad_(True) for k, v in grads.items()}
    for k, p in ref.items():
        p.grad = grads[k].clone()
    torch.nn.utils.clip_grad_norm_(list(ref.values()), 1.0)
    torch.optim.SGD(list(ref.values()), lr=0.1).step()
    u, _ = opt.update({k: v.clone() for k, v in grads.items()}, opt.init(params))
    params = torchopt_lite.apply_updates(params, u)
    for k in params:
        torch.testing.assert_close(params[k], ref[k].detach(), rtol=1e-14, atol=1e-15)


def _backward_through(hook, upstream: torch.Tensor) -> torch.Tensor:
    x = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64, requires_grad=True)
    g = x * 2.0
    t = register_hook(hook)
    u, _ = t.update({"g": g}, t.init({"g": g}), inplace=False)
    assert u["g"] is g  # the transformation passes updates through
    (u["g"] * upstream).sum().backward()
    return x.grad


def test_zero_nan_hook_fires() -> None:
    upstream = torch.tensor([float("nan"), 1.0, float("nan")], dtype=torch.float64)
    grad = _backward_through(zero_nan_hook, upstream)
    torch.testing.assert_close(grad, torch.tensor([0.0, 2.0, 0.0], dtype=torch.float64))


def test_nan_to_num_hook_fires() -> None:
    upstream = torch.tensor([float("nan"), float("inf"), -float("inf")], dtype=torch.float64)
    grad = _backward_through(nan_to_num_hook(nan=1.0, posinf=5.0, neginf=-7.0), upstream)
    torch.testing.assert_close(grad, torch.tensor([2.0, 10.0, -14.0], dtype=torch.float64))


def test_hook_is_called_once_per_update_leaf() -> None:
    calls: list[torch.Tensor] = []

    def record(g: torch.Tensor) -> None:
        calls.append(g.clone())

    x = torch.ones(2, dtype=torch.float64, requires_grad=True)
    tree = {"a": x * 3.0, "b": x * 4.0, "c": torch.ones(1, dtype=torch.float64)}
    t = register_hook(record)
    u, _ = t.update(tree, t.init(tree))
    (u["a"].sum() + 2 * u["b"].sum()).backward()
    assert sorted(float(c.sum()) for c in calls) == [2.0, 4.0]  # not on "c" (no grad)
    torch.testing.assert_close(x.grad, torch.full((2,), 11.0, dtype=torch.float64))
