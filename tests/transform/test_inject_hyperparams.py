"""inject_hyperparams: hyperparameters as tensors in the state, in every differentiation mode."""

from __future__ import annotations

import inspect
import math
from typing import Any

import optree
import pytest
import torch
from torch import Tensor

import torchopt_lite
from tests.alias._breadth import ALL as BREADTH
from tests.alias._registry import CASES
from torchopt_lite.base import GradientTransformation
from torchopt_lite.clip import clip_grad_norm
from torchopt_lite.diff.implicit import custom_fixed_point
from torchopt_lite.diff.zero_order import zero_order
from torchopt_lite.transform import clipping
from torchopt_lite.transform.adaptive_grad_clip import adaptive_grad_clip
from torchopt_lite.transform.ema import ema
from torchopt_lite.transform.inject_hyperparams import InjectHyperparamsState, inject_hyperparams
from torchopt_lite.transform.lookahead import lookahead
from torchopt_lite.transform.normalize_by_update_norm import normalize_by_update_norm


def _numeric(kwargs: dict[str, Any]) -> dict[str, Any]:
    """The hyperparameters a case sets that inject_hyperparams injects (numbers and betas)."""
    out = {}
    for k, v in kwargs.items():
        if isinstance(v, bool):
            continue
        if isinstance(v, float) or (isinstance(v, tuple) and all(isinstance(x, float) for x in v)):
            out[k] = v
    return out


def _probe_ok(value: Any) -> bool:
    """Finite and not eps-sized: a finite-difference probe of 1e-6 keeps it valid."""
    values = value if isinstance(value, tuple) else (value,)
    return all(1e-3 <= abs(v) < math.inf for v in values)


def _alias(name: str) -> Any:
    return getattr(torchopt_lite, name, None) or getattr(
        __import__(f"torchopt_lite.alias.{name}", fromlist=[name]), name
    )


def _float_defaults(alias: str) -> dict[str, Any]:
    """The alias's float (and tuple-of-float) defaults, so that every one of them is injected."""
    try:
        signature = inspect.signature(_alias(alias))
    except (ImportError, AttributeError):  # a module being written: its test fails, not all
        return {}
    out = {}
    for name, p in signature.parameters.items():
        if name in NOT_INJECTED.get(alias, ()):
            continue
        out.update(_numeric({name: p.default}))
    return out


# Float hyperparameters that stay Python numbers, alias -> names (each with its reason); every
# other float argument of every alias, defaults included, is injected as a 0-d tensor below.
# Empty: every alias takes a tensor for each of its float hyperparameters.
NOT_INJECTED: dict[str, tuple[str, ...]] = {}


# Values held fixed in the gradient check: a finite-difference probe would cross their bound.
AT_A_BOUND = {("adafactor", "d", 1.0)}  # d >= 1 (and u / max(1, RMS(u) / d) has a kink there)


def _injected_kwargs(alias: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """The case's kwargs with every float default made explicit (so inject_hyperparams sees it)."""
    return {**_float_defaults(alias), **kwargs}


INJECTABLE = [
    (c.alias, _injected_kwargs(c.alias, c.kwargs), c.id, getattr(c, "needs_value", False))
    for c in [*CASES, *BREADTH]
    if _numeric(_injected_kwargs(c.alias, c.kwargs))
]


def _params(seed: int = 0) -> dict[str, Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {
        "w": torch.randn(3, 4, generator=gen, dtype=torch.float64),
        "b": torch.randn(4, generator=gen, dtype=torch.float64),
    }


_SOURCE = _params(7)


def _grads(k: int) -> dict[str, Tensor]:
    return optree.tree_map(lambda p: torch.sin(p * (k + 1)) + 0.1 * k, _SOURCE)


def _value(params: Any) -> Tensor:
    """A loss for the transformations that read one (``value=``): any function of params."""
    return 1.0 + 0.5 * sum((p * p).sum() for p in optree.tree_leaves(params))


def _run(
    opt: Any, steps: int, inplace: bool, params: Any = None, needs_value: bool = False
) -> list[Any]:
    params = _params() if params is None else params
    state = opt.init(params)
    out = []
    for k in range(steps):
        extra = {"value": _value(params)} if needs_value else {}
        updates, state = opt.update(_grads(k), state, params=params, inplace=inplace, **extra)
        params = torchopt_lite.apply_updates(params, updates, inplace=inplace)
        out.append(optree.tree_map(torch.clone, params))
    return out


def _as_tensors(values: dict[str, Any], requires_grad: bool = False) -> dict[str, Any]:
    def one(v: float) -> Tensor:
        return torch.tensor(v, dtype=torch.float64, requires_grad=requires_grad)

    return {k: tuple(map(one, v)) if isinstance(v, tuple) else one(v) for k, v in values.items()}


_INJECTABLE_ARGS = {
    "argnames": ("alias", "kwargs", "needs_value"),
    "argvalues": [(c[0], c[1], c[3]) for c in INJECTABLE],
    "ids": [c[2] for c in INJECTABLE],
}


@pytest.mark.parametrize("inplace", [True, False], ids=["inplace", "pure"])
@pytest.mark.parametrize(**_INJECTABLE_ARGS)
def test_injected_steps_equal_the_alias(
    alias: str, kwargs: dict, needs_value: bool, inplace: bool
) -> None:
    """Numbers injected as state tensors change nothing: the same trajectory as the alias."""
    factory = _alias(alias)
    expected = _run(factory(**kwargs), 5, inplace, needs_value=needs_value)
    got = _run(inject_hyperparams(factory)(**kwargs), 5, inplace, needs_value=needs_value)
    for e, g in zip(expected, got, strict=True):
        for x, y in zip(optree.tree_leaves(e), optree.tree_leaves(g), strict=True):
            torch.testing.assert_close(y, x, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize(**_INJECTABLE_ARGS)
def test_gradcheck_through_hyperparameters(alias: str, kwargs: dict, needs_value: bool) -> None:
    """Params after two out-of-place steps are differentiable in every injected value."""
    # eps-sized values are held fixed: a finite-difference probe of 1e-6 would make them < 0
    numeric = _numeric(kwargs)
    numeric = {k: v for k, v in numeric.items() if _probe_ok(v) and (alias, k, v) not in AT_A_BOUND}
    names = list(numeric)
    flat0, spec = optree.tree_flatten(_as_tensors(numeric))

    def two_steps(*flat: Tensor) -> tuple[Tensor, ...]:
        hyper = optree.tree_unflatten(spec, list(flat))
        opt = inject_hyperparams(_alias(alias))(**{**kwargs, **hyper})
        (last,) = _run(opt, 2, inplace=False, needs_value=needs_value)[-1:]
        return tuple(optree.tree_leaves(last))

    inputs = tuple(x.clone().requires_grad_(True) for x in flat0)
    if not names:
        pytest.skip("no hyperparameter of this case is large enough to probe")
    assert torch.autograd.gradcheck(two_steps, inputs, eps=1e-6, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize(**_INJECTABLE_ARGS)
def test_no_host_reads_of_injected_values(alias: str, kwargs: dict, needs_value: bool) -> None:
    """vmap over the injected values (as many ``torch.func`` users batch hyperparameters): a
    host read (``float``, ``bool``, ``.item()``, a Python ``if``) of one raises under vmap, and
    each batch entry equals the run with its values."""
    numeric = _numeric(kwargs)
    flat, spec = optree.tree_flatten(_as_tensors(numeric))
    batched = [torch.stack([x, x]) for x in flat]  # the same value twice: a valid batch
    params = _params()

    def final(*values: Tensor) -> tuple[Tensor, ...]:
        hyper = optree.tree_unflatten(spec, list(values))
        opt = inject_hyperparams(_alias(alias))(**{**kwargs, **hyper})
        (last,) = _run(opt, 2, inplace=False, params=params, needs_value=needs_value)[-1:]
        return tuple(optree.tree_leaves(last))

    got = torch.func.vmap(final)(*batched)
    expected = final(*flat)
    for x, y in zip(expected, got, strict=True):
        torch.testing.assert_close(y[0], x, rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(y[1], x, rtol=1e-12, atol=1e-14)


# -- transformations with hyperparameters (not aliases) -------------------------------------------


def _lookahead_sgd(
    sync_period: int = 2, slow_step_size: float = 0.5, fast_lr: float = 0.1
) -> GradientTransformation:
    """Lookahead around an inner SGD (whose lr is injected too)."""
    return lookahead(torchopt_lite.sgd(fast_lr), sync_period, slow_step_size)


TRANSFORMS: list[tuple[str, Any, dict[str, Any]]] = [
    ("clip_grad_norm", clip_grad_norm, {"max_norm": 0.5}),
    ("clip_by_global_norm", clipping.clip_by_global_norm, {"max_norm": 0.5}),
    ("clip", clipping.clip, {"max_delta": 0.3}),
    ("clip_by_block_rms", clipping.clip_by_block_rms, {"threshold": 0.3}),
    ("adaptive_grad_clip", adaptive_grad_clip, {"clipping": 0.1, "eps": 1e-2}),
    ("ema", ema, {"decay": 0.8}),
    ("ema-no-debias", ema, {"decay": 0.8, "debias": False}),
    ("lookahead", _lookahead_sgd, {"slow_step_size": 0.5, "fast_lr": 0.1}),
    ("normalize_by_update_norm", normalize_by_update_norm, {"scale_factor": 0.5, "eps": 1e-2}),
]
# clip_grad_norm's norm_type stays a number: it picks the norm (inf: the max norm), a code path.
_TRANSFORM_STATIC = {"clip_grad_norm": ("norm_type",)}


def _transform_kwargs(name: str, factory: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
    """``kwargs`` with every float default made explicit (each one is injected)."""
    out = {}
    for arg, p in inspect.signature(factory).parameters.items():
        if arg not in _TRANSFORM_STATIC.get(name, ()):
            out.update(_numeric({arg: p.default}))
    return {**out, **kwargs}


@pytest.mark.parametrize("inplace", [True, False], ids=["inplace", "pure"])
@pytest.mark.parametrize(
    ("factory", "kwargs"), [t[1:] for t in TRANSFORMS], ids=[t[0] for t in TRANSFORMS]
)
def test_injected_transform_equals_the_transform(factory: Any, kwargs: dict, inplace: bool) -> None:
    name = next(t[0] for t in TRANSFORMS if t[1] is factory)
    kwargs = _transform_kwargs(name, factory, kwargs)
    expected = _run(factory(**kwargs), 5, inplace)
    got = _run(inject_hyperparams(factory)(**kwargs), 5, inplace)
    for e, g in zip(expected, got, strict=True):
        for x, y in zip(optree.tree_leaves(e), optree.tree_leaves(g), strict=True):
            torch.testing.assert_close(y, x, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize(("name", "factory", "kwargs"), TRANSFORMS, ids=[t[0] for t in TRANSFORMS])
def test_gradcheck_through_transform_hyperparameters(name: str, factory: Any, kwargs: dict) -> None:
    """Two out-of-place steps are differentiable in each injected value (vmap-safe as well)."""
    kwargs = _transform_kwargs(name, factory, kwargs)
    numeric = _numeric(kwargs)
    flat0, spec = optree.tree_flatten(_as_tensors(numeric))
    params = _params()

    def two_steps(*flat: Tensor) -> tuple[Tensor, ...]:
        hyper = optree.tree_unflatten(spec, list(flat))
        opt = inject_hyperparams(factory)(**{**kwargs, **hyper})
        (last,) = _run(opt, 2, inplace=False, params=params)[-1:]
        return tuple(optree.tree_leaves(last))

    inputs = tuple(x.clone().requires_grad_(True) for x in flat0)
    assert torch.autograd.gradcheck(two_steps, inputs, eps=1e-6, atol=1e-5, rtol=1e-4)
    # no host read of an injected value: each entry of a vmapped batch is its own run
    got = torch.func.vmap(two_steps)(*(torch.stack([x, x]) for x in flat0))
    for x, y in zip(two_steps(*flat0), got, strict=True):
        torch.testing.assert_close(y[1], x, rtol=1e-12, atol=1e-14)


def test_schedule_is_evaluated_on_the_count() -> None:
    schedule = torchopt_lite.schedule.linear_schedule(0.1, 0.01, transition_steps=4)
    expected = _run(torchopt_lite.adam(schedule), 6, inplace=True)
    opt = inject_hyperparams(torchopt_lite.adam)(lr=schedule)
    got = _run(opt, 6, inplace=True)
    for e, g in zip(expected, got, strict=True):
        for x, y in zip(optree.tree_leaves(e), optree.tree_leaves(g), strict=True):
            torch.testing.assert_close(y, x, rtol=1e-12, atol=1e-14)
    state = opt.init(_params())
    for _ in range(3):
        _, state = opt.update(_grads(0), state, params=_params())
    torch.testing.assert_close(
        state.hyperparams["lr"], torch.as_tensor(schedule(2), dtype=torch.float64)
    )


def test_values_set_between_steps_are_used() -> None:
    opt = inject_hyperparams(torchopt_lite.sgd)(lr=0.1, momentum=0.5)
    params = _params()
    state = opt.init(params)
    _, state = opt.update(_grads(0), state, params=params)
    state.hyperparams["lr"].fill_(0.0)
    updates, state = opt.update(_grads(1), state, params=params)
    assert all(torch.equal(u, torch.zeros_like(u)) for u in optree.tree_leaves(updates))
    state = state._replace(hyperparams={**state.hyperparams, "lr": torch.tensor(1.0)})
    updates, _ = opt.update(_grads(2), state, params=params)
    # momentum buffer after three steps: b = g2 + 0.5 (g1 + 0.5 g0); the step is -1.0 * b
    b = optree.tree_map(lambda a, c, d: d + 0.5 * (c + 0.5 * a), _grads(0), _grads(1), _grads(2))
    for u, v in zip(optree.tree_leaves(updates), optree.tree_leaves(b), strict=True):
        torch.testing.assert_close(u, -v, rtol=1e-12, atol=1e-14)


def test_meta_gradient_of_lr_and_betas_matches_finite_differences() -> None:
    """Unrolled mode: learn Adam's lr and b1 by differentiating through 4 inner steps."""

    def outer(lr: Tensor, b1: Tensor) -> Tensor:
        opt = inject_hyperparams(torchopt_lite.adam)(lr=lr, betas=(b1, 0.999))
        params = _params()
        state = opt.init(params)
        for _ in range(4):
            grads = optree.tree_map(lambda p: p - 1.0, params)  # loss 0.5 |p - 1|^2
            updates, state = opt.update(grads, state, params=params, inplace=False)
            params = torchopt_lite.apply_updates(params, updates, inplace=False)
        return sum(((p - 1.0) ** 2).sum() for p in optree.tree_leaves(params))

    lr = torch.tensor(0.05, dtype=torch.float64, requires_grad=True)
    b1 = torch.tensor(0.8, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(outer, (lr, b1))


def test_meta_optimizer_reaches_the_injected_tensor() -> None:
    lr = torch.tensor(0.1, dtype=torch.float64, requires_grad=True)
    net = torch.nn.Linear(3, 1, bias=False).double()
    x = torch.randn(5, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    w0 = net.weight.detach().clone()
    meta = torchopt_lite.MetaOptimizer(net, inject_hyperparams(torchopt_lite.sgd)(lr=lr))
    meta.step((net(x) ** 2).mean())
    (got,) = torch.autograd.grad(net.weight.sum(), lr)
    w = w0.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(((x @ w.T) ** 2).mean(), w)
    torch.testing.assert_close(got, -g.sum())


def test_vmap_over_learning_rates_matches_a_loop() -> None:
    opt = inject_hyperparams(torchopt_lite.adam)(lr=0.1)
    lrs = torch.tensor([0.01, 0.1, 0.3], dtype=torch.float64)
    params = _params()

    def run(lr: Tensor) -> Tensor:
        state = opt.init(params)
        state = state._replace(hyperparams={"lr": lr})
        p = params
        for k in range(3):
            updates, state = opt.update(_grads(k), state, params=p, inplace=False)
            p = torchopt_lite.apply_updates(p, updates, inplace=False)
        return p["w"]

    got = torch.func.vmap(run)(lrs)
    for i, lr in enumerate(lrs):
        torch.testing.assert_close(got[i], run(lr), rtol=1e-12, atol=1e-14)


@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")
@pytest.mark.filterwarnings(
    "ignore:<class 'torch.autograd.function.Function'> should not be instantiated"
    ":DeprecationWarning"
)
def test_compiled_step_matches_eager() -> None:
    torch._dynamo.reset()
    opt = inject_hyperparams(torchopt_lite.adamw)(lr=0.1, betas=(0.8, 0.99), weight_decay=0.1)
    params = _params()
    state = opt.init(params)

    def step(params: Any, state: Any) -> Any:
        updates, state = opt.update(_grads(0), state, params=params, inplace=False)
        return torchopt_lite.apply_updates(params, updates, inplace=False), state

    expected = step(params, state)
    got = torch.compile(step, fullgraph=True, backend="aot_eager")(params, state)
    for e, g in zip(optree.tree_leaves(expected), optree.tree_leaves(got), strict=True):
        torch.testing.assert_close(g, e, rtol=1e-12, atol=1e-14)


def _ridge_problem() -> tuple[Tensor, Tensor]:
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(20, 4, generator=gen, dtype=torch.float64)
    y = torch.randn(20, generator=gen, dtype=torch.float64)
    return x, y


def test_implicit_gradient_of_weight_decay_through_the_optimizer_step() -> None:
    """Implicit mode: the fixed point of an SGD step with weight decay l is the ridge solution
    (X'X/n + l I) w = X'y/n; differentiate it in l through the step itself."""
    x, y = _ridge_problem()
    n = x.shape[0]

    def step(w: Tensor, wd: Tensor) -> Tensor:
        opt = inject_hyperparams(torchopt_lite.sgd)(lr=0.5, weight_decay=wd)
        grad = x.T @ (x @ w - y) / n
        updates, _ = opt.update(grad, opt.init(w), params=w, inplace=False)
        return w + updates

    @custom_fixed_point(
        step, argnums=1, solve=torchopt_lite.linear_solve.solve_normal_cg(rtol=1e-12, maxiter=200)
    )
    def solve(w0: Tensor, wd: Tensor) -> Tensor:
        w = w0
        with torch.no_grad():
            for _ in range(3000):
                w = step(w, wd)
        return w

    wd = torch.tensor(0.3, dtype=torch.float64, requires_grad=True)
    w = solve(torch.zeros(4, dtype=torch.float64), wd)
    a = x.T @ x / n + wd.detach() * torch.eye(4, dtype=torch.float64)
    w_star = torch.linalg.solve(a, x.T @ y / n)
    torch.testing.assert_close(w.detach(), w_star, rtol=1e-9, atol=1e-11)
    (got,) = torch.autograd.grad(w.sum(), wd)
    expected = -torch.linalg.solve(a, w_star).sum()  # dw*/dl = -(A + l I)^{-1} w*
    torch.testing.assert_close(got, expected, rtol=1e-7, atol=1e-10)


def test_zero_order_gradient_of_the_learning_rate() -> None:
    """Zero-order mode: an ES estimate of d loss / d lr through a 5-step loop run as a black box,
    within 5 standard errors of the exact (unrolled) derivative."""
    x, y = _ridge_problem()

    def final_loss(lr: Tensor) -> Tensor:
        opt = inject_hyperparams(torchopt_lite.sgd)(lr=lr, momentum=0.5)
        w = torch.zeros(4, dtype=torch.float64)
        state = opt.init(w)
        for _ in range(5):
            updates, state = opt.update(x.T @ (x @ w - y) / len(y), state, params=w, inplace=False)
            w = w + updates
        return ((x @ w - y) ** 2).mean()

    lr = torch.tensor(0.05, dtype=torch.float64, requires_grad=True)
    (exact,) = torch.autograd.grad(final_loss(lr), lr)
    n, sigma = 2000, 1e-3
    gen = torch.Generator().manual_seed(0)
    estimator = zero_order(
        torch.distributions.Normal(
            torch.tensor(0.0, dtype=torch.float64), torch.tensor(1.0, dtype=torch.float64)
        ),
        method="antithetic",
        num_samples=n,
        sigma=sigma,
        generator=gen,
    )(final_loss)
    (estimate,) = torch.autograd.grad(estimator(lr), lr)
    # antithetic on a nearly quadratic f: per-sample std of (f+ - f-) eps / 2 sigma ~ |f'| * 1
    assert abs(estimate - exact) <= 5 * abs(exact) * 2**0.5 / n**0.5


def test_errors() -> None:
    with pytest.raises(ValueError, match=r"static_args \['nope'\]"):
        inject_hyperparams(torchopt_lite.adam, static_args="nope")(lr=0.1)
    with pytest.raises(TypeError, match=r"inject_hyperparams\(adam\)"):
        inject_hyperparams(torchopt_lite.adam)(lr=0.1, learning_rate=0.1)
    with pytest.raises(ValueError, match="Invalid learning rate"):
        inject_hyperparams(torchopt_lite.adam)(lr=-1.0)
    opt = inject_hyperparams(torchopt_lite.adam)(lr=0.1)
    params = _params()
    state = opt.init(params)
    with pytest.raises(ValueError, match="expected InjectHyperparamsState"):
        opt.update(_grads(0), state.inner_state, params=params)
    broken = state._replace(hyperparams={})
    with pytest.raises(ValueError, match=r"lacks \['lr'\]"):
        opt.update(_grads(0), broken, params=params)
    assert isinstance(state, InjectHyperparamsState)


def test_state_survives_save_and_load(tmp_path: Any) -> None:
    opt = inject_hyperparams(torchopt_lite.adam)(lr=0.1, betas=(0.9, 0.99))
    state = opt.init(_params())
    torch.save(state, tmp_path / "s.pt")
    loaded = torch.load(tmp_path / "s.pt")
    assert isinstance(loaded, InjectHyperparamsState)
    torch.testing.assert_close(
        loaded.hyperparams["betas"][1], torch.tensor(0.99, dtype=torch.float64)
    )


# -- per-parameter values ------------------------------------------------------------------------


@pytest.mark.parametrize("inplace", [True, False], ids=["inplace", "pure"])
def test_per_parameter_values_give_each_leaf_its_own_optimizer(inplace: bool) -> None:
    """lr and weight decay per leaf: each leaf follows adamw with its own values."""
    lr = {"w": 0.1, "b": 0.02}
    wd = {"w": 0.0, "b": 0.3}
    opt = inject_hyperparams(torchopt_lite.adamw)(lr=lr, betas=(0.8, 0.99), weight_decay=wd)
    got = _run(opt, 4, inplace)
    for name in ("w", "b"):
        alone = torchopt_lite.adamw(lr=lr[name], betas=(0.8, 0.99), weight_decay=wd[name])
        params = {name: _params()[name]}
        state = alone.init(params)
        for k in range(4):
            g = {name: _grads(k)[name]}
            updates, state = alone.update(g, state, params=params, inplace=False)
            params = torchopt_lite.apply_updates(params, updates, inplace=False)
            torch.testing.assert_close(got[k][name], params[name], rtol=1e-12, atol=1e-14)


def test_per_parameter_values_are_differentiable() -> None:
    """gradcheck through two steps w.r.t. per-leaf learning rates and a per-leaf momentum."""

    def two_steps(lr_w: Tensor, lr_b: Tensor, mom_w: Tensor) -> tuple[Tensor, ...]:
        opt = inject_hyperparams(torchopt_lite.sgd)(
            lr={"w": lr_w, "b": lr_b}, momentum={"w": mom_w, "b": 0.5}
        )
        (last,) = _run(opt, 2, inplace=False)[-1:]
        return tuple(optree.tree_leaves(last))

    inputs = tuple(torch.tensor(v, dtype=torch.float64) for v in (0.1, 0.2, 0.9))
    inputs = tuple(x.requires_grad_(True) for x in inputs)
    assert torch.autograd.gradcheck(two_steps, inputs)


def test_per_parameter_state_and_missing_gradients() -> None:
    opt = inject_hyperparams(torchopt_lite.adam)(lr={"w": 0.1, "b": 0.2})
    params = _params()
    state = opt.init(params)
    assert isinstance(state.inner_state, tuple) and len(state.inner_state) == 2
    before = optree.tree_map(torch.clone, state.inner_state[0])  # "b" sorts first
    updates, state = opt.update({"w": _grads(0)["w"], "b": None}, state, params=params)
    assert updates["b"] is None
    for x, y in zip(
        optree.tree_leaves(before), optree.tree_leaves(state.inner_state[0]), strict=True
    ):
        assert torch.equal(x, y)


def test_per_parameter_errors() -> None:
    opt = inject_hyperparams(torchopt_lite.sgd)(lr={"w": 0.1, "b": 0.2})
    with pytest.raises(ValueError, match="lr must have the tree structure of the params"):
        opt.init({"w": torch.ones(2), "b": torch.ones(2), "c": torch.ones(1)})
    with pytest.raises(ValueError, match="Invalid learning rate"):
        inject_hyperparams(torchopt_lite.sgd)(lr={"w": 0.1, "b": -0.2})
    state = opt.init({"w": torch.ones(2), "b": torch.ones(2)})
    with pytest.raises(ValueError, match="one optimizer state per parameter leaf"):
        opt.update({"w": torch.ones(2), "b": torch.ones(2)}, state._replace(inner_state=()))
