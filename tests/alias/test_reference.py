"""Every functional optimizer against its torch.optim counterpart, step by step, in float64."""

from __future__ import annotations

import pytest
import torch

import torchopt_lite
from tests._generic import generic
from tests.alias._registry import (
    CASES,
    Case,
    make_grads,
    make_params,
    torch_optim_trajectory,
    trajectory,
)

STEPS = 12
# The functional math differs from torch.optim's only in the order of float64 roundings
# (e.g. sqrt(v / bc2) vs sqrt(v) / sqrt(bc2)); 1e-10 leaves room for that and nothing else.
RTOL, ATOL = 1e-10, 1e-12


def run_functional(case: Case, params: dict, grads: list[dict], *, inplace: bool) -> list[dict]:
    return trajectory(case.make(), params, grads, inplace=inplace)[0]


@pytest.mark.parametrize("inplace", [True, False], ids=["inplace", "pure"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_functional_matches_torch_optim(case: Case, inplace: bool) -> None:
    params = make_params()
    grads = make_grads(params, STEPS)
    expected = torch_optim_trajectory(case, params, grads)
    got = run_functional(case, params, grads, inplace=inplace)
    for step, (e, g) in enumerate(zip(expected, got, strict=True)):
        for k in e:
            torch.testing.assert_close(g[k], e[k], rtol=RTOL, atol=ATOL, msg=f"step {step} {k}")


@pytest.mark.parametrize("case", [c for c in CASES if c.alias in ("adam", "adamw")], ids=str)
def test_fused_inplace_matches_torch_fused(case: Case) -> None:
    """The fused in-place path against torch.optim's fused kernel (same rounding order)."""
    params = make_params()
    grads = make_grads(params, STEPS)
    expected = torch_optim_trajectory(case, params, grads, fused=True)
    got = run_functional(case, params, grads, inplace=True)
    for e, g in zip(expected, got, strict=True):
        for k in e:
            torch.testing.assert_close(g[k], e[k], rtol=1e-13, atol=1e-15)


FUSED_CONFIGS = {
    "adam": {"lr": 0.03, "weight_decay": 0.1},
    "adamw": {"lr": 0.03, "weight_decay": 0.1},
    "sgd": {"lr": 0.03, "momentum": 0.9, "weight_decay": 0.1, "maximize": True},
}


@pytest.mark.parametrize("inplace", [True, False], ids=["inplace", "pure"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("alias", list(FUSED_CONFIGS))
def test_fused_path_equals_unfused(alias: str, dtype: torch.dtype, inplace: bool) -> None:
    """A chain's fused step reproduces the transform-by-transform math, state included."""
    import optree

    fused = getattr(torchopt_lite, alias)(**FUSED_CONFIGS[alias])
    unfused = generic(fused)  # same parts, no kernel
    params = make_params(dtype=dtype)
    grads = make_grads(params, 6)
    results = []
    for opt in (fused, unfused):
        p = {k: v.clone() for k, v in params.items()}
        state = opt.init(p)
        for g in grads:
            u, state = opt.update(
                {k: v.clone() for k, v in g.items()}, state, params=p, inplace=inplace
            )
            p = torchopt_lite.apply_updates(p, u, inplace=inplace)
        results.append((p, state))
    (p1, s1), (p2, s2) = results
    tol = {"rtol": 1e-12, "atol": 1e-14} if dtype == torch.float64 else {"rtol": 1e-5, "atol": 1e-6}
    for k in p1:
        torch.testing.assert_close(p1[k], p2[k], **tol)
    leaves1, spec1 = optree.tree_flatten(s1)
    leaves2, spec2 = optree.tree_flatten(s2)
    assert spec1 == spec2
    for a, b in zip(leaves1, leaves2, strict=True):
        torch.testing.assert_close(a, b, **tol)


def test_schedule_lr_matches_lambda_lr() -> None:
    """A schedule as ``lr`` equals torch.optim with the same LambdaLR factor."""
    params = make_params()
    grads = make_grads(params, STEPS)
    schedule = torchopt_lite.schedule.linear_schedule(0.1, 0.01, transition_steps=8)
    opt = torchopt_lite.sgd(lr=schedule, momentum=0.9)
    p = {k: v.clone() for k, v in params.items()}
    state = opt.init(p)
    ps = {k: v.clone().requires_grad_(True) for k, v in params.items()}
    ref = torch.optim.SGD(list(ps.values()), lr=1.0, momentum=0.9)
    sched = torch.optim.lr_scheduler.LambdaLR(ref, lambda t: float(schedule(t)))
    for g in grads:
        u, state = opt.update({k: v.clone() for k, v in g.items()}, state, inplace=False)
        p = torchopt_lite.apply_updates(p, u, inplace=False)
        for k, q in ps.items():
            q.grad = g[k].clone()
        ref.step()
        sched.step()
        for k in p:
            torch.testing.assert_close(p[k], ps[k].detach(), rtol=RTOL, atol=ATOL)


def test_tensor_lr_equals_float_lr() -> None:
    params = make_params()
    grads = make_grads(params, 4)
    finals = []
    for lr in (0.01, torch.tensor(0.01, dtype=torch.float64)):
        opt = torchopt_lite.adam(lr=lr)
        p = {k: v.clone() for k, v in params.items()}
        state = opt.init(p)
        for g in grads:
            u, state = opt.update(g, state, inplace=False)
            p = torchopt_lite.apply_updates(p, u, inplace=False)
        finals.append(p)
    for k in params:
        torch.testing.assert_close(finals[0][k], finals[1][k], rtol=1e-14, atol=0)


@pytest.mark.parametrize(
    ("cls", "kernel", "kwargs"),
    [
        ("Adam", "_fused_adam_", {"lr": 0.01, "weight_decay": 0.1}),
        ("AdamW", "_fused_adamw_", {"lr": 0.01}),
        ("SGD", "_fused_sgd_", {"lr": 0.01, "momentum": 0.9, "nesterov": True}),
    ],
)
def test_classes_take_the_fused_kernel_on_parameters(cls: str, kernel: str, kwargs: dict) -> None:
    """Parameters that require grad (nn.Parameter) still get the one-pass fused step."""
    from unittest import mock

    module = torch.nn.Linear(4, 3).double()
    module(torch.ones(2, 4, dtype=torch.float64)).sum().backward()
    with mock.patch(f"torch.{kernel}", wraps=getattr(torch, kernel)) as fused:
        opt = getattr(torchopt_lite, cls)(module.parameters(), **kwargs)  # binds the kernel
        opt.step()
        opt.step()
    assert fused.call_count == 2


@pytest.mark.parametrize("inplace", [True, False], ids=["inplace", "pure"])
def test_fused_step_survives_nesting_in_a_chain(inplace: bool) -> None:
    """chain(clip, adam) runs Adam's fused step on its slice of the state, same numbers."""
    from unittest import mock

    import optree

    from torchopt_lite._dispatch._adam_node import AdamStep

    nested = torchopt_lite.chain(
        torchopt_lite.clip_grad_norm(max_norm=1.0), torchopt_lite.adam(lr=0.03)
    )
    plain = generic(nested)  # flat parts, no kernel
    params = make_params()
    grads = make_grads(params, 4)
    finals = []
    for opt in (nested, plain):
        if inplace:
            spy = mock.patch("torch._fused_adam_", wraps=torch._fused_adam_)
        else:
            spy = mock.patch.object(AdamStep, "apply", wraps=AdamStep.apply)
        p = {k: v.clone() for k, v in params.items()}
        state = opt.init(p)
        with spy as fused:
            for g in grads:
                u, state = opt.update({k: v.clone() for k, v in g.items()}, state, inplace=inplace)
                p = torchopt_lite.apply_updates(p, u, inplace=inplace)
        assert fused.call_count == (len(grads) if opt is nested else 0)
        finals.append((p, optree.tree_leaves(state)))
    for a, b in zip(finals[0][1], finals[1][1], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)
    for k in params:
        torch.testing.assert_close(finals[0][0][k], finals[1][0][k], rtol=1e-12, atol=1e-14)


def test_chain_of_one_is_the_transformation() -> None:
    adam = torchopt_lite.adam(lr=0.1)
    assert torchopt_lite.chain(adam) is adam
