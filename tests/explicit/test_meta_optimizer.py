"""MetaOptimizer and the Meta* classes: meta-gradients against hand-unrolled references."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import optree
import pytest
import torch
from torch import Tensor, nn

import torchopt_lite
from torchopt_lite import _dispatch
from torchopt_lite.base import GradientTransformation
from torchopt_lite.optim import meta
from torchopt_lite.optim.meta import MetaOptimizer, MetaSGD

from . import _reference as ref


@pytest.fixture(autouse=True)
def _float64() -> Any:
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


class Case(NamedTuple):
    meta_cls: type[MetaOptimizer]
    kwargs: dict[str, Any]
    step: Callable[..., Any]
    desc: str


CASES = [
    Case(meta.MetaSGD, {"lr": 0.1}, ref.sgd, "plain"),
    Case(meta.MetaSGD, {"lr": 0.1, "maximize": True}, ref.sgd, "plain, maximize"),
    Case(
        meta.MetaSGD,
        {"lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 0.01},
        ref.sgd,
        "nesterov, weight decay",
    ),
    Case(
        meta.MetaSGD,
        {"lr": 0.1, "momentum": 0.9, "dampening": 0.2, "maximize": True},
        ref.sgd,
        "dampened momentum, maximize",
    ),
    Case(meta.MetaAdam, {"lr": 0.05}, ref.adam, "defaults"),
    Case(
        meta.MetaAdam,
        {"lr": 0.05, "weight_decay": 0.1, "maximize": True},
        ref.adam,
        "weight decay, maximize",
    ),
    Case(meta.MetaAdamW, {"lr": 0.05, "weight_decay": 0.1}, ref.adamw, "decoupled decay"),
    Case(meta.MetaRMSProp, {"lr": 0.01}, ref.rmsprop, "defaults"),
    Case(
        meta.MetaRMSProp,
        {"lr": 0.01, "momentum": 0.5, "centered": True, "weight_decay": 0.01},
        ref.rmsprop,
        "centered, momentum",
    ),
    Case(meta.MetaAdaGrad, {"lr": 0.1, "lr_decay": 0.01}, ref.adagrad, "lr decay"),
    Case(meta.MetaAdaDelta, {"lr": 1.0, "weight_decay": 0.01}, ref.adadelta, "weight decay"),
    Case(meta.MetaAdaMax, {"lr": 0.02}, ref.adamax, "defaults"),
    # 7 steps cover both RAdam branches: rho_t <= 5 (steps 1-5) and the rectified one.
    Case(meta.MetaRAdam, {"lr": 0.02}, ref.radam, "both branches"),
]

STEPS = 7
X, Y, XQ, YQ = (
    torch.randn(6, n, generator=torch.Generator().manual_seed(i), dtype=torch.float64)
    for i, n in enumerate((2, 1, 2, 1))
)


def make_net(seed: int = 1) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(2, 3), nn.Tanh(), nn.Linear(3, 1)).double()


def forward(params: list[Tensor], x: Tensor) -> Tensor:
    w1, b1, w2, b2 = params
    return torch.tanh(x @ w1.T + b1) @ w2.T + b2


def inner_loss(params: list[Tensor]) -> Tensor:
    return (forward(params, X) - Y).pow(2).mean()


def outer_loss(params: list[Tensor]) -> Tensor:
    return (forward(params, XQ) - YQ).pow(2).mean()


def meta_unroll(net: nn.Module, opt: MetaOptimizer, steps: int) -> None:
    for _ in range(steps):
        opt.step((net(X) - Y).pow(2).mean())


def snapshot(net: nn.Module) -> list[Tensor]:
    return [p.detach().clone() for p in net.parameters()]


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.meta_cls.__name__}-{c.desc}")
def test_meta_gradient_matches_hand_unrolled_reference(case: Case) -> None:
    net = make_net()
    params0 = list(net.parameters())
    opt = case.meta_cls(net, **case.kwargs)
    meta_unroll(net, opt, STEPS)
    expected = ref.unroll(case.step, case.kwargs, params0, inner_loss, STEPS)
    for got, want in zip(net.parameters(), expected, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-14)
    meta_grad = torch.autograd.grad(outer_loss(list(net.parameters())), params0)
    want_grad = torch.autograd.grad(outer_loss(expected), params0)
    for got, want in zip(meta_grad, want_grad, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-11, atol=1e-13)


@pytest.mark.parametrize("case", [CASES[1], CASES[4]], ids=["sgd", "adam"])
def test_per_tensor_apply_path_matches_reference(
    case: Case, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Groups above the size threshold add updates tensor by tensor instead of with one foreach.
    monkeypatch.setattr("torchopt_lite._dispatch._step._FOREACH_MAX_NUMEL", 0)
    test_meta_gradient_matches_hand_unrolled_reference(case)
    net = make_net()
    opt = case.meta_cls(net, **case.kwargs)
    meta_unroll(net, opt, 1)
    assert type(net[0].weight.grad_fn).__name__ == "AddBackward0"


@pytest.mark.parametrize(
    ("kwargs", "scale"),
    [
        ({"lr": 0.1}, -0.1),
        ({"lr": 0.1, "maximize": True}, 0.1),
        ({"lr": 0.1, "momentum": 0.9}, None),
        ({"lr": 0.1, "weight_decay": 0.01}, None),
        ({"lr": torchopt_lite.schedule.linear_schedule(0.1, 0.01, 10)}, None),
    ],
)
def test_plain_sgd_declares_its_linear_scale(kwargs: dict, scale: float | None) -> None:
    """Only u = scale * g with a constant state may have its scale folded into the backward."""
    plan = torchopt_lite.sgd(**kwargs).leafwise()
    assert plan is not None
    assert _dispatch.linear_scale(plan) == scale


def test_seeded_backward_equals_the_update_path() -> None:
    """The scale folded into the backward seed = the transforms applied to the gradients."""
    a, b = make_net(), make_net()
    params_a, params_b = list(a.parameters()), list(b.parameters())
    plain = torchopt_lite.sgd(lr=0.1)
    unscaled = GradientTransformation(plain.init, plain.update)  # opaque: no scale to fold
    assert unscaled.leafwise() is None
    meta_unroll(a, MetaOptimizer(a, plain), 4)
    meta_unroll(b, MetaOptimizer(b, unscaled), 4)
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-13, atol=1e-15)
    grads_a = torch.autograd.grad(outer_loss(list(a.parameters())), params_a)
    grads_b = torch.autograd.grad(outer_loss(list(b.parameters())), params_b)
    for g, h in zip(grads_a, grads_b, strict=True):
        torch.testing.assert_close(g, h, rtol=1e-12, atol=1e-14)


def test_generic_meta_optimizer_equals_named_one() -> None:
    a, b = make_net(), make_net()
    meta_unroll(a, meta.MetaAdam(a, lr=0.05), 3)
    meta_unroll(b, MetaOptimizer(b, torchopt_lite.adam(lr=0.05, moment_requires_grad=True)), 3)
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=0)


def test_sgd_quadratic_matches_closed_form_hypergradient() -> None:
    # Inner: L(x) = x'Ax/2 - b'x, T steps of SGD with step a: x_T = M^T x_0 + a sum_{k<T} M^k b,
    # M = I - aA. Outer: F = |x_T - c|^2 / 2. dF/dx_0 = (M^T)'(x_T - c) (A symmetric) and
    # dx_T/da = -T A M^{T-1} x_0 + sum_k (M^k b - a k A M^{k-1} b).
    gen = torch.Generator().manual_seed(3)
    q = torch.randn(3, 3, generator=gen)
    a_mat = q @ q.T + torch.eye(3)
    b = torch.randn(3, generator=gen)
    c = torch.randn(3, generator=gen)
    theta0 = torch.randn(3, generator=gen)
    alpha, steps = 0.05, 4

    module = nn.Linear(3, 1, bias=False)
    module.weight = nn.Parameter(theta0.clone().unsqueeze(0))
    lr = torch.tensor(alpha, requires_grad=True)
    opt = MetaSGD(module, lr=lr)
    for _ in range(steps):
        theta = module.weight.squeeze(0)
        opt.step(0.5 * theta @ a_mat @ theta - b @ theta)
    theta_t = module.weight.squeeze(0)
    outer = 0.5 * (theta_t - c).pow(2).sum()
    g_theta0, g_lr = torch.autograd.grad(outer, [opt.param_containers_groups[0][0]["weight"], lr])
    del g_theta0  # the container now holds θ_T; check θ_0 below through a fresh unroll

    eye = torch.eye(3)
    m = eye - alpha * a_mat
    mp = torch.linalg.matrix_power
    theta_closed = mp(m, steps) @ theta0 + alpha * sum(mp(m, k) @ b for k in range(steps))
    torch.testing.assert_close(theta_t.detach(), theta_closed, rtol=1e-12, atol=1e-14)
    dtheta_dalpha = -steps * a_mat @ mp(m, steps - 1) @ theta0 + sum(
        mp(m, k) @ b - (alpha * k * a_mat @ mp(m, k - 1) @ b if k else 0 * b) for k in range(steps)
    )
    torch.testing.assert_close(g_lr, (theta_closed - c) @ dtheta_dalpha, rtol=1e-11, atol=1e-14)

    module.weight = nn.Parameter(theta0.clone().unsqueeze(0))
    w0 = module.weight
    opt = MetaSGD(module, lr=alpha)
    for _ in range(steps):
        theta = module.weight.squeeze(0)
        opt.step(0.5 * theta @ a_mat @ theta - b @ theta)
    outer = 0.5 * (module.weight.squeeze(0) - c).pow(2).sum()
    (g_w0,) = torch.autograd.grad(outer, w0)
    want = mp(m, steps).T @ (theta_closed - c)
    torch.testing.assert_close(g_w0.squeeze(0), want, rtol=1e-11, atol=1e-14)


def test_gradgradcheck_through_two_meta_sgd_steps() -> None:
    x = torch.randn(4, 2, generator=torch.Generator().manual_seed(5))

    def adapted(weight: Tensor, bias: Tensor) -> Tensor:
        net = nn.Linear(2, 1)
        net._parameters["weight"], net._parameters["bias"] = weight, bias
        opt = MetaSGD(net, lr=0.3, momentum=0.5)
        for _ in range(2):
            opt.step(torch.tanh(net(x)).pow(2).mean())
        return torch.tanh(net(x)).sum()

    w = torch.randn(1, 2, requires_grad=True)
    b = torch.randn(1, requires_grad=True)
    assert torch.autograd.gradcheck(adapted, (w, b))
    assert torch.autograd.gradgradcheck(adapted, (w, b))


def test_first_order_equals_fomaml_formula() -> None:
    # FOMAML: the meta-gradient dF(x_T)/dx_0 is replaced by grad F evaluated at x_T; with a
    # learnable step a, x_T = x_0 - a sum_t g_t (constant g_t): dF/da = -grad F(x_T) . sum g_t.
    net = make_net()
    params0 = list(net.parameters())
    lr = torch.tensor(0.1, requires_grad=True)
    opt = MetaSGD(net, lr=lr, first_order=True)
    grads_sum = [torch.zeros_like(p) for p in params0]
    for _ in range(3):
        loss = (net(X) - Y).pow(2).mean()
        grads = torch.autograd.grad(loss, list(net.parameters()), retain_graph=True)
        for acc, g in zip(grads_sum, grads, strict=True):
            acc += g
        opt.step(loss)
    adapted = list(net.parameters())
    assert all(not g.requires_grad for g in grads_sum)
    outer = outer_loss(adapted)
    meta_grad = torch.autograd.grad(outer, [*params0, lr])
    fomaml = torch.autograd.grad(outer_loss(adapted), adapted)
    for got, want in zip(meta_grad[:-1], fomaml, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-13, atol=1e-15)
    want_lr = -sum((f * s).sum() for f, s in zip(fomaml, grads_sum, strict=True))
    torch.testing.assert_close(meta_grad[-1], want_lr, rtol=1e-12, atol=1e-15)


def test_first_order_adam_matches_reference_without_second_order_terms() -> None:
    net = make_net()
    params0 = list(net.parameters())
    meta_unroll(net, meta.MetaAdam(net, lr=0.05, first_order=True), 4)
    expected = ref.unroll(ref.adam, {"lr": 0.05}, params0, inner_loss, 4, first_order=True)
    got = torch.autograd.grad(outer_loss(list(net.parameters())), params0)
    want = torch.autograd.grad(outer_loss(expected), params0)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, rtol=1e-11, atol=1e-14)


def test_truncation_cuts_the_graph_every_k_steps() -> None:
    net = make_net()
    params0 = list(net.parameters())
    lr = torch.tensor(0.1, requires_grad=True)
    opt = MetaSGD(net, lr=lr, momentum=0.5, truncate_every=2)
    meta_unroll(net, opt, 5)  # cuts after steps 2 and 4: the meta-gradient sees step 5 only
    adapted = list(net.parameters())
    assert all(p.grad_fn is not None for p in adapted)
    outer = outer_loss(adapted)
    g_params0 = torch.autograd.grad(outer, params0, retain_graph=True, allow_unused=True)
    assert all(g is None for g in g_params0)
    (g_lr,) = torch.autograd.grad(outer, lr)

    lr_ref = torch.tensor(0.1, requires_grad=True)
    hyper = {"lr": lr_ref, "momentum": 0.5}
    expected = ref.unroll(ref.sgd, hyper, params0, inner_loss, 5, truncate_every=2)
    for got, want in zip(adapted, expected, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-13, atol=1e-15)
    (want_lr,) = torch.autograd.grad(outer_loss(expected), lr_ref)
    torch.testing.assert_close(g_lr, want_lr, rtol=1e-11, atol=1e-15)


def test_truncation_counts_from_recovered_leaves() -> None:
    net = make_net()
    state = torchopt_lite.utils.extract_state_dict(net)
    opt = MetaSGD(net, lr=0.1, truncate_every=3)
    meta_unroll(net, opt, 2)
    torchopt_lite.utils.recover_state_dict(net, state)
    meta_unroll(net, opt, 2)  # a fresh unroll: 2 < 3 steps, so no cut yet
    assert torch.autograd.grad(outer_loss(list(net.parameters())), state.params[0]["weight"])


def graph_size(tensors: list[Tensor]) -> int:
    """Number of autograd nodes reachable from ``tensors`` (what the unrolled graph keeps alive)."""
    seen: set[int] = set()
    stack = [t.grad_fn for t in tensors if t.grad_fn is not None]
    while stack:
        fn = stack.pop()
        if id(fn) not in seen:
            seen.add(id(fn))
            stack.extend(nxt for nxt, _ in fn.next_functions if nxt is not None)
    return len(seen)


def test_truncation_bounds_the_graph() -> None:
    # TorchOpt #218: memory grows with MetaAdam as every step stays linked to the previous ones.
    sizes = {}
    for k in (None, 3):
        net = make_net()
        opt = meta.MetaAdam(net, lr=0.01, truncate_every=k)
        meta_unroll(net, opt, 4)
        small = graph_size([*net.parameters(), *optree.tree_leaves(opt.state_dict())])
        meta_unroll(net, opt, 6)
        large = graph_size([*net.parameters(), *optree.tree_leaves(opt.state_dict())])
        sizes[k] = (small, large)
    assert sizes[3][0] == sizes[3][1]  # steps 4 and 10 are both 1 step after a cut
    assert sizes[None][1] > 2 * sizes[None][0]


def test_learnable_lr_meta_gradient_matches_reference() -> None:
    net = make_net()
    params0 = list(net.parameters())
    lr = torch.tensor(0.05, requires_grad=True)
    meta_unroll(net, meta.MetaAdam(net, lr=lr), 4)
    (got,) = torch.autograd.grad(outer_loss(list(net.parameters())), lr)
    lr_ref = torch.tensor(0.05, requires_grad=True)
    expected = ref.unroll(ref.adam, {"lr": lr_ref}, params0, inner_loss, 4)
    (want,) = torch.autograd.grad(outer_loss(expected), lr_ref)
    torch.testing.assert_close(got, want, rtol=1e-11, atol=1e-15)


def test_param_groups_share_one_gradient_call() -> None:
    a, b = nn.Linear(2, 3), nn.Linear(3, 1)
    whole = nn.Sequential(nn.Linear(2, 3), nn.Linear(3, 1))
    whole.load_state_dict(nn.Sequential(a, b).state_dict())
    opt = meta.MetaAdam(a, lr=0.1)
    opt.add_param_group(b)
    opt_whole = meta.MetaAdam(whole, lr=0.1)
    for _ in range(3):
        opt.step((b(a(X)) - Y).pow(2).mean())
        opt_whole.step((whole(X) - Y).pow(2).mean())
    assert len(opt.state_dict()) == 2
    got = [*a.parameters(), *b.parameters()]
    for p, q in zip(got, whole.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-14, atol=1e-15)


def test_frozen_parameters_are_left_alone() -> None:
    net = make_net()
    net[0].bias.requires_grad_(False)
    frozen = net[0].bias
    opt = meta.MetaAdam(net, lr=0.1)
    meta_unroll(net, opt, 2)
    assert net[0].bias is frozen
    assert net[0].weight.grad_fn is not None


def test_state_dict_round_trip() -> None:
    net = make_net()
    opt = meta.MetaAdam(net, lr=0.1)
    assert isinstance(opt.state_dict()[0], torchopt_lite.base.UninitializedState)
    meta_unroll(net, opt, 1)
    saved = opt.state_dict()
    assert saved[0] is opt.state_groups[0]
    meta_unroll(net, opt, 1)
    opt.load_state_dict(saved)
    assert opt.state_groups[0] is saved[0]


# ---------------------------------------------------------------- errors leave everything as it was


def test_module_without_parameters() -> None:
    with pytest.raises(ValueError, match="MetaOptimizer: module ReLU has no parameters"):
        MetaSGD(nn.ReLU(), lr=0.1)


def test_bad_constructor_arguments() -> None:
    net = make_net()
    with pytest.raises(TypeError, match=r"impl must be a GradientTransformation.*got str"):
        MetaOptimizer(net, "sgd")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="truncate_every must be None or an int >= 1; got 0"):
        MetaSGD(net, lr=0.1, truncate_every=0)
    with pytest.raises(TypeError, match="truncate_every must be None or an int >= 1; got float"):
        MetaSGD(net, lr=0.1, truncate_every=1.5)  # type: ignore[arg-type]


def test_add_param_group_errors_leave_groups_unchanged() -> None:
    net = make_net()
    opt = MetaSGD(net, lr=0.1)
    with pytest.raises(ValueError, match="already in a param group"):
        opt.add_param_group(net[0])
    with pytest.raises(TypeError, match=r"module must be an nn\.Module; got int"):
        opt.add_param_group(3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="has no parameters"):
        opt.add_param_group(nn.Tanh())
    assert len(opt.state_groups) == 1 and len(opt.param_containers_groups) == 1


@pytest.mark.parametrize(
    ("make_loss", "error", "match"),
    [
        (lambda net: net(X) - Y, ValueError, r"loss must be a scalar .* got shape \(6, 1\)"),
        (lambda net: 1.0, TypeError, "loss must be a Tensor; got float"),
        (lambda net: torch.ones(()), ValueError, "loss does not depend on any parameter"),
        (
            lambda net: torch.ones((), requires_grad=True) * 2,
            ValueError,
            "loss does not depend on any parameter",
        ),
    ],
    ids=["non-scalar", "not-a-tensor", "constant", "other-graph"],
)
def test_bad_loss_leaves_module_and_state_unchanged(
    make_loss: Callable[[nn.Module], Any], error: type[Exception], match: str
) -> None:
    net = make_net()
    opt = meta.MetaAdam(net, lr=0.1)
    meta_unroll(net, opt, 1)
    params, state = list(net.parameters()), opt.state_groups[0]
    values = snapshot(net)
    with pytest.raises(error, match=match):
        opt.step(make_loss(net))
    assert all(p is q for p, q in zip(net.parameters(), params, strict=True))
    assert opt.state_groups[0] is state
    for p, v in zip(net.parameters(), values, strict=True):
        torch.testing.assert_close(p.detach(), v, rtol=0, atol=0)


def test_load_state_dict_from_another_module_is_rejected() -> None:
    net = make_net()
    opt = meta.MetaAdam(net, lr=0.1)
    other = nn.Sequential(nn.Linear(2, 4), nn.Tanh(), nn.Linear(4, 1))
    other_opt = meta.MetaAdam(other, lr=0.1)
    other_opt.step((other(X) - Y).pow(2).mean())
    with pytest.raises(
        ValueError,
        match=r"state of group 0 holds \(4,\) torch.float64 where this optimizer holds \(3,\)",
    ):
        opt.load_state_dict(other_opt.state_dict())
    assert isinstance(opt.state_groups[0], torchopt_lite.base.UninitializedState)
    meta_unroll(net, opt, 1)
    state = opt.state_groups[0]
    sgd_net = make_net()
    sgd_opt = MetaSGD(sgd_net, lr=0.1, momentum=0.9)
    sgd_opt.step((sgd_net(X) - Y).pow(2).mean())
    with pytest.raises(ValueError, match="state of group 0 has structure"):
        opt.load_state_dict(sgd_opt.state_dict())
    with pytest.raises(ValueError, match="state_dict has 2 groups but this optimizer has 1"):
        opt.load_state_dict([state, state])
    assert opt.state_groups[0] is state


@pytest.mark.parametrize("case", [CASES[4], CASES[6], CASES[2]], ids=["adam", "adamw", "sgd"])
def test_loss_with_a_sum_term_matches_hand_unrolled_reference(case: Case) -> None:
    """``w.sum()`` in the loss gives stride-0 gradients (autograd expands the seed): the step is
    finite and equals the plain-torch unroll, values and meta-gradient."""

    def loss(params: list[Tensor]) -> Tensor:  # [s, w1, b1, w2, b2]
        return inner_loss(params[1:]) + 0.3 * params[0].sum()

    net = make_net()
    net.register_parameter("s", nn.Parameter(torch.randn(2, 3, dtype=torch.float64)))
    params0 = list(net.parameters())
    (grad_s,) = torch.autograd.grad(loss(params0), params0[:1], create_graph=True)
    assert grad_s.stride() == (0, 0)  # the layout under test
    opt = case.meta_cls(net, **case.kwargs)
    for _ in range(STEPS):
        opt.step(loss(list(net.parameters())))
    expected = ref.unroll(case.step, case.kwargs, params0, loss, STEPS)
    for got, want in zip(net.parameters(), expected, strict=True):
        assert torch.isfinite(got).all()
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-14)
    meta_grad = torch.autograd.grad(outer_loss(list(net.parameters())[1:]), params0[1:])
    want_grad = torch.autograd.grad(outer_loss(expected[1:]), params0[1:])
    for got, want in zip(meta_grad, want_grad, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-11, atol=1e-13)
