"""Projections (torchopt_lite.projections) and keep_params_nonnegative.

Values against plain references (bisection for the simplex threshold) and Optax (float64, where
installed); derivatives against the closed-form Jacobians (also at ties) and gradcheck away from
kinks, in reverse and forward mode; vmap against a loop; errors.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import optree
import pytest
import torch
from torch import Tensor

from torchopt_lite import projections as P
from torchopt_lite.transform.keep_params_nonnegative import keep_params_nonnegative

F64 = torch.float64


def _tree(seed: int, scale: float = 1.0) -> dict[str, Tensor]:
    gen = torch.Generator().manual_seed(seed)
    shapes = {"w": (3, 4), "b": (5,), "s": ()}
    return {k: scale * torch.randn(s, generator=gen, dtype=F64) for k, s in shapes.items()}


def _flat(tree: Any) -> Tensor:
    return torch.cat([x.reshape(-1) for x in optree.tree_leaves(tree)])


def _close(got: Any, expected: Any, rtol: float = 1e-13) -> None:
    assert optree.tree_structure(got) == optree.tree_structure(expected)
    for a, b in zip(optree.tree_leaves(got), optree.tree_leaves(expected), strict=True):
        torch.testing.assert_close(a, b, rtol=rtol, atol=1e-14)


def _optax_projection(name: str, tree: Any, *args: Any) -> Any:
    optax = pytest.importorskip("optax")
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)

    def to_jax(x: Any) -> Any:
        return jax.numpy.asarray(x.numpy()) if isinstance(x, Tensor) else x

    out = getattr(optax.projections, name)(
        optree.tree_map(to_jax, tree), *(optree.tree_map(to_jax, a) for a in args)
    )
    return optree.tree_map(lambda x: torch.from_numpy(np.asarray(x).copy()), out)


# -- references ---------------------------------------------------------------------------------


def _simplex_reference(x: Tensor, scale: float = 1.0) -> Tensor:
    """Bisection on the threshold: sum(max(x - theta, 0)) = scale (no sort)."""
    lo, hi = float(x.min()) - scale, float(x.max())
    for _ in range(200):
        mid = (lo + hi) / 2
        if float(torch.clamp(x - mid, min=0).sum()) > scale:
            lo = mid
        else:
            hi = mid
    return torch.clamp(x - (lo + hi) / 2, min=0)


def _simplex_jacobian(p: Tensor) -> Tensor:
    m = (p > 0).to(p.dtype)
    return torch.diag(m) - torch.outer(m, m) / m.sum()


# -- simplex ------------------------------------------------------------------------------------


@pytest.mark.parametrize("scale", [1.0, 0.3, 7.0])
def test_simplex_values(scale: float) -> None:
    tree = _tree(0)
    got = P.projection_simplex(tree, scale)
    _close(_flat(got), _simplex_reference(_flat(tree), scale), rtol=1e-12)
    torch.testing.assert_close(_flat(got).sum(), torch.tensor(scale, dtype=F64))
    assert (_flat(got) >= 0).all()
    _close(got, _optax_projection("projection_simplex", tree, scale))


def test_simplex_keeps_dtypes_and_a_point_already_on_it() -> None:
    tree = {"a": torch.tensor([0.2, 0.3], dtype=torch.float32), "b": torch.tensor([0.5], dtype=F64)}
    got = P.projection_simplex(tree)
    assert got["a"].dtype == torch.float32 and got["b"].dtype == F64
    _close(got, tree, rtol=1e-6)
    assert P.projection_simplex({}) == {}


@pytest.mark.parametrize(
    "x",
    [
        [0.5, 0.5, 0.5, -1.0],  # ties inside the support
        [1.0, 1.0],  # all tied
        [2.0, 2.0, -3.0, -3.0],  # ties on both sides
        [0.3, -0.2, 1.7, 0.9, 0.9, -4.0],
    ],
)
def test_simplex_jacobian_is_the_closed_form(x: list[float]) -> None:
    v = torch.tensor(x, dtype=F64)
    p = P.projection_simplex(v)
    expected = _simplex_jacobian(p)
    torch.testing.assert_close(torch.func.jacrev(P.projection_simplex)(v), expected)
    torch.testing.assert_close(torch.func.jacfwd(P.projection_simplex)(v), expected)
    (grad,) = torch.autograd.grad(P.projection_simplex(v.requires_grad_()) @ v.detach(), v)
    torch.testing.assert_close(grad, expected @ v.detach())


def test_simplex_gradcheck_away_from_kinks() -> None:
    leaves = [x.requires_grad_() for x in _tree(1).values()]
    scale = torch.tensor(1.5, dtype=F64, requires_grad=True)

    def f(s: Tensor, *xs: Tensor) -> tuple[Tensor, ...]:
        return tuple(P.projection_simplex(list(xs), s))

    assert torch.autograd.gradcheck(f, (scale, *leaves), check_forward_ad=True)
    assert torch.autograd.gradgradcheck(f, (scale, *leaves))


# -- l1 ball and sphere -------------------------------------------------------------------------


@pytest.mark.parametrize("scale", [0.5, 3.0, 100.0])
def test_l1_ball_and_sphere_values(scale: float) -> None:
    tree = _tree(2)
    x = _flat(tree)
    sphere = torch.sign(x) * _simplex_reference(x.abs(), scale)
    ball = x if float(x.abs().sum()) <= scale else sphere
    _close(_flat(P.projection_l1_ball(tree, scale)), ball, rtol=1e-12)
    _close(_flat(P.projection_l1_sphere(tree, scale)), sphere, rtol=1e-12)
    _close(P.projection_l1_ball(tree, scale), _optax_projection("projection_l1_ball", tree, scale))
    _close(
        P.projection_l1_sphere(tree, scale), _optax_projection("projection_l1_sphere", tree, scale)
    )


def test_l1_ball_jacobian_and_gradcheck() -> None:
    x = torch.tensor([1.5, -0.7, 0.2, -2.0, 0.05], dtype=F64)
    p = P.projection_l1_ball(x, 1.0)
    signs = torch.diag(torch.sign(x))
    expected = signs @ _simplex_jacobian(p.abs()) @ signs
    torch.testing.assert_close(
        torch.func.jacrev(lambda v: P.projection_l1_ball(v, 1.0))(x), expected
    )
    inside = torch.func.jacrev(lambda v: P.projection_l1_ball(v, 100.0))(x)
    torch.testing.assert_close(inside, torch.eye(5, dtype=F64))
    scale = torch.tensor(1.0, dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda v, s: P.projection_l1_ball(v, s), (x.requires_grad_(), scale), check_forward_ad=True
    )


# -- l2 ball and sphere, boxes, orthant ---------------------------------------------------------


@pytest.mark.parametrize("scale", [0.5, 100.0])
def test_l2_ball_and_sphere(scale: float) -> None:
    tree = _tree(3)
    norm = torch.linalg.vector_norm(_flat(tree))
    _close(
        P.projection_l2_ball(tree, scale),
        {k: v * scale / max(norm, scale) for k, v in tree.items()},
    )
    _close(P.projection_l2_sphere(tree, scale), {k: v * scale / norm for k, v in tree.items()})
    _close(P.projection_l2_ball(tree, scale), _optax_projection("projection_l2_ball", tree, scale))
    _close(
        P.projection_l2_sphere(tree, scale), _optax_projection("projection_l2_sphere", tree, scale)
    )
    leaves = tuple(v.requires_grad_() for v in tree.values())
    s = torch.tensor(scale, dtype=F64, requires_grad=True)
    for fn in (P.projection_l2_ball, P.projection_l2_sphere):
        assert torch.autograd.gradcheck(lambda c, *xs, fn=fn: tuple(fn(list(xs), c)), (s, *leaves))


def test_l2_ball_complex_leaves() -> None:
    z = torch.tensor([3.0 + 4.0j], dtype=torch.complex128)
    torch.testing.assert_close(P.projection_l2_ball({"z": z})["z"], z / 5.0)


def test_box_hypercube_linf_non_negative() -> None:
    tree = _tree(4, scale=2.0)
    lower = {k: torch.full_like(v, -0.5) for k, v in tree.items()}
    upper = {"w": 1.0, "b": torch.tensor(0.8, dtype=F64), "s": 0.1}
    expected = {k: torch.clamp(v, -0.5, float(upper[k])) for k, v in tree.items()}
    _close(P.projection_box(tree, lower, upper), expected, rtol=0)
    _close(
        P.projection_box(tree, lower, upper),
        _optax_projection("projection_box", tree, lower, upper),
    )
    _close(P.projection_linf_ball(tree, 0.7), _optax_projection("projection_linf_ball", tree, 0.7))
    for x in tree.values():  # Optax broadcasts a number bound over a single array only
        _close(P.projection_box(x, -1.0, 1.0), _optax_projection("projection_box", x, -1.0, 1.0))
        _close(P.projection_hypercube(x), _optax_projection("projection_hypercube", x))
        _close(P.projection_hypercube(x, 0.7), _optax_projection("projection_hypercube", x, 0.7))
    _close(P.projection_hypercube(tree, 0.7), {k: v.clamp(0.0, 0.7) for k, v in tree.items()})
    _close(P.projection_non_negative(tree), _optax_projection("projection_non_negative", tree))
    _close(P.projection_non_negative(tree), {k: torch.clamp(v, min=0) for k, v in tree.items()})


def test_box_gradcheck_in_tree_and_bounds() -> None:
    x = torch.tensor([-2.0, -0.3, 0.4, 3.0], dtype=F64, requires_grad=True)
    lo = torch.tensor(-1.0, dtype=F64, requires_grad=True)
    hi = torch.tensor([1.0, 1.0, 2.0, 2.5], dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(P.projection_box, (x, lo, hi), check_forward_ad=True)
    assert torch.autograd.gradcheck(lambda v: P.projection_linf_ball(v, 1.5), (x,))


@pytest.mark.parametrize("b", [-3.0, 0.5, 40.0])
def test_vector_hyperplane_halfspace(b: float) -> None:
    x, a = _tree(7), _tree(8)
    fx, fa = _flat(x), _flat(a)
    step = (b - fx @ fa) / (fa @ fa)
    _close(_flat(P.projection_vector(x, a)), (fx @ fa) / (fa @ fa) * fa)
    _close(_flat(P.projection_hyperplane(x, a, b)), fx + step * fa)
    _close(_flat(P.projection_halfspace(x, a, b)), fx + min(float(step), 0.0) * fa)
    torch.testing.assert_close(
        _flat(P.projection_hyperplane(x, a, b)) @ fa, torch.tensor(b, dtype=F64)
    )
    _close(P.projection_vector(x, a), _optax_projection("projection_vector", x, a))
    for name in ("projection_hyperplane", "projection_halfspace"):
        _close(getattr(P, name)(x, a, b), _optax_projection(name, x, a, b))
    leaves = [v.requires_grad_() for v in (fx, fa)]
    bt = torch.tensor(b, dtype=F64, requires_grad=True)
    for fn in (P.projection_hyperplane, P.projection_halfspace):
        assert torch.autograd.gradcheck(fn, (*leaves, bt), check_forward_ad=True)
    assert torch.autograd.gradcheck(P.projection_vector, tuple(leaves))


@pytest.mark.parametrize(
    "fn",
    [
        P.projection_vector,
        lambda x, a: P.projection_hyperplane(x, a, 1.0),
        lambda x, a: P.projection_halfspace(x, a, 1.0),
    ],
)
def test_vector_projections_need_one_structure(fn: Callable[[Any, Any], Any]) -> None:
    with pytest.raises(ValueError, match="x and a must have the same tree structure"):
        fn({"a": torch.ones(2)}, {"b": torch.ones(2)})


# -- vmap ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fn",
    [
        P.projection_simplex,
        P.projection_l1_ball,
        P.projection_l1_sphere,
        P.projection_l2_ball,
        P.projection_l2_sphere,
        P.projection_non_negative,
        P.projection_hypercube,
        P.projection_linf_ball,
    ],
    ids=lambda fn: fn.__name__,
)
def test_vmap_matches_a_loop(fn: Callable[[Any], Any]) -> None:
    trees = [_tree(s, scale=1.5) for s in range(4)]
    batch = optree.tree_map(lambda *xs: torch.stack(xs), *trees)
    got = torch.func.vmap(fn)(batch)
    for i, tree in enumerate(trees):
        _close(optree.tree_map(lambda x, i=i: x[i], got), fn(tree))
    if fn in (P.projection_simplex, P.projection_l1_ball):  # batched closed-form Jacobians
        xs = torch.stack([_flat(t) for t in trees])
        jac = torch.func.vmap(torch.func.jacrev(fn))(xs)
        for i in range(4):
            torch.testing.assert_close(jac[i], torch.func.jacrev(fn)(xs[i]))


# -- errors -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fn",
    [
        P.projection_simplex,
        P.projection_l1_ball,
        P.projection_l1_sphere,
        P.projection_non_negative,
        lambda t: P.projection_box(t, 0.0, 1.0),
    ],
)
def test_complex_leaves_are_rejected(fn: Callable[[Any], Any]) -> None:
    with pytest.raises(TypeError, match="every leaf must be a real floating-point tensor"):
        fn({"z": torch.ones(2, dtype=torch.complex128)})


def test_scale_errors() -> None:
    x = torch.ones(2)
    for fn in (P.projection_simplex, P.projection_l1_ball, P.projection_l1_sphere):
        with pytest.raises(ValueError, match=f"{fn.__name__}: scale must be > 0; got 0"):
            fn(x, 0)
    with pytest.raises(ValueError, match=r"projection_l2_ball: scale must be > 0; got -1\.0"):
        P.projection_l2_ball(x, -1.0)


def test_box_bound_structure_error() -> None:
    with pytest.raises(ValueError, match="projection_box: lower must be a number, a tensor or"):
        P.projection_box({"a": torch.ones(2)}, {"b": 0.0}, 1.0)


# -- keep_params_nonnegative --------------------------------------------------------------------


@pytest.mark.parametrize("inplace", [True, False], ids=["inplace", "pure"])
def test_keep_params_nonnegative(inplace: bool) -> None:
    p = {k: v.abs() for k, v in _tree(5).items()}
    p["b"][0] = -0.1  # already negative: moved to zero
    u = _tree(6, scale=2.0)
    expected = {k: torch.where(p[k] + u[k] < 0, -p[k], u[k]) for k in u}
    t = keep_params_nonnegative()
    before = {k: v.clone() for k, v in u.items()}
    out, _ = t.update({k: v.clone() for k, v in u.items()} if inplace else u, t.init(p),
                      params=p, inplace=inplace)  # fmt: skip
    _close(out, expected, rtol=0)
    _close(u, before, rtol=0)
    assert all((p[k] + out[k] >= 0).all() for k in p)
    optax = pytest.importorskip("optax")
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)
    ot = optax.keep_params_nonnegative()
    jp, ju = ({k: jax.numpy.asarray(v.numpy()) for k, v in d.items()} for d in (p, u))
    theirs, _ = ot.update(ju, ot.init(jp), jp)
    _close(out, {k: torch.from_numpy(np.asarray(v).copy()) for k, v in theirs.items()}, rtol=0)


def test_keep_params_nonnegative_gradcheck_vmap_and_errors() -> None:
    t = keep_params_nonnegative()
    p = torch.tensor([1.0, 2.0, 0.5], dtype=F64, requires_grad=True)
    u = torch.tensor([-3.0, 0.5, -0.2], dtype=F64, requires_grad=True)

    def step(g: Tensor, q: Tensor) -> Tensor:
        return t.update(g, None, params=q, inplace=False)[0]

    assert torch.autograd.gradcheck(step, (u, p))
    ps, us = torch.rand(4, 3, dtype=F64), torch.randn(4, 3, dtype=F64)
    got = torch.func.vmap(step)(us, ps)
    torch.testing.assert_close(got, torch.where(ps + us < 0, -ps, us), rtol=0, atol=0)
    with pytest.raises(ValueError, match="keep_params_nonnegative: params must be passed"):
        t.update(u, t.init(p))
