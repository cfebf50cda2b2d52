"""adabelief, amsgrad, nadam, nadamw, adamaxw, yogi and adan against plain references, Optax and
torch.optim, in float64."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import torch
from torch import Tensor

import torchopt_lite
from tests.alias._registry import make_grads, make_params, trajectory
from torchopt_lite.alias.adabelief import adabelief
from torchopt_lite.alias.adamaxw import adamaxw
from torchopt_lite.alias.adan import adan
from torchopt_lite.alias.amsgrad import amsgrad
from torchopt_lite.alias.nadam import nadam
from torchopt_lite.alias.nadamw import nadamw
from torchopt_lite.alias.utils import scale_by_neg_lr
from torchopt_lite.alias.yogi import yogi
from torchopt_lite.base import ChainedGradientTransformation
from torchopt_lite.transform.add_decayed_weights import add_decayed_weights
from torchopt_lite.transform.scale_by_adan import scale_by_adan

STEPS = 8
RTOL, ATOL = 1e-10, 1e-12  # float64; the implementations differ in the order of roundings only

Params = dict[str, Tensor]


def functional(opt: Any, params: Params, grads: list[Params], *, inplace: bool) -> list[Params]:
    return trajectory(opt, params, grads, inplace=inplace)[0]


def assert_trajectories_close(got: list[Params], expected: list[Params]) -> None:
    assert len(got) == len(expected) == STEPS
    for step, (g, e) in enumerate(zip(got, expected, strict=True)):
        for k in e:
            torch.testing.assert_close(g[k], e[k], rtol=RTOL, atol=ATOL, msg=f"step {step} {k}")


# ---------------------------------------------------------------------------------------------
# Plain references: one leaf at a time, the paper's formula with Python-float coefficients.

Step = Callable[[Tensor, Tensor, dict[str, Tensor], int], Tensor]


def reference(params: Params, grads: list[Params], step: Step) -> list[Params]:
    params = {k: v.clone() for k, v in params.items()}
    states: dict[str, dict[str, Tensor]] = {k: {} for k in params}
    out = []
    for t, g in enumerate(grads, start=1):
        params = {k: step(p, g[k], states[k], t) for k, p in params.items()}
        out.append(params)
    return out


def zeros(s: dict[str, Tensor], like: Tensor, *names: str, value: float = 0.0) -> None:
    for n in names:
        s.setdefault(n, torch.full_like(like, value))


def adabelief_ref(lr: float, b1: float, b2: float, eps: float, eps_root: float, sign: float):
    def step(p: Tensor, g: Tensor, s: dict[str, Tensor], t: int) -> Tensor:
        g = sign * g
        zeros(s, p, "m", "s")
        s["m"] = b1 * s["m"] + (1 - b1) * g
        s["s"] = b2 * s["s"] + (1 - b2) * (g - s["m"]) ** 2 + eps_root
        m_hat, s_hat = s["m"] / (1 - b1**t), s["s"] / (1 - b2**t)
        return p - lr * m_hat / (s_hat.sqrt() + eps)

    return step


def amsgrad_ref(lr: float, b1: float, b2: float, eps: float, wd: float, corrected: bool):
    def step(p: Tensor, g: Tensor, s: dict[str, Tensor], t: int) -> Tensor:
        g = g + wd * p
        zeros(s, p, "m", "v", "vmax")
        s["m"] = b1 * s["m"] + (1 - b1) * g
        s["v"] = b2 * s["v"] + (1 - b2) * g * g
        if corrected:
            s["vmax"] = torch.maximum(s["vmax"], s["v"] / (1 - b2**t))
            v_hat = s["vmax"]
        else:
            s["vmax"] = torch.maximum(s["vmax"], s["v"])
            v_hat = s["vmax"] / (1 - b2**t)
        return p - lr * s["m"] / (1 - b1**t) / (v_hat.sqrt() + eps)

    return step


def nadam_ref(lr: float, b1: float, b2: float, eps: float, wd: float, psi: float, decoupled: bool):
    def mu(t: int) -> float:
        return b1 * (1 - 0.5 * 0.96 ** (t * psi))

    def step(p: Tensor, g: Tensor, s: dict[str, Tensor], t: int) -> Tensor:
        if not decoupled:
            g = g + wd * p
        zeros(s, p, "m", "v")
        s["m"] = b1 * s["m"] + (1 - b1) * g
        s["v"] = b2 * s["v"] + (1 - b2) * g * g
        prod = math.prod(mu(i) for i in range(1, t + 1))
        denom = (s["v"] / (1 - b2**t)).sqrt() + eps
        direction = (1 - mu(t)) / (1 - prod) * g + mu(t + 1) / (1 - prod * mu(t + 1)) * s["m"]
        return p - lr * (direction / denom + (wd * p if decoupled else 0.0))

    return step


def adamaxw_ref(lr: float, b1: float, b2: float, eps: float, wd: float):
    def step(p: Tensor, g: Tensor, s: dict[str, Tensor], t: int) -> Tensor:
        zeros(s, p, "m", "u")
        s["m"] = b1 * s["m"] + (1 - b1) * g
        s["u"] = torch.maximum(b2 * s["u"], g.abs() + eps)
        return p - lr * (s["m"] / (1 - b1**t) / s["u"] + wd * p)

    return step


def yogi_ref(lr: float, b1: float, b2: float, eps: float, eps_root: float, v0: float):
    def step(p: Tensor, g: Tensor, s: dict[str, Tensor], t: int) -> Tensor:
        zeros(s, p, "m", "v", value=v0)
        s["m"] = b1 * s["m"] + (1 - b1) * g
        s["v"] = s["v"] - (1 - b2) * torch.sign(s["v"] - g * g) * g * g
        m_hat, v_hat = s["m"] / (1 - b1**t), s["v"] / (1 - b2**t)
        return p - lr * m_hat / ((v_hat + eps_root).sqrt() + eps)

    return step


def adan_ref(lr: float, b1: float, b2: float, b3: float, eps: float, eps_root: float, wd: float):
    """Algorithm 1 of Xie et al. (arXiv:2208.06677v4), betas written as decays near 1."""

    def step(p: Tensor, g: Tensor, s: dict[str, Tensor], t: int) -> Tensor:
        zeros(s, p, "m", "v", "n")
        d = g - s["prev"] if t > 1 else torch.zeros_like(g)
        s["prev"] = g
        s["m"] = b1 * s["m"] + (1 - b1) * g
        s["v"] = b2 * s["v"] + (1 - b2) * d
        s["n"] = b3 * s["n"] + (1 - b3) * (g + b2 * d) ** 2
        m_hat, v_hat, n_hat = (s[k] / (1 - b**t) for k, b in (("m", b1), ("v", b2), ("n", b3)))
        return p - lr * ((m_hat + b2 * v_hat) / ((n_hat + eps_root).sqrt() + eps) + wd * p)

    return step


def negated(step: Step) -> Step:
    """``maximize=True``: the reference on the negated gradient."""
    return lambda p, g, s, t: step(p, -g, s, t)


# (alias configuration, its plain reference)
REFERENCE_CASES: dict[str, tuple[Callable[[], Any], Step]] = {
    "adabelief": (
        lambda: adabelief(lr=0.01),
        adabelief_ref(0.01, 0.9, 0.999, 1e-16, 1e-16, 1.0),
    ),
    "adabelief-maximize": (
        lambda: adabelief(lr=0.01, b1=0.8, b2=0.99, eps=1e-8, eps_root=0.0, maximize=True),
        adabelief_ref(0.01, 0.8, 0.99, 1e-8, 0.0, -1.0),
    ),
    "amsgrad": (lambda: amsgrad(lr=0.01), amsgrad_ref(0.01, 0.9, 0.999, 1e-8, 0.0, False)),
    "amsgrad-wd": (
        lambda: amsgrad(lr=0.01, betas=(0.8, 0.99), weight_decay=0.1),
        amsgrad_ref(0.01, 0.8, 0.99, 1e-8, 0.1, False),
    ),
    "amsgrad-corrected": (
        lambda: amsgrad(lr=0.01, bias_corrected_max=True),
        amsgrad_ref(0.01, 0.9, 0.999, 1e-8, 0.0, True),
    ),
    "nadam": (lambda: nadam(lr=0.01), nadam_ref(0.01, 0.9, 0.999, 1e-8, 0.0, 4e-3, False)),
    "nadam-wd": (
        lambda: nadam(lr=0.01, weight_decay=0.1, momentum_decay=0.3),
        nadam_ref(0.01, 0.9, 0.999, 1e-8, 0.1, 0.3, False),
    ),
    "nadamw": (
        lambda: nadamw(lr=0.01, weight_decay=0.1),
        nadam_ref(0.01, 0.9, 0.999, 1e-8, 0.1, 4e-3, True),
    ),
    "adamaxw": (lambda: adamaxw(lr=0.01), adamaxw_ref(0.01, 0.9, 0.999, 1e-8, 1e-4)),
    "adamaxw-maximize": (
        lambda: adamaxw(lr=0.01, weight_decay=0.1, maximize=True),
        negated(adamaxw_ref(0.01, 0.9, 0.999, 1e-8, 0.1)),
    ),
    "yogi": (lambda: yogi(lr=0.01), yogi_ref(0.01, 0.9, 0.999, 1e-3, 0.0, 1e-6)),
    "yogi-root": (
        lambda: yogi(lr=0.01, b2=0.9, eps_root=1e-4, initial_accumulator_value=0.5),
        yogi_ref(0.01, 0.9, 0.9, 1e-3, 1e-4, 0.5),
    ),
    "adan": (lambda: adan(lr=0.01), adan_ref(0.01, 0.98, 0.92, 0.99, 1e-8, 1e-8, 0.0)),
    "adan-wd": (
        lambda: adan(lr=0.01, b2=0.7, weight_decay=0.1, maximize=True),
        negated(adan_ref(0.01, 0.98, 0.7, 0.99, 1e-8, 1e-8, 0.1)),
    ),
}


@pytest.mark.parametrize("inplace", [True, False], ids=["inplace", "pure"])
@pytest.mark.parametrize("name", list(REFERENCE_CASES))
def test_matches_plain_reference(name: str, inplace: bool) -> None:
    make, step = REFERENCE_CASES[name]
    params = make_params()
    grads = make_grads(params, STEPS)
    assert_trajectories_close(
        functional(make(), params, grads, inplace=inplace), reference(params, grads, step)
    )


# ---------------------------------------------------------------------------------------------
# Optax, on the same gradient stream.


def optax_trajectory(opt: Any, params: Params, grads: list[Params]) -> list[Params]:
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    import numpy as np
    import optax

    to_jax = lambda tree: {k: jnp.asarray(v.numpy()) for k, v in tree.items()}  # noqa: E731
    p = to_jax(params)
    state = opt.init(p)
    out = []
    for g in grads:
        updates, state = opt.update(to_jax(g), state, p)
        p = optax.apply_updates(p, updates)
        out.append({k: torch.from_numpy(np.array(v)) for k, v in p.items()})
    return out


MASK = {"w": True, "b": False, "s": True}


def _adan_like_optax(lr: float, b2: float, wd: float) -> ChainedGradientTransformation:
    # optax 0.2.8 weights the gradient difference by 1 - b2 (google-deepmind/optax#1715)
    return ChainedGradientTransformation(
        scale_by_adan(b2=b2, diff_weight=1.0 - b2), add_decayed_weights(wd), scale_by_neg_lr(lr)
    )


OPTAX_CASES: dict[str, tuple[Callable[[], Any], Callable[[Any], Any]]] = {
    "adabelief": (lambda: adabelief(lr=0.01), lambda o: o.adabelief(0.01)),
    "adabelief-b": (
        lambda: adabelief(lr=0.01, b1=0.8, b2=0.99, eps=1e-8, eps_root=1e-10),
        lambda o: o.adabelief(0.01, b1=0.8, b2=0.99, eps=1e-8, eps_root=1e-10),
    ),
    "amsgrad-corrected": (
        lambda: amsgrad(lr=0.01, betas=(0.8, 0.99), bias_corrected_max=True),
        lambda o: o.amsgrad(0.01, b1=0.8, b2=0.99),
    ),
    "nadam-inf": (
        lambda: nadam(lr=0.01, momentum_decay=math.inf),
        lambda o: o.nadam(0.01),
    ),
    "nadamw-inf": (
        lambda: nadamw(lr=0.01, betas=(0.8, 0.99), weight_decay=0.1, momentum_decay=math.inf),
        lambda o: o.nadamw(0.01, b1=0.8, b2=0.99, weight_decay=0.1),
    ),
    "adamaxw": (lambda: adamaxw(lr=0.01), lambda o: o.adamaxw(0.01)),
    "adamaxw-mask": (
        lambda: adamaxw(lr=0.01, betas=(0.8, 0.99), weight_decay=0.1, mask=MASK),
        lambda o: o.adamaxw(0.01, b1=0.8, b2=0.99, weight_decay=0.1, mask=MASK),
    ),
    "yogi": (lambda: yogi(lr=0.01), lambda o: o.yogi(0.01)),
    "yogi-b": (
        lambda: yogi(lr=0.01, b1=0.8, b2=0.9, eps=1e-6),
        lambda o: o.yogi(0.01, b1=0.8, b2=0.9, eps=1e-6),
    ),
    "adan-first-step": (  # the paper's and Optax's adan agree while d_t = 0
        lambda: adan(lr=0.01),
        lambda o: o.adan(0.01),
    ),
    "adan-diff-weight": (
        lambda: _adan_like_optax(0.01, 0.92, 0.0),
        lambda o: o.adan(0.01),
    ),
    "adan-diff-weight-wd": (
        lambda: _adan_like_optax(0.01, 0.7, 0.1),
        lambda o: o.adan(0.01, b2=0.7, weight_decay=0.1),
    ),
}


@pytest.mark.parametrize("inplace", [True, False], ids=["inplace", "pure"])
@pytest.mark.parametrize("name", list(OPTAX_CASES))
def test_matches_optax(name: str, inplace: bool) -> None:
    optax = pytest.importorskip("optax")
    make, make_optax = OPTAX_CASES[name]
    params = make_params()
    grads = make_grads(params, STEPS)
    expected = optax_trajectory(make_optax(optax), params, grads)
    got = functional(make(), params, grads, inplace=inplace)
    if name == "adan-first-step":
        got, expected = got[:1] * STEPS, expected[:1] * STEPS
    assert_trajectories_close(got, expected)


def test_adan_differs_from_optax_after_the_first_step() -> None:
    """The weight of d_t matters from step 2 on: Optax's 1 - b2 is not the paper's b2."""
    optax = pytest.importorskip("optax")
    params = make_params()
    grads = make_grads(params, 2)
    expected = optax_trajectory(optax.adan(0.01), params, grads)
    got = functional(adan(lr=0.01), params, grads, inplace=False)
    assert not torch.allclose(got[1]["w"], expected[1]["w"], rtol=1e-6, atol=0.0)


def test_amsgrad_torch_and_optax_forms_differ() -> None:
    """The maximum of raw v_t (torch.optim) is not the maximum of bias-corrected v_t (Optax)."""
    params = make_params()
    grads = make_grads(params, STEPS)
    a = functional(amsgrad(lr=0.01), params, grads, inplace=False)
    b = functional(amsgrad(lr=0.01, bias_corrected_max=True), params, grads, inplace=False)
    assert not torch.allclose(a[-1]["w"], b[-1]["w"], rtol=1e-6, atol=0.0)


def test_nadam_momentum_decay_zero_is_not_optax() -> None:
    """``momentum_decay=0`` halves mu_t (0.96**0 = 1); Optax's constant mu_t = b1 is ``inf``."""
    params = make_params()
    grads = make_grads(params, STEPS)
    zero = functional(nadam(lr=0.01, momentum_decay=0.0), params, grads, inplace=False)
    half = reference(params, grads, nadam_ref(0.01, 0.9, 0.999, 1e-8, 0.0, 0.0, False))
    assert_trajectories_close(zero, half)
    inf = functional(nadam(lr=0.01, momentum_decay=math.inf), params, grads, inplace=False)
    assert not torch.allclose(zero[-1]["w"], inf[-1]["w"], rtol=1e-6, atol=0.0)


# ---------------------------------------------------------------------------------------------
# torch.optim


@contextlib.contextmanager
def default_dtype(dtype: torch.dtype) -> Iterator[None]:
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(old)


def torch_trajectory(cls: type, kwargs: dict, params: Params, grads: list[Params]) -> list[Params]:
    ps = {k: v.clone().requires_grad_(True) for k, v in params.items()}
    # torch.optim.NAdam keeps its product of mu_t in the default dtype: float64 here
    with default_dtype(torch.float64):
        opt = cls(list(ps.values()), **kwargs)
        out = []
        for g in grads:
            for k, p in ps.items():
                p.grad = g[k].clone()
            opt.step()
            out.append({k: v.detach().clone() for k, v in ps.items()})
    return out


TORCH_CASES: dict[str, tuple[Callable[[], Any], type, dict[str, Any]]] = {
    "amsgrad": (lambda: amsgrad(lr=0.01), torch.optim.Adam, {"lr": 0.01, "amsgrad": True}),
    "amsgrad-wd-maximize": (
        lambda: amsgrad(lr=0.01, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1, maximize=True),
        torch.optim.Adam,
        {
            "lr": 0.01,
            "betas": (0.8, 0.99),
            "eps": 1e-6,
            "weight_decay": 0.1,
            "amsgrad": True,
            "maximize": True,
        },
    ),
    "nadam": (lambda: nadam(), torch.optim.NAdam, {}),
    "nadam-wd-maximize": (
        lambda: nadam(0.01, (0.8, 0.99), 1e-6, 0.1, 0.3, maximize=True),
        torch.optim.NAdam,
        {
            "lr": 0.01,
            "betas": (0.8, 0.99),
            "eps": 1e-6,
            "weight_decay": 0.1,
            "momentum_decay": 0.3,
            "maximize": True,
        },
    ),
    "nadam-decoupled": (
        lambda: nadam(lr=0.01, weight_decay=0.1, decoupled_weight_decay=True),
        torch.optim.NAdam,
        {"lr": 0.01, "weight_decay": 0.1, "decoupled_weight_decay": True},
    ),
    "nadamw": (
        lambda: nadamw(lr=0.01, weight_decay=0.1),
        torch.optim.NAdam,
        {"lr": 0.01, "weight_decay": 0.1, "decoupled_weight_decay": True},
    ),
    "nadamw-maximize": (
        lambda: nadamw(lr=0.01, weight_decay=0.1, momentum_decay=1.0, maximize=True),
        torch.optim.NAdam,
        {
            "lr": 0.01,
            "weight_decay": 0.1,
            "momentum_decay": 1.0,
            "decoupled_weight_decay": True,
            "maximize": True,
        },
    ),
}


@pytest.mark.parametrize("inplace", [True, False], ids=["inplace", "pure"])
@pytest.mark.parametrize("name", list(TORCH_CASES))
def test_matches_torch_optim(name: str, inplace: bool) -> None:
    make, cls, kwargs = TORCH_CASES[name]
    params = make_params()
    grads = make_grads(params, STEPS)
    expected = torch_trajectory(cls, kwargs, params, grads)
    assert_trajectories_close(functional(make(), params, grads, inplace=inplace), expected)


def test_nadam_defaults_are_torch_optims() -> None:
    import inspect

    sig = inspect.signature(nadam).parameters
    torch_sig = inspect.signature(torch.optim.NAdam).parameters
    for name in ("lr", "betas", "eps", "weight_decay", "momentum_decay", "decoupled_weight_decay"):
        assert sig[name].default == torch_sig[name].default, name


# ---------------------------------------------------------------------------------------------
# Gradients through two out-of-place steps


GRADCHECK_CASES: dict[str, Callable[[], Any]] = {
    "adabelief": lambda: adabelief(lr=0.1),
    "amsgrad": lambda: amsgrad(lr=0.1, weight_decay=0.1),
    "amsgrad-corrected": lambda: amsgrad(lr=0.1, bias_corrected_max=True),
    "nadam": lambda: nadam(lr=0.1, weight_decay=0.1),
    "nadamw": lambda: nadamw(lr=0.1, weight_decay=0.1),
    "adamaxw": lambda: adamaxw(lr=0.1, weight_decay=0.1),
    "yogi": lambda: yogi(lr=0.1),
    "adan": lambda: adan(lr=0.1, weight_decay=0.1),
}


@pytest.mark.parametrize("name", list(GRADCHECK_CASES))
def test_gradcheck_two_pure_steps(name: str) -> None:
    gen = torch.Generator().manual_seed(5)
    shapes = [(2, 3), ()]
    p0 = [torch.randn(s, generator=gen, dtype=torch.float64) for s in shapes]
    g0 = [torch.randn(s, generator=gen, dtype=torch.float64) for s in shapes * 2]

    def two_steps(w: Tensor, s: Tensor, gw1: Tensor, gs1: Tensor, gw2: Tensor, gs2: Tensor):
        opt = GRADCHECK_CASES[name]()
        params = {"w": w, "s": s}
        state = opt.init(params)
        for gw, gs in ((gw1, gs1), (gw2, gs2)):
            updates, state = opt.update({"w": gw, "s": gs}, state, params=params, inplace=False)
            params = torchopt_lite.apply_updates(params, updates, inplace=False)
        return params["w"], params["s"]

    inputs = tuple(x.clone().requires_grad_(True) for x in (*p0, *g0))
    assert torch.autograd.gradcheck(two_steps, inputs, eps=1e-6, atol=1e-6, rtol=1e-5)


# ---------------------------------------------------------------------------------------------
# Errors


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (lambda: adabelief(lr=-1.0), ValueError, r"adabelief: Invalid learning rate .* got -1.0"),
        (lambda: adabelief(b2=1.0), ValueError, r"adabelief: b2 must be in \[0.0, 1.0\)"),
        (lambda: adabelief(eps_root=-1.0), ValueError, r"adabelief: Invalid epsilon"),
        (lambda: amsgrad(betas=(1.0, 0.9)), ValueError, r"amsgrad: betas\[0\] must be in"),
        (lambda: amsgrad(weight_decay=-0.1), ValueError, r"amsgrad: Invalid weight_decay"),
        (lambda: amsgrad(betas=0.9), TypeError, r"amsgrad: betas must be a pair"),
        (lambda: nadam(momentum_decay=-1.0), ValueError, r"nadam: Invalid momentum_decay"),
        (lambda: nadam(eps=-1.0), ValueError, r"nadam: Invalid epsilon"),
        (lambda: nadamw(betas=(0.9, 1.5)), ValueError, r"nadamw: betas\[1\] must be in"),
        (lambda: nadamw(weight_decay=-1.0), ValueError, r"nadamw: Invalid weight_decay"),
        (lambda: adamaxw(lr=-0.1), ValueError, r"adamaxw: Invalid learning rate"),
        (lambda: adamaxw(weight_decay=-1.0), ValueError, r"adamaxw: Invalid weight_decay"),
        (lambda: yogi(b1=-0.1), ValueError, r"yogi: b1 must be in"),
        (
            lambda: yogi(initial_accumulator_value=0.0),
            ValueError,
            r"scale_by_yogi: initial_accumulator_value must be > 0; got 0.0",
        ),
        (lambda: yogi(eps="x"), TypeError, r"yogi: eps must be a float"),
        (lambda: adan(b3=1.0), ValueError, r"adan: b3 must be in"),
        (lambda: adan(eps_root=-1.0), ValueError, r"adan: Invalid epsilon"),
        (lambda: scale_by_adan(diff_weight=-0.5), ValueError, r"scale_by_adan: Invalid diff_w"),
    ],
)
def test_invalid_hyperparameters(make: Callable[[], Any], error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        make()


@pytest.mark.parametrize("inplace", [True, False], ids=["inplace", "pure"])
@pytest.mark.parametrize(
    ("make", "caller"),
    [
        (adabelief, "scale_by_belief"),
        (amsgrad, "scale_by_amsgrad"),
        (nadam, "scale_by_nadam"),
        (adamaxw, "scale_by_adamax"),
        (yogi, "scale_by_yogi"),
        (adan, "scale_by_adan"),
    ],
)
def test_foreign_state_raises_before_writing(make: Callable, caller: str, inplace: bool) -> None:
    params = make_params()
    grads = make_grads(params, 1)[0]
    own = make().init(params)
    adam_state = torchopt_lite.adam().init(params)[1]  # the rescaler's state of another optimizer
    state = type(own)((*own[:1], adam_state, *own[2:]))
    before = {k: v.clone() for k, v in params.items()}
    with pytest.raises(ValueError, match=rf"{caller}: state is .*, expected"):
        make().update(grads, state, params=params, inplace=inplace)
    assert all(torch.equal(before[k], params[k]) for k in params)


def test_state_of_other_params_raises() -> None:
    params = make_params()
    opt = adan()
    state = opt.init({"w": params["w"], "b": params["b"][:3], "s": params["s"]})
    with pytest.raises(ValueError, match=r"scale_by_adan: update leaf 0 is \(5,\).*state\.m"):
        opt.update(make_grads(params, 1)[0], state, params=params)


# ---------------------------------------------------------------------------------------------
# Out of place: inputs untouched, and nothing of them kept in the state


@pytest.mark.parametrize("name", list(GRADCHECK_CASES))
def test_pure_step_leaves_inputs_alone(name: str) -> None:
    import optree

    opt = GRADCHECK_CASES[name]()
    params = make_params()
    grads = make_grads(params, 2)
    state = opt.init(params)
    _, state = opt.update(grads[0], state, params=params, inplace=False)
    inputs = (params, grads[1], state)
    before = optree.tree_map(torch.clone, inputs)
    _, new_state = opt.update(grads[1], state, params=params, inplace=False)
    for x, y in zip(optree.tree_leaves(inputs), optree.tree_leaves(before), strict=True):
        assert torch.equal(x, y)
    kept = optree.tree_map(torch.clone, new_state)
    for g in grads[1].values():
        g.mul_(2.0)  # the caller reuses its gradient buffers
    for x, y in zip(optree.tree_leaves(new_state), optree.tree_leaves(kept), strict=True):
        assert torch.equal(x, y)


def test_state_dtypes() -> None:
    params = make_params()
    state = nadam().init(params)[1]
    assert state.count.dtype == torch.int64 and state.count.shape == ()
    assert state.mu_product.dtype == torch.float64 and state.mu_product.shape == ()
    yogi_state = yogi(initial_accumulator_value=0.25).init(params)[1]
    assert all(torch.all(v == 0.25) for v in (*yogi_state.mu, *yogi_state.nu))
