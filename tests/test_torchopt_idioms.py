"""Idioms of TorchOpt 0.7.3 programs (its tests, examples and tutorials) that must run here.

Each test is one way a TorchOpt program stopped before issue 11: the call as TorchOpt code makes
it, and the values it must produce.
"""

from __future__ import annotations

import importlib.util

import pytest
import torch
from torch import nn

import torchopt_lite as torchopt
from torchopt_lite import linear_solve
from torchopt_lite.diff.implicit import ImplicitMetaGradientModule
from torchopt_lite.diff.implicit.nn.module import (
    enable_implicit_gradients,
    make_optimality_from_objective,
)
from torchopt_lite.transform import masked, scale

HAS_TORCHOPT = importlib.util.find_spec("torchopt") is not None


# -- chain_flat and the test switch --------------------------------------------------------------
def test_set_use_chain_flat_is_importable_and_checks_its_flag() -> None:
    from torchopt_lite.alias.utils import _get_use_chain_flat, _set_use_chain_flat

    _set_use_chain_flat(False)
    _set_use_chain_flat(True)
    assert _get_use_chain_flat() is True
    with pytest.raises(TypeError, match="use_chain_flat must be a bool; got str"):
        _set_use_chain_flat("yes")  # type: ignore[arg-type]


def test_chain_flat_and_chain_dot_flat_compute_the_chain() -> None:
    assert torchopt.combine.chain.flat is torchopt.combine.chain_flat  # type: ignore[attr-defined]
    params = {"a": torch.ones(2, dtype=torch.float64), "b": torch.ones(3, dtype=torch.float64)}
    grads = {"a": torch.tensor([1.0, -2.0]).double(), "b": torch.arange(3.0).double()}
    results = []
    for make in (torchopt.chain, torchopt.combine.chain_flat, torchopt.combine.chain.flat):  # type: ignore[attr-defined]
        opt = make(torchopt.clip_grad_norm(max_norm=1.0), torchopt.adam(lr=0.1))
        updates, _ = opt.update(grads, opt.init(params), inplace=False)
        results.append(updates)
    for other in results[1:]:
        for key in params:
            torch.testing.assert_close(other[key], results[0][key], rtol=0, atol=0)


def test_empty_chain_is_the_identity() -> None:
    t = torchopt.chain()
    assert t == torchopt.base.identity()
    g = {"w": torch.ones(2)}
    updates, state = t.update(g, t.init(g))
    assert updates is g and state == torchopt.base.EmptyState()


# -- stateless transforms take state=None --------------------------------------------------------
STATELESS = {
    "nan_to_num": lambda: torchopt.nan_to_num(nan=0.0, posinf=1.0, neginf=-1.0),
    "register_hook": lambda: torchopt.register_hook(torchopt.hook.zero_nan_hook),
    "clip_grad_norm": lambda: torchopt.clip_grad_norm(max_norm=10.0),
    "scale": lambda: scale(2.0),
}


@pytest.mark.parametrize("name", sorted(STATELESS))
def test_stateless_transform_accepts_state_none(name: str) -> None:
    t = STATELESS[name]()
    g = (torch.tensor([1.0, float("nan"), float("inf")]),)
    expected, _ = t.update(tuple(x.clone() for x in g), t.init(g), inplace=False)
    updates, state = t.update(g, None, inplace=False)
    assert state is None
    torch.testing.assert_close(updates[0], expected[0], equal_nan=True)


def test_nan_to_num_with_state_none_replaces_values() -> None:
    t = torchopt.nan_to_num(nan=0.0, posinf=1.0, neginf=-1.0)
    updates, _ = t.update((torch.tensor([float("nan"), float("inf"), -float("inf"), 2.0]),), None)
    torch.testing.assert_close(updates[0], torch.tensor([0.0, 1.0, -1.0, 2.0]))


def test_stateful_transform_still_refuses_state_none() -> None:
    opt = torchopt.adam(lr=0.1)
    g = (torch.ones(2),)
    with pytest.raises(ValueError, match="call init"):
        opt.update(g, None)


# -- masked ---------------------------------------------------------------------------------------
def test_masked_defaults_to_every_leaf() -> None:
    g = {"a": torch.ones(1), "b": (torch.ones(1), torch.ones(2))}
    t = masked(scale(3.0))
    updates, _ = t.update(g, t.init(g), inplace=False)
    for x in (updates["a"], *updates["b"]):
        torch.testing.assert_close(x, torch.full_like(x, 3.0))


def test_masked_accepts_a_prefix_of_the_params_tree() -> None:
    g = {"a": torch.ones(1), "b": (torch.ones(1), torch.ones(2))}
    t = masked(scale(0.0), {"a": True, "b": False})  # one flag for the whole subtree "b"
    updates, _ = t.update(g, t.init(g), inplace=False)
    torch.testing.assert_close(updates["a"], torch.zeros(1))
    torch.testing.assert_close(updates["b"][1], torch.ones(2))


def test_masked_rejects_a_mask_that_is_not_a_prefix() -> None:
    g = {"a": torch.ones(1), "b": torch.ones(1)}
    with pytest.raises(ValueError, match="mask must have the tree structure of params or a prefix"):
        masked(scale(0.0), {"a": True, "c": False}).init(g)


# -- linear solves called with the system ---------------------------------------------------------
A = torch.tensor([[3.0, 1.0], [1.0, 2.0]], dtype=torch.float64)
B = torch.tensor([1.0, -1.0], dtype=torch.float64)


@pytest.mark.parametrize(
    "factory", [linear_solve.solve_cg, linear_solve.solve_normal_cg, linear_solve.solve_bicgstab]
)
def test_krylov_solver_with_a_bound_system(factory) -> None:
    """TorchOpt's partial form: bind the system in the factory, call with or without it."""
    solve = factory(matvec=lambda v: A @ v, b=B, ridge=0.5, rtol=1e-12, maxiter=50)
    eye = torch.eye(2, dtype=A.dtype)
    if factory is linear_solve.solve_normal_cg:  # the ridge is added to A^T A
        expected = torch.linalg.solve(A.T @ A + 0.5 * eye, A.T @ B)
    else:
        expected = torch.linalg.solve(A + 0.5 * eye, B)
    torch.testing.assert_close(solve(), expected, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(solve(matvec=lambda v: A @ v, b=B), expected, rtol=1e-9, atol=1e-12)
    again = factory(ridge=0.5, rtol=1e-12, maxiter=50)(lambda v: A @ v, B)
    torch.testing.assert_close(solve(), again, rtol=0, atol=0)
    # what is passed at the call replaces what was bound
    torch.testing.assert_close(solve(b=2 * B), 2 * expected, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("ns", [False, True])
def test_solve_inv_with_a_bound_system(ns: bool) -> None:
    """TorchOpt's test_rr_solve_inv: ``solve_inv(matvec=, b=, ...)(matvec=, b=)``."""
    matvec = (lambda v: 0.5 * A @ v) if ns else (lambda v: A @ v)
    kwargs = {"maxiter": 200} if ns else {}
    solve = linear_solve.solve_inv(matvec=matvec, b=B, ns=ns, **kwargs)
    expected = torch.linalg.solve(0.5 * A if ns else A, B)
    torch.testing.assert_close(solve(matvec=matvec, b=B), expected, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(solve(), expected, rtol=1e-9, atol=1e-9)


def test_solver_options_may_be_overridden_at_the_call() -> None:
    """TorchOpt's partials accept keyword overrides: ``solve_cg()(matvec, b, ridge=1.0)``."""
    solve = linear_solve.solve_cg(rtol=1e-12, maxiter=50)
    x = solve(lambda v: A @ v, B, ridge=1.0)
    expected = torch.linalg.solve(A + torch.eye(2, dtype=A.dtype), B)
    torch.testing.assert_close(x, expected, rtol=1e-9, atol=1e-12)
    with pytest.raises(TypeError, match="unexpected keyword argument 'ridgee'"):
        solve(lambda v: A @ v, B, ridgee=1.0)
    with pytest.raises(ValueError, match="solve_cg: ridge must be >= 0"):
        solve(lambda v: A @ v, B, ridge=-1.0)


@pytest.mark.parametrize("given", ["matvec", "b"])
def test_solver_with_half_a_system_names_the_missing_half(given: str) -> None:
    kwargs = {"matvec": lambda v: A @ v} if given == "matvec" else {"b": B}
    missing = "b" if given == "matvec" else "matvec"
    solve = linear_solve.solve_cg(**kwargs)
    with pytest.raises(TypeError, match=f"solve_cg: the solver has no {missing}; pass it"):
        solve()
    rest = {"b": B} if given == "matvec" else {"matvec": lambda v: A @ v}
    torch.testing.assert_close(solve(**rest), torch.linalg.solve(A, B), rtol=1e-5, atol=1e-6)


# -- ImplicitMetaGradientModule: module-level helpers and non-view solutions ----------------------
class _Ridge(ImplicitMetaGradientModule):
    """min_w 0.5 |X w - y|^2 + 0.5 lam |w|^2, so w* = (X^T X + lam I)^-1 X^T y."""

    def __init__(self, lam: torch.Tensor, n: int) -> None:
        super().__init__()
        self.lam = lam
        self.w = nn.Parameter(torch.zeros(n, dtype=torch.float64))

    def objective(self, X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return 0.5 * ((X @ self.w - y) ** 2).sum() + 0.5 * self.lam * (self.w**2).sum()

    def solve(self, X: torch.Tensor, y: torch.Tensor) -> None:
        n = X.shape[1]
        self.w.copy_(torch.linalg.solve(X.T @ X + self.lam * torch.eye(n, dtype=X.dtype), X.T @ y))


def _ridge_data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(6, 3, generator=g, dtype=torch.float64), torch.randn(
        6, generator=g, dtype=torch.float64
    )


def test_solved_parameters_are_not_views_and_detach_in_place() -> None:
    """TorchOpt's module-form iMAML: solve, outer backward, then ``p.detach_()``, twice."""
    X, y = _ridge_data()
    lam = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)
    inner = _Ridge(lam, 3)
    for _ in range(2):
        inner.solve(X, y)
        assert not any(p._is_view() for p in inner.parameters())
        outer = inner.w.sum()
        outer.backward()
        for p in inner.parameters():
            p.detach_().requires_grad_()
    # d/dlam sum(w*) = -1^T (X^T X + lam I)^-1 w*, accumulated over the two meta-iterations
    H = X.T @ X + lam.detach() * torch.eye(3, dtype=X.dtype)
    w_star = torch.linalg.solve(H, X.T @ y)
    expected = -torch.linalg.solve(H, w_star).sum() * 2
    torch.testing.assert_close(lam.grad, expected, rtol=1e-10, atol=1e-12)


def test_enable_implicit_gradients_refuses_a_class_already_enabled() -> None:
    with pytest.raises(TypeError, match="_Ridge: Implicit gradients are already enabled"):
        enable_implicit_gradients(_Ridge)


def test_make_optimality_from_objective_is_the_objective_gradient() -> None:
    X, y = _ridge_data()
    lam = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)

    class Derived(_Ridge):
        pass

    inner = make_optimality_from_objective(Derived)(lam, 3)
    with torch.no_grad():
        inner.w.copy_(torch.tensor([0.1, -0.2, 0.3], dtype=torch.float64))
    (residual,) = inner.optimality(X, y)
    w = inner.w.detach()
    torch.testing.assert_close(residual, X.T @ (X @ w - y) + lam.detach() * w, rtol=1e-12, atol=0)


@pytest.mark.parametrize("method", ["optimality", "objective"])
def test_implicit_module_methods_must_be_callable(method: str) -> None:
    with pytest.raises(TypeError, match=rf"NotCallable: method {method}\(\) must be callable"):
        type(
            "NotCallable",
            (ImplicitMetaGradientModule,),
            {method: 0, "solve": lambda self: None},
        )


def test_make_optimality_from_objective_needs_an_objective() -> None:
    class OnlyOptimality(ImplicitMetaGradientModule):
        def optimality(self):  # type: ignore[override]
            return ()

        def solve(self) -> None:
            pass

    with pytest.raises(TypeError, match="OnlyOptimality: The objective function is not defined"):
        make_optimality_from_objective(OnlyOptimality)


# -- MetaGradientModule without super().__init__() ------------------------------------------------
@pytest.mark.parametrize(
    "value",
    [
        lambda: torch.ones(1, requires_grad=True),
        lambda: nn.Parameter(torch.ones(1)),
    ],
    ids=["tensor", "parameter"],
)
def test_meta_gradient_module_without_super_init_is_torchs_attribute_error(value) -> None:
    class NoSuper(torchopt.nn.MetaGradientModule):
        def __init__(self) -> None:
            self.x = value()

    with pytest.raises(
        AttributeError, match=r"cannot assign parameters before Module.__init__\(\)"
    ):
        NoSuper()


# -- torch.optim-style classes over non-leaf parameters -------------------------------------------
def test_adam_over_parameters_left_non_leaf_by_a_meta_optimizer() -> None:
    """TorchOpt's tutorial: MetaSGD steps, then ``torchopt.Adam(net.parameters())``."""
    torch.manual_seed(0)
    net = nn.Linear(3, 1).double()
    x = torch.randn(4, 3, dtype=torch.float64)
    torchopt.MetaSGD(net, lr=0.1).step(net(x).pow(2).mean())
    params = list(net.parameters())
    assert not any(p.is_leaf for p in params)
    opt = torchopt.Adam(params, lr=0.01)
    loss = net(x).pow(2).mean()
    opt.zero_grad()
    loss.backward()
    grads = [p.grad.clone() for p in params]
    before = [p.detach().clone() for p in params]
    opt.step()
    # Adam's first step moves each element by lr * g / (|g| + eps).
    for p, b, g in zip(params, before, grads, strict=True):
        torch.testing.assert_close(p.detach(), b - 0.01 * g / (g.abs() + 1e-8), rtol=1e-12, atol=0)


def test_add_param_group_takes_a_params_tree_as_torchopt_does() -> None:
    a, b = nn.Linear(2, 2), nn.Linear(2, 1)
    extra = torch.zeros(3, requires_grad=True)
    opt = torchopt.Adam(a.parameters(), lr=0.1, weight_decay=0.01)
    opt.add_param_group(list(b.parameters()))  # TorchOpt's form: the parameters themselves
    opt.add_param_group(b2 for b2 in [extra])  # a generator
    opt.add_param_group({"w": nn.Parameter(torch.ones(2))})  # a dict of tensors, no "params"
    assert len(opt.param_groups) == 4
    assert [len(g["params"]) for g in opt.param_groups] == [2, 2, 1, 1]
    assert all(g["lr"] == 0.1 and g["weight_decay"] == 0.01 for g in opt.param_groups)
    opt.add_param_group({"params": [nn.Parameter(torch.ones(1))], "lr": 0.5})  # torch.optim's
    assert opt.param_groups[-1]["lr"] == 0.5
    with pytest.raises(TypeError, match="optimizer can only optimize Tensors"):
        opt.add_param_group({"lr": 0.1})  # hyperparameters without params
    assert len(opt.param_groups) == 5


def test_non_leaf_parameters_keep_torch_optims_other_checks() -> None:
    leaf = torch.ones(2, requires_grad=True)
    with pytest.raises(TypeError, match="ordered collections"):
        torchopt.Adam([{"params": {leaf * 2}}], lr=0.1)
    with pytest.raises(ValueError, match="some parameters appear in more than one"):
        torchopt.Adam([{"params": [leaf]}, {"params": [leaf]}], lr=0.1)


# -- in-place weight decay on gradients and parameters that are views made under no_grad -----------
def test_inplace_weight_decay_with_no_grad_views() -> None:
    """The ``make_functional_with_buffers`` + ``autograd.grad`` flow of TorchOpt's tests."""
    torch.manual_seed(0)
    net = nn.Linear(3, 2).double()
    params = tuple(p.detach().requires_grad_() for p in net.parameters())
    loss = torch.func.functional_call(
        net, dict(zip(["weight", "bias"], params, strict=True)), torch.ones(4, 3).double()
    ).sum()
    grads = torch.autograd.grad(loss, params)
    with torch.no_grad():
        views = tuple(p.view_as(p) for p in params)
    reference = [p.detach().clone().requires_grad_() for p in params]
    ref_opt = torch.optim.AdamW(reference, lr=0.1, weight_decay=0.1)
    for r, g in zip(reference, grads, strict=True):
        r.grad = g.clone()
    ref_opt.step()
    opt = torchopt.adamw(lr=0.1, weight_decay=0.1)
    updates, _ = opt.update(grads, opt.init(params), params=views, inplace=True)
    torchopt.apply_updates(params, updates, inplace=True)
    for p, r in zip(params, reference, strict=True):
        torch.testing.assert_close(p.detach(), r.detach(), rtol=1e-12, atol=1e-15)


# -- AdamOp ----------------------------------------------------------------------------------------
def _adam_reference(steps: int) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    grads = [torch.randn(5, generator=g, dtype=torch.float64) for _ in range(steps)]
    t = torchopt.transform.scale_by_adam(b1=0.8, b2=0.95, eps=1e-6, eps_root=1e-9)
    state = t.init(torch.zeros(5, dtype=torch.float64))
    outs = []
    for grad in grads:
        u, state = t.update(grad.clone(), state, inplace=False)
        outs.append(u)
    return grads, torch.stack(outs), state


@pytest.mark.parametrize("inplace", [True, False])
def test_adam_op_equals_scale_by_adam(inplace: bool) -> None:
    grads, expected, state = _adam_reference(3)
    op = torchopt.accelerated_op.AdamOp(b1=0.8, b2=0.95, eps=1e-6, eps_root=1e-9, inplace=inplace)
    mu, nu = torch.zeros(5, dtype=torch.float64), torch.zeros(5, dtype=torch.float64)
    outs = []
    for count, grad in enumerate(grads, start=1):
        mu, nu, u = op(mu, nu, grad.clone(), count)
        outs.append(u)
    torch.testing.assert_close(torch.stack(outs), expected, rtol=1e-13, atol=0)
    torch.testing.assert_close(mu, state.mu[0] if isinstance(state.mu, tuple) else state.mu)


def test_adam_op_out_of_place_is_differentiable() -> None:
    op = torchopt.accelerated_op.adam_op.AdamOp(inplace=False)
    mu = torch.rand(3, dtype=torch.float64, requires_grad=True)
    nu = torch.rand(3, dtype=torch.float64, requires_grad=True)
    g = torch.randn(3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda m, v, x: op(m, v, x, torch.tensor(2)), (mu, nu, g))


def test_adam_op_checks_its_hyperparameters() -> None:
    with pytest.raises(ValueError, match=r"AdamOp: b1 must be in \[0.0, 1.0\); got 1.0"):
        torchopt.accelerated_op.AdamOp(b1=1.0)


@pytest.mark.skipif(not HAS_TORCHOPT, reason="TorchOpt 0.7.3 is the anchor")
def test_adam_op_matches_torchopts() -> None:
    import torchopt as upstream

    grads, _, _ = _adam_reference(3)
    ours = torchopt.accelerated_op.AdamOp(b1=0.8, b2=0.95, eps=1e-6, inplace=False)
    theirs = upstream.accelerated_op.adam_op.AdamOp(b1=0.8, b2=0.95, eps=1e-6, inplace=False)
    state_ours = state_theirs = (torch.zeros(5), torch.zeros(5))
    for count, grad in enumerate(grads, start=1):
        m, v, u = ours(*state_ours, grad.float(), count)
        m2, v2, u2 = theirs(*state_theirs, grad.float(), count)
        state_ours, state_theirs = (m, v), (m2, v2)
        # TorchOpt forms the bias corrections in float32; here in float64 (docs/differences.rst).
        torch.testing.assert_close(u, u2, rtol=1e-6, atol=1e-7)
