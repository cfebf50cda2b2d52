"""Module and meta-optimizer state utilities: extract, recover, clone, detach."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from torchopt_lite.combine import chain
from torchopt_lite.optim.meta import MetaOptimizer
from torchopt_lite.transform import scale, scale_by_adam
from torchopt_lite.utils import (
    ModuleState,
    extract_module_containers,
    extract_state_dict,
    module_clone,
    module_detach_,
    recover_state_dict,
    stop_gradient,
)


def make_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(2, 3), nn.BatchNorm1d(3), nn.Linear(3, 1)).double()


def adam_meta(net: nn.Module) -> MetaOptimizer:
    return MetaOptimizer(net, chain(scale_by_adam(moment_requires_grad=True), scale(-0.1)))


def snapshot(net: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


def assert_same(net: nn.Module, snap: dict[str, torch.Tensor]) -> None:
    now = net.state_dict()
    assert now.keys() == snap.keys()
    for k, v in snap.items():
        torch.testing.assert_close(now[k], v, rtol=0, atol=0)


X = torch.randn(4, 2, dtype=torch.float64)


def test_extract_module_containers_are_the_modules_dicts() -> None:
    shared = nn.Linear(2, 2)
    net = nn.Sequential(shared, nn.ReLU(), shared, nn.BatchNorm1d(2))
    params, buffers = extract_module_containers(net)
    assert [id(c) for c in params] == [id(shared._parameters), id(net[3]._parameters)]
    assert [id(c) for c in buffers] == [id(net[3]._buffers)]
    assert extract_module_containers(net, with_buffers=False)[1] == ()


def test_extract_reference_copy_deepcopy() -> None:
    net = make_net()
    ref = extract_state_dict(net)
    assert ref.params[0]["weight"] is net[0].weight
    assert ref.buffers[0]["running_mean"] is net[1].running_mean
    copy = extract_state_dict(net, by="clone")
    w = copy.params[0]["weight"]
    assert w is not net[0].weight and type(w.grad_fn).__name__ == "CloneBackward0"
    torch.testing.assert_close(w, net[0].weight, rtol=0, atol=0)
    deep = extract_state_dict(net, by="deepcopy", device="cpu")
    w = deep.params[0]["weight"]
    assert isinstance(w, nn.Parameter) and w.requires_grad and w.grad_fn is None
    assert w.data_ptr() != net[0].weight.data_ptr()
    torch.testing.assert_close(w, net[0].weight, rtol=0, atol=0)
    no_buffers = extract_state_dict(net, with_buffers=False)
    assert no_buffers.buffers == () and len(no_buffers.params) == 3


def test_detach_buffers_are_copies_written_back_as_copies() -> None:
    net = make_net()
    state = extract_state_dict(net, detach_buffers=True)
    assert state.detach_buffers
    assert state.buffers[0]["running_mean"] is not net[1].running_mean
    assert state.params[0]["weight"] is net[0].weight  # by='reference' still holds for params
    net[1].running_mean.add_(1.0)
    recover_state_dict(net, state)
    assert net[1].running_mean is not state.buffers[0]["running_mean"]
    torch.testing.assert_close(net[1].running_mean, torch.zeros(3, dtype=torch.float64))


def test_recover_after_meta_steps_restores_values_and_leaves() -> None:
    net = make_net()
    before = snapshot(net)
    opt = adam_meta(net)
    # BatchNorm updates its running stats in place: keep copies of the buffers.
    net_state = extract_state_dict(net, detach_buffers=True)
    opt_state = extract_state_dict(opt)
    for _ in range(2):
        opt.step(net(X).pow(2).mean())
    assert net[0].weight.grad_fn is not None
    recover_state_dict(net, net_state)
    recover_state_dict(opt, opt_state)
    assert_same(net, before)
    assert net[0].weight is net_state.params[0]["weight"] and net[0].weight.is_leaf
    assert opt.state_groups == list(opt_state)


def test_extract_meta_optimizer_state_by_copy() -> None:
    net = make_net()
    opt = adam_meta(net)
    opt.step(net(X).pow(2).mean())
    ref = extract_state_dict(opt)
    assert ref[0][0].mu[0] is opt.state_groups[0][0].mu[0]  # same tensors, new containers
    deep = extract_state_dict(opt, by="deepcopy")
    mu, mu_ref = deep[0][0].mu[0], ref[0][0].mu[0]
    assert mu.grad_fn is None and mu.requires_grad and mu is not mu_ref
    torch.testing.assert_close(mu, mu_ref, rtol=0, atol=0)


def test_enable_visual_names_leaves_and_non_leaves() -> None:
    net = make_net()
    state = extract_state_dict(net, enable_visual=True, visual_prefix="net.")
    assert state.visual_contents is not None
    assert state.visual_contents[net[0].weight] == "net.0.weight"
    opt = adam_meta(net)
    opt.step(net(X).pow(2).mean())
    state = extract_state_dict(net, enable_visual=True)
    assert state.visual_contents is not None
    # One multi-tensor update produced every parameter of the group: its node lists them all.
    named = state.visual_contents[net[0].weight.grad_fn]
    assert [n for n, _ in named] == [n for n, _ in net.named_parameters()]
    assert all(t is p for (_, t), p in zip(named, net.parameters(), strict=True))


def test_stop_gradient_and_module_detach_keep_requires_grad() -> None:
    net = make_net()
    opt = adam_meta(net)
    opt.step(net(X).pow(2).mean())
    assert module_detach_(net) is net
    assert all(p.grad_fn is None and p.requires_grad for p in net.parameters())
    stop_gradient(opt)
    mu = opt.state_groups[0][0].mu
    assert all(m.grad_fn is None and m.requires_grad for m in mu)
    w = torch.ones(2, requires_grad=True)
    tree = {"a": w * 2, "b": [w + 1]}
    stop_gradient(tree)
    assert tree["a"].grad_fn is None and tree["b"][0].grad_fn is None
    torch.testing.assert_close(tree["a"], torch.full((2,), 2.0))
    state = ModuleState(params=({"w": w * 3},), buffers=())
    assert module_detach_(state) is state and state.params[0]["w"].grad_fn is None


@pytest.mark.parametrize("by", ["reference", "copy", "deepcopy"])
def test_module_clone(by: str) -> None:
    net = make_net()
    twin = module_clone(net, by=by)
    assert twin is not net
    for (name, p), q in zip(net.named_parameters(), twin.parameters(), strict=True):
        torch.testing.assert_close(q, p, rtol=0, atol=0, msg=name)
        assert (q is p) == (by == "reference")
        assert (q.grad_fn is not None) == (by == "copy")
    out = twin(X).sum()
    torch.testing.assert_close(out, net(X).sum())


def test_module_clone_of_meta_optimizer_and_tree() -> None:
    net = make_net()
    opt = adam_meta(net)
    opt.step(net(X).pow(2).mean())  # non-leaf params and state: deepcopy must not touch them
    twin = module_clone(opt, by="deepcopy")
    assert isinstance(twin, MetaOptimizer) and twin is not opt
    mu, mu_twin = opt.state_groups[0][0].mu[0], twin.state_groups[0][0].mu[0]
    assert mu_twin is not mu and mu_twin.grad_fn is None
    torch.testing.assert_close(mu_twin, mu, rtol=0, atol=0)
    w = torch.ones(2, requires_grad=True)
    tree = module_clone({"a": w * 2}, by="copy")
    assert type(tree["a"].grad_fn).__name__ == "CloneBackward0"
    torch.testing.assert_close(tree["a"], torch.full((2,), 2.0))


def test_bad_copy_mode_and_target_types() -> None:
    net = make_net()
    with pytest.raises(ValueError, match="extract_state_dict: by must be one of"):
        extract_state_dict(net, by="shallow")  # type: ignore[call-overload]
    with pytest.raises(ValueError, match="module_clone: by must be one of"):
        module_clone(net, by="shallow")  # type: ignore[call-overload]
    with pytest.raises(TypeError, match=r"extract_state_dict: Unexpected class .* got int"):
        extract_state_dict(3)  # type: ignore[call-overload]
    with pytest.raises(TypeError, match="extract_module_containers: Unexpected class"):
        extract_module_containers([net])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="recover_state_dict: Unexpected class"):
        recover_state_dict("net", extract_state_dict(net))  # type: ignore[arg-type]


def test_recover_rejects_state_of_another_module_and_leaves_it_unchanged() -> None:
    net = make_net()
    before = snapshot(net)
    other = nn.Sequential(nn.Linear(2, 4), nn.BatchNorm1d(4), nn.Linear(4, 1)).double()
    with pytest.raises(ValueError, match=r"'weight' is \(3, 2\) in the module and \(4, 2\)"):
        recover_state_dict(net, extract_state_dict(other))
    assert_same(net, before)
    fewer = nn.Sequential(nn.Linear(2, 3)).double()
    with pytest.raises(ValueError, match="the module has 3 parameter dicts, the state has 1"):
        recover_state_dict(net, extract_state_dict(fewer))
    renamed = extract_state_dict(make_net())
    renamed.params[0]["kernel"] = renamed.params[0].pop("weight")
    with pytest.raises(ValueError, match=r"dict 0 holds \['bias', 'weight'\] in the module"):
        recover_state_dict(net, renamed)
    no_bn = nn.Sequential(nn.Linear(2, 3), nn.Tanh(), nn.Linear(3, 1)).double()
    state = extract_state_dict(net)
    with pytest.raises(ValueError, match="parameter dicts"):
        recover_state_dict(no_bn, state)
    with pytest.raises(TypeError, match=r"state for an nn\.Module must be a ModuleState"):
        recover_state_dict(net, (state.params, state.buffers))
    assert_same(net, before)


def test_recover_matches_names_holding_tensors() -> None:
    # nn.Linear(bias=False) keeps ``bias: None`` in its dict: not a name the state must have.
    net = nn.Linear(2, 3, bias=False).double()
    state = extract_state_dict(net, by="deepcopy")
    recover_state_dict(net, state)
    assert net.weight is state.params[0]["weight"]
    # The same keys, but the module holds None where the state holds a tensor.
    with_bias = extract_state_dict(nn.Linear(2, 3).double())
    with pytest.raises(ValueError, match=r"dict 0 holds \['weight'\] in the module and \['bias'"):
        recover_state_dict(net, with_bias)


def test_recover_rejects_buffers_of_another_module() -> None:
    net = make_net()
    before = snapshot(net)
    state = extract_state_dict(net)
    bad = state._replace(buffers=(*state.buffers, {"extra": torch.zeros(1)}))
    with pytest.raises(ValueError, match="the module has 1 buffer dicts, the state has 2"):
        recover_state_dict(net, bad)
    assert_same(net, before)
