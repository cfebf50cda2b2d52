"""sophia (with its Hessian-diagonal estimators) and sam against plain references and Optax's
contrib implementations, in float64."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import optree
import pytest
import torch
from torch import Tensor

import torchopt_lite
from tests.alias._breadth import ALL  # first: it imports every case module, ours included
from tests.alias._cases_curvature import squared_gradient_estimator
from tests.alias._registry import make_grads, make_params
from torchopt_lite.alias.adam import adam
from torchopt_lite.alias.sam import SAMState, sam
from torchopt_lite.alias.sgd import sgd
from torchopt_lite.alias.sophia import sophia
from torchopt_lite.base import GradientTransformation
from torchopt_lite.combine import chain
from torchopt_lite.transform.hessian_diagonal import (
    HutchinsonState,
    gauss_newton_bartlett_estimator_diag_hessian,
    hutchinson_estimator_diag_hessian,
    rademacher_like,
)
from torchopt_lite.transform.normalize import normalize
from torchopt_lite.transform.scale_by_sophia import ScaleBySophiaState, scale_by_sophia

STEPS = 8
RTOL, ATOL = 1e-10, 1e-12  # float64; the implementations differ in the order of roundings only

Params = dict[str, Tensor]
KEYS = ("b", "s", "w")  # optree's (and JAX's) order of the dict's leaves


def clone(tree: Any) -> Any:
    return optree.tree_map(torch.clone, tree)


def assert_trajectories_close(got: list[Params], expected: list[Params], n: int = STEPS) -> None:
    assert len(got) == len(expected) == n
    for step, (g, e) in enumerate(zip(got, expected, strict=True)):
        for k in e:
            torch.testing.assert_close(g[k], e[k], rtol=RTOL, atol=ATOL, msg=f"step {step} {k}")


# ---------------------------------------------------------------------------------------------
# A smooth objective with a non-diagonal Hessian that depends on the parameters:
# f = sum_leaves (x^T A x / 2 + c^T x + sum x^4 / 12) + s * sum(b).


def objective_data(seed: int) -> dict[str, tuple[Tensor, Tensor]]:
    gen = torch.Generator().manual_seed(seed + 7)
    data = {}
    for k, v in make_params().items():
        n = v.numel()
        m = torch.randn(n, n, generator=gen, dtype=torch.float64)
        data[k] = (m @ m.T / n + torch.eye(n, dtype=torch.float64), torch.randn(n, generator=gen))
    return {k: (a, c.double()) for k, (a, c) in data.items()}


def torch_objective(data: dict[str, tuple[Tensor, Tensor]]) -> Callable[[Params], Tensor]:
    def f(p: Params) -> Tensor:
        total = p["s"] * p["b"].sum()
        for k, (a, c) in data.items():
            x = p[k].reshape(-1)
            total = total + 0.5 * x @ a @ x + c @ x + (x**4).sum() / 12
        return total

    return f


def flat_hessian(f: Callable[[Params], Tensor], params: Params) -> Tensor:
    """The exact Hessian of ``f`` in the concatenation of the leaves in ``KEYS`` order."""
    sizes = [params[k].numel() for k in KEYS]

    def flat_f(x: Tensor) -> Tensor:
        parts = x.split(sizes)
        return f({k: part.reshape(params[k].shape) for k, part in zip(KEYS, parts, strict=True)})

    vec = torch.cat([params[k].reshape(-1) for k in KEYS])
    return torch.autograd.functional.hessian(flat_f, vec)


# ---------------------------------------------------------------------------------------------
# Sophia


def sophia_reference(
    params: Params,
    grads: list[Params],
    f: Callable[[Params], Tensor],
    probes: Callable[[int, Params], Tensor],
    *,
    lr: float,
    b1: float,
    b2: float,
    eps: float,
    weight_decay: float,
    gamma: float,
    clip_threshold: float | None,
    update_interval: int,
) -> list[Params]:
    """The paper's update per leaf; the Hessian diagonal estimate from the exact Hessian."""
    params = clone(params)
    mu = {k: torch.zeros_like(v) for k, v in params.items()}
    nu = {k: torch.zeros_like(v) for k, v in params.items()}
    out = []
    estimates = 0
    for t, g in enumerate(grads, start=1):
        new = {}
        for k, p in params.items():
            mu[k] = b1 * mu[k] + (1 - b1) * g[k]
            u = mu[k] / (1 - b1**t) / torch.clamp(gamma * nu[k], min=eps)
            if clip_threshold is not None:
                u = torch.clamp(u, -clip_threshold, clip_threshold)
            new[k] = p - lr * (u + weight_decay * p)
        if (t - 1) % update_interval == 0:
            z = probes(estimates, params)
            estimates += 1
            h = z * (flat_hessian(f, params) @ z)
            for k, part in zip(KEYS, h.split([params[k].numel() for k in KEYS]), strict=True):
                nu[k] = b2 * nu[k] + (1 - b2) * part.reshape(params[k].shape)
        params = new
        out.append(clone(params))
    return out


def run(
    opt: Any, params: Params, grads: list[Params], *, inplace: bool, **extra: Any
) -> list[Params]:
    params = clone(params)
    state = opt.init(params)
    out = []
    for g in grads:
        updates, state = opt.update(clone(g), state, params=params, inplace=inplace, **extra)
        params = torchopt_lite.apply_updates(params, updates, inplace=inplace)
        out.append(clone(params))
    return out


SOPHIA_CONFIGS = {
    "clipped": dict(
        lr=0.05, b1=0.9, b2=0.8, eps=1e-3, weight_decay=0.1, gamma=0.05, clip_threshold=1.0,
        update_interval=3,
    ),
    "unclipped": dict(
        lr=0.02, b1=0.8, b2=0.5, eps=0.1, weight_decay=0.0, gamma=1.0, clip_threshold=None,
        update_interval=1,
    ),
}  # fmt: skip


def default_probes(seed: int) -> Callable[[int, Params], Tensor]:
    def probes(j: int, params: Params) -> Tensor:
        leaves = [params[k] for k in KEYS]
        z = rademacher_like(torch.tensor(seed), torch.tensor(j), leaves)
        return torch.cat([x.reshape(-1) for x in z])

    return probes


@pytest.mark.parametrize("config", SOPHIA_CONFIGS)
@pytest.mark.parametrize("inplace", [True, False], ids=["inplace", "pure"])
def test_sophia_matches_reference(seed: int, config: str, inplace: bool) -> None:
    kw = SOPHIA_CONFIGS[config]
    params, f = make_params(seed), torch_objective(objective_data(seed))
    grads = make_grads(params, STEPS)
    est = hutchinson_estimator_diag_hessian(seed=5)
    got = run(sophia(**kw, hessian_diagonal_fn=est), params, grads, inplace=inplace, obj_fn=f)
    expected = sophia_reference(params, grads, f, default_probes(5), **kw)
    assert_trajectories_close(got, expected)


def test_sophia_maximize_is_minimizing_the_negation(seed: int) -> None:
    kw = SOPHIA_CONFIGS["unclipped"]
    params, f = make_params(seed), torch_objective(objective_data(seed))
    grads = make_grads(params, STEPS)
    got = run(sophia(**kw, maximize=True), params, grads, inplace=True, obj_fn=lambda p: -f(p))
    neg = [optree.tree_map(torch.neg, g) for g in grads]
    expected = sophia_reference(params, neg, f, default_probes(0), **kw)
    assert_trajectories_close(got, expected)


def optax_probes(jax: Any, optax: Any, params: Any, n: int) -> list[list[Tensor]]:
    """The Rademacher probes of Optax's Hutchinson estimator (default key), in leaf order."""
    import numpy as np

    key, out = jax.random.PRNGKey(0), []
    for _ in range(n):
        key, sub = jax.random.split(key)
        z = optax.tree.random_like(sub, params, jax.random.rademacher, dtype=np.float32)
        out.append([torch.tensor(np.asarray(z[k]), dtype=torch.float64) for k in KEYS])
    return out


@pytest.mark.parametrize("config", [*SOPHIA_CONFIGS, "masked"])
@pytest.mark.parametrize("inplace", [True, False], ids=["inplace", "pure"])
def test_sophia_matches_optax(seed: int, config: str, inplace: bool) -> None:
    """Optax's sophia with its own Hutchinson estimator; ours draws the same probes."""
    optax = pytest.importorskip("optax")
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp
    import numpy as np

    jax.config.update("jax_enable_x64", True)
    kw = dict(SOPHIA_CONFIGS["clipped" if config == "masked" else config])
    if config == "masked":
        kw["weight_decay_mask"] = {"w": True, "b": False, "s": True}
    data = objective_data(seed)
    params, f = make_params(seed), torch_objective(data)
    grads = make_grads(params, STEPS)

    def f_jax(p: Any) -> Any:
        total = p["s"] * p["b"].sum()
        for k, (a, c) in data.items():
            x = p[k].reshape(-1)
            total = total + 0.5 * x @ jnp.asarray(a.numpy()) @ x + jnp.asarray(c.numpy()) @ x
            total = total + (x**4).sum() / 12
        return total

    to_jax = lambda t: {k: jnp.asarray(v.numpy()) for k, v in t.items()}  # noqa: E731
    lr = kw.pop("lr")
    opt = optax.contrib.sophia(lr, **kw)
    p_j = to_jax(params)
    state = opt.init(p_j)
    expected = []
    for g in grads:
        u, state = opt.update(to_jax(g), state, p_j, obj_fn=f_jax)
        p_j = optax.apply_updates(p_j, u)
        expected.append({k: torch.tensor(np.asarray(v)) for k, v in p_j.items()})

    probes = optax_probes(jax, optax, to_jax(params), STEPS)
    est = hutchinson_estimator_diag_hessian(sampler=lambda seed, count, leaves: probes[int(count)])
    got = run(sophia(lr, **kw, hessian_diagonal_fn=est), params, grads, inplace=inplace, obj_fn=f)
    assert_trajectories_close(got, expected)


def test_sophia_vmap_with_hutchinson_matches_a_loop(seed: int) -> None:
    """Under ``vmap`` the estimate is computed every step and selected (same values)."""
    opt = sophia(0.05, eps=0.1, gamma=1.0, update_interval=2)
    f = torch_objective(objective_data(seed))
    batch = [make_params(seed + k) for k in range(3)]
    grads = [make_grads(p, 3, seed=k + 1) for k, p in enumerate(batch)]

    def steps(params: Params, gs: list[Params], state: Any) -> Any:
        for g in gs:
            updates, state = opt.update(g, state, params=params, inplace=False, obj_fn=f)
            params = torchopt_lite.apply_updates(params, updates, inplace=False)
        return params, state

    expected = [steps(p, g, opt.init(p)) for p, g in zip(batch, grads, strict=True)]
    stack = lambda *xs: torch.stack(xs)  # noqa: E731
    got = torch.func.vmap(steps)(
        optree.tree_map(stack, *batch),
        optree.tree_map(stack, *grads),
        optree.tree_map(stack, *[opt.init(p) for p in batch]),
    )
    for k, e in enumerate(expected):
        for x, y in zip(optree.tree_leaves(e), optree.tree_leaves(got), strict=True):
            torch.testing.assert_close(y[k], x, rtol=1e-12, atol=1e-14)


@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")
@pytest.mark.filterwarnings(
    "ignore:<class 'torch.autograd.function.Function'> should not be instantiated"
    ":DeprecationWarning"
)
def test_sophia_with_hutchinson_compiles(seed: int) -> None:
    """One out-of-place step (estimate included) compiles with ``fullgraph=True``."""
    torch._dynamo.reset()
    opt = sophia(0.05, eps=0.1, gamma=1.0, update_interval=2)
    f = torch_objective(objective_data(seed))
    params = make_params(seed)
    grads = make_grads(params, 1)[0]

    def step(params: Params, grads: Params, state: Any) -> Any:
        updates, state = opt.update(grads, state, params=params, inplace=False, obj_fn=f)
        return torchopt_lite.apply_updates(params, updates, inplace=False), state

    expected = step(params, grads, opt.init(params))
    got = torch.compile(step, fullgraph=True, backend="aot_eager")(params, grads, opt.init(params))
    for e, g in zip(optree.tree_leaves(expected), optree.tree_leaves(got), strict=True):
        torch.testing.assert_close(g, e, rtol=1e-12, atol=1e-14)


def test_sophia_gradcheck_two_steps(seed: int) -> None:
    """Out of place, differentiable in params and grads, through the Hessian estimate too."""
    gen = torch.Generator().manual_seed(seed)
    w0, b0, *g = (torch.randn(s, generator=gen, dtype=torch.float64) for s in [(2, 3), (3,)] * 3)

    def f(p: Params) -> Tensor:
        return (p["w"] ** 2).sum() + (p["b"] ** 4).sum() / 12 + (p["w"].sum() * p["b"]).sum()

    def two_steps(*xs: Tensor) -> Any:
        w, b, g1, h1, g2, h2 = xs
        opt = sophia(0.1, b2=0.5, eps=0.5, gamma=1.0, clip_threshold=None, update_interval=1)
        params = {"w": w, "b": b}
        state = opt.init(params)
        for gw, gb in ((g1, h1), (g2, h2)):
            u, state = opt.update({"w": gw, "b": gb}, state, params=params, inplace=False, obj_fn=f)
            params = torchopt_lite.apply_updates(params, u, inplace=False)
        return params["w"], params["b"], *state[1].nu

    inputs = tuple(x.clone().requires_grad_(True) for x in (w0, b0, *g))
    assert torch.autograd.gradcheck(two_steps, inputs, eps=1e-6, atol=1e-5, rtol=1e-4)


def test_sophia_refreshes_the_hessian_every_k_steps(seed: int) -> None:
    params = make_params(seed)
    opt = sophia(0.1, update_interval=3, hessian_diagonal_fn=squared_gradient_estimator())
    state = opt.init(params)
    calls = []
    for t, g in enumerate(make_grads(params, 7)):
        before = clone(state[1].nu)
        _, state = opt.update(g, state, params=params, inplace=False)
        changed = any(not torch.equal(a, b) for a, b in zip(before, state[1].nu, strict=True))
        calls.append(changed)
        assert int(state[1].count) == t + 1
    assert calls == [True, False, False, True, False, False, True]


# ---------------------------------------------------------------------------------------------
# Hessian-diagonal estimators


def test_hutchinson_is_unbiased(seed: int) -> None:
    """The mean of n estimates is within 5 standard errors of the exact Hessian diagonal; the
    variance of each coordinate is sum_{j != i} H_ij^2 (Rademacher probes)."""
    params, f = make_params(seed), torch_objective(objective_data(seed))
    hess = flat_hessian(f, params)
    diag = hess.diagonal()
    std = ((hess**2).sum(1) - diag**2).sqrt()
    est = hutchinson_estimator_diag_hessian(seed=seed)
    state, n, total = est.init(params), 2000, torch.zeros_like(diag)
    for _ in range(n):
        h, state = est.update(None, state, params=params, obj_fn=f)
        total += torch.cat([h[k].reshape(-1) for k in KEYS])
    assert int(state.count) == n
    assert torch.all((total / n - diag).abs() <= 5 * std / math.sqrt(n) + 1e-12)


def test_hutchinson_matches_exact_hessian_product(seed: int) -> None:
    params, f = make_params(seed), torch_objective(objective_data(seed))
    est = hutchinson_estimator_diag_hessian(seed=3)
    state = est.init(params)
    for j in range(2):
        h, state = est.update(None, state, params=params, inplace=j == 0, obj_fn=f)
        z = default_probes(3)(j, params)
        expected = z * (flat_hessian(f, params) @ z)
        got = torch.cat([h[k].reshape(-1) for k in KEYS])
        torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)


def test_rademacher_like_is_reproducible_and_balanced() -> None:
    leaves = [torch.zeros(100_000, dtype=torch.float32), torch.zeros(3, 4, dtype=torch.float64)]
    a = rademacher_like(torch.tensor(11), torch.tensor(2), leaves)
    assert [(x.shape, x.dtype) for x in a] == [(x.shape, x.dtype) for x in leaves]
    assert all(bool(x.abs().eq(1).all()) for x in a)
    assert all(torch.equal(x, y) for x, y in zip(a, rademacher_like(11, 2, leaves), strict=True))
    b = rademacher_like(torch.tensor(11), torch.tensor(3), leaves)
    c = rademacher_like(torch.tensor(12), torch.tensor(2), leaves)
    n = a[0].numel()
    for z in (a[0], b[0], c[0]):  # mean, lag-1 correlation: within 5 standard errors of 0
        assert abs(float(z.mean())) < 5 / math.sqrt(n)
        assert abs(float((z[1:] * z[:-1]).mean())) < 5 / math.sqrt(n)
    for other in (b[0], c[0]):  # another count or seed: uncorrelated probes
        assert abs(float((a[0] * other).mean())) < 5 / math.sqrt(n)


def test_gauss_newton_bartlett_is_unbiased_for_softmax_regression(seed: int) -> None:
    """E over labels sampled from the model of B * g * g is the Gauss-Newton diagonal."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(4, 3, generator=gen, dtype=torch.float64)
    params = {"w": 0.5 * torch.randn(5, 3, generator=gen, dtype=torch.float64)}
    probs = torch.softmax(x @ params["w"].T, dim=-1)
    jac = torch.einsum("bc,bd->bcd", torch.ones(4, 5, dtype=torch.float64), x)  # d logit_c/d w_c
    hess_logits = torch.diag_embed(probs) - probs[:, :, None] * probs[:, None, :]
    # diag of J^T H J / B for logits linear in w: entry (c, d) = sum_b H_b[c, c] x_bd^2 / B
    gn_diag = torch.einsum("bc,bcd->cd", hess_logits.diagonal(dim1=1, dim2=2), jac**2) / 4
    est = gauss_newton_bartlett_estimator_diag_hessian(batch_size=4)
    state, n, samples = est.init(params), 4000, []
    label_gen = torch.Generator().manual_seed(seed + 1)
    for _ in range(n):
        y = torch.multinomial(probs, 1, generator=label_gen).squeeze(1)

        def sampled(p: Params, y: Tensor = y) -> Tensor:
            return torch.nn.functional.cross_entropy(x @ p["w"].T, y)

        h, state = est.update(None, state, params=params, sampled_obj_fn=sampled)
        samples.append(h["w"])
    stack = torch.stack(samples)
    bound = 5 * stack.std(0) / math.sqrt(n) + 1e-12
    assert torch.all((stack.mean(0) - gn_diag).abs() <= bound)


def test_gauss_newton_bartlett_is_b_times_squared_gradient() -> None:
    params = {"w": torch.tensor([1.0, -2.0], dtype=torch.float64)}
    est = gauss_newton_bartlett_estimator_diag_hessian(batch_size=3)
    obj = lambda p: (p["w"] ** 2).sum()  # noqa: E731
    h, _ = est.update(None, est.init(params), params=params, inplace=False, sampled_obj_fn=obj)
    torch.testing.assert_close(h["w"], 3 * (2 * params["w"]) ** 2)
    opt = sophia(0.1, hessian_diagonal_fn=est)  # Sophia-G: the estimator's own extra argument
    _, state = opt.update(clone(params), opt.init(params), params=params, sampled_obj_fn=obj)
    torch.testing.assert_close(state[1].nu[0], 0.01 * h["w"])


# ---------------------------------------------------------------------------------------------
# SAM


def quadratic_data(seed: int) -> dict[str, tuple[Tensor, Tensor]]:
    return {k: (a, c) for k, (a, c) in objective_data(seed).items()}


def quadratic_grad(data: dict[str, tuple[Tensor, Tensor]]) -> Callable[[Params], Params]:
    def grad(p: Params) -> Params:
        return {k: (a @ p[k].reshape(-1) - c).reshape(p[k].shape) for k, (a, c) in data.items()}

    return grad


def sam_loop(
    opt: Any, params: Params, grad: Callable[[Params], Params], calls: int, *, inplace: bool,
    opaque: bool,
) -> list[Params]:  # fmt: skip
    params = clone(params)
    state = opt.init(params)
    extra = {"grad_fn": lambda p, i: grad(p)} if opaque else {}
    out = []
    for _ in range(calls):
        updates, state = opt.update(grad(params), state, params=params, inplace=inplace, **extra)
        params = torchopt_lite.apply_updates(params, updates, inplace=inplace)
        out.append(clone(params))
    return out


def global_norm(tree: Params) -> Tensor:
    return torch.sqrt(sum((v**2).sum() for v in tree.values()))


@pytest.mark.parametrize("opaque", [False, True], ids=["transparent", "opaque"])
@pytest.mark.parametrize("inplace", [True, False], ids=["inplace", "pure"])
def test_sam_matches_plain_reference(seed: int, inplace: bool, opaque: bool) -> None:
    """theta~ = theta + rho g / |g|;  theta <- theta - lr g(theta~)  (SGD outer step)."""
    lr, rho = 0.1, 0.05
    params, grad = make_params(seed), quadratic_grad(quadratic_data(seed))
    cycles = STEPS // 2
    theta, expected = clone(params), []
    for _ in range(cycles):
        g = grad(theta)
        n = global_norm(g)
        adv = {k: theta[k] + rho * g[k] / n for k in theta}
        if not opaque:
            expected.append(adv)
        g_adv = grad(adv)
        theta = {k: theta[k] - lr * g_adv[k] for k in theta}
        expected.append(theta)
    opt = sam(sgd(lr), chain(normalize(), sgd(rho)), opaque_mode=opaque)
    got = sam_loop(opt, params, grad, STEPS if not opaque else cycles, inplace=inplace,
                   opaque=opaque)  # fmt: skip
    assert_trajectories_close(got, expected, n=len(expected))


SAM_CONFIGS = {
    "sgd": dict(sync_period=2, reset_state=True),
    "adam-adv-no-reset": dict(sync_period=3, reset_state=False),
}


@pytest.mark.parametrize("opaque", [False, True], ids=["transparent", "opaque"])
@pytest.mark.parametrize("config", SAM_CONFIGS)
@pytest.mark.parametrize("inplace", [True, False], ids=["inplace", "pure"])
def test_sam_matches_optax(seed: int, config: str, inplace: bool, opaque: bool) -> None:
    optax = pytest.importorskip("optax")
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp
    import numpy as np

    jax.config.update("jax_enable_x64", True)
    kw = SAM_CONFIGS[config]
    data = quadratic_data(seed)
    params, grad = make_params(seed), quadratic_grad(data)

    def grad_jax(p: Any) -> Any:
        return {
            k: (jnp.asarray(a.numpy()) @ p[k].reshape(-1) - jnp.asarray(c.numpy())).reshape(
                p[k].shape
            )
            for k, (a, c) in data.items()
        }

    if config == "sgd":
        ours = sam(sgd(0.1), chain(normalize(), sgd(0.05)), **kw, opaque_mode=opaque)
        theirs = optax.contrib.sam(
            optax.sgd(0.1),
            optax.chain(optax.contrib.normalize(), optax.sgd(0.05)),
            **kw,
            opaque_mode=opaque,
        )
    else:
        ours = sam(adam(0.05), chain(normalize(), adam(0.02)), **kw, opaque_mode=opaque)
        theirs = optax.contrib.sam(
            optax.adam(0.05),
            optax.chain(optax.contrib.normalize(), optax.adam(0.02)),
            **kw,
            opaque_mode=opaque,
        )
    p_j = {k: jnp.asarray(v.numpy()) for k, v in params.items()}
    state = theirs.init(p_j)
    extra = {"grad_fn": lambda p, i: grad_jax(p)} if opaque else {}
    expected = []
    for _ in range(STEPS):
        u, state = theirs.update(grad_jax(p_j), state, p_j, **extra)
        p_j = optax.apply_updates(p_j, u)
        expected.append({k: torch.tensor(np.asarray(v)) for k, v in p_j.items()})
    got = sam_loop(ours, params, grad, STEPS, inplace=inplace, opaque=opaque)
    assert_trajectories_close(got, expected)


def test_sam_resets_the_adversarial_state_after_each_outer_step(seed: int) -> None:
    params = make_params(seed)
    grad = quadratic_grad(quadratic_data(seed))
    for reset in (True, False):
        opt = sam(sgd(0.1), adam(0.05), sync_period=2, reset_state=reset)
        state = opt.init(params)
        p = clone(params)
        for _ in range(2):
            u, state = opt.update(grad(p), state, params=p, inplace=False)
            p = torchopt_lite.apply_updates(p, u, inplace=False)
        assert isinstance(state, SAMState) and int(state.steps_since_sync) == 0
        counts = [int(s.count) for s in state.adv_state if "count" in getattr(s, "_fields", ())]
        assert counts == ([0] if reset else [1])  # adam's count: reset, or one adversarial step


@pytest.mark.parametrize("opaque", [False, True], ids=["transparent", "opaque"])
def test_sam_gradcheck_two_steps(seed: int, opaque: bool) -> None:
    gen = torch.Generator().manual_seed(seed)
    w0, b0, *g = (torch.randn(s, generator=gen, dtype=torch.float64) for s in [(2, 3), (3,)] * 3)

    def two_steps(*xs: Tensor) -> Any:
        w, b, g1, h1, g2, h2 = xs
        opt = sam(adam(0.1), chain(normalize(), sgd(0.05)), opaque_mode=opaque)
        params = {"w": w, "b": b}
        state = opt.init(params)
        # grad_fn: a gradient that depends on the point (w, b) and on the given (g2, h2)
        extra = {"grad_fn": lambda p, i: {"w": p["w"] * g2, "b": p["b"] + h2}} if opaque else {}
        for gw, gb in ((g1, h1), (g2, h2)):
            u, state = opt.update({"w": gw, "b": gb}, state, params=params, inplace=False, **extra)
            params = torchopt_lite.apply_updates(params, u, inplace=False)
        return params["w"], params["b"]

    inputs = tuple(x.clone().requires_grad_(True) for x in (w0, b0, *g))
    assert torch.autograd.gradcheck(two_steps, inputs, eps=1e-6, atol=1e-5, rtol=1e-4)


def test_normalize_divides_by_the_global_norm() -> None:
    g = {"a": torch.tensor([3.0, 0.0], dtype=torch.float64), "c": torch.tensor([4.0j])}
    t = normalize()
    out, _ = t.update(clone(g), t.init(g), inplace=False)
    torch.testing.assert_close(out["a"], torch.tensor([0.6, 0.0], dtype=torch.float64))
    torch.testing.assert_close(out["c"], torch.tensor([0.8j]))


# ---------------------------------------------------------------------------------------------
# Errors: each raise, with params and state unchanged afterwards


def unchanged(before: Any, after: Any) -> bool:
    pairs = zip(optree.tree_leaves(before), optree.tree_leaves(after), strict=True)
    return all(torch.equal(a, b) for a, b in pairs)


CONSTRUCTION_ERRORS = [
    (lambda: hutchinson_estimator_diag_hessian(seed=1.5), TypeError, "seed must be an int"),
    (lambda: gauss_newton_bartlett_estimator_diag_hessian(2.0), TypeError, "batch_size must be"),
    (lambda: gauss_newton_bartlett_estimator_diag_hessian(0), ValueError, "batch_size must be"),
    (lambda: scale_by_sophia(b1=1.0), ValueError, "b1 must be in"),
    (lambda: scale_by_sophia(clip_threshold=0.0), ValueError, "clip_threshold must be > 0"),
    (lambda: scale_by_sophia(update_interval=2.0), TypeError, "update_interval must be an int"),
    (lambda: scale_by_sophia(update_interval=0), ValueError, "update_interval must be >= 1"),
    (lambda: scale_by_sophia(hessian_diagonal_fn=len), TypeError, "GradientTransformation"),
    (lambda: sophia(-1.0), ValueError, "Invalid learning rate"),
    (lambda: sophia(0.1, hessian_diagonal_fn=len, maximize=True), TypeError, "hessian_diag"),
    (lambda: sam(sgd(0.1), sgd(0.1), sync_period=2.0), TypeError, "sync_period must be an int"),
    (lambda: sam(sgd(0.1), sgd(0.1), sync_period=0), ValueError, "sync_period must be >= 1"),
    (lambda: sam(sgd(0.1), len), TypeError, "adv_optimizer must be a GradientTransformation"),
]


@pytest.mark.parametrize(("make", "error", "match"), CONSTRUCTION_ERRORS)
def test_construction_errors(make: Callable[[], Any], error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        make()


def update_error_cases() -> list[tuple[str, Callable[[], Any], Any, Any, type, str]]:
    p = make_params()
    est = hutchinson_estimator_diag_hessian()
    gnb = gauss_newton_bartlett_estimator_diag_hessian(2)
    f = torch_objective(objective_data(0))
    cplx = {"z": torch.ones(2, dtype=torch.complex128)}

    def one_leaf(updates: Any, state: Any, **extra: Any) -> tuple[Any, Any]:
        return {"x": torch.ones(1)}, state

    wrong = scale_by_sophia(hessian_diagonal_fn=GradientTransformation(lambda p: (), one_leaf))
    cases = []

    def case(name: str, opt: Any, tree: Any, error: type, match: str, **kw: Any) -> None:
        cases.append((name, opt, tree, opt.init(tree), error, match, kw))

    case("hutch-no-params", est, p, ValueError, "needs params=", obj_fn=f)
    case("hutch-no-obj", est, p, ValueError, "needs the extra argument obj_fn=", params=p)
    case("hutch-obj-type", est, p, TypeError, "obj_fn must be a callable", params=p, obj_fn=1)
    case("hutch-complex", est, cplx, ValueError, "complex", params=cplx, obj_fn=f)
    case("gnb-no-obj", gnb, p, ValueError, "sampled_obj_fn=", params=p)
    case("sophia-no-obj", sophia(0.1), p, ValueError, "extra argument obj_fn=", params=p)
    case("sophia-no-params", sophia(0.1), p, ValueError, "needs params=", obj_fn=f)
    case("sophia-complex", sophia(0.1), cplx, ValueError, "complex", params=cplx, obj_fn=f)
    case("sophia-estimate-shape", wrong, p, ValueError, "shaped like params", params=p)
    case("sam-no-params", sam(sgd(0.1), sgd(0.1)), p, ValueError, "needs params=")
    case(
        "sam-opaque-no-grad-fn",
        sam(sgd(0.1), sgd(0.1), opaque_mode=True),
        p,
        ValueError,
        "grad_fn",
        params=p,
    )
    return cases


@pytest.mark.parametrize("inplace", [True, False], ids=["inplace", "pure"])
@pytest.mark.parametrize("case", update_error_cases(), ids=lambda c: c[0])
def test_update_errors_write_nothing(case: tuple, inplace: bool) -> None:
    _, opt, params, state, error, match, kw = case
    before = clone((params, state))
    grads = optree.tree_map(torch.ones_like, params)
    with pytest.raises(error, match=match):
        opt.update(grads, state, inplace=inplace, **kw)
    assert unchanged(before, (params, state))


def test_wrong_state_types() -> None:
    p = make_params()
    with pytest.raises(TypeError, match="state must be a ScaleBySophiaState"):
        scale_by_sophia().update(p, (1, 2), params=p)
    with pytest.raises(TypeError, match="state must be a SAMState"):
        sam(sgd(0.1), sgd(0.1)).update(p, (1, 2), params=p)
    assert isinstance(scale_by_sophia().init(p), ScaleBySophiaState)
    assert isinstance(hutchinson_estimator_diag_hessian().init(p), HutchinsonState)


def test_cases_are_registered() -> None:
    assert {c.id for c in ALL} >= {"sophia-default", "sam-default", "sam-adam-sync3"}
