"""Extra arguments of ``update`` (``value=loss``, ...): passed to the parts that read them."""

from __future__ import annotations

from typing import Any

import pytest
import torch

import torchopt_lite
from torchopt_lite._dispatch import Leafwise
from torchopt_lite.base import (
    EmptyState,
    GradientTransformation,
    LeafwiseTransformation,
    extra_args_filter,
)


def scale_by_value() -> LeafwiseTransformation:
    """A test transformation: ``u = value * g``."""

    def update(g: list[torch.Tensor], state: Any, params: Any, ops: Any, *, value: Any) -> Any:
        return ops.mul(g, value), state

    return LeafwiseTransformation(
        Leafwise(lambda leaves: EmptyState(), update, extra_args=("value",))
    )


def torchopt_style() -> GradientTransformation:
    """A tree transformation written for TorchOpt: no extra arguments in its signature."""

    def init(params: Any) -> EmptyState:
        return EmptyState()

    def update(updates: Any, state: Any, *, params: Any = None, inplace: bool = True) -> Any:
        return updates, state

    return GradientTransformation(init, update)


@pytest.mark.parametrize("inplace", [True, False])
def test_value_reaches_the_part_that_reads_it(inplace: bool) -> None:
    opt = torchopt_lite.chain(torchopt_style(), scale_by_value(), torchopt_lite.sgd(0.5))
    params = {"w": torch.tensor([1.0, 2.0])}
    state = opt.init(params)
    updates, _ = opt.update(
        {"w": torch.tensor([1.0, -1.0])}, state, params=params, inplace=inplace, value=3.0
    )
    torch.testing.assert_close(updates["w"], torch.tensor([-1.5, 1.5]))


def test_unread_extra_arguments_are_ignored() -> None:
    opt = torchopt_lite.chain(torchopt_style(), torchopt_lite.adam(0.1))
    params = {"w": torch.ones(2)}
    plain, _ = opt.update({"w": torch.ones(2)}, opt.init(params), params=params)
    extra, _ = opt.update({"w": torch.ones(2)}, opt.init(params), params=params, value=1.0)
    torch.testing.assert_close(plain, extra)


@pytest.mark.parametrize("inplace", [True, False])
def test_missing_extra_argument_raises_before_writing(inplace: bool) -> None:
    opt = torchopt_lite.chain(torchopt_lite.sgd(0.1, momentum=0.9), scale_by_value())
    params = {"w": torch.ones(2)}
    state = opt.init(params)
    grads = {"w": torch.ones(2)}
    before = [x.clone() for x in torch.utils._pytree.tree_leaves(state)]
    with pytest.raises(ValueError, match=r"reads the extra argument value="):
        opt.update(grads, state, params=params, inplace=inplace)
    after = torch.utils._pytree.tree_leaves(state)
    assert all(torch.equal(a, b) for a, b in zip(before, after, strict=True))
    torch.testing.assert_close(grads["w"], torch.ones(2))


def test_filter_reads_the_signature() -> None:
    def named(u: Any, s: Any, *, params: Any = None, inplace: bool = True, value: Any = None):
        return u, s

    def star(u: Any, s: Any, **extra: Any) -> Any:
        return u, s

    extra = {"value": 1.0, "grad": 2.0}
    assert extra_args_filter(named)(extra) == {"value": 1.0}
    assert extra_args_filter(star)(extra) == extra
    assert extra_args_filter(torchopt_style().update)(extra) == {}


def test_optimizer_step_passes_the_closure_loss() -> None:
    w = torch.nn.Parameter(torch.tensor([1.0, 2.0]))
    opt = torchopt_lite.Optimizer(
        [w], torchopt_lite.chain(scale_by_value(), torchopt_lite.sgd(1.0))
    )

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = 0.5 * (w**2).sum()  # 2.5, gradient w
        loss.backward()
        return loss

    opt.step(closure)
    torch.testing.assert_close(w.detach(), torch.tensor([1.0, 2.0]) * (1 - 2.5))


def test_meta_optimizer_passes_the_loss_differentiably() -> None:
    net = torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        net.weight.fill_(2.0)
    x = torch.tensor([[1.0]], requires_grad=True)
    meta = torchopt_lite.MetaOptimizer(
        net, torchopt_lite.chain(scale_by_value(), torchopt_lite.sgd(1.0))
    )
    loss = (net(x) ** 2).sum() / 2  # (2x)^2 / 2 = 2 at x = 1; dL/dw = w x^2 = 2
    meta.step(loss)
    # w' = w - loss * dL/dw = 2 - 2 * 2 x^4 ... as a function of x: 2 - 4 x^4
    (dw,) = torch.autograd.grad(net.weight.sum(), x)
    torch.testing.assert_close(net.weight.detach(), torch.tensor([[-2.0]]))
    torch.testing.assert_close(dw, torch.tensor([[-16.0]]))


def test_func_optimizer_passes_the_loss() -> None:
    params = {"w": torch.tensor([3.0], requires_grad=True)}
    opt = torchopt_lite.FuncOptimizer(torchopt_lite.chain(scale_by_value(), torchopt_lite.sgd(1.0)))
    loss = (params["w"] ** 2).sum() / 2  # 4.5, gradient 3
    new = opt.step(loss, params)
    torch.testing.assert_close(new["w"].detach(), torch.tensor([3.0 - 4.5 * 3.0]))


def scale_by_extra(name: str) -> LeafwiseTransformation:
    """A test transformation: ``u = extra * g`` for the extra argument ``name``."""

    def update(g: list[torch.Tensor], state: Any, params: Any, ops: Any, **extra: Any) -> Any:
        return ops.mul(g, extra[name]), state

    return LeafwiseTransformation(Leafwise(lambda leaves: EmptyState(), update, extra_args=(name,)))


def test_class_meta_and_func_steps_pass_other_extra_arguments() -> None:
    """``step(..., factor=...)`` reaches a transformation that reads ``factor=``."""
    opt = torchopt_lite.chain(scale_by_extra("factor"), torchopt_lite.sgd(1.0))
    w = torch.nn.Parameter(torch.tensor([1.0, 2.0]))
    oop = torchopt_lite.Optimizer([w], opt)
    w.grad = torch.ones(2)
    oop.step(factor=0.5)
    torch.testing.assert_close(w.detach(), torch.tensor([0.5, 1.5]))

    net = torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        net.weight.fill_(1.0)
    meta = torchopt_lite.MetaOptimizer(net, opt)
    meta.step(net.weight.sum(), factor=0.25)
    torch.testing.assert_close(net.weight.detach(), torch.tensor([[0.75]]))

    params = {"w": torch.tensor([1.0], requires_grad=True)}
    new = torchopt_lite.FuncOptimizer(opt).step(params["w"].sum(), params, factor=2.0)
    torch.testing.assert_close(new["w"].detach(), torch.tensor([-1.0]))
