"""Layer-wise and factored optimizers: lamb, lars, fromage, novograd, sm3, adafactor.

Each alias runs N steps in float64, in place and out of place, against a plain per-leaf reference
written here from the paper's formula, against Optax on the same gradients (where Optax has the
alias) and against ``torch.optim.Adafactor``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, cast

import pytest
import torch

import torchopt_lite
from tests.alias._registry import trajectory
from torchopt_lite.alias.adafactor import adafactor
from torchopt_lite.alias.fromage import fromage
from torchopt_lite.alias.lamb import lamb
from torchopt_lite.alias.lars import lars
from torchopt_lite.alias.novograd import novograd
from torchopt_lite.alias.sm3 import sm3
from torchopt_lite.transform.scale_by_factored_rms import scale_by_factored_rms
from torchopt_lite.transform.scale_by_novograd import scale_by_novograd
from torchopt_lite.transform.scale_by_sm3 import scale_by_sm3

N = 8
# The references differ only in the order of float64 roundings.
RTOL, ATOL = 1e-10, 1e-12
Tree = dict[str, torch.Tensor]


def make_params(seed: int = 0, *, scalar: bool = True) -> Tree:
    gen = torch.Generator().manual_seed(seed)
    shapes: dict[str, tuple[int, ...]] = {"w": (3, 4), "b": (5,)}
    if scalar:
        shapes["s"] = ()
    return {k: torch.randn(s, generator=gen, dtype=torch.float64) for k, s in shapes.items()}


def make_grads(params: Tree, n: int = N, seed: int = 1) -> list[Tree]:
    gen = torch.Generator().manual_seed(seed)
    return [
        {k: torch.randn(v.shape, generator=gen, dtype=v.dtype) for k, v in params.items()}
        for _ in range(n)
    ]


def run(opt: Any, params: Tree, grads: list[Tree], *, inplace: bool) -> list[Tree]:
    """The parameters after each step of ``opt`` (a functional optimizer)."""
    return trajectory(opt, params, grads, inplace=inplace)[0]


def assert_trajectories(got: list[Tree], expected: list[Tree]) -> None:
    assert len(got) == len(expected)
    for step, (g, e) in enumerate(zip(got, expected, strict=True)):
        for k in e:
            torch.testing.assert_close(g[k], e[k], rtol=RTOL, atol=ATOL, msg=f"step {step} {k}")


# -- plain references: one leaf at a time, the papers' formulas -----------------------------------


def _norm(x: torch.Tensor) -> torch.Tensor:
    return torch.linalg.vector_norm(x)


def _ratio(num: torch.Tensor, den: torch.Tensor, c: float = 1.0, eps: float = 0.0) -> Any:
    return 1.0 if num == 0 or den == 0 else c * num / (den + eps)


def ref_lamb(p: torch.Tensor, gs: list[torch.Tensor], **kw: Any) -> list[torch.Tensor]:
    lr, b1, b2 = kw.get("lr", 1e-3), kw.get("b1", 0.9), kw.get("b2", 0.999)
    eps, eps_root, wd = kw.get("eps", 1e-6), kw.get("eps_root", 0.0), kw.get("weight_decay", 0.0)
    m, v, out = torch.zeros_like(p), torch.zeros_like(p), []
    for t, g in enumerate(gs, 1):
        g = -g if kw.get("maximize") else g
        m, v = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g * g
        r = (m / (1 - b1**t)) / ((v / (1 - b2**t) + eps_root).sqrt() + eps) + wd * p
        p = p - lr * _ratio(_norm(p), _norm(r)) * r
        out.append(p)
    return out


def ref_lars(p: torch.Tensor, gs: list[torch.Tensor], **kw: Any) -> list[torch.Tensor]:
    lr, wd, c = kw.get("lr", 1e-3), kw.get("weight_decay", 0.0), kw.get("trust_coefficient", 1e-3)
    eps, mu, nesterov = kw.get("eps", 0.0), kw.get("momentum", 0.9), kw.get("nesterov", False)
    b, out = torch.zeros_like(p), []
    for g in gs:
        r = (-g if kw.get("maximize") else g) + wd * p
        s = -lr * _ratio(_norm(p), _norm(r), c, eps) * r
        b = mu * b + s
        p = p + (s + mu * b if nesterov else b)
        out.append(p)
    return out


def ref_fromage(p: torch.Tensor, gs: list[torch.Tensor], **kw: Any) -> list[torch.Tensor]:
    lr, n0 = kw.get("lr", 1e-2), kw.get("min_norm", 1e-6)
    out = []
    for g in gs:
        ratio = _norm(p).clamp(min=n0) / _norm(g).clamp(min=n0)
        p = (p - lr * ratio * g) / math.sqrt(1 + lr**2)
        out.append(p)
    return out


def ref_novograd(p: torch.Tensor, gs: list[torch.Tensor], **kw: Any) -> list[torch.Tensor]:
    lr, b1, b2 = kw.get("lr", 1e-3), kw.get("b1", 0.9), kw.get("b2", 0.25)
    eps, eps_root, wd = kw.get("eps", 1e-6), kw.get("eps_root", 0.0), kw.get("weight_decay", 0.0)
    m, nu, out = torch.zeros_like(p), None, []
    for g in gs:
        g = -g if kw.get("maximize") else g
        sq = _norm(g) ** 2
        nu = sq if nu is None else b2 * nu + (1 - b2) * sq
        m = b1 * m + g / ((nu + eps_root).sqrt() + eps) + wd * p
        p = p - lr * m
        out.append(p)
    return out


def ref_sm3(p: torch.Tensor, gs: list[torch.Tensor], **kw: Any) -> list[torch.Tensor]:
    lr, mu, eps = kw.get("lr", 1e-3), kw.get("momentum", 0.9), kw.get("eps", 1e-8)
    k = p.ndim
    acc: Any = [torch.zeros(n, dtype=p.dtype) for n in p.shape] if k >= 2 else torch.zeros_like(p)
    m, out = torch.zeros_like(p), []
    for g in gs:
        g = -g if kw.get("maximize") else g
        if k >= 2:
            axes = [a.reshape([-1 if j == i else 1 for j in range(k)]) for i, a in enumerate(acc)]
            bound = axes[0]
            for a in axes[1:]:
                bound = torch.minimum(bound, a)
            v = g * g + bound
            acc = [v.amax(dim=[j for j in range(k) if j != i]) for i in range(k)]
        else:
            v = acc = g * g + acc
        step = torch.where(v > 0, g / (v + eps).sqrt(), torch.zeros_like(g))
        m = mu * m + (1 - mu) * step
        p = p - lr * m
        out.append(p)
    return out


def ref_adafactor(p: torch.Tensor, gs: list[torch.Tensor], **kw: Any) -> list[torch.Tensor]:
    lr, tau, d, wd = kw.get("lr", 1e-2), kw.get("beta2_decay", -0.8), kw.get("d", 1.0), 0.0
    wd = kw.get("weight_decay", 0.0)
    eps1, eps2 = kw.get("eps", (None, 1e-3))
    eps1 = torch.finfo(p.dtype).eps if eps1 is None else eps1
    r = torch.zeros(*p.shape[:-1], 1, dtype=p.dtype) if p.ndim >= 2 else None
    c = torch.zeros(*p.shape[:-2], 1, p.shape[-1], dtype=p.dtype) if p.ndim >= 2 else None
    v, out = torch.zeros_like(p), []
    for t, g in enumerate(gs, 1):
        g = -g if kw.get("maximize") else g
        beta = 1 - t**tau
        a = max(eps2, (_norm(p) / math.sqrt(p.numel())).item()) * min(lr, t**-0.5)
        if r is not None and c is not None:
            r = beta * r + (1 - beta) * (g * g).mean(-1, keepdim=True)
            c = beta * c + (1 - beta) * (g * g).mean(-2, keepdim=True)
            var = r @ c / r.mean(-2, keepdim=True).clamp(min=eps1)
        else:
            v = var = beta * v + (1 - beta) * g * g
        u = g / var.clamp(min=eps1 * eps1).sqrt()
        u = u / max(1.0, (_norm(u) / math.sqrt(u.numel())).item() / d)
        p = p * (1 - lr * wd) - a * u
        out.append(p)
    return out


def reference(
    ref: Callable[..., list[torch.Tensor]], params: Tree, grads: list[Tree], kw: dict
) -> list[Tree]:
    per_leaf = {k: ref(p, [g[k] for g in grads], **kw) for k, p in params.items()}
    return [{k: per_leaf[k][i] for k in params} for i in range(len(grads))]


# -- Optax on the same gradients ------------------------------------------------------------------


def optax_trajectory(tx: Any, params: Tree, grads: list[Tree], *, negate: bool) -> list[Tree]:
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    import optax

    p = {k: jnp.asarray(v.numpy()) for k, v in params.items()}
    state = tx.init(p)
    out = []
    for g in grads:
        jg = {k: jnp.asarray((-v if negate else v).numpy()) for k, v in g.items()}
        updates, state = tx.update(jg, state, p)
        p = optax.apply_updates(p, updates)
        out.append({k: torch.from_numpy(jax.device_get(v).copy()) for k, v in p.items()})
    return out


def optax_lamb(optax: Any, kw: dict) -> Any:
    args = {k: kw[k] for k in ("b1", "b2", "eps", "eps_root", "weight_decay") if k in kw}
    return optax.lamb(kw.get("lr", 1e-3), **args)


def optax_lars(optax: Any, kw: dict) -> Any:
    names = ("weight_decay", "trust_coefficient", "eps", "momentum", "nesterov")
    return optax.lars(kw.get("lr", 1e-3), **{k: kw[k] for k in names if k in kw})


def optax_fromage(optax: Any, kw: dict) -> Any:
    return optax.fromage(kw.get("lr", 1e-2), **{k: kw[k] for k in ("min_norm",) if k in kw})


def optax_novograd(optax: Any, kw: dict) -> Any:
    args = {k: kw[k] for k in ("b1", "b2", "eps", "eps_root", "weight_decay") if k in kw}
    return optax.novograd(kw.get("lr", 1e-3), **args)


def optax_sm3(optax: Any, kw: dict) -> Any:
    return optax.chain(
        optax.scale_by_sm3(b1=kw.get("momentum", 0.9), eps=kw.get("eps", 1e-8)),
        optax.scale(-kw.get("lr", 1e-3)),
    )


ALIASES: dict[str, tuple[Callable[..., Any], Callable[..., Any], Any]] = {
    "lamb": (lamb, ref_lamb, optax_lamb),
    "lars": (lars, ref_lars, optax_lars),
    "fromage": (fromage, ref_fromage, optax_fromage),
    "novograd": (novograd, ref_novograd, optax_novograd),
    "sm3": (sm3, ref_sm3, optax_sm3),
    "adafactor": (adafactor, ref_adafactor, None),
}

CONFIGS: list[tuple[str, dict[str, Any]]] = [
    ("lamb", {}),
    (
        "lamb",
        {
            "lr": 0.1,
            "b1": 0.8,
            "b2": 0.99,
            "eps": 1e-4,
            "eps_root": 1e-6,
            "weight_decay": 0.1,
            "maximize": True,
        },
    ),
    ("lars", {"lr": 0.1}),
    (
        "lars",
        {
            "lr": 0.1,
            "weight_decay": 0.01,
            "trust_coefficient": 0.02,
            "eps": 1e-3,
            "momentum": 0.8,
            "nesterov": True,
            "maximize": True,
        },
    ),
    ("lars", {"lr": 0.1, "momentum": 0.0}),
    ("fromage", {}),
    ("fromage", {"lr": 0.1, "min_norm": 1e-2}),
    ("novograd", {}),
    (
        "novograd",
        {
            "lr": 0.1,
            "b1": 0.8,
            "b2": 0.5,
            "eps": 1e-4,
            "eps_root": 1e-6,
            "weight_decay": 0.1,
            "maximize": True,
        },
    ),
    ("sm3", {}),
    ("sm3", {"lr": 0.1, "momentum": 0.5, "eps": 1e-6, "maximize": True}),
    ("adafactor", {}),
    (
        "adafactor",
        {
            "lr": 0.5,
            "beta2_decay": -0.5,
            "eps": (1e-3, 1e-2),
            "d": 1.5,
            "weight_decay": 0.1,
            "maximize": True,
        },
    ),
]
IDS = [f"{name}-{i}" for i, (name, _) in enumerate(CONFIGS)]


@pytest.mark.parametrize("inplace", [True, False], ids=["inplace", "pure"])
@pytest.mark.parametrize(("name", "kw"), CONFIGS, ids=IDS)
def test_matches_plain_reference(name: str, kw: dict, inplace: bool) -> None:
    alias, ref, _ = ALIASES[name]
    params = make_params()
    grads = make_grads(params)
    got = run(alias(**kw), params, grads, inplace=inplace)
    assert_trajectories(got, reference(ref, params, grads, kw))


@pytest.mark.parametrize("inplace", [True, False], ids=["inplace", "pure"])
@pytest.mark.parametrize(("name", "kw"), [c for c in CONFIGS if c[0] != "adafactor"], ids=IDS[:-2])
def test_matches_optax(name: str, kw: dict, inplace: bool) -> None:
    optax = pytest.importorskip("optax")
    alias, _, make_optax = ALIASES[name]
    params = make_params(scalar=name != "sm3")  # optax.scale_by_sm3 fails on 0-d leaves
    grads = make_grads(params)
    expected = optax_trajectory(
        make_optax(optax, kw), params, grads, negate=kw.get("maximize", False)
    )
    assert_trajectories(run(alias(**kw), params, grads, inplace=inplace), expected)


@pytest.mark.parametrize("foreach", [False, True], ids=["single", "foreach"])
@pytest.mark.parametrize("inplace", [True, False], ids=["inplace", "pure"])
@pytest.mark.parametrize("kw", [kw for name, kw in CONFIGS if name == "adafactor"], ids=str)
def test_adafactor_matches_torch_optim(kw: dict, inplace: bool, foreach: bool) -> None:
    params = make_params()
    params["t"] = torch.randn(2, 3, 4, dtype=torch.float64)  # factored over the last two axes
    grads = make_grads(params)
    leaves = {k: v.clone().requires_grad_() for k, v in params.items()}
    opt = torch.optim.Adafactor(list(leaves.values()), foreach=foreach, **kw)
    expected = []
    for g in grads:
        for k, p in leaves.items():
            p.grad = g[k].clone()
        opt.step()
        expected.append({k: p.detach().clone() for k, p in leaves.items()})
    assert_trajectories(run(adafactor(**kw), params, grads, inplace=inplace), expected)


@pytest.mark.parametrize("inplace", [True, False], ids=["inplace", "pure"])
@pytest.mark.parametrize(("lr", "d", "tau"), [(1e-2, 1.0, -0.8), (0.5, 1.5, -0.5)])
def test_adafactor_matches_optax_pieces(lr: float, d: float, tau: float, inplace: bool) -> None:
    """Optax's adafactor pieces with torch's math: every matrix factored, no momentum, the
    relative step as a schedule, and the decay computed in float64 (Optax's own is float32)."""
    optax = pytest.importorskip("optax")
    jnp = pytest.importorskip("jax.numpy")
    tx = optax.chain(
        optax.scale_by_factored_rms(
            decay_rate=-tau,
            min_dim_size_to_factor=1,
            decay_rate_fn=lambda i, e: 1.0 - (i + 1.0) ** (-e),
        ),
        optax.clip_by_block_rms(d),
        optax.scale_by_learning_rate(lambda c: jnp.minimum(lr, 1.0 / jnp.sqrt(c + 1.0))),
        optax.scale_by_param_block_rms(),
    )
    params = make_params()
    grads = make_grads(params)
    expected = optax_trajectory(tx, params, grads, negate=False)
    got = run(adafactor(lr=lr, d=d, beta2_decay=tau), params, grads, inplace=inplace)
    assert_trajectories(got, expected)


def test_adafactor_tensor_lr_and_schedule_match_float() -> None:
    params = make_params()
    grads = make_grads(params)
    expected = run(adafactor(lr=0.3, weight_decay=0.1), params, grads, inplace=False)
    got = run(
        adafactor(lr=torch.tensor(0.3, dtype=torch.float64), weight_decay=0.1),
        params,
        grads,
        inplace=False,
    )
    assert_trajectories(got, expected)
    got = run(adafactor(lr=lambda count: 0.3, weight_decay=0.1), params, grads, inplace=True)
    assert_trajectories(got, expected)


# -- complex leaves -------------------------------------------------------------------------------


@pytest.mark.parametrize("inplace", [True, False], ids=["inplace", "pure"])
@pytest.mark.parametrize("name", ["lamb", "lars", "fromage", "novograd"])
def test_layer_norms_of_complex_leaves(name: str, inplace: bool) -> None:
    """A complex leaf steps as its real view does: the real view's norm is the complex norm."""
    alias, ref, _ = ALIASES[name]
    kw = next(kw for n, kw in CONFIGS if n == name and kw)
    gen = torch.Generator().manual_seed(3)
    c = torch.randn(3, 2, generator=gen, dtype=torch.complex128)
    torch.testing.assert_close(_norm(c), _norm(torch.view_as_real(c)), rtol=1e-15, atol=0)
    params = {"c": c, "w": torch.randn(4, generator=gen, dtype=torch.float64)}
    grads = make_grads(params, seed=4)
    got = run(alias(**kw), params, grads, inplace=inplace)
    real_params = {k: torch.view_as_real(v) if v.is_complex() else v for k, v in params.items()}
    real_grads = [
        {k: torch.view_as_real(v) if v.is_complex() else v for k, v in g.items()} for g in grads
    ]
    expected = reference(ref, real_params, real_grads, kw)
    got_real = [
        {k: torch.view_as_real(v) if v.is_complex() else v for k, v in t.items()} for t in got
    ]
    assert_trajectories(got_real, expected)


@pytest.mark.parametrize("name", ["sm3", "adafactor"])
def test_factored_reject_complex_before_writing(name: str) -> None:
    alias = ALIASES[name][0]
    opt = alias()
    complex_params = {"c": torch.randn(3, 2, dtype=torch.complex128)}
    with pytest.raises(ValueError, match="complex leaves are not supported"):
        opt.init(complex_params)
    params = {"c": torch.randn(3, 2, dtype=torch.float64)}
    state = opt.init(params)
    before = [x.clone() for x in torch.utils._pytree.tree_leaves(state)]
    grads = {"c": torch.randn(3, 2, dtype=torch.complex128)}
    g_before = grads["c"].clone()
    with pytest.raises(ValueError, match="complex leaves are not supported"):
        opt.update(grads, state, params=params)
    after = torch.utils._pytree.tree_leaves(state)
    assert all(torch.equal(a, b) for a, b in zip(after, before, strict=True))
    assert torch.equal(grads["c"], g_before)


# -- errors ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (lambda: fromage(lr=cast(Any, lambda c: 0.1)), TypeError, "fromage: lr must be a float"),
        (lambda: adafactor(eps=cast(Any, 1e-3)), TypeError, "adafactor: eps must be a pair"),
        (lambda: adafactor(beta2_decay=0.5), ValueError, "beta2_decay must be <= 0; got 0.5"),
        (lambda: adafactor(d=0.5), ValueError, "d must be >= 1; got 0.5"),
        (lambda: lamb(b1=1.0), ValueError, r"lamb: b1 must be in \[0.0, 1.0\); got 1.0"),
        (lambda: novograd(b2=-0.1), ValueError, "b2 must be in"),
        (lambda: sm3(momentum=1.0), ValueError, "b1 must be in"),
        (lambda: lars(lr=-1.0), ValueError, "Invalid learning rate"),
    ],
)
def test_invalid_hyperparameters(make: Callable[[], Any], error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        make()


@pytest.mark.parametrize(
    ("transform", "match"),
    [
        (scale_by_novograd(), "scale_by_novograd: state.nu must be a tuple of one 0-d tensor"),
        (scale_by_sm3(), "scale_by_sm3: state does not match the updates"),
        (scale_by_factored_rms(), "scale_by_factored_rms: state does not match the updates"),
    ],
    ids=["novograd", "sm3", "factored_rms"],
)
def test_state_of_other_params_is_rejected_before_writing(transform: Any, match: str) -> None:
    small = {"w": torch.randn(2, 3, dtype=torch.float64), "b": torch.randn(3, dtype=torch.float64)}
    state: Any = transform.init(small)
    if hasattr(state, "nu"):  # novograd: a per-layer field of the wrong shape
        state = state._replace(nu=tuple(x.reshape(1) for x in state.nu))
        match_params = small
    else:
        match_params = {"w": torch.randn(4, 3, dtype=torch.float64), "b": small["b"]}
    before = [x.clone() for x in torch.utils._pytree.tree_leaves(state)]
    grads = {k: torch.ones_like(v) for k, v in match_params.items()}
    with pytest.raises(ValueError, match=match):
        transform.update(grads, state, params=match_params)
    after = torch.utils._pytree.tree_leaves(state)
    assert all(torch.equal(a, b) for a, b in zip(after, before, strict=True))
    assert all(torch.equal(g, torch.ones_like(g)) for g in grads.values())


# -- gradients through two out-of-place steps -----------------------------------------------------


@pytest.mark.parametrize(("name", "kw"), CONFIGS, ids=IDS)
def test_gradcheck_two_steps(name: str, kw: dict) -> None:
    alias = ALIASES[name][0]
    gen = torch.Generator().manual_seed(5)
    w, b = (torch.randn(s, generator=gen, dtype=torch.float64) for s in [(2, 3), (3,)])
    gw, gb = (torch.randn(s, generator=gen, dtype=torch.float64) for s in [(2, 3), (3,)])

    def two_steps(w: torch.Tensor, b: torch.Tensor, gw: torch.Tensor, gb: torch.Tensor) -> Any:
        opt = alias(**kw)
        params = {"w": w, "b": b}
        state = opt.init(params)
        for g in ({"w": gw, "b": gb}, {"w": 0.7 * gw.flip(0) + 0.1, "b": gb * gb - 0.3}):
            updates, state = opt.update(g, state, params=params, inplace=False)
            params = torchopt_lite.apply_updates(params, updates, inplace=False)
        return params["w"], params["b"]

    inputs = tuple(x.requires_grad_() for x in (w, b, gw, gb))
    assert torch.autograd.gradcheck(two_steps, inputs)
