"""The torch.func path: inner_loop, batched_inner_loop (vmap), learnable lr and discount."""

from __future__ import annotations

from typing import Any

import optree
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

import torchopt_lite
from torchopt_lite.diff.explicit import (
    batched_inner_loop,
    functional_loss,
    inner_loop,
    per_parameter_sgd,
)
from torchopt_lite.optim.meta import MetaSGD

from . import _reference as ref


@pytest.fixture(autouse=True)
def _float64() -> Any:
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


TASKS = 3
GEN = torch.Generator().manual_seed(7)
XS = torch.randn(TASKS, 5, 1, generator=GEN, dtype=torch.float64)
YS = torch.sin(3 * XS) + 0.1 * torch.randn(TASKS, 5, 1, generator=GEN, dtype=torch.float64)
XQ = torch.randn(TASKS, 5, 1, generator=GEN, dtype=torch.float64)
YQ = torch.sin(3 * XQ)


def make_net() -> nn.Module:
    torch.manual_seed(2)
    return nn.Sequential(nn.Linear(1, 8), nn.Tanh(), nn.Linear(8, 1)).double()


def leaves(tree: Any) -> list[Tensor]:
    return optree.tree_leaves(tree)


def assert_trees_close(a: Any, b: Any, rtol: float, atol: float) -> None:
    for x, y in zip(leaves(a), leaves(b), strict=True):
        torch.testing.assert_close(x, y, rtol=rtol, atol=atol)


def test_inner_loop_equals_meta_sgd() -> None:
    net = make_net()
    params0 = dict(net.named_parameters())
    loss_fn = functional_loss(net, F.mse_loss)
    out = inner_loop(loss_fn, per_parameter_sgd(0.3), steps=4)(params0, XS[0], YS[0])
    outer = loss_fn(out.params, XQ[0], YQ[0])
    got = torch.autograd.grad(outer, list(params0.values()))

    twin = make_net()
    twin_params0 = list(twin.parameters())
    opt = MetaSGD(twin, lr=0.3)
    losses = []
    for _ in range(4):
        loss = F.mse_loss(twin(XS[0]), YS[0])
        losses.append(loss.detach())
        opt.step(loss)
    assert_trees_close(out.params, dict(twin.named_parameters()), rtol=1e-13, atol=1e-15)
    torch.testing.assert_close(out.losses.detach(), torch.stack(losses), rtol=1e-13, atol=0)
    want = torch.autograd.grad(F.mse_loss(twin(XQ[0]), YQ[0]), twin_params0)
    assert_trees_close(got, want, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize(
    ("make_opt", "step", "hyper"),
    [
        (lambda: torchopt_lite.adam(0.05), ref.adam, {"lr": 0.05}),
        (
            lambda: torchopt_lite.sgd(0.1, momentum=0.9, nesterov=True),
            ref.sgd,
            {"lr": 0.1, "momentum": 0.9, "nesterov": True},
        ),
    ],
    ids=["adam", "sgd-nesterov"],
)
def test_inner_loop_with_functional_optimizers_matches_reference(
    make_opt: Any, step: Any, hyper: dict[str, Any]
) -> None:
    net = make_net()
    params0 = dict(net.named_parameters())
    loss_fn = functional_loss(net, F.mse_loss)
    out = inner_loop(loss_fn, make_opt(), steps=5)(params0, XS[0], YS[0])
    got = torch.autograd.grad(loss_fn(out.params, XQ[0], YQ[0]), list(params0.values()))
    names = list(params0)

    def as_dict(ps: list[Tensor]) -> dict[str, Tensor]:
        return dict(zip(names, ps, strict=True))

    expected = ref.unroll(
        step, hyper, list(params0.values()), lambda ps: loss_fn(as_dict(ps), XS[0], YS[0]), 5
    )
    assert_trees_close(out.params, as_dict(expected), rtol=1e-12, atol=1e-14)
    want = torch.autograd.grad(loss_fn(as_dict(expected), XQ[0], YQ[0]), list(params0.values()))
    assert_trees_close(got, want, rtol=1e-11, atol=1e-14)


def per_leaf_lr(params: dict[str, Tensor]) -> dict[str, Tensor]:
    return {k: torch.full_like(v, 0.2).requires_grad_() for k, v in params.items()}


@pytest.mark.parametrize("lr_kind", ["scalar", "per-parameter"])
@pytest.mark.parametrize("first_order", [False, True])
def test_vmap_meta_gradient_equals_loop_over_tasks(lr_kind: str, first_order: bool) -> None:
    net = make_net()
    params0 = dict(net.named_parameters())
    lr = torch.tensor(0.2, requires_grad=True) if lr_kind == "scalar" else per_leaf_lr(params0)
    loss_fn = functional_loss(net, F.mse_loss)
    opt = per_parameter_sgd(lr)
    wrt = [*params0.values(), *leaves(lr)]

    batched = batched_inner_loop(loss_fn, opt, steps=3, first_order=first_order)(params0, XS, YS)
    outer = torch.func.vmap(loss_fn, in_dims=(0, 0, 0))(batched.params, XQ, YQ).sum()
    got = torch.autograd.grad(outer, wrt)

    adapt = inner_loop(loss_fn, opt, steps=3, first_order=first_order)
    looped = [adapt(params0, XS[i], YS[i]) for i in range(TASKS)]
    outer_loop = sum(loss_fn(r.params, XQ[i], YQ[i]) for i, r in enumerate(looped))
    want = torch.autograd.grad(outer_loop, wrt)
    assert_trees_close(got, want, rtol=1e-11, atol=1e-14)
    torch.testing.assert_close(
        batched.losses, torch.stack([r.losses for r in looped]), rtol=1e-13, atol=0
    )


@pytest.mark.parametrize("name", ["sgd-momentum", "adam"])
def test_vmap_with_alias_optimizers_equals_loop(name: str) -> None:
    net = make_net()
    params0 = dict(net.named_parameters())
    loss_fn = functional_loss(net, F.mse_loss)
    opt = torchopt_lite.adam(0.05) if name == "adam" else torchopt_lite.sgd(0.2, momentum=0.9)
    batched = batched_inner_loop(loss_fn, opt, steps=3)(params0, XS, YS)
    outer = torch.func.vmap(loss_fn)(batched.params, XQ, YQ).sum()
    got = torch.autograd.grad(outer, list(params0.values()))
    adapt = inner_loop(loss_fn, opt, steps=3)
    looped = [adapt(params0, XS[i], YS[i]) for i in range(TASKS)]
    for i, r in enumerate(looped):
        assert_trees_close(
            optree.tree_map(lambda x, i=i: x[i], batched.params), r.params, 1e-12, 1e-14
        )
    outer_loop = sum(loss_fn(r.params, XQ[i], YQ[i]) for i, r in enumerate(looped))
    want = torch.autograd.grad(outer_loop, list(params0.values()))
    assert_trees_close(got, want, rtol=1e-11, atol=1e-14)


def test_chunked_vmap_equals_unchunked() -> None:
    net = make_net()
    params0 = dict(net.named_parameters())
    loss_fn = functional_loss(net, F.mse_loss)
    full = batched_inner_loop(loss_fn, per_parameter_sgd(0.2), 2)(params0, XS, YS)
    chunked = batched_inner_loop(loss_fn, per_parameter_sgd(0.2), 2, chunk_size=2)(params0, XS, YS)
    assert_trees_close(full.params, chunked.params, rtol=1e-14, atol=0)


def test_first_order_is_fomaml() -> None:
    net = make_net()
    params0 = dict(net.named_parameters())
    loss_fn = functional_loss(net, F.mse_loss)
    out = inner_loop(loss_fn, per_parameter_sgd(0.3), steps=3, first_order=True)(
        params0, XS[0], YS[0]
    )
    outer = loss_fn(out.params, XQ[0], YQ[0])
    got = torch.autograd.grad(outer, list(params0.values()), retain_graph=True)
    want = torch.autograd.grad(outer, list(out.params.values()))
    assert_trees_close(got, want, rtol=1e-13, atol=1e-15)


def test_truncation_matches_reference() -> None:
    net = make_net()
    params0 = dict(net.named_parameters())
    names = list(params0)
    loss_fn = functional_loss(net, F.mse_loss)
    lr = torch.tensor(0.2, requires_grad=True)
    out = inner_loop(loss_fn, per_parameter_sgd(lr), steps=5, truncate_every=2)(
        params0, XS[0], YS[0]
    )
    (got,) = torch.autograd.grad(loss_fn(out.params, XQ[0], YQ[0]), lr)
    lr_ref = torch.tensor(0.2, requires_grad=True)
    expected = ref.unroll(
        ref.sgd,
        {"lr": lr_ref},
        list(params0.values()),
        lambda ps: loss_fn(dict(zip(names, ps, strict=True)), XS[0], YS[0]),
        5,
        truncate_every=2,
    )
    (want,) = torch.autograd.grad(
        loss_fn(dict(zip(names, expected, strict=True)), XQ[0], YQ[0]), lr_ref
    )
    torch.testing.assert_close(got, want, rtol=1e-11, atol=1e-15)


REWARDS = torch.randn(4, 6, generator=torch.Generator().manual_seed(11), dtype=torch.float64)
FEATURES = torch.randn(4, 3, generator=torch.Generator().manual_seed(12), dtype=torch.float64)


def discounted_returns(gamma: Tensor) -> Tensor:
    """G_s = sum_k gamma^k r_{s,k} for each of 4 start states (6-step episodes)."""
    return REWARDS @ gamma ** torch.arange(6, dtype=torch.float64)


def value_loss(params: dict[str, Tensor], gamma: Tensor) -> Tensor:
    return 0.5 * (discounted_returns(gamma) - FEATURES @ params["w"]).pow(2).sum()


def meta_objective_by_hand(gamma: Tensor, steps: int) -> Tensor:
    """Hand-unrolled: SGD on the value loss with discount gamma, scored against gamma* = 0.9."""
    w = torch.zeros(3, requires_grad=True)
    for _ in range(steps):
        (g,) = torch.autograd.grad(value_loss({"w": w}, gamma), w, create_graph=True)
        w = w - 0.05 * g
    return (FEATURES @ w - discounted_returns(torch.tensor(0.9))).pow(2).sum()


def test_learnable_discount_meta_gradient() -> None:
    gamma = torch.tensor(0.5, requires_grad=True)
    out = inner_loop(value_loss, per_parameter_sgd(0.05), steps=6)({"w": torch.zeros(3)}, gamma)
    target = discounted_returns(torch.tensor(0.9))
    (got,) = torch.autograd.grad((FEATURES @ out.params["w"] - target).pow(2).sum(), gamma)

    gamma_ref = torch.tensor(0.5, requires_grad=True)
    (want,) = torch.autograd.grad(meta_objective_by_hand(gamma_ref, 6), gamma_ref)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-15)
    h = 1e-6  # central differences in float64: truncation O(h^2), rounding ~1e-10 / h
    fd = (
        meta_objective_by_hand(torch.tensor(0.5 + h), 6)
        - meta_objective_by_hand(torch.tensor(0.5 - h), 6)
    ) / (2 * h)
    torch.testing.assert_close(got, fd.detach(), rtol=1e-6, atol=1e-8)

    # One discount shared by a batch of tasks (in_dims=None for gamma), each with its own rewards.
    def task_loss(params: dict[str, Tensor], gamma: Tensor, rewards: Tensor) -> Tensor:
        returns = rewards @ gamma ** torch.arange(6, dtype=torch.float64)
        return 0.5 * (returns - FEATURES @ params["w"]).pow(2).sum()

    batched = batched_inner_loop(task_loss, per_parameter_sgd(0.05), 6, in_dims=(None, 0))
    outs = batched({"w": torch.zeros(3)}, gamma, torch.stack([REWARDS, 2 * REWARDS]))
    torch.testing.assert_close(outs.params["w"][0], out.params["w"], rtol=1e-14, atol=0)
    (g_batched,) = torch.autograd.grad(outs.params["w"].sum(), gamma)
    adapt = inner_loop(task_loss, per_parameter_sgd(0.05), 6)
    looped = sum(adapt({"w": torch.zeros(3)}, gamma, k * REWARDS).params["w"].sum() for k in (1, 2))
    torch.testing.assert_close(g_batched, torch.autograd.grad(looped, gamma)[0], rtol=1e-12, atol=0)


def test_per_parameter_sgd_inplace_matches_out_of_place_and_skips_none() -> None:
    lr = {"a": torch.tensor([0.1, 0.2]), "b": torch.tensor(0.5)}
    opt = per_parameter_sgd(lr)
    g = {"a": torch.tensor([1.0, 2.0]), "b": torch.tensor([3.0, 4.0])}
    pure, _ = opt.update(g, opt.init(g), inplace=False)
    assert_trees_close(
        pure, {"a": torch.tensor([-0.1, -0.4]), "b": torch.tensor([-1.5, -2.0])}, 0, 0
    )
    g_copy = optree.tree_map(torch.clone, g)
    inplace, _ = opt.update(g_copy, opt.init(g), inplace=True)
    assert inplace["a"] is g_copy["a"]
    assert_trees_close(inplace, pure, 0, 0)
    with_none, _ = opt.update({"a": None, "b": g["b"]}, opt.init(g), inplace=False)
    assert with_none["a"] is None
    torch.testing.assert_close(with_none["b"], pure["b"], rtol=0, atol=0)
    scalar = per_parameter_sgd(0.5)
    torch.testing.assert_close(
        scalar.update(g, scalar.init(g), inplace=False)[0]["b"], torch.tensor([-1.5, -2.0])
    )


def test_per_parameter_sgd_errors() -> None:
    with pytest.raises(TypeError, match=r"per_parameter_sgd: lr must be a float, a 0-d tensor"):
        per_parameter_sgd({})
    with pytest.raises(TypeError, match="every leaf of lr must be a tensor; got str"):
        per_parameter_sgd("0.1")
    with pytest.raises(TypeError, match="per_parameter_sgd: lr must be a float"):
        per_parameter_sgd(True)
    with pytest.raises(TypeError, match="every leaf of lr must be a tensor; got float"):
        per_parameter_sgd({"a": 0.1})
    opt = per_parameter_sgd({"a": torch.tensor(0.1)})
    with pytest.raises(ValueError, match="lr must have the tree structure of the params"):
        opt.init({"b": torch.ones(1)})
    g = {"a": torch.ones(1), "b": torch.ones(1)}
    before = optree.tree_map(torch.clone, g)
    with pytest.raises(ValueError, match="lr must have the tree structure of the updates"):
        opt.update(g, opt.init({"a": torch.ones(1)}), inplace=True)
    assert_trees_close(g, before, 0, 0)


def test_functional_loss_equals_module_forward() -> None:
    net = nn.Sequential(nn.Linear(1, 3), nn.BatchNorm1d(3), nn.Linear(3, 1)).double().eval()
    loss_fn = functional_loss(net, F.mse_loss)
    params = dict(net.named_parameters())
    torch.testing.assert_close(
        loss_fn(params, XS[0], YS[0]), F.mse_loss(net(XS[0]), YS[0]), rtol=0, atol=0
    )
    with pytest.raises(TypeError, match=r"functional_loss: module must be an nn\.Module"):
        functional_loss(lambda x: x, F.mse_loss)  # type: ignore[arg-type]


def test_inner_loop_argument_errors() -> None:
    loss_fn = functional_loss(make_net(), F.mse_loss)
    with pytest.raises(TypeError, match="inner_loop: optimizer must be a GradientTransformation"):
        inner_loop(loss_fn, torch.optim.SGD, 2)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="inner_loop: steps must be an int >= 1; got 0"):
        inner_loop(loss_fn, per_parameter_sgd(0.1), 0)
    with pytest.raises(ValueError, match="steps must be an int >= 1; got True"):
        inner_loop(loss_fn, per_parameter_sgd(0.1), True)
    with pytest.raises(ValueError, match="inner_loop: truncate_every must be None or an int"):
        inner_loop(loss_fn, per_parameter_sgd(0.1), 2, truncate_every=-1)
    with pytest.raises(TypeError, match="batched_inner_loop: optimizer must be"):
        batched_inner_loop(loss_fn, None, 2)  # type: ignore[arg-type]
