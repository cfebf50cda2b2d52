"""from_torch / to_torch: a conversion mid-run continues the trajectory it interrupts."""

from __future__ import annotations

import copy
import inspect
from dataclasses import dataclass
from typing import Any

import optree
import pytest
import torch

import torchopt_lite
from torchopt_lite.optim import GroupedAlias, from_torch, to_torch
from torchopt_lite.optim._grouped import alias_arguments
from torchopt_lite.optim._torch_registry import ALIAS_FLAGS, REGISTRY, TORCH_FLAGS

# Before and after the conversion the same float64 formulas run; only the order of roundings may
# differ (measured: 1e-15 relative after 6 steps), so the trajectories agree to 1e-12.
RTOL, ATOL = 1e-12, 1e-15
STEPS = 6

SGD, Adam, AdamW = torch.optim.SGD, torch.optim.Adam, torch.optim.AdamW
Adamax, RAdam, Adagrad = torch.optim.Adamax, torch.optim.RAdam, torch.optim.Adagrad
Adadelta, RMSprop = torch.optim.Adadelta, torch.optim.RMSprop


@dataclass(frozen=True)
class TorchCase:
    """A ``torch.optim`` configuration; its second param group gets its own hyperparameters."""

    cls: type[torch.optim.Optimizer]
    kwargs: dict[str, Any]
    desc: str
    alias: str

    @property
    def id(self) -> str:
        return f"{self.cls.__name__}-{self.desc}"

    def make(self, params: list[torch.Tensor]) -> torch.optim.Optimizer:
        second: dict[str, Any] = {"lr": 3 * self.kwargs["lr"]}
        if self.kwargs.get("weight_decay"):
            second["weight_decay"] = 0.0
        groups = [{"params": params[:2]}, {"params": params[2:], **second}]
        return self.cls(groups, **self.kwargs)


CASES = [
    TorchCase(SGD, {"lr": 0.1}, "plain", "sgd"),
    TorchCase(
        SGD,
        {"lr": 0.1, "momentum": 0.9, "dampening": 0.3, "weight_decay": 0.1, "maximize": True},
        "momentum-dampening-wd-maximize",
        "sgd",
    ),
    TorchCase(SGD, {"lr": 0.05, "momentum": 0.9, "nesterov": True}, "nesterov", "sgd"),
    TorchCase(
        Adam,
        {"lr": 0.01, "betas": (0.8, 0.99), "weight_decay": 0.1, "maximize": True},
        "wd-maximize",
        "adam",
    ),
    TorchCase(
        Adam,
        {"lr": 0.01, "weight_decay": 0.1, "decoupled_weight_decay": True},
        "decoupled",
        "adamw",
    ),
    TorchCase(AdamW, {"lr": 0.01, "weight_decay": 0.1, "foreach": False}, "foreach-off", "adamw"),
    TorchCase(Adamax, {"lr": 0.01, "weight_decay": 0.1, "maximize": True}, "wd-maximize", "adamax"),
    TorchCase(
        RAdam,
        {"lr": 0.01, "betas": (0.9, 0.9), "weight_decay": 0.1, "maximize": True},
        "rectified-wd-maximize",
        "radam",
    ),
    TorchCase(
        Adagrad,
        {"lr": 0.1, "lr_decay": 0.05, "weight_decay": 0.1, "initial_accumulator_value": 0.2},
        "decay-wd-init",
        "adagrad",
    ),
    TorchCase(
        Adadelta,
        {"lr": 0.5, "rho": 0.8, "weight_decay": 0.1, "maximize": True},
        "wd-maximize",
        "adadelta",
    ),
    TorchCase(
        RMSprop,
        {"lr": 0.01, "momentum": 0.9, "centered": True, "weight_decay": 0.1, "maximize": True},
        "centered-momentum-wd-maximize",
        "rmsprop",
    ),
    TorchCase(RMSprop, {"lr": 0.01, "alpha": 0.9}, "plain", "rmsprop"),
]


def initial_params() -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    shapes = [(3, 4), (5,), ()]
    return [torch.randn(s, generator=gen, dtype=torch.float64) for s in shapes]


def gradients(steps: int = STEPS) -> list[list[torch.Tensor]]:
    gen = torch.Generator().manual_seed(1)
    shapes = [(3, 4), (5,), ()]
    return [
        [torch.randn(s, generator=gen, dtype=torch.float64) for s in shapes] for _ in range(steps)
    ]


def leaves() -> list[torch.Tensor]:
    return [p.clone().requires_grad_(True) for p in initial_params()]


def torch_steps(opt: torch.optim.Optimizer, params: list[torch.Tensor], grads: list) -> list:
    """Step ``opt`` with ``grads``; the parameters after each step."""
    out = []
    for gs in grads:
        for p, g in zip(params, gs, strict=True):
            p.grad = None if g is None else g.clone()
        opt.step()
        out.append([p.detach().clone() for p in params])
    return out


def functional_steps(
    opt: GroupedAlias, state: Any, groups: list, grads: list, *, inplace: bool = True
) -> tuple[list, Any, list]:
    """Step ``opt`` over ``groups`` (the first two tensors, then the third)."""
    out = []
    for gs in grads:
        g = [[x if x is None else x.clone() for x in group] for group in (gs[:2], gs[2:])]
        updates, state = opt.update(g, state, params=groups, inplace=inplace)
        groups = torchopt_lite.apply_updates(groups, updates, inplace=inplace)
        out.append([p.detach().clone() for group in groups for p in group])
    return out, state, groups


def assert_trajectories_close(got: list, expected: list) -> None:
    assert len(got) == len(expected)
    for step, (g, e) in enumerate(zip(got, expected, strict=True)):
        for i, (x, y) in enumerate(zip(g, e, strict=True)):
            torch.testing.assert_close(x, y, rtol=RTOL, atol=ATOL, msg=f"step {step}, param {i}")


def torch_state(opt: torch.optim.Optimizer) -> dict:
    return copy.deepcopy(opt.state_dict())


def assert_same_torch_state(a: dict, b: dict) -> None:
    assert a["param_groups"] == b["param_groups"]
    assert a["state"].keys() == b["state"].keys()
    for i, entries in a["state"].items():
        assert entries.keys() == b["state"][i].keys()
        for key, value in entries.items():
            assert torch.equal(value, b["state"][i][key]), (i, key)


def snapshot(tree: Any) -> Any:
    return optree.tree_map(lambda x: x.detach().clone(), tree, none_is_leaf=False)


def assert_tree_equal(a: Any, b: Any) -> None:
    assert optree.tree_structure(a) == optree.tree_structure(b)
    for x, y in zip(optree.tree_leaves(a), optree.tree_leaves(b), strict=True):
        assert torch.equal(x, y)


# -- the conversions continue the trajectory ---------------------------------------------------


@pytest.mark.parametrize("inplace", [True, False], ids=["inplace", "pure"])
@pytest.mark.parametrize("split", [0, 3])
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_from_torch_continues_torch_optim(case: TorchCase, split: int, inplace: bool) -> None:
    grads = gradients()
    ps = leaves()
    expected = torch_steps(case.make(ps), ps, grads)

    ps = leaves()
    opt = case.make(ps)
    torch_steps(opt, ps, grads[:split])
    before = torch_state(opt)
    transformation, state = from_torch(opt)
    assert transformation.alias == case.alias
    groups = [list(g["params"]) for g in opt.param_groups]
    got, _, _ = functional_steps(transformation, state, groups, grads[split:], inplace=inplace)
    assert_trajectories_close(got, expected[split:])
    assert_same_torch_state(torch_state(opt), before)  # the functional state holds copies


@pytest.mark.parametrize("split", [0, 3])
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_to_torch_continues_functional(case: TorchCase, split: int) -> None:
    grads = gradients()
    ps = leaves()
    expected = torch_steps(case.make(ps), ps, grads)

    ps = leaves()
    transformation, state = from_torch(case.make(ps))
    groups = [ps[:2], ps[2:]]
    _, state, groups = functional_steps(transformation, state, groups, grads[:split])
    kept = snapshot(state)
    opt = to_torch(transformation, state, groups)
    assert type(opt) is case.cls or (case.alias == "adamw" and type(opt) is AdamW)
    got = torch_steps(opt, ps, grads[split:])
    assert_trajectories_close(got, expected[split:])
    assert_tree_equal(state, kept)  # the torch.optim state holds copies


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_round_trip_keeps_hyperparameters_and_state(case: TorchCase) -> None:
    ps = leaves()
    opt = case.make(ps)
    torch_steps(opt, ps, gradients(3))
    back = to_torch(*from_torch(opt), [list(g["params"]) for g in opt.param_groups])
    original, converted = opt.state_dict(), back.state_dict()
    for g, h in zip(original["param_groups"], converted["param_groups"], strict=True):
        # the flags (foreach, ...) choose how torch.optim steps; they are not carried over
        assert {k: g[k] for k in h if k not in TORCH_FLAGS} == {
            k: v for k, v in h.items() if k not in TORCH_FLAGS
        }
    count_free = case.alias == "adadelta" or (
        case.alias == "rmsprop" and not opt.defaults["momentum"]
    )
    for i, entries in original["state"].items():
        assert entries.keys() == converted["state"][i].keys()
        for key, value in entries.items():
            if key == "step" and count_free:  # not in the functional state: restarts at 0
                assert float(converted["state"][i][key]) == 0.0
                continue
            torch.testing.assert_close(converted["state"][i][key], value, rtol=0, atol=0)


@dataclass(frozen=True)
class OopCase:
    """A torchopt_lite class and its ``torch.optim`` counterpart with the same arguments."""

    oop: type[torchopt_lite.Optimizer]
    torch_cls: type[torch.optim.Optimizer]
    kwargs: dict[str, Any]


OOP_CASES = [
    OopCase(torchopt_lite.SGD, SGD, {"lr": 0.1, "momentum": 0.9, "weight_decay": 0.1}),
    OopCase(torchopt_lite.Adam, Adam, {"lr": 0.01, "weight_decay": 0.1, "maximize": True}),
    OopCase(torchopt_lite.AdamW, AdamW, {"lr": 0.01, "weight_decay": 0.1}),
    OopCase(torchopt_lite.AdaMax, Adamax, {"lr": 0.01, "weight_decay": 0.1}),
    OopCase(torchopt_lite.RAdam, RAdam, {"lr": 0.01, "weight_decay": 0.1}),
    OopCase(torchopt_lite.AdaGrad, Adagrad, {"lr": 0.1, "lr_decay": 0.05}),
    OopCase(torchopt_lite.AdaDelta, Adadelta, {"lr": 0.5, "weight_decay": 0.1}),
    OopCase(torchopt_lite.RMSProp, RMSprop, {"lr": 0.01, "momentum": 0.9, "centered": True}),
]


@pytest.mark.parametrize("case", OOP_CASES, ids=lambda c: c.oop.__name__)
def test_torchopt_lite_classes_convert_both_ways(case: OopCase) -> None:
    """torchopt_lite's classes to torch.optim and back, mid-run, against either run alone."""
    grads = gradients()
    ps = leaves()
    expected = torch_steps(case.torch_cls(ps, **case.kwargs), ps, grads)
    ps = leaves()
    assert_trajectories_close(torch_steps(case.oop(ps, **case.kwargs), ps, grads), expected)

    # torchopt_lite's class for 3 steps, then torch.optim
    ps = leaves()
    ours = case.oop(ps, **case.kwargs)
    torch_steps(ours, ps, grads[:3])
    opt = to_torch(*from_torch(ours), [ps])
    assert type(opt) is case.torch_cls
    assert_trajectories_close(torch_steps(opt, ps, grads[3:]), expected[3:])

    # torch.optim for 3 steps, then torchopt_lite's class
    ps = leaves()
    theirs = case.torch_cls(ps, **case.kwargs)
    torch_steps(theirs, ps, grads[:3])
    opt = to_torch(*from_torch(theirs), [ps], optimizer_class=case.oop)
    assert type(opt) is case.oop
    assert_trajectories_close(torch_steps(opt, ps, grads[3:]), expected[3:])


def test_frozen_parameter_without_state_converts() -> None:
    """A parameter torch.optim never stepped gets a fresh state; it stays put, as in torch."""
    grads = [[g[0], g[1], None] for g in gradients()]
    case = CASES[3]  # Adam
    ps = leaves()
    expected = torch_steps(case.make(ps), ps, grads)
    ps = leaves()
    opt = case.make(ps)
    torch_steps(opt, ps, grads[:3])
    assert ps[2] not in opt.state
    transformation, state = from_torch(opt)
    groups = [list(g["params"]) for g in opt.param_groups]
    got, _, _ = functional_steps(transformation, state, groups, grads[3:])
    assert_trajectories_close(got, expected[3:])
    assert torch.equal(got[-1][2], initial_params()[2])


def test_plain_alias_state_converts_as_one_group() -> None:
    """A state of ``torchopt_lite.adamax(...)`` is the one group of ``GroupedAlias("adamax")``."""
    grads = gradients()
    ps = leaves()
    expected = torch_steps(Adamax(ps, lr=0.01, eps=1e-6), ps, grads)

    ps = leaves()
    opt = torchopt_lite.adamax(lr=0.01)
    state = opt.init(ps)
    for gs in grads[:3]:
        updates, state = opt.update([g.clone() for g in gs], state, params=ps)
        torchopt_lite.apply_updates(ps, updates)
    described = GroupedAlias("adamax", [{"lr": 0.01}])
    assert described.groups[0]["eps"] == 1e-6  # the alias's default, not torch.optim's 1e-8
    converted = to_torch(described, (state,), [ps])
    assert converted.param_groups[0]["eps"] == 1e-6
    assert_trajectories_close(torch_steps(converted, ps, grads[3:]), expected[3:])


def test_sgd_before_its_first_step_has_no_momentum_buffer() -> None:
    """torch.optim.SGD's first step is undamped when no buffer exists; none is written."""
    ps = leaves()
    opt = GroupedAlias("sgd", [{"lr": 0.1, "momentum": 0.9, "dampening": 0.5}])
    converted = to_torch(opt, opt.init([ps]), [ps])
    assert len(converted.state) == 0
    grads = gradients(2)
    ref_ps = leaves()
    ref = SGD(ref_ps, lr=0.1, momentum=0.9, dampening=0.5)
    assert_trajectories_close(torch_steps(converted, ps, grads), torch_steps(ref, ref_ps, grads))


# -- the registry ------------------------------------------------------------------------------


@pytest.mark.parametrize("entry", REGISTRY, ids=lambda e: e.alias)
def test_registry_accounts_for_every_option(entry: Any) -> None:
    """Every argument on both sides is converted, required at one value, or a flag."""
    ours = set(alias_arguments(entry.alias))
    assert ours == {*entry.hyperparameters, *entry.alias_only, *ALIAS_FLAGS} & ours
    assert ours - {*entry.hyperparameters, *entry.alias_only} <= set(ALIAS_FLAGS)
    for cls in entry.torch_classes:
        defaults = cls([torch.zeros(1, requires_grad=True)]).defaults
        assert set(defaults) == {*entry.hyperparameters, *entry.torch_only, *TORCH_FLAGS} & set(
            defaults
        ), cls
        assert set(defaults) - {*entry.hyperparameters, *entry.torch_only} <= set(TORCH_FLAGS)
    # torchopt_lite's class takes the alias's own hyperparameters (maximize is added to some)
    own = set(entry.hyperparameters) & set(
        inspect.signature(getattr(torchopt_lite, entry.alias)).parameters
    )
    assert own <= set(inspect.signature(entry.oop_class).parameters)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_registry_names_every_state_entry(case: TorchCase) -> None:
    ps = leaves()
    opt = case.make(ps)
    torch_steps(opt, ps, gradients(1))
    entry = next(e for e in REGISTRY if e.alias == case.alias)
    for p in ps:
        assert set(opt.state[p]) <= set(entry.state)


# -- GroupedAlias ------------------------------------------------------------------------------


@pytest.mark.parametrize("inplace", [True, False], ids=["inplace", "pure"])
def test_grouped_alias_steps_each_group_with_its_own_alias(inplace: bool) -> None:
    groups = [{"lr": 0.1}, {"lr": 0.01, "weight_decay": 0.1, "betas": (0.5, 0.9)}]
    grouped = GroupedAlias("adam", groups)
    singles = [torchopt_lite.adam(**g) for g in groups]
    ps = initial_params()
    params = [ps[:2], ps[2:]]
    state = grouped.init(params)
    states = [t.init(p) for t, p in zip(singles, params, strict=True)]
    for gs in gradients(3):
        grads = [gs[:2], gs[2:]]
        updates, state = grouped.update(
            [[g.clone() for g in x] for x in grads], state, params=params, inplace=inplace
        )
        assert isinstance(updates, list)
        for k, (t, g) in enumerate(zip(singles, grads, strict=True)):
            u, states[k] = t.update(
                [x.clone() for x in g], states[k], params=params[k], inplace=inplace
            )
            for a, b in zip(updates[k], u, strict=True):
                assert torch.equal(a, b)
        params = torchopt_lite.apply_updates(params, updates, inplace=False)
    assert_tree_equal(state, tuple(states))


def test_grouped_alias_records_complete_hyperparameters() -> None:
    opt = GroupedAlias("radam", [{"lr": 0.1, "maximize": True}])
    assert opt.groups[0] == {
        "lr": 0.1,
        "betas": (0.9, 0.999),
        "eps": 1e-6,
        "weight_decay": 0.0,
        "moment_requires_grad": False,
        "maximize": True,
    }
    assert repr(opt).startswith("GroupedAlias('radam', [{'lr': 0.1,")
    # maximize where the alias lacks it: the sign flip comes first, the weight decay after it
    p, g = torch.tensor([1.0]), torch.tensor([0.5])
    flipped = GroupedAlias("adadelta", [{"lr": 1.0, "weight_decay": 0.1, "maximize": True}])
    plain = torchopt_lite.adadelta(lr=1.0, weight_decay=0.1)
    u, _ = flipped.update([[g]], flipped.init([[p]]), params=[[p]], inplace=False)
    v, _ = plain.update([-g], plain.init([p]), params=[p], inplace=False)
    assert torch.equal(u[0][0], v[0])


# -- errors: what, where, how to fix; nothing changed ------------------------------------------


class MyAdam(torch.optim.Adam):
    pass


def _stepped(make: Any, steps: int = 1) -> tuple[torch.optim.Optimizer, list[torch.Tensor]]:
    ps = leaves()
    opt = make(ps)
    torch_steps(opt, ps, gradients(steps))
    return opt, ps


def _unknown_option(ps: list[torch.Tensor]) -> torch.optim.Optimizer:
    opt = Adam(ps, lr=0.1)
    opt.defaults["new_option"] = 1
    return opt


def _momentum_dropped(ps: list[torch.Tensor]) -> torch.optim.Optimizer:
    opt = SGD(ps, lr=0.1, momentum=0.9)
    torch_steps(opt, ps, gradients(1))
    opt.param_groups[0]["momentum"] = 0.0
    return opt


def _momentum_added(ps: list[torch.Tensor]) -> torch.optim.Optimizer:
    opt = RMSprop(ps, lr=0.1)
    torch_steps(opt, ps, gradients(1))
    opt.param_groups[0]["momentum"] = 0.9
    return opt


def _uneven_steps(ps: list[torch.Tensor]) -> torch.optim.Optimizer:
    opt = Adam(ps, lr=0.1)
    grads = gradients(2)
    torch_steps(opt, ps, [grads[0], [grads[1][0], None, None]])
    return opt


def _mixed_decoupling(ps: list[torch.Tensor]) -> torch.optim.Optimizer:
    return Adam([{"params": ps[:1]}, {"params": ps[1:], "decoupled_weight_decay": True}])


FROM_TORCH_ERRORS = [
    (lambda ps: torch.optim.NAdam(ps), TypeError, r"NAdam has no counterpart.*supported: "),
    (
        lambda ps: MyAdam(ps),
        TypeError,
        r"MyAdam has no counterpart in torchopt_lite \(a subclass may",
    ),
    (
        lambda ps: torchopt_lite.Optimizer(ps, torchopt_lite.adam(0.1)),
        TypeError,
        r"Optimizer has no counterpart",
    ),
    (lambda ps: Adam(ps, amsgrad=True), ValueError, r"amsgrad=True \(param group 0\).*amsgrad=F"),
    (
        lambda ps: RAdam(ps, weight_decay=0.1, decoupled_weight_decay=True),
        ValueError,
        r"RAdam with decoupled_weight_decay=True",
    ),
    (_mixed_decoupling, ValueError, r"different functional optimizers \['adam', 'adamw'\]"),
    (_unknown_option, ValueError, r"\['new_option'\], which this bridge does not know"),
    (_uneven_steps, ValueError, r"param group 0 were stepped different numbers of times \[1, 2\]"),
    (_momentum_dropped, ValueError, r"parameter 0 of param group 0.*unknown: \['momentum_buffer'"),
    (_momentum_added, ValueError, r"missing: \['trace'\]"),
]


@pytest.mark.parametrize(
    ("make", "error", "match"), FROM_TORCH_ERRORS, ids=[m for _, _, m in FROM_TORCH_ERRORS]
)
def test_from_torch_errors_leave_the_optimizer_as_it_was(
    make: Any, error: type, match: str
) -> None:
    ps = leaves()
    opt = make(ps)
    before, values = torch_state(opt), [p.detach().clone() for p in ps]
    with pytest.raises(error, match=match):
        from_torch(opt)
    assert_same_torch_state(torch_state(opt), before)
    assert all(torch.equal(p, v) for p, v in zip(ps, values, strict=True))


def test_from_torch_refuses_what_is_not_an_optimizer() -> None:
    with pytest.raises(TypeError, match=r"must be a torch.optim.Optimizer; got Chained"):
        from_torch(torchopt_lite.adam(0.1))  # type: ignore[arg-type]


GROUPED_ERRORS = [
    ("nadam", [{}], ValueError, r"alias must be one of \['sgd', .*got 'nadam'"),
    ("adam", [], ValueError, r"groups must be a non-empty list of dicts"),
    ("adam", {"lr": 0.1}, ValueError, r"groups must be a non-empty list of dicts"),
    ("adam", [0.1], TypeError, r"groups\[0\] must be a dict of hyperparameters; got float"),
    ("adam", [{"lr": 0.1, "rho": 0.9}], TypeError, r"groups\[0\] has \['rho'\], which"),
    ("sgd", [{"lr": 0.1}, {"momentum": 0.9}], TypeError, r"groups\[1\] lacks \['lr'\]"),
    ("adam", [{"betas": (1.0, 0.9)}], ValueError, r"adam: betas\[0\] must be in \[0.0, 1.0\)"),
]


@pytest.mark.parametrize(
    ("alias", "groups", "error", "match"), GROUPED_ERRORS, ids=[m for *_, m in GROUPED_ERRORS]
)
def test_grouped_alias_refuses_bad_configurations(
    alias: str, groups: Any, error: type, match: str
) -> None:
    with pytest.raises(error, match=match):
        GroupedAlias(alias, groups)


def _grouped_setup() -> tuple[GroupedAlias, list, Any]:
    opt = GroupedAlias("adam", [{"lr": 0.1}, {"lr": 0.2}])
    ps = initial_params()
    params = [ps[:2], ps[2:]]
    state = opt.init(params)
    _, state = opt.update([gradients(1)[0][:2], gradients(1)[0][2:]], state, params=params)
    return opt, params, state


def test_grouped_alias_init_checks_the_groups() -> None:
    opt, params, _ = _grouped_setup()
    with pytest.raises(ValueError, match=r"params has 1 groups but this optimizer has 2; pass one"):
        opt.init([params[0]])
    with pytest.raises(TypeError, match=r"params must be a sequence of groups .*got Tensor"):
        opt.init(params[0][0])
    with pytest.raises(TypeError, match=r"params\[1\] must be a list or tuple of tensors; got Ten"):
        opt.init([params[0], params[1][0]])


def _bad_updates(params: list) -> list[tuple[Any, Any, type, str]]:
    """``(updates, state_fn, error, match)``; ``state_fn`` maps the good state to the one passed."""
    good = [[torch.ones_like(p) for p in group] for group in params]
    keep = lambda s: s  # noqa: E731
    return [
        (good, lambda s: None, ValueError, r"state is None; call init\(params\) first"),
        (good, lambda s: s[:1], ValueError, r"state has 1 entries but this optimizer has 2 groups"),
        (good[:1], keep, ValueError, r"updates has 1 groups but this optimizer has 2"),
        ([good[0], good[1] * 2], keep, ValueError, r"updates\[1\] has 2 leaves but state field"),
        (
            [good[0], [torch.ones(2, dtype=torch.float64)]],
            keep,
            ValueError,
            r"updates\[1\]\[0\] has shape \(2,\) but state field 'mu' of group 1 holds \(\)",
        ),
    ]


@pytest.mark.parametrize("inplace", [True, False], ids=["inplace", "pure"])
@pytest.mark.parametrize("index", range(5))
def test_grouped_alias_update_errors_change_nothing(index: int, inplace: bool) -> None:
    """Every group is checked before the first is stepped: group 0 is untouched by group 1's."""
    opt, params, state = _grouped_setup()
    updates, state_fn, error, match = _bad_updates(params)[index]
    kept_state, kept_params = snapshot(state), snapshot(params)
    kept_updates = snapshot(updates)
    with pytest.raises(error, match=match):
        opt.update(updates, state_fn(state), params=params, inplace=inplace)
    assert_tree_equal(state, kept_state)
    assert_tree_equal(params, kept_params)
    assert_tree_equal(updates, kept_updates)


def test_grouped_alias_update_checks_params_against_updates() -> None:
    opt, params, state = _grouped_setup()
    kept = snapshot(state)
    updates = [[torch.ones_like(p) for p in group] for group in params]
    with pytest.raises(ValueError, match=r"updates\[0\] has 2 leaves but params of group 0 has 1"):
        opt.update(updates, state, params=[params[0][:1], params[1]])
    assert_tree_equal(state, kept)


def _described(alias: str, **group: Any) -> GroupedAlias:
    return GroupedAlias(alias, [{"lr": 0.1, **group}])


TO_TORCH_ERRORS = [
    (
        torchopt_lite.adam(0.1),
        None,
        TypeError,
        r"transformation must be a torchopt_lite.optim.GroupedAlias .*got Chained",
    ),
    (
        GroupedAlias("adam", [{"lr": torchopt_lite.schedule.linear_schedule(0.1, 0.0, 10)}]),
        None,
        TypeError,
        r"lr of group 0 is a schedule; .*lr_scheduler",
    ),
    (_described("adam", eps_root=1e-8), None, ValueError, r"adam with eps_root=1e-08 \(group 0\)"),
    (_described("adamw", mask=[True, False, True]), None, ValueError, r"adamw with mask="),
    (
        _described("rmsprop", momentum=0.9, nesterov=True),
        None,
        ValueError,
        r"rmsprop with nesterov=True \(group 0\) has no counterpart in torch.optim.RMSprop",
    ),
    (
        _described("rmsprop", initial_scale=1.0),
        None,
        ValueError,
        r"initial_scale=1.0 \(group 0\) has no counterpart",
    ),
    (
        _described("adam"),
        torch.optim.SGD,
        ValueError,
        r"optimizer_class must be one of \['torch.optim.Adam', 'torch.optim.AdamW', 'torchopt_lit",
    ),
    (
        _described("adadelta", maximize=True),
        torchopt_lite.AdaDelta,
        ValueError,
        r"adadelta with maximize=True \(group 0\) has no counterpart in torchopt_lite.AdaDelta",
    ),
]


@pytest.mark.parametrize(
    ("opt", "cls", "error", "match"), TO_TORCH_ERRORS, ids=[m for *_, m in TO_TORCH_ERRORS]
)
def test_to_torch_errors_change_nothing(opt: Any, cls: Any, error: type, match: str) -> None:
    ps = leaves()
    state = opt.init([ps] if isinstance(opt, GroupedAlias) else ps)
    kept_state, kept_params = snapshot(state), snapshot(ps)
    with pytest.raises(error, match=match):
        to_torch(opt, state, [ps], optimizer_class=cls)
    assert_tree_equal(state, kept_state)
    assert_tree_equal(ps, kept_params)


def test_to_torch_checks_params_and_state() -> None:
    opt = GroupedAlias("adam", [{"lr": 0.1}])
    ps = leaves()
    state = opt.init([ps])
    kept = snapshot(state)
    with pytest.raises(ValueError, match=r"params has 2 groups but this optimizer has 1"):
        to_torch(opt, state, [ps[:1], ps[1:]])
    other = opt.init([[p[..., None] for p in ps]])
    with pytest.raises(ValueError, match=r"to_torch: state holds \(3, 4, 1\) torch.float64 where"):
        to_torch(opt, other, [ps])
    with pytest.raises(ValueError, match=r"to_torch: state has structure"):
        to_torch(opt, state[0], [ps])
    assert_tree_equal(state, kept)
