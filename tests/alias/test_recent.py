"""Muon, Prodigy and Schedule-Free SGD/AdamW against plain references, Optax and torch.optim.

Every alias runs N=8 steps in float64 on ``{"w": 3x4, "b": 5, "s": 0-d}`` (Muon against
``torch.optim.Muon`` on matrices only, which is all it takes), in place and out of place.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import Tensor

import torchopt_lite
from torchopt_lite.alias.muon import muon
from torchopt_lite.alias.prodigy import prodigy
from torchopt_lite.alias.schedule_free_adamw import schedule_free_adamw
from torchopt_lite.alias.schedule_free_sgd import schedule_free_sgd
from torchopt_lite.transform.scale_by_muon import newton_schulz
from torchopt_lite.transform.scale_by_schedule_free import schedule_free_eval_params

N = 8
F64 = torch.float64
SHAPES = {"w": (3, 4), "b": (5,), "s": ()}
Tree = dict[str, Tensor]
GradFn = Callable[[Tree, int], Tree]


def _tree(seed: int, shapes: dict[str, tuple[int, ...]] = SHAPES, scale: float = 1.0) -> Tree:
    gen = torch.Generator().manual_seed(seed)
    return {k: scale * torch.randn(s, generator=gen, dtype=F64) for k, s in shapes.items()}


def _noise(shapes: dict[str, tuple[int, ...]] = SHAPES) -> GradFn:
    """A fixed gradient stream (independent of the parameters)."""
    stream = [_tree(100 + k, shapes) for k in range(N)]
    return lambda params, k: {n: g.clone() for n, g in stream[k].items()}


def _quadratic() -> GradFn:
    """Gradients of a noisy quadratic: ``(p - c) + noise_k`` (Prodigy's d needs progress)."""
    center, noise = _tree(7, scale=3.0), [_tree(200 + k, scale=0.1) for k in range(N)]
    return lambda params, k: {n: params[n] - center[n] + noise[k][n] for n in params}


def _run(opt: Any, params: Tree, grads: GradFn, inplace: bool) -> tuple[list[Tree], Any]:
    """Our alias for N steps: the params after each step, and the final state."""
    params = {k: v.clone() for k, v in params.items()}
    state = opt.init(params)
    trail = []
    for k in range(N):
        updates, state = opt.update(grads(params, k), state, params=params, inplace=inplace)
        params = torchopt_lite.apply_updates(params, updates, inplace=inplace)
        trail.append({n: v.clone() for n, v in params.items()})
    return trail, state


def _close(got: Tree, expected: Tree, rtol: float = 1e-10, atol: float = 1e-12) -> None:
    for k in expected:
        where = k

        def msg(m: str, where: str = where) -> str:
            return f"{where}: {m}"

        torch.testing.assert_close(got[k], expected[k], rtol=rtol, atol=atol, msg=msg)


def _optax_run(
    ox: Any, params: Tree, grads: GradFn, transpose: tuple[str, ...] = ()
) -> tuple[list[Tree], Any]:
    """Optax's optimizer on the same stream (``transpose``: leaves Optax sees as ``(in, out)``)."""
    import jax
    import jax.numpy as jnp
    import optax

    def to_jax(tree: Tree) -> Any:
        return {k: jnp.asarray((v.T if k in transpose else v).numpy()) for k, v in tree.items()}

    def to_torch(tree: Any) -> Tree:
        out = {k: torch.from_numpy(jax.device_get(v).copy()) for k, v in tree.items()}
        return {k: (v.T if k in transpose else v) for k, v in out.items()}

    jp = to_jax(params)
    state = ox.init(jp)
    trail = []
    for k in range(N):
        updates, state = ox.update(to_jax(grads(to_torch(jp), k)), state, jp)
        jp = optax.apply_updates(jp, updates)
        trail.append(to_torch(jp))
    return trail, (state, jp, to_torch)


@pytest.fixture
def optax_x64() -> Any:
    optax = pytest.importorskip("optax")
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)
    return optax


def _gradcheck_two_steps(make: Callable[[], Any], shapes: list[tuple[int, ...]]) -> None:
    gen = torch.Generator().manual_seed(5)
    p0 = [torch.randn(s, generator=gen, dtype=F64) for s in shapes]
    g = [torch.randn(s, generator=gen, dtype=F64) for s in shapes * 2]
    n = len(shapes)

    def two_steps(*xs: Tensor) -> tuple[Tensor, ...]:
        opt = make()
        params = list(xs[:n])
        state = opt.init(params)
        for k in range(2):
            grads = list(xs[n * (k + 1) : n * (k + 2)])
            updates, state = opt.update(grads, state, params=params, inplace=False)
            params = torchopt_lite.apply_updates(params, updates, inplace=False)
        return tuple(params)

    inputs = tuple(x.clone().requires_grad_(True) for x in (*p0, *g))
    assert torch.autograd.gradcheck(two_steps, inputs, eps=1e-6, atol=1e-5, rtol=1e-4)


# -- Muon -----------------------------------------------------------------------------------------

MATRICES: dict[str, tuple[int, ...]] = {
    "w": (3, 4),
    "t": (5, 2),
    "v": (3, 4),
}  # a tall one; two of one shape (a batch)
MUON_TORCH = [
    {},
    {"nesterov": False, "weight_decay": 0.0},
    {"adjust_lr_fn": "match_rms_adamw", "momentum": 0.9, "weight_decay": 0.02},
    {"adjust_lr_fn": "original", "ns_steps": 3, "eps": 1e-3},
]


@pytest.mark.parametrize("inplace", [True, False], ids=["inplace", "pure"])
@pytest.mark.parametrize("kw", MUON_TORCH, ids=["default", "plain", "rms", "original"])
def test_muon_matches_torch_optim(kw: dict[str, Any], inplace: bool) -> None:
    """Default ``ns_dtype=torch.bfloat16``: torch.optim.Muon's steps (its bfloat16 iteration
    done identically), step after step."""
    params, grads = _tree(0, MATRICES), _noise(MATRICES)
    trail, _ = _run(muon(0.02, **kw), params, grads, inplace)
    tp = [params[k].clone().requires_grad_(True) for k in MATRICES]
    ref = torch.optim.Muon(tp, lr=0.02, **kw)
    for k in range(N):
        for p, g in zip(tp, grads({}, k).values(), strict=True):
            p.grad = g
        ref.step()
        _close(trail[k], dict(zip(MATRICES, (p.detach() for p in tp), strict=True)))


def _ns_reference(
    g: Tensor, coefficients: tuple[float, float, float], steps: int, eps: float
) -> Tensor:
    a, b, c = coefficients
    tall = g.shape[0] > g.shape[1]
    x = g.T if tall else g
    x = x / torch.clamp(torch.linalg.norm(x), min=eps)
    for _ in range(steps):
        gram = x @ x.T
        x = a * x + (b * gram + c * gram @ gram) @ x
    return x.T if tall else x


def _muon_reference(params: Tree, grads: GradFn, lr: float, **kw: Any) -> list[Tree]:
    """Muon on matrices, AdamW elsewhere, per leaf, from the formulas (float64)."""
    mom, wd, nesterov = kw.get("momentum", 0.95), kw.get("weight_decay", 0.1), kw.get("nesterov")
    coefficients, steps, eps = (3.4445, -4.7750, 2.0315), kw.get("ns_steps", 5), kw.get("eps", 1e-7)
    b1, b2 = kw.get("adam_betas", (0.9, 0.999))
    adam_eps, adam_wd = kw.get("adam_eps", 1e-8), kw.get("adam_weight_decay", 0.0)
    p = {k: v.clone() for k, v in params.items()}
    buf = {k: torch.zeros_like(v) for k, v in p.items()}
    sq = {k: torch.zeros_like(v) for k, v in p.items()}
    trail = []
    for t in range(1, N + 1):
        g = grads(p, t - 1)
        for k in p:
            if p[k].dim() == 2:
                buf[k] = mom * buf[k] + (1 - mom) * g[k]
                target = mom * buf[k] + (1 - mom) * g[k] if nesterov is not False else buf[k]
                o = _ns_reference(target, coefficients, steps, eps)
                rows, cols = p[k].shape
                if kw.get("adjust_lr_fn") == "match_rms_adamw":
                    r = 0.2 * math.sqrt(max(rows, cols))
                else:
                    r = math.sqrt(max(1.0, rows / cols))
                p[k] = p[k] - lr * wd * p[k] - lr * r * o
            else:
                buf[k] = b1 * buf[k] + (1 - b1) * g[k]
                sq[k] = b2 * sq[k] + (1 - b2) * g[k] ** 2
                m_hat, v_hat = buf[k] / (1 - b1**t), sq[k] / (1 - b2**t)
                p[k] = p[k] - lr * adam_wd * p[k] - lr * m_hat / (v_hat.sqrt() + adam_eps)
        trail.append({k: v.clone() for k, v in p.items()})
    return trail


MUON_REF = [
    {},
    {"nesterov": False, "momentum": 0.8, "adam_weight_decay": 0.1, "adam_betas": (0.8, 0.99)},
    {"adjust_lr_fn": "match_rms_adamw", "weight_decay": 0.0, "ns_steps": 2, "adam_eps": 1e-3},
]


@pytest.mark.parametrize("inplace", [True, False], ids=["inplace", "pure"])
@pytest.mark.parametrize("kw", MUON_REF, ids=["default", "plain-adamw", "rms"])
def test_muon_matches_reference(kw: dict[str, Any], inplace: bool) -> None:
    """``ns_dtype=None``: the float64 formulas, Newton-Schulz on the matrix, AdamW elsewhere."""
    params, grads = _tree(1), _noise()
    trail, _ = _run(muon(0.05, ns_dtype=None, **kw), params, grads, inplace)
    expected = _muon_reference(params, grads, 0.05, **kw)
    for got, exp in zip(trail, expected, strict=True):
        _close(got, exp)


@pytest.mark.parametrize("inplace", [True, False], ids=["inplace", "pure"])
@pytest.mark.parametrize("rms", [False, True], ids=["width", "consistent-rms"])
def test_muon_matches_optax(optax_x64: Any, rms: bool, inplace: bool) -> None:
    """Where the math agrees: no Nesterov (Optax's bias correction then only scales the matrix
    that Newton-Schulz normalizes), ``eps=0`` (its ``+ eps`` vs torch's ``max(., eps)``), the
    iteration in float64, and Optax's ``(in, out)`` matrices as our transposes."""
    lr, wd = 0.05, 0.1
    params, grads = _tree(2), _noise()
    adjust = "match_rms_adamw" if rms else None
    ours = muon(lr, wd, nesterov=False, eps=0.0, ns_dtype=None, adam_eps=0.0, adjust_lr_fn=adjust)
    trail, _ = _run(ours, params, grads, inplace)
    ox = optax_x64.contrib.muon(
        lr, eps=0.0, weight_decay=wd, nesterov=False, consistent_rms=0.2 if rms else None
    )
    expected, _ = _optax_run(ox, params, grads, transpose=("w",))
    for got, exp in zip(trail, expected, strict=True):
        _close(got, exp)


def test_newton_schulz_batches_matrices_of_one_shape() -> None:
    """A batch of same-shaped matrices (tall ones transposed into it) gives each one's result."""
    gen = torch.Generator().manual_seed(3)
    xs = [torch.randn(s, generator=gen, dtype=F64) for s in [(3, 5), (5, 3), (3, 5), (2, 2)]]
    batched = newton_schulz(xs, steps=4, eps=1e-7)
    for x, y in zip(xs, batched, strict=True):
        torch.testing.assert_close(y, newton_schulz([x], steps=4, eps=1e-7)[0], rtol=1e-13, atol=0)
        torch.testing.assert_close(y, _ns_reference(x, (3.4445, -4.7750, 2.0315), 4, 1e-7))
    # bfloat16 iteration: results come back in each matrix's dtype
    assert all(y.dtype == F64 for y in newton_schulz(xs, dtype=torch.bfloat16))


def test_muon_gradcheck_two_steps() -> None:
    _gradcheck_two_steps(lambda: muon(0.05, ns_dtype=None, adam_weight_decay=0.1), [(2, 3), (3,)])


def test_muon_rejects_complex_before_writing() -> None:
    opt = muon(0.02)
    with pytest.raises(ValueError, match="muon: complex leaves are not supported"):
        opt.init({"w": torch.zeros(2, 3, dtype=torch.complex128)})
    params = {"w": torch.ones(2, 3, dtype=F64)}
    state = opt.init(params)
    before = [x.clone() for x in state[1].mu]
    grads = {"w": torch.ones(2, 3, dtype=torch.complex128)}
    with pytest.raises(ValueError, match="complex"):
        opt.update(grads, state, params=params)
    assert all(torch.equal(a, b) for a, b in zip(before, state[1].mu, strict=True))
    assert torch.equal(params["w"], torch.ones(2, 3, dtype=F64))


def test_muon_without_fallback_rejects_non_matrices() -> None:
    opt = muon(0.02, adam_fallback=False)
    with pytest.raises(ValueError, match=r"muon: leaf 1 has shape \(5,\); .*adam_fallback=True"):
        opt.init([torch.zeros(2, 3), torch.zeros(5)])
    state = opt.init([torch.zeros(2, 3)])  # matrices only: fine
    with pytest.raises(ValueError, match="muon: leaf 0 has shape"):
        opt.update([torch.zeros(6)], state, params=[torch.zeros(6)])


def test_muon_rejects_a_foreign_state() -> None:
    opt = muon(0.02)
    params = {"w": torch.ones(2, 3, dtype=F64), "b": torch.ones(3, dtype=F64)}
    state = opt.init(params)
    bad = (state[0], state[1]._replace(nu=state[1].nu[:1]), state[2])
    with pytest.raises(ValueError, match=r"scale_by_muon: state.nu must be a tuple of 2 tensors"):
        opt.update(params, bad, params=params)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"ns_steps": 100}, ValueError, r"muon: ns_steps must be in \[0, 100\)"),
        ({"ns_steps": 2.0}, TypeError, "muon: ns_steps must be an int"),
        ({"adjust_lr_fn": "bad"}, ValueError, "muon: adjust_lr_fn must be None"),
        ({"ns_coefficients": (1.0, 2.0)}, ValueError, "muon: ns_coefficients must be a tuple"),
        ({"ns_dtype": torch.int32}, TypeError, "muon: ns_dtype must be a floating-point"),
        ({"momentum": -0.1}, ValueError, "muon: .*momentum must be >= 0"),
        ({"weight_decay": -0.1}, ValueError, "muon: .*weight_decay must be >= 0"),
        ({"adam_betas": (1.0, 0.9)}, ValueError, r"muon: betas\[0\] must be in"),
        ({"lr": -1.0}, ValueError, "muon: Invalid learning rate"),
    ],
)
def test_muon_hyperparameter_errors(kwargs: dict[str, Any], error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        muon(**kwargs)


# -- Prodigy --------------------------------------------------------------------------------------


def _prodigy_reference(params: Tree, grads: GradFn, **kw: Any) -> tuple[list[Tree], float]:
    """Mishchenko & Defazio's Algorithm (Adam version, bias-corrected), leaf by leaf."""
    lr, (b1, b2) = kw.get("lr", 1.0), kw.get("betas", (0.9, 0.999))
    b3 = kw.get("beta3") or math.sqrt(b2)
    eps, d0, coef = kw.get("eps", 1e-8), kw.get("estim_lr0", 1e-6), kw.get("estim_lr_coef", 1.0)
    wd, safeguard = kw.get("weight_decay", 0.0), kw.get("safeguard_warmup", False)
    p = {k: v.clone() for k, v in params.items()}
    x0 = {k: v.clone() for k, v in params.items()}
    m, v, s = ({k: torch.zeros_like(x) for k, x in p.items()} for _ in range(3))
    d, r = d0, 0.0
    trail = []
    for k in range(N):
        gamma = lr(k) if callable(lr) else lr
        g = grads(p, k)
        eta = d * gamma * math.sqrt(1 - b2 ** (k + 1)) / (1 - b1 ** (k + 1))
        r = b3 * r + (d / d0) * eta * sum(float((g[n] * (x0[n] - p[n])).sum()) for n in p)
        for n in p:
            m[n] = b1 * m[n] + (1 - b1) * d * g[n]
            v[n] = b2 * v[n] + (1 - b2) * d * d * g[n] ** 2
            s[n] = b3 * s[n] + (d / d0) * (d if safeguard else eta) * g[n]
        d_new = max(d, coef * r / sum(float(s[n].abs().sum()) for n in p))
        for n in p:
            p[n] = p[n] - eta * (m[n] / (v[n].sqrt() + d_new * eps) + wd * p[n])
        d = d_new
        trail.append({n: x.clone() for n, x in p.items()})
    return trail, d


PRODIGY = [
    {"estim_lr0": 1e-3},
    {"weight_decay": 0.1, "safeguard_warmup": True, "beta3": 0.9, "estim_lr0": 1e-2},
    {"lr": 0.5, "estim_lr_coef": 2.0, "betas": (0.8, 0.99), "eps": 1e-4},
]
PRODIGY_IDS = ["default", "wd-safeguard", "coef"]


@pytest.mark.parametrize("inplace", [True, False], ids=["inplace", "pure"])
@pytest.mark.parametrize("kw", PRODIGY, ids=PRODIGY_IDS)
def test_prodigy_matches_reference(kw: dict[str, Any], inplace: bool) -> None:
    params, grads = _tree(3), _quadratic()
    trail, state = _run(prodigy(**kw), params, grads, inplace)
    expected, d = _prodigy_reference(params, grads, **kw)
    for got, exp in zip(trail, expected, strict=True):
        _close(got, exp)
    estim_lr = state[1].estim_lr
    assert estim_lr.shape == () and estim_lr.dtype == F64
    assert math.isclose(float(estim_lr), d, rel_tol=1e-10)
    if kw is PRODIGY[0]:
        assert d > 5 * kw["estim_lr0"]  # the estimate grew


@pytest.mark.parametrize("inplace", [True, False], ids=["inplace", "pure"])
@pytest.mark.parametrize("kw", PRODIGY, ids=PRODIGY_IDS)
def test_prodigy_matches_optax(optax_x64: Any, kw: dict[str, Any], inplace: bool) -> None:
    params, grads = _tree(4), _quadratic()
    trail, state = _run(prodigy(**kw), params, grads, inplace)
    ox_kw = {("learning_rate" if k == "lr" else k): v for k, v in kw.items()}
    expected, (ox_state, _, _) = _optax_run(optax_x64.contrib.prodigy(**ox_kw), params, grads)
    for got, exp in zip(trail, expected, strict=True):
        _close(got, exp)
    assert math.isclose(float(state[1].estim_lr), float(ox_state.estim_lr), rel_tol=1e-10)


def test_prodigy_schedule_matches_reference() -> None:
    """A schedule ``count -> lr`` is read at the count before the step (0 first), as Optax."""
    params, grads = _tree(5), _quadratic()
    schedule = lambda c: 1.0 / (1.0 + 0.5 * c.double())  # noqa: E731
    trail, _ = _run(prodigy(schedule, estim_lr0=1e-3), params, grads, False)
    expected, _ = _prodigy_reference(
        params, grads, lr=lambda k: 1.0 / (1.0 + 0.5 * k), estim_lr0=1e-3
    )
    for got, exp in zip(trail, expected, strict=True):
        _close(got, exp)


def test_prodigy_zero_gradients_keep_the_estimate() -> None:
    """All gradients 0: ``||s||_1 = 0``; d stays ``estim_lr0`` and nothing becomes NaN."""
    opt = prodigy()
    params = {"w": torch.ones(3, dtype=F64)}
    state = opt.init(params)
    for _ in range(2):
        updates, state = opt.update({"w": torch.zeros(3, dtype=F64)}, state, params=params)
        params = torchopt_lite.apply_updates(params, updates)
    assert float(state[1].estim_lr) == 1e-6
    assert torch.equal(params["w"], torch.ones(3, dtype=F64))


def test_prodigy_gradcheck_two_steps() -> None:
    _gradcheck_two_steps(lambda: prodigy(estim_lr0=1e-2, weight_decay=0.1), [(2, 3), (3,)])


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"estim_lr0": 0.0}, ValueError, "prodigy: estim_lr0 must be > 0"),
        ({"beta3": 1.0}, ValueError, r"prodigy: beta3 must be in \[0.0, 1.0\)"),
        ({"betas": (0.9, 1.0)}, ValueError, r"prodigy: betas\[1\] must be in"),
        ({"estim_lr_coef": -1.0}, ValueError, "prodigy: .*estim_lr_coef must be >= 0"),
        ({"weight_decay": -1.0}, ValueError, "prodigy: .*weight_decay must be >= 0"),
        ({"lr": -1.0}, ValueError, "prodigy: Invalid learning rate"),
    ],
)
def test_prodigy_hyperparameter_errors(kwargs: dict[str, Any], error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        prodigy(**kwargs)


# -- Schedule-Free --------------------------------------------------------------------------------


def _schedule_free_reference(
    params: Tree, grads: GradFn, *, adam: bool, **kw: Any
) -> tuple[list[Tree], list[Tree]]:
    """The paper's three sequences: gradient at y, SGD/AdamW step on z, weighted average x."""
    lr, warmup, b1 = kw["lr"], kw.get("warmup_steps"), kw.get("b1", 0.9)
    b2, eps, wd = kw.get("b2", 0.999), kw.get("eps", 1e-8), kw.get("weight_decay", 0.0)
    power, sign = kw.get("weight_lr_power", 2.0), -1.0 if kw.get("maximize") else 1.0
    y = {k: v.clone() for k, v in params.items()}
    z = {k: v.clone() for k, v in params.items()}
    x = {k: v.clone() for k, v in params.items()}
    v = {k: torch.zeros_like(a) for k, a in y.items()}
    lr_max = weight_sum = 0.0
    ys, xs = [], []
    for t in range(1, N + 1):
        gamma = lr(t - 1) if callable(lr) else lr
        gamma = float(gamma * min(1.0, t / warmup) if warmup else gamma)
        g = {k: sign * a for k, a in grads(y, t - 1).items()}
        for k in y:
            if adam:
                v[k] = b2 * v[k] + (1 - b2) * g[k] ** 2
                d = g[k] / ((v[k] / (1 - b2**t)).sqrt() + eps) + wd * y[k]
            else:
                d = g[k] + wd * y[k]
            z[k] = z[k] - gamma * d
        lr_max = max(lr_max, gamma)
        weight_sum += lr_max**power
        c = lr_max**power / weight_sum
        for k in y:
            x[k] = (1 - c) * x[k] + c * z[k]
            y[k] = b1 * x[k] + (1 - b1) * z[k]
        ys.append({k: a.clone() for k, a in y.items()})
        xs.append({k: a.clone() for k, a in x.items()})
    return ys, xs


SF_SGD = [
    {"lr": 0.1},
    {"lr": 0.1, "weight_decay": 0.1, "b1": 0.8, "weight_lr_power": 1.0},
    {"lr": 0.3, "b1": 1.0, "maximize": True},
]
SF_ADAMW = [
    {"lr": 0.01},
    {"lr": 0.01, "weight_decay": 0.1, "b2": 0.99, "eps": 1e-3, "b1": 0.95},
]
SF: list[tuple[Any, dict[str, Any], bool]] = [(schedule_free_sgd, kw, False) for kw in SF_SGD]
SF += [(schedule_free_adamw, kw, True) for kw in SF_ADAMW]
SF_IDS = ["sgd", "sgd-wd", "sgd-max", "adamw", "adamw-wd"]


@pytest.mark.parametrize("inplace", [True, False], ids=["inplace", "pure"])
@pytest.mark.parametrize(("alias", "kw", "adam"), SF, ids=SF_IDS)
def test_schedule_free_matches_reference(alias: Any, kw: dict, adam: bool, inplace: bool) -> None:
    params, grads = _tree(6), _noise()
    trail, state = _run(alias(**kw), params, grads, inplace)
    ys, xs = _schedule_free_reference(params, grads, adam=adam, **kw)
    for got, exp in zip(trail, ys, strict=True):
        _close(got, exp)
    _close(schedule_free_eval_params(state, trail[-1]), xs[-1])


@pytest.mark.parametrize("adam", [False, True], ids=["sgd", "adamw"])
def test_schedule_free_warmup_and_schedule_match_reference(adam: bool) -> None:
    """Warm-up: :math:`\\gamma \\min(1, t/w)` from the first step; a schedule is read at the
    count before the step, and the same value serves the step and the averaging weight."""
    alias = schedule_free_adamw if adam else schedule_free_sgd
    schedule = lambda c: 0.1 / (1.0 + c.double())  # noqa: E731
    for kw in ({"lr": 0.2, "warmup_steps": 3}, {"lr": schedule}):
        params, grads = _tree(8), _noise()
        trail, state = _run(alias(**kw), params, grads, False)
        ref_kw = {**kw, "lr": lambda k: 0.1 / (1.0 + k)} if callable(kw["lr"]) else kw
        ys, xs = _schedule_free_reference(params, grads, adam=adam, **ref_kw)
        for got, exp in zip(trail, ys, strict=True):
            _close(got, exp)
        _close(schedule_free_eval_params(state, trail[-1]), xs[-1])


SF_OPTAX = [
    ("schedule_free_sgd", kw) for kw in SF_SGD if not kw.get("maximize") and kw.get("b1") != 1.0
] + [("schedule_free_adamw", kw) for kw in SF_ADAMW]


@pytest.mark.parametrize("inplace", [True, False], ids=["inplace", "pure"])
@pytest.mark.parametrize(("name", "kw"), SF_OPTAX, ids=["sgd", "sgd-wd", "adamw", "adamw-wd"])
def test_schedule_free_matches_optax(
    optax_x64: Any, name: str, kw: dict[str, Any], inplace: bool
) -> None:
    """A constant learning rate (see the Note on Optax's warm-up); eval params too."""
    alias = schedule_free_sgd if name == "schedule_free_sgd" else schedule_free_adamw
    params, grads = _tree(9), _noise()
    trail, state = _run(alias(**kw), params, grads, inplace)
    ox_kw = {("learning_rate" if k == "lr" else k): v for k, v in kw.items()}
    ox = getattr(optax_x64.contrib, name)(**ox_kw)
    expected, (ox_state, jp, to_torch) = _optax_run(ox, params, grads)
    for got, exp in zip(trail, expected, strict=True):
        _close(got, exp)
    ox_eval = to_torch(optax_x64.contrib.schedule_free_eval_params(ox_state, jp))
    _close(schedule_free_eval_params(state, trail[-1]), ox_eval)


@pytest.mark.parametrize("alias", [schedule_free_sgd, schedule_free_adamw])
def test_schedule_free_gradcheck_two_steps(alias: Any) -> None:
    _gradcheck_two_steps(lambda: alias(0.1, warmup_steps=2, weight_decay=0.1), [(2, 3), (3,)])


def test_schedule_free_eval_params_is_differentiable_and_keeps_none() -> None:
    opt = schedule_free_sgd(0.1)
    a = torch.ones(2, dtype=F64, requires_grad=True)
    params = {"a": a, "b": None}
    state = opt.init(params)
    updates, state = opt.update({"a": torch.ones(2, dtype=F64), "b": None}, state, params=params)
    new = torchopt_lite.apply_updates(params, updates, inplace=False)
    out = schedule_free_eval_params(state, new)
    assert out["b"] is None
    (grad,) = torch.autograd.grad(out["a"].sum(), a)
    assert torch.isfinite(grad).all()


def test_schedule_free_eval_params_errors() -> None:
    with pytest.raises(ValueError, match="schedule_free_eval_params: state holds no"):
        schedule_free_eval_params((torchopt_lite.base.EmptyState(),), {"w": torch.ones(1)})
    state = schedule_free_sgd().init({"w": torch.ones(1)})
    with pytest.raises(ValueError, match="params have 2 tensors but the state has 1"):
        schedule_free_eval_params(state, {"w": torch.ones(1), "v": torch.ones(1)})


def test_schedule_free_needs_params() -> None:
    opt = schedule_free_adamw()
    state = opt.init({"w": torch.ones(1)})
    with pytest.raises(ValueError, match="scale_by_schedule_free: params must be passed"):
        opt.update({"w": torch.ones(1)}, state)


@pytest.mark.parametrize(
    ("alias", "kwargs", "error", "match"),
    [
        (schedule_free_sgd, {"b1": 0.0}, ValueError, "schedule_free_sgd: b1 must be > 0"),
        (schedule_free_sgd, {"b1": 1.5}, ValueError, r"schedule_free_sgd: b1 must be in"),
        (schedule_free_sgd, {"warmup_steps": 0}, ValueError, "warmup_steps must be >= 1"),
        (schedule_free_sgd, {"warmup_steps": 1.5}, TypeError, "warmup_steps must be an int"),
        (schedule_free_sgd, {"weight_lr_power": -1.0}, ValueError, "weight_lr_power must be"),
        (schedule_free_adamw, {"b2": 1.0}, ValueError, r"schedule_free_adamw: b2 must be in"),
        (schedule_free_adamw, {"eps": -1.0}, ValueError, "schedule_free_adamw: Invalid epsilon"),
        (schedule_free_adamw, {"lr": -1.0}, ValueError, "Invalid learning rate"),
    ],
)
def test_schedule_free_hyperparameter_errors(
    alias: Any, kwargs: dict[str, Any], error: type, match: str
) -> None:
    with pytest.raises(error, match=match):
        alias(**kwargs)
