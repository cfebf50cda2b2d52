"""Lion, signSGD, Signum, noisy SGD, optimistic GD/Adam, Rprop and ASGD against references.

Each alias runs 8 float64 steps, in place and out of place, against a plain per-leaf reference
written from the paper's formula, against Optax where it has the optimizer (jax in x64) and
against ``torch.optim`` where torch has it (Rprop, ASGD). The noise of ``noisy_sgd`` is checked
for its law (mean, variance, shape of the distribution, independence) with bounds derived from
the sample size, and for reproducibility.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any, cast

import optree
import pytest
import torch
from torch import Tensor

import torchopt_lite
from tests.alias._registry import trajectory
from torchopt_lite.alias.asgd import asgd
from torchopt_lite.alias.lion import lion
from torchopt_lite.alias.noisy_sgd import noisy_sgd
from torchopt_lite.alias.optimistic_adam import optimistic_adam
from torchopt_lite.alias.optimistic_gradient_descent import optimistic_gradient_descent
from torchopt_lite.alias.rprop import rprop
from torchopt_lite.alias.sign_sgd import sign_sgd
from torchopt_lite.alias.signum import signum
from torchopt_lite.transform.add_noise import add_noise

STEPS = 8
# Every formula here is computed in float64 by both sides; they differ only in the order of
# roundings (lerp vs. two products, sqrt(v/b) vs. sqrt(v)/sqrt(b)).
RTOL, ATOL = 1e-10, 1e-12
Tree = dict[str, Tensor]


def make_params(seed: int = 0) -> Tree:
    gen = torch.Generator().manual_seed(seed)
    shapes = {"w": (3, 4), "b": (5,), "s": ()}
    return {k: torch.randn(s, generator=gen, dtype=torch.float64) for k, s in shapes.items()}


def make_grads(params: Tree, steps: int = STEPS, seed: int = 1) -> list[Tree]:
    gen = torch.Generator().manual_seed(seed)
    return [
        {k: torch.randn(p.shape, generator=gen, dtype=p.dtype) for k, p in params.items()}
        for _ in range(steps)
    ]


def run(opt: Any, params: Tree, grads: list[Tree], *, inplace: bool) -> tuple[list[Tree], Any]:
    """The params after each step (and the final state) of ``opt`` on the gradient stream."""
    return trajectory(opt, params, grads, inplace=inplace)


def reference(
    params: Tree, grads: list[Tree], init: Callable[[Tensor], dict], step: Callable[..., Tensor]
) -> list[Tree]:
    """A per-leaf reference: ``step(p, g, state, t) -> new p`` (``state`` a dict it updates)."""
    params = {k: v.clone() for k, v in params.items()}
    states = {k: init(p) for k, p in params.items()}
    out = []
    for t, g in enumerate(grads, start=1):
        params = {k: step(p, g[k].clone(), states[k], t) for k, p in params.items()}
        out.append({k: v.clone() for k, v in params.items()})
    return out


def assert_trajectories(got: list[Tree], expected: list[Tree], **tol: Any) -> None:
    tol = tol or {"rtol": RTOL, "atol": ATOL}
    for t, (g, e) in enumerate(zip(got, expected, strict=True)):
        for k in e:

            def msg(m: str, t: int = t, k: str = k) -> str:
                return f"step {t} leaf {k}: {m}"

            torch.testing.assert_close(g[k], e[k], **tol, msg=msg)


# ----------------------------------------------------------------------------- plain references


def lion_ref(lr: float, b1: float, b2: float, wd: float, maximize: bool) -> Any:
    def init(p: Tensor) -> dict:
        return {"m": torch.zeros_like(p)}

    def step(p: Tensor, g: Tensor, st: dict, t: int) -> Tensor:
        g = -g if maximize else g
        c = b1 * st["m"] + (1 - b1) * g
        st["m"] = b2 * st["m"] + (1 - b2) * g
        return p - lr * (torch.sign(c) + wd * p)

    return init, step


def signum_ref(lr: float, beta: float, wd: float, maximize: bool) -> Any:
    def init(p: Tensor) -> dict:
        return {"m": torch.zeros_like(p)}

    def step(p: Tensor, g: Tensor, st: dict, t: int) -> Tensor:
        g = (-g if maximize else g) + wd * p
        st["m"] = beta * st["m"] + (1 - beta) * g
        return p - lr * torch.sign(st["m"])

    return init, step


def sgd_ref(lr: float, wd: float, maximize: bool) -> Any:
    def step(p: Tensor, g: Tensor, st: dict, t: int) -> Tensor:
        return p - lr * ((-g if maximize else g) + wd * p)

    return (lambda p: {}), step


def ogd_ref(lr: float, alpha: float, beta: float, wd: float, maximize: bool) -> Any:
    def init(p: Tensor) -> dict:
        return {"prev": None}

    def step(p: Tensor, g: Tensor, st: dict, t: int) -> Tensor:
        g = (-g if maximize else g) + wd * p
        prev = g if st["prev"] is None else st["prev"]
        st["prev"] = g
        return p - lr * ((alpha + beta) * g - beta * prev)

    return init, step


def optimistic_adam_ref(
    lr: float, optimism: float, b1: float, b2: float, eps: float, eps_root: float, wd: float,
    nesterov: bool, maximize: bool,
) -> Any:  # fmt: skip
    def init(p: Tensor) -> dict:
        return {"m": torch.zeros_like(p), "v": torch.zeros_like(p), "r": None}

    def step(p: Tensor, g: Tensor, st: dict, t: int) -> Tensor:
        g = (-g if maximize else g) + wd * p
        st["m"] = b1 * st["m"] + (1 - b1) * g
        st["v"] = b2 * st["v"] + (1 - b2) * g * g
        if nesterov:  # Dozat's look-ahead, in Optax's form
            m_hat = b1 * st["m"] / (1 - b1 ** (t + 1)) + (1 - b1) * g / (1 - b1**t)
        else:
            m_hat = st["m"] / (1 - b1**t)
        r = m_hat / (torch.sqrt(st["v"] / (1 - b2**t) + eps_root) + eps)
        prev = r if st["r"] is None else st["r"]
        st["r"] = r
        return p - lr * r - optimism * (r - prev)

    return init, step


def rprop_ref(lr: float, etas: tuple, step_sizes: tuple, maximize: bool) -> Any:
    """Riedmiller and Braun's Rprop without backtracking ("Rprop-"), as torch.optim has it."""

    def init(p: Tensor) -> dict:
        return {"prev": torch.zeros_like(p), "step": torch.full_like(p, lr)}

    def step(p: Tensor, g: Tensor, st: dict, t: int) -> Tensor:
        g = -g if maximize else g
        new_p, new_prev, new_step = p.clone(), g.clone(), st["step"].clone()
        for i in range(p.numel()):  # element by element, as the paper states it
            s = float(g.reshape(-1)[i] * st["prev"].reshape(-1)[i])
            delta = float(st["step"].reshape(-1)[i])
            if s > 0:
                delta = min(delta * etas[1], step_sizes[1])
            elif s < 0:
                delta = max(delta * etas[0], step_sizes[0])
                new_prev.reshape(-1)[i] = 0.0
            else:
                delta = min(max(delta, step_sizes[0]), step_sizes[1])
            new_step.reshape(-1)[i] = delta
            new_p.reshape(-1)[i] -= delta * torch.sign(new_prev.reshape(-1)[i])
        st["prev"], st["step"] = new_prev, new_step
        return new_p

    return init, step


def asgd_ref(lr: float, lambd: float, alpha: float, t0: float, wd: float, maximize: bool) -> Any:
    """Polyak-Juditsky averaging of SGD with the step :math:`\\eta_t` of torch.optim.ASGD."""

    def init(p: Tensor) -> dict:
        return {"ax": torch.zeros_like(p)}

    def step(p: Tensor, g: Tensor, st: dict, t: int) -> Tensor:
        g = (-g if maximize else g) + wd * p
        eta = lr / (1 + lambd * lr * (t - 1)) ** alpha
        p = p - eta * (g + lambd * p)
        mu = 1 / max(1.0, t - 1 - t0)
        st["ax"] = st["ax"] + mu * (p - st["ax"])
        return p

    return init, step


# name, kwargs of the alias, the reference built from the same numbers
CONFIGS: list[tuple[str, Callable[..., Any], dict[str, Any], Any]] = [
    ("lion", lion, {"lr": 0.01}, lion_ref(0.01, 0.9, 0.99, 1e-3, False)),
    (
        "lion_wd_max",
        lion,
        {"lr": 0.02, "betas": (0.8, 0.95), "weight_decay": 0.3, "maximize": True},
        lion_ref(0.02, 0.8, 0.95, 0.3, True),
    ),
    ("sign_sgd", sign_sgd, {"lr": 0.01}, signum_ref(0.01, 0.0, 0.0, False)),
    (
        "sign_sgd_wd_max",
        sign_sgd,
        {"lr": 0.01, "weight_decay": 0.2, "maximize": True},
        signum_ref(0.01, 0.0, 0.2, True),
    ),
    ("signum", signum, {"lr": 0.01}, signum_ref(0.01, 0.9, 0.0, False)),
    (
        "signum_wd",
        signum,
        {"lr": 0.01, "beta": 0.6, "weight_decay": 0.2},
        signum_ref(0.01, 0.6, 0.2, False),
    ),
    ("noisy_sgd_eta0", noisy_sgd, {"lr": 0.1, "eta": 0.0}, sgd_ref(0.1, 0.0, False)),
    (
        "noisy_sgd_eta0_wd_max",
        noisy_sgd,
        {"lr": 0.1, "eta": 0.0, "weight_decay": 0.2, "maximize": True},
        sgd_ref(0.1, 0.2, True),
    ),
    ("ogd", optimistic_gradient_descent, {"lr": 0.05}, ogd_ref(0.05, 1.0, 1.0, 0.0, False)),
    (
        "ogd_coefficients",
        optimistic_gradient_descent,
        {"lr": 0.05, "alpha": 0.5, "beta": 2.0, "weight_decay": 0.2, "maximize": True},
        ogd_ref(0.05, 0.5, 2.0, 0.2, True),
    ),
    (
        "optimistic_adam",
        optimistic_adam,
        {"lr": 0.01},
        optimistic_adam_ref(0.01, 0.01, 0.9, 0.999, 1e-8, 0.0, 0.0, True, False),
    ),
    (
        "optimistic_adam_plain",
        optimistic_adam,
        {
            "lr": 0.01,
            "optimism": 0.5,
            "b1": 0.8,
            "b2": 0.99,
            "eps_root": 1e-6,
            "weight_decay": 0.1,
            "nesterov": False,
            "maximize": True,
        },
        optimistic_adam_ref(0.01, 0.5, 0.8, 0.99, 1e-8, 1e-6, 0.1, False, True),
    ),
    ("rprop", rprop, {}, rprop_ref(0.01, (0.5, 1.2), (1e-6, 50.0), False)),
    (
        "rprop_clipped_max",
        rprop,
        {"lr": 0.05, "etas": (0.3, 1.5), "step_sizes": (0.02, 0.09), "maximize": True},
        rprop_ref(0.05, (0.3, 1.5), (0.02, 0.09), True),
    ),
    ("asgd", asgd, {}, asgd_ref(0.01, 1e-4, 0.75, 1e6, 0.0, False)),
    (
        "asgd_averaging",
        asgd,
        {"lr": 0.05, "lambd": 0.1, "alpha": 0.5, "t0": 2.0, "weight_decay": 0.1, "maximize": True},
        asgd_ref(0.05, 0.1, 0.5, 2.0, 0.1, True),
    ),
]


@pytest.mark.parametrize("inplace", [True, False], ids=["inplace", "pure"])
@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c[0])
def test_matches_plain_reference(config: tuple, inplace: bool) -> None:
    _, alias, kwargs, (init, step) = config
    params = make_params()
    grads = make_grads(params)
    got, _ = run(alias(**kwargs), params, grads, inplace=inplace)
    assert_trajectories(got, reference(params, grads, init, step))


@pytest.mark.parametrize("inplace", [True, False], ids=["inplace", "pure"])
def test_asgd_average_matches_reference(inplace: bool) -> None:
    """The averaged iterate ``ax`` in the state, once averaging has started (t0 = 2)."""
    params = make_params()
    grads = make_grads(params)
    _, _, kwargs, (init, step) = CONFIGS[-1]
    _, state = run(asgd(**kwargs), params, grads, inplace=inplace)
    states = {k: init(p) for k, p in params.items()}
    p = dict(params)
    for t, g in enumerate(grads, start=1):
        p = {k: step(p[k], g[k], states[k], t) for k in p}
    for k, ax in zip(sorted(params), state[1].ax, strict=True):  # leaves in sorted key order
        torch.testing.assert_close(ax, states[k]["ax"], rtol=RTOL, atol=ATOL)


# ------------------------------------------------------------------------------------ optax


def _optax_trajectory(opt: Any, params: Tree, grads: list[Tree]) -> list[Tree]:
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    import numpy as np

    optax = pytest.importorskip("optax")
    p = {k: jnp.asarray(v.numpy()) for k, v in params.items()}
    state = opt.init(p)
    out = []
    for g in grads:
        gj = {k: jnp.asarray(v.numpy()) for k, v in g.items()}
        updates, state = opt.update(gj, state, p)
        p = optax.apply_updates(p, updates)
        out.append({k: torch.from_numpy(np.asarray(v).copy()) for k, v in p.items()})
    return out


def _optax() -> Any:
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)
    return pytest.importorskip("optax")


OPTAX_CONFIGS = [
    ("lion", lambda o: o.lion(0.01), lambda: lion(0.01)),
    (
        "lion_wd",
        lambda o: o.lion(0.02, b1=0.8, b2=0.95, weight_decay=0.3),
        lambda: lion(0.02, betas=(0.8, 0.95), weight_decay=0.3),
    ),
    ("sign_sgd", lambda o: o.sign_sgd(0.01), lambda: sign_sgd(0.01)),
    ("signum", lambda o: o.signum(0.01), lambda: signum(0.01)),
    ("signum_beta", lambda o: o.signum(0.01, beta=0.6), lambda: signum(0.01, beta=0.6)),
    ("noisy_sgd_eta0", lambda o: o.noisy_sgd(0.1, eta=0.0, key=0), lambda: noisy_sgd(0.1, 0.0)),
    (
        "ogd",
        lambda o: o.optimistic_gradient_descent(0.05),
        lambda: optimistic_gradient_descent(0.05),
    ),
    (
        "ogd_coefficients",
        lambda o: o.optimistic_gradient_descent(0.05, alpha=0.5, beta=2.0),
        lambda: optimistic_gradient_descent(0.05, alpha=0.5, beta=2.0),
    ),
    (
        "optimistic_adam",
        lambda o: o.optimistic_adam_v2(1.0, alpha=0.01, beta=0.01),
        lambda: optimistic_adam(0.01),
    ),
    (
        "optimistic_adam_plain",
        lambda o: o.optimistic_adam_v2(
            1.0, alpha=0.01, beta=0.5, b1=0.8, b2=0.99, eps_root=1e-6, nesterov=False
        ),
        lambda: optimistic_adam(0.01, 0.5, b1=0.8, b2=0.99, eps_root=1e-6, nesterov=False),
    ),
]


@pytest.mark.parametrize("inplace", [True, False], ids=["inplace", "pure"])
@pytest.mark.parametrize("config", OPTAX_CONFIGS, ids=lambda c: c[0])
def test_matches_optax(config: tuple, inplace: bool) -> None:
    _, make_optax, make_ours = config
    optax = _optax()
    params = make_params()
    grads = make_grads(params)
    expected = _optax_trajectory(make_optax(optax), params, grads)
    got, _ = run(make_ours(), params, grads, inplace=inplace)
    assert_trajectories(got, expected)


def test_optimistic_adam_matches_optax_v1() -> None:
    """Optax's deprecated ``optimistic_adam(lr, optimism)`` is the same chain as its v2."""
    optax = _optax()
    params = make_params()
    grads = make_grads(params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        expected = _optax_trajectory(optax.optimistic_adam(0.01, 0.3), params, grads)
    got, _ = run(optimistic_adam(0.01, 0.3), params, grads, inplace=False)
    assert_trajectories(got, expected)


@pytest.mark.parametrize("inplace", [True, False], ids=["inplace", "pure"])
def test_rprop_matches_optax_where_the_math_agrees(inplace: bool) -> None:
    """``optax.rprop`` adapts the step sizes as torch does (``lr`` within the clip range), but
    returns each step's update one step late: its ``prev_updates`` at step t is our -u_t."""
    import numpy as np

    optax = _optax()
    import jax.numpy as jnp

    params = make_params()
    grads = make_grads(params)
    opt_x = optax.rprop(0.05, eta_minus=0.3, eta_plus=1.5, min_step_size=0.02, max_step_size=0.09)
    ours = rprop(0.05, etas=(0.3, 1.5), step_sizes=(0.02, 0.09))
    p_x = {k: jnp.asarray(v.numpy()) for k, v in params.items()}
    s_x = opt_x.init(p_x)
    p = {k: v.clone() for k, v in params.items()}
    state = ours.init(p)
    for g in grads:
        _, s_x = opt_x.update({k: jnp.asarray(v.numpy()) for k, v in g.items()}, s_x, p_x)
        updates, state = ours.update(
            {k: v.clone() for k, v in g.items()}, state, params=p, inplace=inplace
        )
        for k, step_size in zip(sorted(p), state[1].step_size, strict=True):
            expected_step = torch.from_numpy(np.asarray(s_x[0].step_sizes[k]).copy())
            expected_update = -torch.from_numpy(np.asarray(s_x[0].prev_updates[k]).copy())
            torch.testing.assert_close(step_size, expected_step, rtol=RTOL, atol=ATOL)
            torch.testing.assert_close(updates[k], expected_update, rtol=RTOL, atol=ATOL)


# ------------------------------------------------------------------------------ torch.optim


def _torch_trajectory(
    cls: type[torch.optim.Optimizer], kwargs: dict, params: Tree, grads: list[Tree]
) -> tuple[list[Tree], Tree, torch.optim.Optimizer]:
    leaves = {k: v.clone().requires_grad_(True) for k, v in params.items()}
    opt = cls(list(leaves.values()), **kwargs)
    out = []
    for g in grads:
        for k, p in leaves.items():
            p.grad = g[k].clone()
        opt.step()
        out.append({k: v.detach().clone() for k, v in leaves.items()})
    return out, leaves, opt


RPROP_KWARGS = [
    {},
    {"lr": 0.05, "etas": (0.3, 1.5), "step_sizes": (0.02, 0.09)},
    {"lr": 0.2, "etas": (0.5, 1.2), "step_sizes": (1e-3, 0.1), "maximize": True},  # lr clipped
]


@pytest.mark.parametrize("inplace", [True, False], ids=["inplace", "pure"])
@pytest.mark.parametrize("kwargs", RPROP_KWARGS, ids=["default", "clipped", "lr_out_of_range"])
def test_rprop_matches_torch(kwargs: dict, inplace: bool) -> None:
    params = make_params()
    grads = make_grads(params)
    expected, leaves, opt = _torch_trajectory(torch.optim.Rprop, kwargs, params, grads)
    got, state = run(rprop(**kwargs), params, grads, inplace=inplace)
    assert_trajectories(got, expected)
    for k, prev, step in zip(sorted(params), state[1].prev, state[1].step_size, strict=True):
        torch.testing.assert_close(prev, opt.state[leaves[k]]["prev"], rtol=RTOL, atol=ATOL)
        torch.testing.assert_close(step, opt.state[leaves[k]]["step_size"], rtol=RTOL, atol=ATOL)


ASGD_KWARGS = [
    {},
    {"lr": 0.05, "lambd": 0.1, "alpha": 0.5, "t0": 2.0},
    {"lr": 0.03, "lambd": 0.2, "alpha": 1.0, "t0": 0.0, "weight_decay": 0.1, "maximize": True},
]


@pytest.fixture
def float64_default() -> Any:
    """torch.optim.ASGD keeps eta and mu in the default dtype: float64 for a 1e-10 comparison."""
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(before)


@pytest.mark.parametrize("inplace", [True, False], ids=["inplace", "pure"])
@pytest.mark.parametrize("kwargs", ASGD_KWARGS, ids=["default", "averaging", "wd_max"])
def test_asgd_matches_torch(kwargs: dict, inplace: bool, float64_default: None) -> None:
    params = make_params()
    grads = make_grads(params)
    expected, leaves, opt = _torch_trajectory(torch.optim.ASGD, kwargs, params, grads)
    got, state = run(asgd(**kwargs), params, grads, inplace=inplace)
    assert_trajectories(got, expected)
    for k, ax in zip(sorted(params), state[1].ax, strict=True):
        torch.testing.assert_close(ax, opt.state[leaves[k]]["ax"], rtol=RTOL, atol=ATOL)


def test_asgd_schedule_is_evaluated_at_the_count() -> None:
    params = make_params()
    grads = make_grads(params)
    got, _ = run(asgd(lambda count: 0.05, lambd=0.1), params, grads, inplace=True)
    expected, _ = run(asgd(0.05, lambd=0.1), params, grads, inplace=True)
    assert_trajectories(got, expected)


# ------------------------------------------------------------------------------------ noise


def _noise(transform: Any, state: Any, shapes: dict, *, inplace: bool = False) -> Any:
    zeros = {k: torch.zeros(s, dtype=torch.float64) for k, s in shapes.items()}
    return transform.update(zeros, state, inplace=inplace)


def test_noise_law() -> None:
    """Mean, variance, CDF and independence of the noise, to bounds from the sample size.

    With n draws, the sample mean has standard deviation sigma / sqrt(n), the sample variance
    sigma^2 sqrt(2 / (n - 1)), a correlation 1 / sqrt(n); the Kolmogorov-Smirnov distance
    exceeds 1.95 / sqrt(n) with probability 0.001. Bounds are 5 standard deviations.
    """
    eta, gamma = 0.3, 0.55
    t = add_noise(eta, gamma, seed=3)
    shapes = {"a": (400, 500), "b": (200_000,)}
    state = t.init({k: torch.zeros(s) for k, s in shapes.items()})
    previous = None
    for step in range(3):
        noise, state = _noise(t, state, shapes)
        var = eta / (1 + step) ** gamma
        z = noise["a"].reshape(-1) / math.sqrt(var)
        n = z.numel()
        assert abs(z.mean().item()) < 5 / math.sqrt(n)
        assert abs(z.var().item() - 1) < 5 * math.sqrt(2 / (n - 1))
        cdf = torch.special.ndtr(torch.sort(z).values)
        grid = torch.arange(1, n + 1, dtype=torch.float64) / n
        assert (cdf - grid).abs().max().item() < 1.95 / math.sqrt(n)
        for other in (z[1:], noise["b"] / math.sqrt(var)) + ((previous,) if step else ()):
            x = z[: other.numel()]
            corr = torch.corrcoef(torch.stack([x, other[: x.numel()]]))[0, 1]
            assert abs(corr.item()) < 5 / math.sqrt(x.numel())
        previous = z


def test_noise_is_a_function_of_the_state() -> None:
    """The same state gives the same noise: out of place twice, and in place (bit for bit)."""
    t = add_noise(0.5, 0.55, seed=11)
    shapes = {"w": (3, 4), "b": (5,), "s": ()}
    state = t.init({k: torch.zeros(s) for k, s in shapes.items()})
    state = _noise(t, state, shapes)[1]  # at step 1, not 0
    first, after = _noise(t, state, shapes)
    again, _ = _noise(t, state, shapes)
    in_place, in_place_after = _noise(t, optree.tree_map(torch.clone, state), shapes, inplace=True)
    for k in shapes:
        assert torch.equal(first[k], again[k]) and torch.equal(first[k], in_place[k])
        assert first[k].std() > 0 if first[k].numel() > 1 else first[k] != 0
    assert torch.equal(after.count, in_place_after.count) and int(after.count) == 2
    assert int(state.count) == 1  # out of place left the state as it was
    later, _ = _noise(t, after, shapes)
    other_seed = add_noise(0.5, 0.55, seed=12)
    s12 = _noise(
        other_seed, other_seed.init({k: torch.zeros(s) for k, s in shapes.items()}), shapes
    )[1]
    elsewhere, _ = _noise(other_seed, s12, shapes)
    assert not torch.equal(first["w"], later["w"]) and not torch.equal(first["w"], elsewhere["w"])
    assert not torch.equal(first["w"][0], first["w"][1])  # positions differ
    assert first["w"].flatten()[:5].ne(first["b"]).all()  # leaves differ


@pytest.mark.parametrize("inplace", [True, False], ids=["inplace", "pure"])
def test_noisy_sgd_inplace_equals_pure(inplace: bool) -> None:
    params = make_params()
    grads = make_grads(params)
    got, _ = run(noisy_sgd(0.1, eta=0.5, seed=5), params, grads, inplace=inplace)
    expected, _ = run(noisy_sgd(0.1, eta=0.5, seed=5), params, grads, inplace=not inplace)
    assert_trajectories(got, expected, rtol=0.0, atol=0.0)
    deterministic = reference(params, grads, *sgd_ref(0.1, 0.0, False))
    assert not torch.allclose(got[-1]["w"], deterministic[-1]["w"])  # the noise is there


def test_noisy_sgd_vmap_over_seeds_matches_a_loop() -> None:
    """States made with different seeds, stacked and stepped under vmap: the loop's noise."""
    params = make_params()
    g = make_grads(params, 1)[0]
    opts = [noisy_sgd(0.1, eta=0.5, seed=k) for k in range(3)]
    states = [o.init(params) for o in opts]

    def step(state: Any) -> Any:
        return opts[0].update(g, state, params=params, inplace=False)

    expected = [
        o.update(g, s, params=params, inplace=False) for o, s in zip(opts, states, strict=True)
    ]
    got = torch.func.vmap(step)(optree.tree_map(lambda *xs: torch.stack(xs), *states))
    for k, e in enumerate(expected):
        pairs = zip(optree.tree_leaves(cast(Any, e)), optree.tree_leaves(got), strict=True)
        for x, y in pairs:
            torch.testing.assert_close(y[k], x, rtol=1e-12, atol=1e-14)
    assert not torch.allclose(got[0]["w"][0], got[0]["w"][1])


# -------------------------------------------------------------------------------- gradcheck

GRADCHECK = [
    ("lion", lambda lr: lion(lr, weight_decay=0.1)),
    ("sign_sgd", lambda lr: sign_sgd(lr, weight_decay=0.1)),
    ("signum", lambda lr: signum(lr, weight_decay=0.1)),
    ("noisy_sgd", lambda lr: noisy_sgd(lr, eta=0.5, weight_decay=0.1)),
    ("ogd", lambda lr: optimistic_gradient_descent(lr, alpha=0.5, beta=2.0, weight_decay=0.1)),
    ("optimistic_adam", lambda lr: optimistic_adam(lr, eps_root=1e-8, weight_decay=0.1)),
    ("rprop", lambda lr: rprop(lr)),
    ("asgd", lambda lr: asgd(lr, lambd=0.1, t0=0.0, weight_decay=0.1)),
]


@pytest.mark.parametrize("config", GRADCHECK, ids=lambda c: c[0])
def test_gradcheck_two_pure_steps(config: tuple) -> None:
    """Params after two out-of-place steps, w.r.t. params, both gradients and a tensor lr.

    Signs have derivative 0 away from 0; the random gradients keep every argument of a sign
    far from 0 compared with gradcheck's perturbation.
    """
    _, make = config
    gen = torch.Generator().manual_seed(3)
    shapes = [(2, 3), (3,)]
    inputs = [torch.randn(s, generator=gen, dtype=torch.float64) for s in shapes * 3]
    lr = torch.tensor(0.05, dtype=torch.float64)

    def two_steps(w: Tensor, b: Tensor, *rest: Tensor) -> tuple[Tensor, ...]:
        *g, lr = rest
        opt = make(lr)
        params = {"w": w, "b": b}
        state = opt.init(params)
        for gw, gb in ((g[0], g[1]), (g[2], g[3])):
            updates, state = opt.update({"w": gw, "b": gb}, state, params=params, inplace=False)
            params = torchopt_lite.apply_updates(params, updates, inplace=False)
        return params["w"], params["b"]

    args = tuple(x.clone().requires_grad_(True) for x in (*inputs, lr))
    assert torch.autograd.gradcheck(two_steps, args, eps=1e-6, atol=1e-6, rtol=1e-5)


# ----------------------------------------------------------------------------------- errors

# arguments of the wrong type, typed Any so that the calls type-check
WRONG: dict[str, Any] = {"str": "0", "float": 1.5, "schedule": lambda count: 0.1}

ERRORS: list[tuple[Callable[[], Any], type[Exception], str]] = [
    (
        lambda: lion(1e-3, betas=(1.0, 0.99)),
        ValueError,
        r"lion: betas\[0\] must be in \[0.0, 1.0\)",
    ),
    (lambda: lion(-1.0), ValueError, "lion: Invalid learning rate"),
    (lambda: sign_sgd(0.1, weight_decay=-1.0), ValueError, "sign_sgd: Invalid weight_decay"),
    (lambda: signum(0.1, beta=1.0), ValueError, r"signum: beta must be in \[0.0, 1.0\)"),
    (
        lambda: noisy_sgd(0.1, seed=WRONG["str"]),
        TypeError,
        "noisy_sgd: seed must be an int; got str",
    ),
    (lambda: noisy_sgd(0.1, seed=True), TypeError, "noisy_sgd: seed must be an int; got bool"),
    (lambda: noisy_sgd(0.1, eta=-1.0), ValueError, "noisy_sgd: Invalid eta value"),
    (lambda: noisy_sgd(0.1, gamma=-1.0), ValueError, "noisy_sgd: Invalid gamma value"),
    (
        lambda: add_noise(seed=WRONG["float"]),
        TypeError,
        "add_noise: seed must be an int; got float",
    ),
    (lambda: add_noise(eta=-1.0), ValueError, "add_noise: Invalid eta value"),
    (
        lambda: optimistic_gradient_descent(0.1, alpha=-1.0),
        ValueError,
        "optimistic_gradient_descent: Invalid alpha value",
    ),
    (
        lambda: optimistic_gradient_descent(0.1, beta=-1.0),
        ValueError,
        "optimistic_gradient_descent: Invalid beta value",
    ),
    (lambda: optimistic_adam(WRONG["schedule"]), TypeError, "optimistic_adam: lr must be a float"),
    (lambda: optimistic_adam(0.1, optimism=-1.0), ValueError, "optimistic_adam: Invalid optimism"),
    (lambda: optimistic_adam(0.1, b2=1.0), ValueError, r"optimistic_adam: b2 must be in"),
    (lambda: optimistic_adam(0.1, eps=-1.0), ValueError, "optimistic_adam: Invalid epsilon"),
    (lambda: rprop(etas=(1.5, 1.2)), ValueError, r"rprop: Invalid eta values: .* got \(1.5, 1.2\)"),
    (lambda: rprop(etas=(0.5, 1.0)), ValueError, "rprop: Invalid eta values"),
    (lambda: rprop(step_sizes=(1.0, 0.1)), ValueError, "rprop: Invalid step_sizes"),
    (lambda: rprop(step_sizes=(-1.0, 0.1)), ValueError, "rprop: Invalid step_sizes"),
    (
        lambda: rprop(etas=WRONG["float"]),
        TypeError,
        r"rprop: etas must be a pair \(etaminus, etaplus\)",
    ),
    (
        lambda: rprop(step_sizes=WRONG["float"]),
        TypeError,
        r"rprop: step_sizes must be a pair \(min, max\)",
    ),
    (lambda: rprop(WRONG["schedule"]), TypeError, "rprop: lr must be a float or a 0-d tensor"),
    (lambda: rprop(-0.1), ValueError, "rprop: Invalid learning rate"),
    (lambda: asgd(-0.1), ValueError, "asgd: Invalid learning rate"),
    (lambda: asgd(0.1, weight_decay=-0.1), ValueError, "asgd: Invalid weight_decay"),
    (lambda: asgd(0.1, lambd=-0.1), ValueError, "asgd: Invalid lambd value"),
    (lambda: asgd(0.1, alpha=-0.1), ValueError, "asgd: Invalid alpha value"),
    (lambda: asgd(0.1, t0=-1.0), ValueError, "asgd: Invalid t0 value"),
]


@pytest.mark.parametrize("case", ERRORS, ids=lambda c: c[2][:40])
def test_invalid_hyperparameters_raise_at_construction(case: tuple) -> None:
    build, error, match = case
    with pytest.raises(error, match=match):
        build()


def test_asgd_without_params_raises_before_writing() -> None:
    opt = asgd(0.1)
    params = make_params()
    state = opt.init(params)
    before = optree.tree_map(torch.clone, state)
    grads = make_grads(params, 1)[0]
    grads_before = {k: v.clone() for k, v in grads.items()}
    with pytest.raises(ValueError, match="asgd"):
        opt.update(grads, state)
    for x, y in zip(optree.tree_leaves(state), optree.tree_leaves(before), strict=True):
        assert torch.equal(x, y)
    assert all(torch.equal(grads[k], grads_before[k]) for k in grads)


@pytest.mark.parametrize(
    "make",
    [lambda: lion(0.1, moment_requires_grad=True), lambda: signum(0.1, moment_requires_grad=True)]
    + [
        lambda n=n: optimistic_adam(0.1, nesterov=n, moment_requires_grad=True)
        for n in (True, False)
    ],
    ids=["lion", "signum", "optimistic_adam", "optimistic_adam_plain"],
)
def test_moment_requires_grad(make: Callable[[], Any]) -> None:
    state = make().init(make_params())
    parts = [s for s in state if hasattr(s, "mu")]  # the moments (not the optimistic prev)
    moments = [x for s in parts for name in ("mu", "nu") for x in getattr(s, name, ())]
    assert moments and all(x.requires_grad for x in moments)
