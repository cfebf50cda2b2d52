"""The torch.optim-style classes against torch.optim: steps, groups, schedulers, state_dict."""

from __future__ import annotations

import io

import pytest
import torch

import torchopt_lite
from tests.alias._registry import CASES, Case, make_grads, make_params, torch_optim_trajectory
from tests.optim._helpers import OOP_CLASSES, leaf_params, make_oop, run_steps

STEPS = 12
# As in tests/alias/test_reference.py: only the order of float64 roundings differs.
RTOL, ATOL = 1e-10, 1e-12


def assert_trajectories_close(got: list[dict], expected: list[dict]) -> None:
    assert len(got) == len(expected)
    for step, (g, e) in enumerate(zip(got, expected, strict=True)):
        for k in e:
            torch.testing.assert_close(g[k], e[k], rtol=RTOL, atol=ATOL, msg=f"step {step} {k}")


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_oop_matches_torch_optim(case: Case) -> None:
    params = make_params()
    grads = make_grads(params, STEPS)
    expected = torch_optim_trajectory(case, params, grads)
    ps = leaf_params(params)
    opt = make_oop(case, list(ps.values()))
    got = []
    for g in grads:
        for k, p in ps.items():
            p.grad = g[k].clone()
        opt.step()
        for k, p in ps.items():  # the step reads the gradients and leaves them as they were
            assert torch.equal(p.grad, g[k]), k
        got.append({k: v.detach().clone() for k, v in ps.items()})
    assert_trajectories_close(got, expected)


GROUP_CASES = {
    "sgd": ({"momentum": 0.9}, {"momentum": 0.9}),
    "adam": ({}, {}),
    "adamw": ({}, {}),
    "rmsprop": ({"momentum": 0.5}, {"momentum": 0.5}),
    "adagrad": ({}, {}),
    "adadelta": ({}, {}),
    "adamax": ({"eps": 1e-8}, {"eps": 1e-8}),
    "radam": ({"eps": 1e-8}, {"eps": 1e-8}),
}


@pytest.mark.parametrize("alias", list(GROUP_CASES))
def test_param_groups_match_torch_optim(alias: str) -> None:
    """Two groups with their own lr and weight_decay, as torch.optim with the same groups."""
    ours_kwargs, torch_kwargs = GROUP_CASES[alias]
    torch_cls = next(c.torch_cls for c in CASES if c.alias == alias)
    params = make_params()
    grads = make_grads(params, 8)
    results = []
    for make in (
        lambda groups: OOP_CLASSES[alias](groups, lr=0.05, **ours_kwargs),
        lambda groups: torch_cls(groups, lr=0.05, **torch_kwargs),
    ):
        ps = leaf_params(params)
        groups = [
            {"params": [ps["w"]], "lr": 0.01, "weight_decay": 0.2},
            {"params": [ps["b"], ps["s"]], "weight_decay": 0.0},
        ]
        results.append(run_steps(make(groups), ps, grads))
    assert_trajectories_close(*results)
    # the groups really differ: the first one moved at a different rate
    assert not torch.allclose(results[0][-1]["w"], params["w"], rtol=0, atol=1e-6)


SCHEDULERS = {
    "StepLR": lambda opt: torch.optim.lr_scheduler.StepLR(opt, step_size=3, gamma=0.5),
    "LambdaLR": lambda opt: torch.optim.lr_scheduler.LambdaLR(opt, lambda t: 1.0 / (1.0 + t)),
}


@pytest.mark.parametrize("scheduler", list(SCHEDULERS))
@pytest.mark.parametrize(
    ("ours", "theirs", "kwargs"),
    [
        (torchopt_lite.Adam, torch.optim.Adam, {"lr": 0.05}),
        (torchopt_lite.SGD, torch.optim.SGD, {"lr": 0.1, "momentum": 0.9}),
    ],
    ids=["Adam", "SGD"],
)
def test_lr_scheduler_matches_torch_optim(ours: type, theirs: type, kwargs: dict, scheduler: str):
    params = make_params()
    grads = make_grads(params, 10)
    results, lrs = [], []
    for cls in (ours, theirs):
        ps = leaf_params(params)
        opt = cls(list(ps.values()), **kwargs)
        sched = SCHEDULERS[scheduler](opt)
        traj, lr_trace = [], []
        for g in grads:
            traj += run_steps(opt, ps, [g])
            sched.step()
            lr_trace.append(opt.param_groups[0]["lr"])
        results.append(traj)
        lrs.append(lr_trace)
    assert lrs[0] == lrs[1]
    assert lrs[0][-1] < kwargs["lr"]  # the schedule did change the learning rate
    assert_trajectories_close(*results)


def _save_load(state_dict: dict) -> dict:
    buffer = io.BytesIO()
    torch.save(state_dict, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


@pytest.mark.parametrize("via_bytes", [False, True], ids=["direct", "torch.save"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_state_dict_resume_equals_uninterrupted(case: Case, via_bytes: bool) -> None:
    params = make_params()
    grads = make_grads(params, 10)
    ps = leaf_params(params)
    uninterrupted = run_steps(make_oop(case, list(ps.values())), ps, grads)

    ps = leaf_params(params)
    first = make_oop(case, list(ps.values()))
    run_steps(first, ps, grads[:5])
    state_dict = first.state_dict()
    if via_bytes:
        state_dict = _save_load(state_dict)
    resumed_ps = leaf_params({k: v.detach() for k, v in ps.items()})
    second = make_oop(case, list(resumed_ps.values()))
    second.load_state_dict(state_dict)
    resumed = run_steps(second, resumed_ps, grads[5:])
    for e, g in zip(uninterrupted[5:], resumed, strict=True):
        for k in e:
            torch.testing.assert_close(g[k], e[k], rtol=1e-13, atol=1e-15)


def test_defaults_and_state_exist() -> None:
    """Lightning reads ``defaults`` and ``state`` (TorchOpt issue #203)."""
    params = make_params()
    ps = leaf_params(params)
    opt = torchopt_lite.Adam(list(ps.values()), lr=0.01, weight_decay=0.1)
    assert opt.defaults["lr"] == 0.01
    assert opt.defaults["weight_decay"] == 0.1
    assert opt.defaults["betas"] == (0.9, 0.999)
    assert isinstance(opt, torch.optim.Optimizer)
    assert len(opt.state) == 0  # nothing before the first step, as torch.optim
    grads = make_grads(params, 3)
    run_steps(opt, ps, grads)
    ref_ps = leaf_params(params)
    ref = torch.optim.Adam(list(ref_ps.values()), lr=0.01, weight_decay=0.1)
    run_steps(ref, ref_ps, grads)
    assert len(opt.state) == 3
    for p, q in zip(ps.values(), ref_ps.values(), strict=True):
        torch.testing.assert_close(opt.state[p]["mu"], ref.state[q]["exp_avg"], rtol=RTOL, atol=0)
        torch.testing.assert_close(
            opt.state[p]["nu"], ref.state[q]["exp_avg_sq"], rtol=RTOL, atol=0
        )
        assert int(opt.state[p]["count"]) == int(ref.state[q]["step"]) == 3


@pytest.mark.parametrize("set_to_none", [True, False])
def test_zero_grad(set_to_none: bool) -> None:
    ps = leaf_params(make_params())
    opt = torchopt_lite.SGD(list(ps.values()), lr=0.1)
    for p in ps.values():
        p.grad = torch.ones_like(p)
    opt.zero_grad(set_to_none=set_to_none)
    for p in ps.values():
        if set_to_none:
            assert p.grad is None
        else:
            assert torch.equal(p.grad, torch.zeros_like(p))


def test_step_closure_returns_loss() -> None:
    params = make_params()
    results, losses = [], []
    for cls in (torchopt_lite.Adam, torch.optim.Adam):
        ps = leaf_params(params)
        opt = cls(list(ps.values()), lr=0.1)
        calls = []

        def closure(ps=ps, opt=opt, calls=calls) -> torch.Tensor:
            calls.append(1)
            opt.zero_grad()
            loss = sum((p**2).sum() for p in ps.values())
            loss.backward()
            return loss

        step_losses = [opt.step(closure) for _ in range(4)]
        assert len(calls) == 4
        losses.append(torch.stack([x.detach() for x in step_losses]))
        results.append({k: v.detach() for k, v in ps.items()})
    torch.testing.assert_close(losses[0], losses[1], rtol=RTOL, atol=0)
    for k in params:
        torch.testing.assert_close(results[0][k], results[1][k], rtol=RTOL, atol=ATOL)
    assert torchopt_lite.SGD([torch.zeros(1, requires_grad=True)], lr=0.1).step() is None


def test_add_param_group_matches_torch_optim() -> None:
    params = make_params()
    grads = make_grads(params, 6)
    results = []
    for cls in (torchopt_lite.Adam, torch.optim.Adam):
        ps = leaf_params(params)
        opt = cls([ps["w"]], lr=0.02)
        traj = run_steps(opt, {"w": ps["w"]}, grads[:3])
        opt.add_param_group({"params": [ps["b"], ps["s"]], "lr": 0.1, "weight_decay": 0.5})
        assert opt.param_groups[1]["betas"] == (0.9, 0.999)  # filled in from defaults
        traj += run_steps(opt, ps, grads[3:])
        results.append(traj)
    for g, e in zip(*results, strict=True):
        for k in e:
            torch.testing.assert_close(g[k], e[k], rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize(
    ("ours", "theirs", "kwargs"),
    [
        (torchopt_lite.SGD, torch.optim.SGD, {"lr": 0.1, "momentum": 0.9, "dampening": 0.2}),
        (torchopt_lite.Adam, torch.optim.Adam, {"lr": 0.05}),
        (torchopt_lite.RMSProp, torch.optim.RMSprop, {"lr": 0.05}),
    ],
    ids=["SGD", "Adam", "RMSProp"],
)
def test_params_without_grad_are_skipped(ours: type, theirs: type, kwargs: dict) -> None:
    """A parameter whose ``.grad`` is None is left alone, as torch.optim does.

    ``s`` never gets a gradient; on step 3 no parameter has one (the whole step is skipped).
    """
    params = make_params()
    grads = make_grads(params, 6)
    results, states = [], []
    for cls in (ours, theirs):
        ps = leaf_params(params)
        opt = cls(list(ps.values()), **kwargs)
        traj = []
        for step, g in enumerate(grads):
            for k in ("w", "b"):
                ps[k].grad = None if step == 3 else g[k].clone()
            opt.step()
            traj.append({k: v.detach().clone() for k, v in ps.items()})
        results.append(traj)
        states.append(opt.state)
        assert ps["s"].grad is None
    for g, e in zip(*results, strict=True):
        torch.testing.assert_close(g["s"], params["s"], rtol=0, atol=0)
        for k in e:
            torch.testing.assert_close(g[k], e[k], rtol=RTOL, atol=ATOL)


def test_double_spellings_are_the_same_classes() -> None:
    assert torchopt_lite.RMSprop is torchopt_lite.RMSProp
    assert torchopt_lite.Adagrad is torchopt_lite.AdaGrad
    assert torchopt_lite.Adadelta is torchopt_lite.AdaDelta
    assert torchopt_lite.Adamax is torchopt_lite.AdaMax
    assert torchopt_lite.optim.RMSprop is torchopt_lite.RMSProp
    assert torchopt_lite.optim.Adamax is torchopt_lite.optim.AdaMax


@pytest.mark.parametrize("name", list(OOP_CLASSES))
def test_every_class_is_a_torch_optimizer(name: str) -> None:
    cls = OOP_CLASSES[name]
    assert issubclass(cls, torchopt_lite.Optimizer)
    assert issubclass(cls, torch.optim.Optimizer)


@pytest.mark.xfail(
    strict=True,
    reason="the step count is one per group (a shared tensor), torch.optim keeps one per "
    "parameter: a parameter that misses a gradient and later gets one sees a different Adam "
    "bias correction (TorchOpt shares the count too)",
)
def test_adam_param_that_misses_a_step_matches_torch_optim() -> None:
    params = make_params()
    grads = make_grads(params, 4)
    results = []
    for cls in (torchopt_lite.Adam, torch.optim.Adam):
        ps = leaf_params(params)
        opt = cls(list(ps.values()), lr=0.05)
        for step, g in enumerate(grads):
            for k, p in ps.items():
                p.grad = None if (k == "b" and step == 0) else g[k].clone()
            opt.step()
        results.append({k: v.detach() for k, v in ps.items()})
    for k in params:
        torch.testing.assert_close(results[0][k], results[1][k], rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("copy_fn", ["deepcopy", "pickle"])
def test_optimizer_survives_deepcopy_and_pickle_mid_run(copy_fn: str) -> None:
    import copy
    import pickle

    torch.manual_seed(0)
    w = torch.randn(3, dtype=torch.float64, requires_grad=True)
    opt = torchopt_lite.Adam([w], lr=0.1, weight_decay=0.01)

    def step(opt: torch.optim.Optimizer, w: torch.Tensor) -> None:
        opt.zero_grad()
        (w**2).sum().backward()
        opt.step()

    step(opt, w)
    if copy_fn == "deepcopy":
        w2, opt2 = copy.deepcopy((w, opt))
    else:
        w2, opt2 = pickle.loads(pickle.dumps((w, opt)))
    assert opt2.param_groups[0]["params"][0] is w2
    for _ in range(2):
        step(opt, w)
        step(opt2, w2)
    torch.testing.assert_close(w2, w, rtol=0, atol=0)
    assert opt2.state[w2]["count"].item() == 3
