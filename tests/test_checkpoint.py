"""Checkpoints: every API's state survives torch.save / torch.load(weights_only=True), and a
mismatched state is refused before anything changes."""

from __future__ import annotations

import io
from typing import Any

import optree
import pytest
import torch
from torch import nn

import torchopt_lite
from tests.alias._registry import CASES, Case

OOP = {
    "sgd": "SGD", "adam": "Adam", "adamw": "AdamW", "rmsprop": "RMSprop", "adagrad": "Adagrad",
    "adadelta": "Adadelta", "adamax": "Adamax", "radam": "RAdam",
}  # fmt: skip


def roundtrip(obj: Any) -> Any:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    buffer.seek(0)
    return torch.load(buffer)  # weights_only=True, torch's default


def _same(a: Any, b: Any) -> None:
    leaves_a, spec_a = optree.tree_flatten(a, none_is_leaf=True)
    leaves_b, spec_b = optree.tree_flatten(b, none_is_leaf=True)
    assert spec_a == spec_b
    for x, y in zip(leaves_a, leaves_b, strict=True):
        if isinstance(x, torch.Tensor):
            assert x.dtype == y.dtype and torch.equal(x.detach(), y.detach())
        else:
            assert x == y


def _params() -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return [torch.randn(3, 2, generator=gen), torch.randn(4, generator=gen)]


def _grads(k: int) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(k + 1)
    return [torch.randn(3, 2, generator=gen), torch.randn(4, generator=gen)]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_functional_state(case: Case) -> None:
    """Resume from a loaded state: the same trajectory as without the checkpoint."""
    opt = case.make()
    params = _params()
    state = opt.init(params)
    for k in range(2):
        updates, state = opt.update(_grads(k), state, params=params, inplace=False)
        params = torchopt_lite.apply_updates(params, updates, inplace=False)
    loaded = roundtrip(state)
    _same(loaded, state)
    ahead = opt.update(_grads(5), state, params=params, inplace=False)
    resumed = opt.update(_grads(5), loaded, params=params, inplace=False)
    _same(resumed, ahead)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_class_state_dict(case: Case) -> None:
    make = getattr(torchopt_lite, OOP[case.alias])
    params = [p.requires_grad_() for p in _params()]
    opt = make(params, **case.kwargs)
    for k in range(2):
        for p, g in zip(params, _grads(k), strict=True):
            p.grad = g
        opt.step()
    loaded_params = [p.detach().clone().requires_grad_() for p in params]
    other = make(loaded_params, **case.kwargs)
    other.load_state_dict(roundtrip(opt.state_dict()))
    for opt_, ps in ((opt, params), (other, loaded_params)):
        for p, g in zip(ps, _grads(5), strict=True):
            p.grad = g
        opt_.step()
    for p, q in zip(params, loaded_params, strict=True):
        assert torch.equal(p, q)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_meta_and_func_optimizer_states(case: Case) -> None:
    net = nn.Linear(2, 3)
    meta = torchopt_lite.MetaOptimizer(net, case.make())
    meta.step(net(torch.ones(4, 2)).pow(2).sum())
    loaded = roundtrip(meta.state_dict())
    _same(loaded, tuple(optree.tree_map(torch.Tensor.detach, s) for s in meta.state_dict()))
    meta.load_state_dict(loaded)

    func = torchopt_lite.FuncOptimizer(case.make())
    params = tuple(p.requires_grad_() for p in _params())
    params = func.step(sum((p**2).sum() for p in params), params)
    state = roundtrip(func.state_dict())
    func.load_state_dict(state)
    func.step(sum((p**2).sum() for p in params), params)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_step_count_stays_an_integer_through_load(dtype: torch.dtype) -> None:
    """torch.optim casts floating state to the parameters' dtype on load; the count is kept
    an int64 (a bfloat16 count would stop at 256)."""
    p = torch.zeros(3, dtype=dtype, requires_grad=True)
    opt = torchopt_lite.Adam([p], lr=1e-3)
    p.grad = torch.ones_like(p)
    opt.step()
    state = opt.state_dict()
    state["state"][0]["count"] = torch.tensor(300)
    fresh = torchopt_lite.Adam([p], lr=1e-3)
    fresh.load_state_dict(roundtrip(state))
    assert fresh.state[p]["count"].dtype == torch.int64
    p.grad = torch.ones_like(p)
    fresh.step()
    assert int(fresh.state[p]["count"]) == 301
    assert fresh.state[p]["mu"].dtype == dtype


def test_class_refuses_a_state_of_other_shapes_before_changing() -> None:
    a = [torch.zeros(3, requires_grad=True)]
    b = [torch.zeros(4, requires_grad=True)]
    opt_a, opt_b = torchopt_lite.Adam(a, lr=0.1), torchopt_lite.Adam(b, lr=0.2)
    for p, o in ((a[0], opt_a), (b[0], opt_b)):
        p.grad = torch.ones_like(p)
        o.step()
    before = roundtrip(opt_b.state_dict())
    with pytest.raises(ValueError, match=r"state entry 'mu' of parameter 0 is \(3,\)"):
        opt_b.load_state_dict(opt_a.state_dict())
    _same(opt_b.state_dict(), before)


def test_class_refuses_another_optimizers_state_before_changing() -> None:
    p = [torch.zeros(3, requires_grad=True)]
    sgd = torchopt_lite.SGD(p, lr=0.1, momentum=0.9)
    adam = torchopt_lite.Adam(p, lr=0.1)
    p[0].grad = torch.ones(3)
    sgd.step()
    adam.step()
    before = roundtrip(adam.state_dict())
    with pytest.raises(ValueError, match="different optimizer configuration"):
        adam.load_state_dict(sgd.state_dict())
    _same(adam.state_dict(), before)


def test_meta_and_func_refuse_mismatched_states() -> None:
    net, other = nn.Linear(2, 3), nn.Linear(3, 3)
    meta = torchopt_lite.MetaAdam(net, lr=0.1)
    meta.step(net(torch.ones(1, 2)).sum())
    foreign = torchopt_lite.MetaAdam(other, lr=0.1)
    foreign.step(other(torch.ones(1, 3)).sum())
    before = meta.state_dict()
    with pytest.raises(ValueError, match=r"state of group 0 holds \(3, 3\)"):
        meta.load_state_dict(foreign.state_dict())
    assert meta.state_dict() == before
    with pytest.raises(ValueError, match="has structure"):
        meta.load_state_dict((torchopt_lite.sgd(0.1, momentum=0.9).init(tuple(net.parameters())),))

    func = torchopt_lite.FuncOptimizer(torchopt_lite.adam(0.1))
    params = (torch.zeros(3, requires_grad=True),)
    func.step(params[0].sum(), params)
    state = func.state_dict()
    with pytest.raises(ValueError, match=r"holds \(4,\) torch.float32 where this optimizer holds"):
        func.load_state_dict(torchopt_lite.adam(0.1).init((torch.zeros(4),)))
    assert func.state_dict() is state
