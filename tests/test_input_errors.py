"""What torch.optim rejects is refused before anything is written; what it accepts in place
(gradients that require grad, views made under no_grad) runs."""

from __future__ import annotations

import optree
import pytest
import torch
from torch import nn

import torchopt_lite
from tests.alias._registry import CASES, Case
from tests.test_input_contract import OOP


def _snapshot(tree: object) -> list[torch.Tensor]:
    return [x.detach().clone() for x in optree.tree_leaves(tree) if isinstance(x, torch.Tensor)]


def _unchanged(before: list[torch.Tensor], tree: object) -> None:
    after = [x for x in optree.tree_leaves(tree) if isinstance(x, torch.Tensor)]
    assert len(before) == len(after)
    for a, b in zip(before, after, strict=True):
        assert torch.equal(a, b.detach())


# torch.optim takes sparse gradients for these, without weight decay (SGD fails on add(sparse,
# dense), Adagrad refuses); here the dense math applies to those too.
SPARSE_OK = ("sgd", "adagrad")
DENSE_ONLY = [c for c in CASES if c.alias not in SPARSE_OK]


def _sparse_grads(k: int) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(k)
    grads = [
        torch.randn(3, 2, generator=gen, dtype=torch.float64),
        torch.randn(4, dtype=torch.float64, generator=gen),
    ]
    grads[0][1] = 0.0  # a row without gradient
    grads[1][2:] = 0.0
    return [g.to_sparse() for g in grads]


@pytest.mark.filterwarnings("ignore:Sparse invariant checks are implicitly disabled")
@pytest.mark.parametrize("api", ["inplace", "pure", "class"])
@pytest.mark.parametrize(
    "case",
    [c for c in CASES if c.alias in SPARSE_OK and not c.kwargs.get("weight_decay")],
    ids=lambda c: c.id,
)
def test_sparse_gradients_where_torch_optim_takes_them(case: Case, api: str) -> None:
    """SGD and AdaGrad step on sparse gradients as torch.optim does (computed densely)."""
    params0 = [torch.randn(3, 2, dtype=torch.float64), torch.randn(4, dtype=torch.float64)]
    ref = [p.clone() for p in params0]
    torch_opt = case.torch_cls(ref, **case.torch_kwargs)
    params = [p.clone() for p in params0]
    if api == "class":
        ours = getattr(torchopt_lite, OOP[case.alias])(params, **case.kwargs)
    else:
        opt = case.make()
        state = opt.init(params)
    for k in range(3):
        for p, g in zip(ref, _sparse_grads(k), strict=True):
            p.grad = g
        torch_opt.step()
        if api == "class":
            for p, g in zip(params, _sparse_grads(k), strict=True):
                p.grad = g
            ours.step()
        else:
            updates, state = opt.update(
                _sparse_grads(k), state, params=params, inplace=api == "inplace"
            )
            params = torchopt_lite.apply_updates(params, updates, inplace=api == "inplace")
        for a, b in zip(params, ref, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("inplace", [True, False], ids=["inplace", "pure"])
@pytest.mark.parametrize("case", DENSE_ONLY, ids=lambda c: c.id)
def test_sparse_gradients_are_refused_before_any_write(case: Case, inplace: bool) -> None:
    opt = case.make()
    params = [torch.randn(3, 2), torch.randn(4)]
    state = opt.init(params)
    _, state = opt.update([torch.ones(3, 2), torch.ones(4)], state, params=params)
    before_state, before_params = _snapshot(state), _snapshot(params)
    grads = [torch.ones(3, 2), torch.ones(4).to_sparse()]  # the dense leaf comes first
    with pytest.raises(TypeError, match=r"update: sparse updates are not supported"):
        opt.update(grads, state, params=params, inplace=inplace)
    _unchanged(before_state, state)
    _unchanged(before_params, params)
    assert torch.equal(grads[0], torch.ones(3, 2))


@pytest.mark.parametrize("case", DENSE_ONLY, ids=lambda c: c.id)
def test_class_refuses_sparse_gradients_before_any_write(case: Case) -> None:
    params = [torch.randn(3, 2, requires_grad=True), torch.randn(4, requires_grad=True)]
    opt = getattr(torchopt_lite, OOP[case.alias])(params, **case.kwargs)
    params[0].grad, params[1].grad = torch.ones(3, 2), torch.ones(4)
    opt.step()
    before_state, before_params = _snapshot(opt.state_dict()["state"]), _snapshot(params)
    params[1].grad = torch.ones(4).to_sparse()
    with pytest.raises(TypeError, match=r"Optimizer: sparse gradients are not supported"):
        opt.step()
    _unchanged(before_state, opt.state_dict()["state"])
    _unchanged(before_params, params)


def test_meta_optimizer_refuses_sparse_gradients_before_any_write() -> None:
    net = nn.Embedding(5, 3, sparse=True)
    opt = torchopt_lite.MetaAdam(net, lr=0.1)
    before = _snapshot(list(net.parameters()))
    with pytest.raises(TypeError, match=r"MetaOptimizer.step: sparse gradients are not supported"):
        opt.step(net(torch.tensor([1, 2])).sum())
    _unchanged(before, list(net.parameters()))


@pytest.mark.filterwarnings("ignore:Sparse invariant checks are implicitly disabled")
@pytest.mark.parametrize("kwargs", [{}, {"momentum": 0.9}])
def test_meta_sgd_steps_on_sparse_gradients(kwargs: dict) -> None:
    """An nn.Embedding(sparse=True) gives sparse gradients; MetaSGD steps as on dense ones."""
    results = []
    for sparse in (True, False):
        torch.manual_seed(0)
        net = nn.Embedding(5, 3, sparse=sparse).double()
        opt = torchopt_lite.MetaSGD(net, lr=0.1, **kwargs)
        for _ in range(2):
            opt.step((net(torch.tensor([1, 2, 2])) ** 2).sum())
        results.append(net.weight.detach().clone())
    torch.testing.assert_close(results[0], results[1], rtol=0, atol=0)


def test_integer_parameters_are_refused_at_init() -> None:
    with pytest.raises(TypeError, match=r"init: params must have floating-point"):
        torchopt_lite.adam(0.1).init([torch.zeros(3, dtype=torch.int64)])


@pytest.mark.parametrize("api", ["apply_updates", "class"])
def test_parameters_whose_elements_share_memory_are_refused_in_place(api: str) -> None:
    """An expand()ed parameter cannot be stepped in place; torch.optim fails mid-way."""
    good, bad = torch.zeros(3), torch.zeros(1).expand(4)
    grads = [torch.ones(3), torch.ones(4)]
    match = r"params\[1\] has elements that share memory"
    if api == "apply_updates":
        with pytest.raises(ValueError, match=match):
            torchopt_lite.apply_updates([good, bad], grads)
    else:
        opt = torchopt_lite.SGD([good, bad], lr=0.1)
        good.grad, bad.grad = grads
        with pytest.raises(ValueError, match=match):
            opt.step()
    assert torch.equal(good, torch.zeros(3))


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_gradients_that_require_grad_step_in_place(case: Case) -> None:
    """In place, the updates are buffers: gradients with a graph (create_graph=True) or leaf
    tensors that require grad are stepped under no_grad, with the values of plain tensors."""
    w = torch.randn(3, 2, requires_grad=True)
    (with_graph,) = torch.autograd.grad((w**3).sum(), w, create_graph=True)
    leaf = with_graph.detach().clone().requires_grad_()
    results = []
    for g in (with_graph, leaf, with_graph.detach().clone()):
        opt = case.make()
        params = [w.detach().clone()]
        state = opt.init(params)
        updates, state = opt.update([g], state, params=params, inplace=True)
        results.append(updates[0].detach())
    torch.testing.assert_close(results[0], results[2], rtol=0, atol=0)
    torch.testing.assert_close(results[1], results[2], rtol=0, atol=0)


@pytest.mark.parametrize("alias", ["sgd", "adam", "adamw", "rmsprop"])
def test_weight_decay_in_place_on_views_made_under_no_grad(alias: str) -> None:
    """TorchOpt's flow (functional parameters, autograd.grad, views taken under no_grad): the
    in-place step modifies such views where autograd would refuse to in grad mode."""
    flat, grad_flat = torch.randn(10, requires_grad=True), torch.ones(10, requires_grad=True)
    with torch.no_grad():  # views made in no_grad mode of tensors that require grad
        params = [flat[:6].view(2, 3), flat[6:]]
        grads = [grad_flat[:6].view(2, 3), grad_flat[6:]]
    with pytest.raises(RuntimeError, match="view was created in no_grad mode"):
        grads[0].add_(params[0])  # what autograd says to an in-place op in grad mode
    opt = getattr(torchopt_lite, alias)(lr=0.1, weight_decay=0.1)
    state = opt.init(params)
    before = flat.detach().clone()
    updates, state = opt.update(grads, state, params=params, inplace=True)
    torchopt_lite.apply_updates(params, updates, inplace=True)
    assert not torch.equal(flat.detach(), before)
