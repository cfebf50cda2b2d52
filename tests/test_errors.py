"""Every raise in the foundation: the exception type, the message, and nothing changed after it."""

from __future__ import annotations

import re
from typing import Any

import optree
import pytest
import torch

import torchopt_lite
from tests.alias._registry import CASES, Case, make_grads, make_params, torch_optim_trajectory
from torchopt_lite import transform
from torchopt_lite.alias.utils import flip_sign_and_add_weight_decay, scale_by_neg_lr
from torchopt_lite.base import UninitializedState
from torchopt_lite.pytree import tree_vdot
from torchopt_lite.schedule import exponential_decay
from torchopt_lite.transform.utils import update_moment


def snapshot(tree: Any) -> Any:
    return optree.tree_map(lambda x: x.clone() if isinstance(x, torch.Tensor) else x, tree)


def assert_unchanged(before: Any, after: Any) -> None:
    b_leaves, b_spec = optree.tree_flatten(before)
    a_leaves, a_spec = optree.tree_flatten(after)
    assert b_spec == a_spec
    for b, a in zip(b_leaves, a_leaves, strict=True):
        if isinstance(b, torch.Tensor):
            assert b.dtype == a.dtype and torch.equal(b, a)
        else:
            assert b == a


def _params() -> dict[str, torch.Tensor]:
    return {"w": torch.ones(2, 3, dtype=torch.float64), "b": torch.arange(3.0, dtype=torch.float64)}


def _grads() -> dict[str, torch.Tensor]:
    return {"w": torch.full((2, 3), 0.5, dtype=torch.float64), "b": -torch.ones(3).double()}


# -- hyperparameters: rejected when the transformation is built ------------------------------

T = torch.tensor
BAD_HYPERPARAMETERS = [
    (torchopt_lite.sgd, {"lr": -0.1}, ValueError, r"sgd: Invalid learning rate value: lr must"),
    (torchopt_lite.sgd, {"lr": T(-0.1)}, ValueError, r"sgd: Invalid learning rate"),
    (torchopt_lite.sgd, {"lr": 0.1, "momentum": -0.9}, ValueError, r"Invalid momentum"),
    (torchopt_lite.sgd, {"lr": 0.1, "weight_decay": -1.0}, ValueError, r"Invalid weight_decay"),
    (torchopt_lite.sgd, {"lr": "0.1"}, TypeError, r"sgd: lr must be a float, a 0-d tensor"),
    (torchopt_lite.sgd, {"lr": T([0.1, 0.2])}, TypeError, r"lr must be a float, a 0-d"),
    (
        torchopt_lite.sgd,
        {"lr": 0.1, "nesterov": True},
        ValueError,
        r"trace: Nesterov momentum requires a momentum and zero dampening",
    ),
    (
        torchopt_lite.sgd,
        {"lr": 0.1, "momentum": 0.9, "dampening": 0.1, "nesterov": True},
        ValueError,
        r"Nesterov momentum requires",
    ),
    (torchopt_lite.adam, {"lr": -1e-3}, ValueError, r"adam: Invalid learning rate"),
    (torchopt_lite.adam, {"eps": -1e-8}, ValueError, r"adam: Invalid epsilon value: eps"),
    (torchopt_lite.adam, {"weight_decay": -0.1}, ValueError, r"adam: Invalid weight_decay"),
    (
        torchopt_lite.adam,
        {"betas": (1.0, 0.999)},
        ValueError,
        r"betas\[0\] must be in \[0.0, 1.0\)",
    ),
    (torchopt_lite.adam, {"betas": (-0.1, 0.999)}, ValueError, r"adam: betas\[0\] must be in"),
    (torchopt_lite.adam, {"betas": (0.9, 1.5)}, ValueError, r"adam: betas\[1\] must be in"),
    (torchopt_lite.adam, {"betas": (0.9,)}, TypeError, r"adam: betas must be a pair"),
    (torchopt_lite.adam, {"betas": (0.9, "x")}, TypeError, r"betas\[1\] must be a float"),
    (torchopt_lite.adam, {"eps_root": -1.0}, ValueError, r"scale_by_adam: Invalid epsilon"),
    (torchopt_lite.adamw, {"betas": (0.9, 1.0)}, ValueError, r"adamw: betas\[1\]"),
    (torchopt_lite.adamw, {"weight_decay": -0.1}, ValueError, r"adamw: Invalid weight_decay"),
    (torchopt_lite.adamw, {"eps": -1.0}, ValueError, r"adamw: Invalid epsilon"),
    (torchopt_lite.rmsprop, {"alpha": 1.5}, ValueError, r"rmsprop: alpha must be in \[0.0, 1.0\]"),
    (torchopt_lite.rmsprop, {"momentum": -0.1}, ValueError, r"rmsprop: Invalid momentum"),
    (torchopt_lite.rmsprop, {"eps": -0.1}, ValueError, r"rmsprop: Invalid epsilon"),
    (torchopt_lite.rmsprop, {"lr": -0.1}, ValueError, r"rmsprop: Invalid learning rate"),
    (torchopt_lite.adagrad, {"lr_decay": -0.1}, ValueError, r"adagrad: Invalid lr_decay"),
    (torchopt_lite.adagrad, {"eps": -0.1}, ValueError, r"scale_by_rss: Invalid epsilon"),
    (
        torchopt_lite.adagrad,
        {"initial_accumulator_value": -1.0},
        ValueError,
        r"initial_accumulator_value must be >= 0",
    ),
    (torchopt_lite.adadelta, {"rho": 1.1}, ValueError, r"adadelta: rho must be in"),
    (torchopt_lite.adadelta, {"eps": -1.0}, ValueError, r"scale_by_adadelta: Invalid epsilon"),
    (torchopt_lite.adadelta, {"lr": -1.0}, ValueError, r"adadelta: Invalid learning rate"),
    (torchopt_lite.adamax, {"betas": (1.0, 0.9)}, ValueError, r"adamax: betas\[0\]"),
    (torchopt_lite.adamax, {"eps": -1.0}, ValueError, r"scale_by_adamax: Invalid epsilon"),
    (torchopt_lite.adamax, {"weight_decay": -1.0}, ValueError, r"adamax: Invalid weight_decay"),
    (torchopt_lite.radam, {"betas": (0.9, -0.5)}, ValueError, r"radam: betas\[1\]"),
    (torchopt_lite.radam, {"eps": -1.0}, ValueError, r"scale_by_radam: Invalid epsilon"),
    (torchopt_lite.radam, {"lr": -1.0}, ValueError, r"radam: Invalid learning rate"),
    (transform.scale_by_adam, {"b1": 1.0}, ValueError, r"scale_by_adam: b1 must be in"),
    (transform.scale_by_adam, {"b2": "x"}, TypeError, r"scale_by_adam: b2 must be a float"),
    (transform.scale_by_rms, {"alpha": -0.1}, ValueError, r"scale_by_rms: alpha"),
    (transform.scale_by_stddev, {"eps": -0.1}, ValueError, r"scale_by_stddev: Invalid epsilon"),
    (transform.trace, {"dampening": -0.1}, ValueError, r"trace: Invalid dampening value"),
    (transform.add_decayed_weights, {"weight_decay": -1.0}, ValueError, r"add_decayed_weights"),
    (torchopt_lite.clip_grad_norm, {"max_norm": -1.0}, ValueError, r"clip_grad_norm: Invalid"),
    (flip_sign_and_add_weight_decay, {"weight_decay": -1.0}, ValueError, r"flip_sign_and_add"),
    (scale_by_neg_lr, {"lr": -1.0}, ValueError, r"scale_by_neg_lr: Invalid learning rate"),
    (exponential_decay, {"init_value": 1.0, "decay_rate": 0.0}, ValueError, r"decay_rate must not"),
]


@pytest.mark.parametrize(
    ("factory", "kwargs", "exc", "match"),
    BAD_HYPERPARAMETERS,
    ids=[f"{f.__name__}-{'-'.join(map(str, k))}" for f, k, _, _ in BAD_HYPERPARAMETERS],
)
def test_bad_hyperparameters_raise_at_construction(factory, kwargs, exc, match) -> None:
    with pytest.raises(exc, match=match):
        factory(**kwargs)


OOP_BAD = [
    (torchopt_lite.SGD, {"lr": -0.1}, r"sgd: Invalid learning rate"),
    (torchopt_lite.SGD, {"lr": 0.1, "momentum": -1.0}, r"sgd: Invalid momentum"),
    (torchopt_lite.Adam, {"lr": -0.1}, r"adam: Invalid learning rate"),
    (torchopt_lite.Adam, {"betas": (1.0, 0.9)}, r"adam: betas\[0\]"),
    (torchopt_lite.AdamW, {"weight_decay": -1.0}, r"adamw: Invalid weight_decay"),
    (torchopt_lite.RMSProp, {"alpha": 2.0}, r"rmsprop: alpha"),
    (torchopt_lite.AdaGrad, {"lr_decay": -1.0}, r"adagrad: Invalid lr_decay"),
    (torchopt_lite.AdaDelta, {"rho": 2.0}, r"adadelta: rho"),
    (torchopt_lite.AdaMax, {"eps": -1.0}, r"scale_by_adamax: Invalid epsilon"),
    (torchopt_lite.RAdam, {"betas": (0.9, 1.0)}, r"radam: betas\[1\]"),
]


@pytest.mark.parametrize(("cls", "kwargs", "match"), OOP_BAD, ids=lambda x: str(x)[:40])
def test_oop_bad_hyperparameters_raise_at_construction(cls, kwargs, match) -> None:
    """As torch.optim: the constructor raises, not the first step."""
    with pytest.raises(ValueError, match=match):
        cls([torch.zeros(2, requires_grad=True)], **kwargs)


def test_oop_bad_param_group_is_not_added() -> None:
    p, q = torch.zeros(2, requires_grad=True), torch.zeros(3, requires_grad=True)
    opt = torchopt_lite.Adam([p], lr=0.1)
    with pytest.raises(ValueError, match=r"adam: Invalid learning rate"):
        opt.add_param_group({"params": [q], "lr": -1.0})
    assert len(opt.param_groups) == 1
    p.grad = torch.ones(2)
    opt.step()  # the optimizer still works
    assert torch.all(p < 0)


# -- update and apply_updates: bad trees, bad leaves, bad state ------------------------------


def _stepped(alias: str, **kwargs: Any) -> tuple[Any, dict, Any]:
    """An optimizer, params and a state after one step (so every state field holds data)."""
    opt = getattr(torchopt_lite, alias)(**{"lr": 0.1, **kwargs})
    params = _params()
    state = opt.init(params)
    updates, state = opt.update(_grads(), state, params=params)
    torchopt_lite.apply_updates(params, updates)
    return opt, params, state


STATEFUL = ["sgd", "adam", "adamw", "rmsprop", "adagrad", "adadelta", "adamax", "radam"]
EXTRA = {"sgd": {"momentum": 0.9, "weight_decay": 0.1}, "adam": {"weight_decay": 0.1}}
EXTRA["rmsprop"] = {"momentum": 0.9, "centered": True}


def _check_update_raises(
    opt: Any, updates: Any, state: Any, params: Any, exc: type, match: str, **kw: Any
) -> None:
    before_params, before_state = snapshot(params), snapshot(state)
    with pytest.raises(exc, match=match):
        opt.update(updates, state, params=params, **kw)
    assert_unchanged(before_params, params)
    assert_unchanged(before_state, state)


@pytest.mark.parametrize("inplace", [True, False], ids=["inplace", "pure"])
@pytest.mark.parametrize("alias", STATEFUL)
def test_update_with_mismatched_params_tree(alias: str, inplace: bool) -> None:
    opt, params, state = _stepped(alias, **EXTRA.get(alias, {}))
    _check_update_raises(
        opt,
        _grads(),
        state,
        {"w": params["w"]},
        ValueError,
        r"update: params must have the same tree structure as updates",
        inplace=inplace,
    )


@pytest.mark.parametrize("alias", STATEFUL)
def test_update_before_init(alias: str) -> None:
    opt = getattr(torchopt_lite, alias)(lr=0.1)
    params = _params()
    before = snapshot(params)
    for state in (None, UninitializedState()):
        with pytest.raises(ValueError, match=r"update: state is .*; call init\(params\) first"):
            opt.update(_grads(), state, params=params)
    assert_unchanged(before, params)


@pytest.mark.parametrize("inplace", [True, False], ids=["inplace", "pure"])
@pytest.mark.parametrize("alias", STATEFUL)
def test_state_from_other_shapes(alias: str, inplace: bool) -> None:
    """A state built for other params: same structure, wrong leaf shapes."""
    opt, params, _ = _stepped(alias, **EXTRA.get(alias, {}))
    other = opt.init({"w": torch.zeros(3, 2, dtype=torch.float64), "b": torch.zeros(3).double()})
    _check_update_raises(
        opt,
        _grads(),
        other,
        params,
        ValueError,
        r"update leaf \d is \(2, 3\) torch.float64 on cpu but state\.\w+\[\d\] is \(3, 2\)",
        inplace=inplace,
    )


@pytest.mark.parametrize("inplace", [True, False], ids=["inplace", "pure"])
@pytest.mark.parametrize("alias", STATEFUL)
def test_state_with_other_leaf_count(alias: str, inplace: bool) -> None:
    opt, params, _ = _stepped(alias, **EXTRA.get(alias, {}))
    other = opt.init({"w": torch.zeros(2, 3, dtype=torch.float64)})
    _check_update_raises(
        opt,
        _grads(),
        other,
        params,
        ValueError,
        r"updates have 2 leaves but state\.\w+ has 1; updates must have the same tree structure",
        inplace=inplace,
    )


@pytest.mark.parametrize("inplace", [True, False], ids=["inplace", "pure"])
def test_state_of_other_dtype(inplace: bool) -> None:
    opt, params, state = _stepped("adam")
    grads = {k: v.float() for k, v in _grads().items()}
    _check_update_raises(
        opt,
        grads,
        state,
        {k: v.float() for k, v in params.items()},
        ValueError,
        r"torch.float32 on cpu but state\.mu\[\d\] is .* torch.float64",
        inplace=inplace,
    )


@pytest.mark.parametrize(
    ("alias", "other", "n_state", "n_chain"),
    [("adamw", "adam", 3, 4), ("sgd", "adagrad", 4, 3), ("rmsprop", "sgd", 3, 4)],
)
def test_state_from_a_chain_of_other_length(alias, other, n_state, n_chain) -> None:
    extra = {"sgd": {"momentum": 0.9}}
    opt = getattr(torchopt_lite, alias)(lr=0.1, **extra.get(alias, {}))
    params = _params()
    state = getattr(torchopt_lite, other)(lr=0.1, **extra.get(other, {})).init(params)
    _check_update_raises(
        opt,
        _grads(),
        state,
        params,
        ValueError,
        rf"chain: state has {n_state} entries but this chain has {n_chain} transforms; pass the "
        r"state returned by this optimizer's init\(\)",
    )


def test_state_not_a_tuple() -> None:
    opt, params, _ = _stepped("adam")
    _check_update_raises(
        opt, _grads(), {"mu": 1}, params, ValueError, r"chain: state has dict but this chain"
    )


def test_state_field_of_the_wrong_kind() -> None:
    opt, params, state = _stepped("adam")
    broken = (state[0], state[1]._replace(mu=transform.EmptyState()), state[2])
    _check_update_raises(
        opt, _grads(), broken, params, ValueError, r"state\.mu is EmptyState, expected a tuple"
    )


@pytest.mark.parametrize(
    ("updates", "exc", "match"),
    [
        ({"w": [[0.5] * 3] * 2, "b": T([1.0, 1, 1]).double()}, TypeError, r"must be a torch"),
        ({"w": 1.0, "b": torch.ones(3).double()}, TypeError, r"every leaf of updates must be a"),
        (
            {"w": torch.ones(2, 3, dtype=torch.int64), "b": torch.ones(3).double()},
            TypeError,
            r"update: updates must have floating-point \(or complex\) dtype; got torch.int64",
        ),
    ],
    ids=["list-leaf", "float-leaf", "int-dtype"],
)
def test_update_with_bad_leaves(updates, exc, match) -> None:
    opt, params, state = _stepped("adam")
    _check_update_raises(opt, updates, state, params, exc, match)


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"w": torch.ones(2, dtype=torch.int32)}, r"init: params must have floating-point"),
        ({"w": torch.ones(2), "b": 3}, r"init: every leaf of params must be a torch.Tensor"),
    ],
)
def test_init_with_bad_leaves(params, match) -> None:
    with pytest.raises(TypeError, match=match):
        torchopt_lite.adam().init(params)


@pytest.mark.parametrize("inplace", [True, False], ids=["inplace", "pure"])
def test_apply_updates_with_mismatched_trees(inplace: bool) -> None:
    params = _params()
    before = snapshot(params)
    with pytest.raises(
        ValueError, match=r"apply_updates: updates must have the same tree structure as params"
    ):
        torchopt_lite.apply_updates(params, {"w": torch.ones(2, 3)}, inplace=inplace)
    assert_unchanged(before, params)


def test_apply_updates_with_non_tensor_leaves() -> None:
    params = {"w": torch.ones(2), "b": torch.ones(1)}
    before = snapshot(params)
    with pytest.raises(TypeError, match=r"apply_updates: leaves must be tensors; got Tensor and"):
        torchopt_lite.apply_updates(params, {"w": torch.ones(2), "b": 1.0})
    assert_unchanged(before, params)


@pytest.mark.parametrize("inplace", [True, False], ids=["inplace", "pure"])
@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: torchopt_lite.adam(weight_decay=0.1), r"flip_sign_and_add_weight_decay: params"),
        (lambda: torchopt_lite.sgd(0.1, 0.9, weight_decay=0.1), r"flip_sign_and_add_weight_"),
        (lambda: transform.add_decayed_weights(0.1), r"add_decayed_weights: params must be"),
        (
            lambda: transform.masked(transform.scale(2.0), lambda p: {"w": True, "b": False}),
            r"masked: params must be passed to update\(\)",
        ),
    ],
    ids=["adam-wd", "sgd-wd", "add_decayed_weights", "masked-callable"],
)
def test_update_without_required_params(make, match, inplace: bool) -> None:
    opt = make()
    params = _params()
    state = opt.init(params)
    _check_update_raises(opt, _grads(), state, None, ValueError, match, inplace=inplace)


@pytest.mark.parametrize("inplace", [True, False], ids=["inplace", "pure"])
@pytest.mark.parametrize("eps_root", [0.0, 1e-8], ids=["fused", "unfused"])
def test_adamw_update_without_params(inplace: bool, eps_root: float) -> None:
    opt = torchopt_lite.adamw(weight_decay=0.1, eps_root=eps_root)
    params = _params()
    state = opt.init(params)
    _check_update_raises(
        opt,
        _grads(),
        state,
        None,
        ValueError,
        r"add_decayed_weights: params must be passed",
        inplace=inplace,
    )


def test_mask_with_other_structure() -> None:
    t = transform.masked(transform.scale(2.0), {"w": True})
    with pytest.raises(ValueError, match=r"masked: mask must have the tree structure of params"):
        t.init(_params())
    t = transform.masked(transform.scale(2.0), {"w": True, "b": False})
    state = t.init(_params())
    with pytest.raises(ValueError, match=r"masked: mask must have the tree structure of params"):
        t.update({"w": torch.ones(2)}, state)


def test_chain_of_non_transformations() -> None:
    with pytest.raises(TypeError, match=r"chain: every argument must be a GradientTransformation"):
        torchopt_lite.chain(torchopt_lite.sgd(0.1), lambda g: g)


def test_update_moment_order() -> None:
    with pytest.raises(ValueError, match=r"update_moment: order must be 1 or 2; got 3"):
        update_moment({"a": torch.ones(1)}, {"a": torch.zeros(1)}, 0.9, order=3)


def test_clip_grad_norm_nonfinite() -> None:
    t = torchopt_lite.clip_grad_norm(1.0, error_if_nonfinite=True)
    g = {"a": T([1.0, float("inf")]), "b": T([2.0])}
    before = snapshot(g)
    with pytest.raises(RuntimeError, match=r"clip_grad_norm: the total norm of order 2.0 .* non-"):
        t.update(g, t.init(g))
    assert_unchanged(before, g)


def test_tree_vdot_mismatch() -> None:
    with pytest.raises(ValueError, match=r"tree_vdot: trees must have the same structure"):
        tree_vdot({"a": torch.ones(1)}, {"b": torch.ones(1)})


# -- the torch.optim-style classes -----------------------------------------------------------


def test_optimizer_impl_must_be_a_transformation() -> None:
    with pytest.raises(TypeError, match=r"Optimizer: impl must be a GradientTransformation"):
        torchopt_lite.Optimizer([torch.zeros(1, requires_grad=True)], 42)  # type: ignore[arg-type]


def test_optimizer_sparse_gradients() -> None:
    p = torch.zeros(3, requires_grad=True)
    opt = torchopt_lite.Adam([p], lr=0.1)
    p.grad = torch.ones(3).to_sparse()
    with pytest.raises(TypeError, match=r"Optimizer: sparse gradients are not supported"):
        opt.step()
    assert torch.equal(p.detach(), torch.zeros(3))
    assert len(opt.state) == 0


def _trained(cls: type, **kwargs: Any) -> tuple[Any, list[torch.Tensor]]:
    params = [torch.ones(2, requires_grad=True), torch.ones(3, requires_grad=True)]
    opt = cls(params, **kwargs)
    for p in params:
        p.grad = torch.full_like(p, 0.5)
    opt.step()
    return opt, params


def _drop_trace_of_second_param(state_dict: dict) -> dict:
    state_dict["state"][1].pop("trace")
    return state_dict


@pytest.mark.parametrize(
    ("source", "target", "edit", "match"),
    [
        (
            (torchopt_lite.Adam, {"lr": 0.1}),
            (torchopt_lite.SGD, {"lr": 0.1, "momentum": 0.9}),
            None,
            r"load_state_dict: the state_dict's param_groups lack \['momentum', 'dampening', "
            r".*comes from a different optimizer configuration",
        ),
        (
            (torchopt_lite.SGD, {"lr": 0.1, "momentum": 0.9}),
            (torchopt_lite.SGD, {"lr": 0.1, "momentum": 0.9}),
            _drop_trace_of_second_param,
            r"load_state_dict: state entry 'trace' is missing for parameter\(s\) \[1\]; the "
            r"state_dict comes from a different optimizer configuration",
        ),
    ],
    ids=["adam-into-sgd", "missing-entry"],
)
def test_load_state_dict_from_other_configuration(source, target, edit, match) -> None:
    src, _ = _trained(source[0], **source[1])
    state_dict = src.state_dict()
    if edit is not None:
        state_dict = edit(state_dict)
    dst, params = _trained(target[0], lr=0.5, **{k: v for k, v in target[1].items() if k != "lr"})
    before_state = snapshot([dst.state[p] for p in params])
    before_groups = [{k: v for k, v in g.items() if k != "params"} for g in dst.param_groups]
    with pytest.raises(ValueError, match=match):
        dst.load_state_dict(state_dict)
    after_groups = [{k: v for k, v in g.items() if k != "params"} for g in dst.param_groups]
    assert after_groups == before_groups
    assert after_groups[0]["lr"] == 0.5  # not the source's 0.1
    assert_unchanged(before_state, [dst.state[p] for p in params])
    assert all(dst.param_groups[0]["params"][i] is p for i, p in enumerate(params))


def test_load_state_dict_with_other_groups() -> None:
    """torch.optim's own check (other number of groups) keeps its message."""
    src, _ = _trained(torchopt_lite.Adam, lr=0.1)
    p, q = torch.ones(2, requires_grad=True), torch.ones(3, requires_grad=True)
    dst = torchopt_lite.Adam([{"params": [p]}, {"params": [q]}], lr=0.1)
    with pytest.raises(ValueError, match=r"different number of parameter groups"):
        dst.load_state_dict(src.state_dict())


def test_func_optimizer_errors() -> None:
    with pytest.raises(TypeError, match=r"FuncOptimizer: impl must be a GradientTransformation"):
        torchopt_lite.FuncOptimizer(torchopt_lite.sgd)  # type: ignore[arg-type]
    w = torch.ones(2, requires_grad=True)
    opt = torchopt_lite.FuncOptimizer(torchopt_lite.adam(lr=0.1))
    with pytest.raises(ValueError, match=r"FuncOptimizer.step: loss must be a scalar tensor"):
        opt.step(w * 2, (w,))
    assert isinstance(opt.state_dict(), UninitializedState)


# -- NaN and inf: propagated as torch.optim does, not hidden ---------------------------------


@pytest.mark.parametrize("api", ["inplace", "pure", "oop"])
@pytest.mark.parametrize("case", CASES[1::2], ids=lambda c: c.id)
def test_nonfinite_gradients_propagate_like_torch_optim(case: Case, api: str) -> None:
    params = make_params()
    grads = make_grads(params, 3)
    grads[1]["w"][0, 0] = float("nan")
    grads[1]["w"][1, 2] = float("inf")
    grads[1]["b"][0] = -float("inf")
    expected = torch_optim_trajectory(case, params, grads)
    if api == "oop":
        from tests.optim._helpers import leaf_params, make_oop, run_steps

        ps = leaf_params(params)
        got = run_steps(make_oop(case, list(ps.values())), ps, grads)
    else:
        opt, p = case.make(), {k: v.clone() for k, v in params.items()}
        state, got = opt.init(p), []
        for g in grads:
            u, state = opt.update(snapshot(g), state, params=p, inplace=api == "inplace")
            p = torchopt_lite.apply_updates(p, u, inplace=api == "inplace")
            got.append(snapshot(p))
    assert not torch.isfinite(expected[-1]["w"]).all()  # the reference did not hide them
    for e, g in zip(expected, got, strict=True):
        for k in e:
            if case.alias == "radam":
                # Before rectification torch.optim.RAdam steps by m_hat alone (inf for an inf
                # gradient); the branch-free form here adds 0 * m/(sqrt(v) + eps) = 0 * (inf/inf),
                # so the same entries are NaN instead of inf. Both are non-finite.
                e_k = torch.where(torch.isfinite(e[k]), e[k], torch.nan)
                g_k = torch.where(torch.isfinite(g[k]), g[k], torch.nan)
                torch.testing.assert_close(g_k, e_k, rtol=1e-10, atol=1e-12, equal_nan=True)
            else:
                torch.testing.assert_close(g[k], e[k], rtol=1e-10, atol=1e-12, equal_nan=True)


def test_messages_name_the_fix() -> None:
    """The update-before-init message says what to do (one constant, used everywhere)."""
    from torchopt_lite.base import UPDATE_BEFORE_INIT

    assert re.search(r"call init\(params\) first", UPDATE_BEFORE_INIT)


def test_state_from_other_optimizer_with_same_chain_length() -> None:
    opt = torchopt_lite.adam(lr=0.1)
    params = _params()
    state = torchopt_lite.sgd(lr=0.1, momentum=0.9).init(params)
    match = r"scale_by_adam: state is TraceState, expected ScaleByAdamState; pass the state"
    _check_update_raises(opt, _grads(), state, params, ValueError, match)
