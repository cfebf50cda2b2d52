"""L-BFGS: the two-loop recursion, Optax's lbfgs and zoom line search, torch.optim.LBFGS."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from tests.implicit._ridge import ridge_closed_form, ridge_optimality
from torchopt_lite._lbfgs import two_loop
from torchopt_lite.alias.lbfgs import lbfgs
from torchopt_lite.diff.implicit import custom_root
from torchopt_lite.optim.lbfgs import LBFGS
from torchopt_lite.transform.scale_by_lbfgs import scale_by_lbfgs
from torchopt_lite.transform.scale_by_zoom_linesearch import scale_by_zoom_linesearch
from torchopt_lite.update import apply_updates

D = torch.float64
KEYS = ("b", "s", "w")  # the leaves' order (sorted dict keys)


def make_params(gen: torch.Generator) -> dict[str, torch.Tensor]:
    return {
        "w": 0.5 * torch.randn(3, 4, generator=gen, dtype=D),
        "b": 0.5 * torch.randn(5, generator=gen, dtype=D),
        "s": torch.tensor(0.3, dtype=D),
    }


def flat(p: dict) -> torch.Tensor:
    return torch.cat([p[k].reshape(-1) for k in KEYS])


def problems(gen: torch.Generator) -> dict:
    m = torch.randn(12, 12, generator=gen, dtype=D)
    a, b = m @ m.T / 12 + 0.1 * torch.eye(12, dtype=D), torch.randn(12, generator=gen, dtype=D)

    def quadratic(p, xp=torch):
        x = xp.concatenate([p[k].reshape(-1) for k in KEYS])
        aa, bb = (a, b) if xp is torch else (xp.asarray(a.numpy()), xp.asarray(b.numpy()))
        return 0.5 * x[:12] @ aa @ x[:12] - bb @ x[:12] + 0.5 * (x[12:] ** 2).sum()

    def rosenbrock(p, xp=torch):
        x = xp.concatenate([p[k].reshape(-1) for k in KEYS])
        return (100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2).sum()

    return {"quadratic": quadratic, "rosenbrock": rosenbrock}


def from_jax(p: dict) -> torch.Tensor:
    return torch.cat([torch.tensor(np.array(p[k]), dtype=D).reshape(-1) for k in KEYS])


def value_and_grad(f, p):
    x = {k: v.detach().requires_grad_() for k, v in p.items()}
    with torch.enable_grad():
        value = f(x)
        grads = torch.autograd.grad(value, list(x.values()))
    return value.detach(), dict(zip(x, grads, strict=True))


# -- the two-loop recursion against the dense BFGS recursion ------------------------------------


def dense_inverse_hessian(pairs, gamma, n):
    """P <- V^T P V + rho s s^T, V = I - rho y s^T, from P = gamma I (oldest pair first)."""
    eye = torch.eye(n, dtype=D)
    h = gamma * eye
    for s, y in pairs:
        rho = 1.0 / (y @ s)
        v = eye - rho * torch.outer(y, s)
        h = v.T @ h @ v + rho * torch.outer(s, s)
    return h


@pytest.mark.parametrize("filled", [0, 2, 4, 7])
def test_two_loop_matches_dense_recursion(filled: int) -> None:
    gen = torch.Generator().manual_seed(filled)
    n, m = 6, 4
    s_mem, y_mem, rho = (
        torch.zeros(m, n, dtype=D),
        torch.zeros(m, n, dtype=D),
        torch.zeros(m, dtype=D),
    )
    pairs = []
    for k in range(filled):  # pushed at slot k % m: the ring wraps when filled > m
        s = torch.randn(n, generator=gen, dtype=D)
        y = s + 0.3 * torch.randn(n, generator=gen, dtype=D)  # y^T s > 0
        s_mem[k % m], y_mem[k % m], rho[k % m] = s, y, 1.0 / (y @ s)
        pairs.append((s, y))
    q = torch.randn(n, generator=gen, dtype=D)
    gamma = torch.tensor(0.7, dtype=D)
    got = two_loop(q, s_mem, y_mem, rho, gamma, torch.tensor(filled % m))
    expected = dense_inverse_hessian(pairs[-m:], gamma, n) @ q
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)


# -- a gradient stream: the plain reference and Optax --------------------------------------------


def reference_lbfgs(params0, grads, lr, memory_size, scale_init_precond):
    """Optax's scale_by_lbfgs then -lr, with the dense recursion (no line search)."""
    w, pairs, out = flat(params0), [], []
    prev_w = prev_g = None
    for g in grads:
        g = flat(g)
        if prev_w is None:
            gamma = min(1.0, 1.0 / float(g.norm())) if scale_init_precond else 1.0
        else:
            s, y = w - prev_w, g - prev_g
            pairs = [*pairs, (s, y)][-memory_size:]
            gamma = float(s @ y / (y @ y)) if scale_init_precond else 1.0
        prev_w, prev_g = w, g
        w = w - lr * dense_inverse_hessian(pairs, gamma, w.numel()) @ g
        out.append(w)
    return out


@pytest.mark.parametrize("inplace", [True, False])
@pytest.mark.parametrize(
    "kwargs",
    [{}, {"memory_size": 3}, {"scale_init_precond": False}],
    ids=["default", "m3", "unscaled"],
)
def test_fixed_step_against_reference_and_optax(inplace: bool, kwargs: dict) -> None:
    gen = torch.Generator().manual_seed(0)
    params = make_params(gen)
    grads = [
        {k: torch.randn(v.shape, generator=gen, dtype=D) for k, v in params.items()}
        for _ in range(8)
    ]
    expected = reference_lbfgs(
        params, grads, 0.1, kwargs.get("memory_size", 10), kwargs.get("scale_init_precond", True)
    )
    opt = lbfgs(0.1, linesearch=None, **kwargs)
    p = {k: v.clone() for k, v in params.items()}
    state = opt.init(p)
    ours = []
    for g in grads:
        g = {k: v.clone() for k, v in g.items()}
        updates, state = opt.update(g, state, params=p, inplace=inplace)
        p = apply_updates(p, updates, inplace=inplace)
        ours.append(flat(p).clone())
    for got, want in zip(ours, expected, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)

    optax = pytest.importorskip("optax")
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)
    jnp = jax.numpy
    ox = optax.lbfgs(learning_rate=0.1, linesearch=None, **kwargs)
    pj = {k: jnp.asarray(v.numpy()) for k, v in params.items()}
    sj = ox.init(pj)
    for g, got in zip(grads, ours, strict=True):
        gj = {k: jnp.asarray(v.numpy()) for k, v in g.items()}
        uj, sj = ox.update(gj, sj, pj)
        pj = optax.apply_updates(pj, uj)
        want = from_jax(pj)
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)


# -- with the zoom line search: step by step against optax.lbfgs ---------------------------------


@pytest.mark.parametrize("problem", ["quadratic", "rosenbrock"])
@pytest.mark.parametrize("inplace", [True, False])
@pytest.mark.parametrize(
    "kwargs",
    [{}, {"memory_size": 3}, {"scale_init_precond": False}],
    ids=["default", "m3", "unscaled"],
)
def test_lbfgs_matches_optax_step_by_step(problem: str, inplace: bool, kwargs: dict) -> None:
    optax = pytest.importorskip("optax")
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)
    jnp = jax.numpy
    gen = torch.Generator().manual_seed(1)
    params = make_params(gen)
    f = problems(gen)[problem]

    def fj(p):
        return f(p, xp=jnp)

    ox = optax.lbfgs(**kwargs)
    ox_update = jax.jit(lambda g, s, p, v: ox.update(g, s, p, value=v, grad=g, value_fn=fj))
    ox_value_and_grad = jax.jit(jax.value_and_grad(fj))
    pj = {k: jnp.asarray(v.numpy()) for k, v in params.items()}
    sj = ox.init(pj)

    opt = lbfgs(**kwargs)
    p = {k: v.clone() for k, v in params.items()}
    state = opt.init(p)
    for _ in range(12):
        value, grad = value_and_grad(f, p)
        updates, state = opt.update(
            grad, state, params=p, inplace=inplace, value=value, grad=grad, value_fn=f
        )
        p = apply_updates(p, updates, inplace=inplace)
        vj, gj = ox_value_and_grad(pj)
        uj, sj = ox_update(gj, sj, pj, vj)
        pj = optax.apply_updates(pj, uj)
        want = from_jax(pj)
        torch.testing.assert_close(flat(p), want, rtol=1e-10, atol=1e-10)
        assert int(state[2].info.num_linesearch_steps) == int(sj[2].info.num_linesearch_steps)
    assert float(f(p)) < float(f(params))


def test_zoom_linesearch_alone_matches_optax() -> None:
    """Gradient descent with the search's "keep" guess on Rosenbrock: every step size agrees."""
    optax = pytest.importorskip("optax")
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)
    jnp = jax.numpy
    gen = torch.Generator().manual_seed(2)
    params = make_params(gen)
    f = problems(gen)["rosenbrock"]

    def fj(p):
        return f(p, xp=jnp)

    ls = scale_by_zoom_linesearch(max_linesearch_steps=15, curv_rtol=0.5)
    lsj = optax.scale_by_zoom_linesearch(max_linesearch_steps=15, curv_rtol=0.5)
    lsj_update = jax.jit(lambda u, s, p, v, g: lsj.update(u, s, p, value=v, grad=g, value_fn=fj))
    p, pj = dict(params), {k: jnp.asarray(v.numpy()) for k, v in params.items()}
    state, sj = ls.init(p), lsj.init(pj)
    for _ in range(10):
        value, grad = value_and_grad(f, p)
        u = {k: -v for k, v in grad.items()}
        updates, state = ls.update(u, state, params=p, value=value, grad=grad, value_fn=f)
        p = apply_updates(p, updates, inplace=False)
        vj, gj = jax.value_and_grad(fj)(pj)
        uj, sj = lsj_update(jax.tree.map(lambda x: -x, gj), sj, pj, vj, gj)
        pj = optax.apply_updates(pj, uj)
        torch.testing.assert_close(
            state.learning_rate, torch.tensor(float(sj.learning_rate), dtype=D), rtol=1e-10, atol=0
        )
        assert float(state.info.decrease_error) == pytest.approx(float(sj.info.decrease_error))
    assert float(state.value) == pytest.approx(float(f(p)), rel=1e-12)


def test_zoom_linesearch_passes_extra_inputs_to_value_fn() -> None:
    x, y = torch.tensor([3.0, 2.0, 1.0], dtype=D), torch.tensor(0.0, dtype=D)

    def f(w, x, y):
        return 0.5 * (x @ w - y) ** 2

    ls = scale_by_zoom_linesearch(max_linesearch_steps=15)
    w = torch.tensor([1.0, 2.0, 3.0], dtype=D)
    state = ls.init(w)
    wr = w.clone().requires_grad_()
    value = f(wr, x, y)
    (grad,) = torch.autograd.grad(value, wr)
    updates, state = ls.update(
        -grad, state, params=w, value=value.detach(), grad=grad, value_fn=f, x=x, y=y
    )
    assert float(f(w + updates, x, y)) < 1e-20
    assert int(state.info.num_linesearch_steps) >= 1


# -- the class against torch.optim.LBFGS ---------------------------------------------------------


@pytest.mark.parametrize("problem", ["quadratic", "rosenbrock"])
@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"line_search_fn": "strong_wolfe"},
        {"line_search_fn": "strong_wolfe", "history_size": 3, "max_iter": 7},
        {"lr": 0.5, "history_size": 2, "max_iter": 5, "max_eval": 6},
    ],
    ids=["fixed", "wolfe", "wolfe-h3", "lr-h2"],
)
def test_class_matches_torch_lbfgs(problem: str, kwargs: dict) -> None:
    gen = torch.Generator().manual_seed(3)
    params = make_params(gen)
    f = problems(gen)[problem]
    ours = {k: v.clone().requires_grad_() for k, v in params.items()}
    theirs = {k: v.clone().requires_grad_() for k, v in params.items()}
    opt, ref = (
        LBFGS(list(ours.values()), **kwargs),
        torch.optim.LBFGS(list(theirs.values()), **kwargs),
    )

    def closure_for(o, p):
        def closure():
            o.zero_grad()
            loss = f(p)
            loss.backward()
            return loss

        return closure

    for _ in range(8):
        got = opt.step(closure_for(opt, ours))
        want = ref.step(closure_for(ref, theirs))
        torch.testing.assert_close(got.detach(), want.detach(), rtol=1e-10, atol=1e-12)
        for k in KEYS:
            torch.testing.assert_close(ours[k].detach(), theirs[k].detach(), rtol=1e-10, atol=1e-12)
    first = next(iter(ours.values()))
    assert opt.state[first]["func_evals"] == ref.state[next(iter(theirs.values()))]["func_evals"]


def test_class_state_dict_round_trip() -> None:
    gen = torch.Generator().manual_seed(6)
    params = make_params(gen)
    f = problems(gen)["rosenbrock"]
    kwargs = {"line_search_fn": "strong_wolfe", "history_size": 4, "max_iter": 3}
    a = {k: v.clone().requires_grad_() for k, v in params.items()}
    opt = LBFGS(list(a.values()), **kwargs)

    def closure_for(o, p):
        def closure():
            o.zero_grad()
            loss = f(p)
            loss.backward()
            return loss

        return closure

    for _ in range(3):
        opt.step(closure_for(opt, a))
    b = {k: v.detach().clone().requires_grad_() for k, v in a.items()}
    resumed = LBFGS(list(b.values()), **kwargs)
    resumed.load_state_dict(copy.deepcopy(opt.state_dict()))  # as torch.save/load would
    for _ in range(3):
        opt.step(closure_for(opt, a))
        resumed.step(closure_for(resumed, b))
    for k in KEYS:
        torch.testing.assert_close(a[k].detach(), b[k].detach(), rtol=0, atol=0)


def test_inplace_update_leaves_the_gradient_passed_as_grad() -> None:
    """In place, the direction is written to fresh buffers: ``grad=`` may alias ``updates``."""
    w = {"a": torch.tensor([1.0, -2.0], dtype=D)}

    def f(p):
        return (p["a"] ** 2).sum()

    value, grad = value_and_grad(f, w)
    kept = grad["a"].clone()
    opt = lbfgs()
    updates, state = opt.update(grad, opt.init(w), params=w, value=value, grad=grad, value_fn=f)
    torch.testing.assert_close(grad["a"], kept)
    new = apply_updates(w, updates)
    assert float(f(new)) < float(value)
    torch.testing.assert_close(state[2].value, f(new))


def test_class_complex_params_as_real_views() -> None:
    z = torch.tensor([1.0 + 2.0j, -0.5 + 0.0j], dtype=torch.complex128, requires_grad=True)
    r = torch.view_as_real(z.detach()).clone().requires_grad_()
    target = torch.tensor([0.5 - 1.0j, 2.0 + 1.0j], dtype=torch.complex128)
    oz, orr = LBFGS([z], line_search_fn="strong_wolfe"), LBFGS([r], line_search_fn="strong_wolfe")

    def cz():
        oz.zero_grad()
        loss = ((z - target).abs() ** 2).sum()
        loss.backward()
        return loss

    def cr():
        orr.zero_grad()
        loss = ((r - torch.view_as_real(target)) ** 2).sum()
        loss.backward()
        return loss

    oz.step(cz)
    orr.step(cr)
    torch.testing.assert_close(torch.view_as_real(z.detach()), r.detach(), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(z.detach(), target, rtol=1e-8, atol=1e-8)


# -- as the inner solver of custom_root ----------------------------------------------------------


def test_custom_root_hypergradient_of_lbfgs_ridge() -> None:
    gen = torch.Generator().manual_seed(4)
    x, y = torch.randn(12, 4, generator=gen, dtype=D), torch.randn(12, generator=gen, dtype=D)

    @custom_root(ridge_optimality, argnums=1)
    def solve(w, lam, x, y):
        def loss(v):
            return 0.5 * ((x @ v - y) ** 2).sum() + 0.5 * lam * (v**2).sum()

        opt = lbfgs()
        state = opt.init(w)
        for _ in range(30):
            value, grad = value_and_grad(lambda p: loss(p["v"]), {"v": w})
            grad = grad["v"]
            updates, state = opt.update(
                grad, state, params=w, value=value, grad=grad, value_fn=loss
            )
            w = apply_updates(w, updates)
        return w

    lam = torch.tensor(0.7, dtype=D, requires_grad=True)
    w = solve(torch.zeros(4, dtype=D), lam, x, y)
    closed = ridge_closed_form(lam.detach(), x, y)
    torch.testing.assert_close(w.detach(), closed, rtol=1e-10, atol=1e-10)
    (hyper,) = torch.autograd.grad((w * torch.arange(1.0, 5.0, dtype=D)).sum(), lam)
    # d w*/d lam = -(X^T X + lam I)^{-1} w*
    dw = -torch.linalg.solve(x.T @ x + 0.7 * torch.eye(4, dtype=D), closed)
    expected = (dw * torch.arange(1.0, 5.0, dtype=D)).sum()
    torch.testing.assert_close(hyper, expected, rtol=1e-8, atol=1e-10)


# -- differentiability and errors ----------------------------------------------------------------


def test_gradcheck_two_out_of_place_steps() -> None:
    gen = torch.Generator().manual_seed(5)
    w0, b0 = torch.randn(2, 2, generator=gen, dtype=D), torch.randn(3, generator=gen, dtype=D)
    g1, g2 = torch.randn(2, 2, generator=gen, dtype=D), torch.randn(3, generator=gen, dtype=D)
    opt = lbfgs(0.1, memory_size=2, linesearch=None)

    def two_steps(w, b, gw, gb):
        p = {"w": w, "b": b}
        state = opt.init(p)
        for scale in (1.0, -0.5):
            g = {"w": gw * scale + w, "b": gb * scale + b**2}
            u, state = opt.update(g, state, params=p, inplace=False)
            p = apply_updates(p, u, inplace=False)
        return p["w"], p["b"]

    inputs = tuple(t.clone().requires_grad_() for t in (w0, b0, g1, g2))
    assert torch.autograd.gradcheck(two_steps, inputs)


def test_linesearch_output_differentiable_in_updates() -> None:
    ls = scale_by_zoom_linesearch(max_linesearch_steps=10)
    w = torch.tensor([1.0, -2.0], dtype=D)

    def f(v):
        return (v**2).sum()

    u = (-2 * w).requires_grad_()
    out, _ = ls.update(u, ls.init(w), params=w, inplace=False, value=f(w), grad=2 * w, value_fn=f)
    (du,) = torch.autograd.grad(out.sum(), u)
    torch.testing.assert_close(du, torch.full((2,), 0.5, dtype=D))


def test_errors_at_construction() -> None:
    with pytest.raises(ValueError, match="memory_size must be an int >= 1"):
        lbfgs(memory_size=0)
    with pytest.raises(ValueError, match="Invalid learning rate"):
        lbfgs(lr=-1.0)
    with pytest.raises(ValueError, match="max_linesearch_steps must be an int >= 1"):
        scale_by_zoom_linesearch(max_linesearch_steps=0)
    with pytest.raises(ValueError, match="initial_guess_strategy must be 'one' or 'keep'"):
        scale_by_zoom_linesearch(5, initial_guess_strategy="last")
    p = [torch.zeros(2, requires_grad=True)]
    with pytest.raises(ValueError, match="Invalid learning rate"):
        LBFGS(p, lr=-0.1)
    with pytest.raises(ValueError, match="Tensor lr must be 1-element"):
        LBFGS(p, lr=torch.ones(2))
    with pytest.raises(ValueError, match="max_iter must be an int >= 1"):
        LBFGS(p, max_iter=0)
    with pytest.raises(ValueError, match="history_size must be an int >= 1"):
        LBFGS(p, history_size=0)
    with pytest.raises(ValueError, match="line_search_fn must be None or 'strong_wolfe'"):
        LBFGS(p, line_search_fn="armijo")
    with pytest.raises(ValueError, match="doesn't support per-parameter options"):
        LBFGS([{"params": p}, {"params": [torch.zeros(1, requires_grad=True)]}])


def test_errors_at_update_leave_inputs_unchanged() -> None:
    w = {"a": torch.ones(3, dtype=D)}
    g = {"a": torch.full((3,), 2.0, dtype=D)}
    opt = lbfgs()
    state = opt.init(w)
    before = [t.clone() for t in (*state[0], state[2].learning_rate)]
    with pytest.raises(ValueError, match="reads the extra argument value_fn="):
        opt.update(g, state, params=w, value=torch.tensor(3.0, dtype=D), grad=g)
    with pytest.raises(ValueError, match=r"needs params=, value=, grad= and value_fn=.*grad"):
        scale_by_zoom_linesearch(3).update(g, state[2], params=w, value=torch.tensor(1.0))
    with pytest.raises(ValueError, match="state was built for 3"):
        lbfgs(linesearch=None).update(
            {"a": torch.ones(4, dtype=D)},
            lbfgs(linesearch=None).init(w),
            params={"a": torch.ones(4, dtype=D)},
        )
    with pytest.raises(ValueError, match="not ScaleByLBFGSState"):
        scale_by_lbfgs().update(g, (), params=w)
    after = [t for t in (*state[0], state[2].learning_rate)]
    for x, y in zip(before, after, strict=True):
        torch.testing.assert_close(x, y)
    torch.testing.assert_close(g["a"], torch.full((3,), 2.0, dtype=D))
