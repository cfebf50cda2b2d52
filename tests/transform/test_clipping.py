"""Clipping: clip, clip_by_global_norm, clip_by_block_rms, adaptive_grad_clip, per-example clips.

Each transform against a plain per-leaf reference (always) and Optax on the same inputs (float64,
where optax is installed), in place and out of place; gradcheck out of place; vmap; errors.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from torch import Tensor

import torchopt_lite
from torchopt_lite.transform.adaptive_grad_clip import adaptive_grad_clip
from torchopt_lite.transform.clipping import clip, clip_by_block_rms, clip_by_global_norm
from torchopt_lite.transform.per_example_clip import (
    per_example_global_norm_clip,
    per_example_layer_norm_clip,
)

F64 = torch.float64
Tree = dict[str, Tensor]


def _tree(seed: int, scale: float = 1.0) -> Tree:
    gen = torch.Generator().manual_seed(seed)
    shapes = {"w": (3, 4), "b": (5,), "s": ()}
    return {k: scale * torch.randn(s, generator=gen, dtype=F64) for k, s in shapes.items()}


def _clone(tree: Tree) -> Tree:
    return {k: v.clone() for k, v in tree.items()}


def _close(got: Tree, expected: Tree, rtol: float = 1e-13) -> None:
    assert got.keys() == expected.keys()
    for k in got:
        torch.testing.assert_close(got[k], expected[k], rtol=rtol, atol=1e-15)


def _run(t: Any, g: Tree, params: Tree | None, inplace: bool) -> Tree:
    """One update; out of place, the inputs must come back untouched."""
    before = _clone(g)
    out, _ = t.update(_clone(g) if inplace else g, t.init(g), params=params, inplace=inplace)
    if not inplace:
        _close(g, before, rtol=0)
    return out


def _optax(name: str, *args: Any, **kwargs: Any) -> Callable[[Tree, Tree | None], Tree]:
    """``optax.<name>(...)``'s update as a function of torch trees (jax x64)."""
    optax = pytest.importorskip("optax")
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)
    t = getattr(optax, name)(*args, **kwargs)

    def update(g: Tree, params: Tree | None = None) -> Tree:
        jg = {k: jax.numpy.asarray(v.numpy()) for k, v in g.items()}
        jp = (
            None if params is None else {k: jax.numpy.asarray(v.numpy()) for k, v in params.items()}
        )
        out, _ = t.update(jg, t.init(jg), jp)
        return {k: torch.from_numpy(np.asarray(v).copy()) for k, v in out.items()}

    return update


INPLACE = pytest.mark.parametrize("inplace", [True, False], ids=["inplace", "pure"])


# -- clip ---------------------------------------------------------------------------------------


@INPLACE
@pytest.mark.parametrize("max_delta", [0.0, 0.5, 10.0])
def test_clip_reference(max_delta: float, inplace: bool) -> None:
    g = _tree(1)
    out = _run(clip(max_delta), g, None, inplace)
    _close(out, {k: torch.clamp(v, -max_delta, max_delta) for k, v in g.items()}, rtol=0)


@pytest.mark.parametrize("max_delta", [0.0, 0.5, 10.0])
def test_clip_matches_optax(max_delta: float) -> None:
    g = _tree(1)
    _close(_run(clip(max_delta), g, None, False), _optax("clip", max_delta)(g), rtol=0)


@INPLACE
def test_clip_tensor_bound(inplace: bool) -> None:
    g = _tree(1)
    bound = torch.tensor(0.5, dtype=F64)
    out = _run(clip(bound), g, None, inplace)
    _close(out, {k: torch.clamp(v, -0.5, 0.5) for k, v in g.items()}, rtol=0)


def test_clip_gradcheck_in_grads_and_bound() -> None:
    g = _tree(2)
    t = clip(0.5)

    def f(w: Tensor, b: Tensor, bound: Tensor) -> tuple[Tensor, ...]:
        out, _ = clip(bound).update({"w": w, "b": b}, None, inplace=False)
        return out["w"], out["b"]

    bound = torch.tensor(0.7, dtype=F64, requires_grad=True)
    inputs = (g["w"].requires_grad_(), g["b"].requires_grad_(), bound)
    assert torch.autograd.gradcheck(f, inputs)
    assert t.init(g) == torchopt_lite.base.EmptyState()


def test_clip_complex_clips_parts() -> None:
    z = torch.tensor([3.0 - 0.2j, -0.1 + 5.0j], dtype=torch.complex128)
    out, _ = clip(1.0).update(z.clone(), None)
    torch.testing.assert_close(out, torch.tensor([1.0 - 0.2j, -0.1 + 1.0j], dtype=z.dtype))


# -- clip_by_global_norm ------------------------------------------------------------------------


def _global_norm(g: Tree) -> Tensor:
    return torch.sqrt(sum((v * v).sum() for v in g.values()))


@INPLACE
@pytest.mark.parametrize("max_norm", [0.5, 1e3])
def test_clip_by_global_norm_reference(max_norm: float, inplace: bool) -> None:
    g = _tree(3)
    norm = _global_norm(g)
    coef = max_norm / norm if norm > max_norm else 1.0
    _close(
        _run(clip_by_global_norm(max_norm), g, None, inplace), {k: v * coef for k, v in g.items()}
    )


@pytest.mark.parametrize("max_norm", [0.0, 0.5, 1e3])
def test_clip_by_global_norm_matches_optax(max_norm: float) -> None:
    g = _tree(3)
    expected = _optax("clip_by_global_norm", max_norm)(g)
    _close(_run(clip_by_global_norm(max_norm), g, None, False), expected, rtol=1e-14)


def test_clip_by_global_norm_leaves_small_updates_exactly() -> None:
    """Unlike clip_grad_norm (coefficient c / (norm + 1e-6)), nothing changes below the bound."""
    g = _tree(3)
    big = float(_global_norm(g)) * 2
    out = _run(clip_by_global_norm(big), g, None, False)
    _close(out, g, rtol=0)
    legacy = _run(torchopt_lite.clip_grad_norm(float(_global_norm(g))), g, None, False)
    assert not torch.equal(legacy["w"], g["w"])  # the +1e-6 shrinks it


def test_clip_by_global_norm_zero_updates_no_nan() -> None:
    g = {k: torch.zeros_like(v) for k, v in _tree(0).items()}
    out = _run(clip_by_global_norm(0.0), g, None, False)
    _close(out, g, rtol=0)


def test_clip_by_global_norm_gradcheck() -> None:
    g = _tree(4)
    names = list(g)

    def f(bound: Tensor, *leaves: Tensor) -> tuple[Tensor, ...]:
        out, _ = clip_by_global_norm(bound).update(
            dict(zip(names, leaves, strict=True)), None, inplace=False
        )
        return tuple(out[k] for k in names)

    for max_norm in (0.5, 100.0):  # clipped, and not clipped
        bound = torch.tensor(max_norm, dtype=F64, requires_grad=True)
        leaves = [v.clone().requires_grad_() for v in g.values()]
        assert torch.autograd.gradcheck(f, (bound, *leaves))


def test_clip_by_global_norm_complex_norm() -> None:
    z = torch.tensor([3.0 + 4.0j], dtype=torch.complex128)
    out, _ = clip_by_global_norm(1.0).update({"z": z.clone()}, None)
    torch.testing.assert_close(out["z"], z / 5.0)


# -- clip_by_block_rms --------------------------------------------------------------------------


def _block_rms_reference(g: Tree, threshold: float) -> Tree:
    out = {}
    for k, v in g.items():
        rms = torch.sqrt(torch.mean(v * v))
        out[k] = v / torch.clamp(rms / threshold, min=1.0)
    return out


@INPLACE
@pytest.mark.parametrize("threshold", [0.1, 0.9, 100.0])
def test_clip_by_block_rms_reference(threshold: float, inplace: bool) -> None:
    g = _tree(5)
    out = _run(clip_by_block_rms(threshold), g, None, inplace)
    _close(out, _block_rms_reference(g, threshold))


@pytest.mark.parametrize("threshold", [0.1, 0.9, 100.0])
def test_clip_by_block_rms_matches_optax(threshold: float) -> None:
    g = _tree(5)
    expected = _optax("clip_by_block_rms", threshold)(g)
    _close(_run(clip_by_block_rms(threshold), g, None, False), expected)


def test_clip_by_block_rms_gradcheck() -> None:
    g = _tree(5)
    names = list(g)

    def f(*leaves: Tensor) -> tuple[Tensor, ...]:
        out, _ = clip_by_block_rms(0.9).update(
            dict(zip(names, leaves, strict=True)), None, inplace=False
        )
        return tuple(out[k] for k in names)

    assert torch.autograd.gradcheck(f, tuple(v.clone().requires_grad_() for v in g.values()))


def test_clip_by_block_rms_empty_leaf() -> None:
    g = {"e": torch.zeros(0, dtype=F64), "a": torch.tensor([3.0, -3.0], dtype=F64)}
    out = _run(clip_by_block_rms(1.0), g, None, False)
    assert out["e"].shape == (0,)
    torch.testing.assert_close(out["a"], torch.tensor([1.0, -1.0], dtype=F64))


# -- adaptive_grad_clip -------------------------------------------------------------------------


def _agc_reference(g: Tree, p: Tree, clipping: float, eps: float) -> Tree:
    """Per unit (a row of a matrix, the whole of a vector or scalar), in a Python loop."""
    out = {}
    for k, u in g.items():
        rows_u = u.reshape(u.shape[0], -1) if u.ndim >= 2 else u.reshape(1, -1)
        rows_p = p[k].reshape(rows_u.shape)
        res = []
        for ru, rp in zip(rows_u, rows_p, strict=True):
            bound = clipping * max(float(rp.norm()), eps)
            gn = float(ru.norm())
            res.append(ru if gn < bound else ru * (bound / max(gn, 1e-6)))
        out[k] = torch.stack(res).reshape(u.shape)
    return out


AGC_CASES = [(0.05, 1e-3), (0.5, 1e-3), (10.0, 1e-3), (0.3, 10.0)]


@INPLACE
@pytest.mark.parametrize(("clipping", "eps"), AGC_CASES)
def test_adaptive_grad_clip_reference(clipping: float, eps: float, inplace: bool) -> None:
    g, p = _tree(6), _tree(7)
    out = _run(adaptive_grad_clip(clipping, eps), g, p, inplace)
    _close(out, _agc_reference(g, p, clipping, eps))


@pytest.mark.parametrize(("clipping", "eps"), AGC_CASES)
def test_adaptive_grad_clip_matches_optax_same_axis(clipping: float, eps: float) -> None:
    g, p = _tree(6), _tree(7)
    g, p = {"w": g["w"]}, {"w": p["w"]}  # one axis for every leaf: take the matrix
    for axis in (0, 1, (0, 1)):
        expected = _optax("adaptive_grad_clip", clipping, eps, axis=axis)(g, p)
        _close(_run(adaptive_grad_clip(clipping, eps, axis=axis), g, p, False), expected)


@pytest.mark.parametrize(("clipping", "eps"), AGC_CASES)
def test_adaptive_grad_clip_default_units_are_optaxs_on_jax_layouts(
    clipping: float, eps: float
) -> None:
    """Torch (out, in) and (O, I, H, W) get the units Optax gives (in, out) and HWIO."""
    gen = torch.Generator().manual_seed(8)
    shapes = {"w": (4, 3), "k": (4, 2, 3, 3), "b": (5,), "s": ()}
    g = {k: torch.randn(s, generator=gen, dtype=F64) for k, s in shapes.items()}
    p = {k: torch.randn(s, generator=gen, dtype=F64) for k, s in shapes.items()}

    def to_jax(t: Tree) -> Tree:
        return {k: v.t() if v.ndim == 2 else v.permute(2, 3, 1, 0) if v.ndim == 4 else v
                for k, v in t.items()}  # fmt: skip

    expected = _optax("adaptive_grad_clip", clipping, eps)(to_jax(g), to_jax(p))
    got = _run(adaptive_grad_clip(clipping, eps), g, p, False)
    _close(to_jax(got), {k: v.contiguous() for k, v in expected.items()})


def test_adaptive_grad_clip_gradcheck_in_grads_and_params() -> None:
    g, p = _tree(6), _tree(7)
    names = list(g)

    def f(*leaves: Tensor) -> tuple[Tensor, ...]:
        gs, ps = (
            dict(zip(names, leaves[:3], strict=True)),
            dict(zip(names, leaves[3:], strict=True)),
        )
        out, _ = adaptive_grad_clip(0.3).update(gs, None, params=ps, inplace=False)
        return tuple(out[k] for k in names)

    leaves = [v.clone().requires_grad_() for v in [*g.values(), *p.values()]]
    assert torch.autograd.gradcheck(f, tuple(leaves))


def test_adaptive_grad_clip_needs_params() -> None:
    g = _tree(6)
    t = adaptive_grad_clip(0.1)
    with pytest.raises(ValueError, match="adaptive_grad_clip: params must be passed"):
        t.update(g, t.init(g))


# -- complex leaves, construction errors ----------------------------------------------------------


@pytest.mark.parametrize(
    "make", [lambda: clip_by_block_rms(1.0), lambda: adaptive_grad_clip(0.1)], ids=["rms", "agc"]
)
def test_shape_aware_clips_reject_complex_before_writing(make: Callable[[], Any]) -> None:
    t = make()
    g = {"z": torch.randn(3, 2, dtype=torch.complex128), "r": torch.randn(2, dtype=F64)}
    before = _clone(g)
    with pytest.raises(ValueError, match="complex leaves are not supported"):
        t.init(g)
    state = t.init({"z": torch.zeros(3, 2, dtype=F64), "r": torch.zeros(2, dtype=F64)})
    with pytest.raises(ValueError, match="complex leaves are not supported"):
        t.update(g, state, params=_clone(g), inplace=True)
    _close(g, before, rtol=0)
    p = torch.nn.Parameter(torch.randn(3, 2, dtype=torch.complex128))
    opt = torchopt_lite.optim.base.Optimizer([p], torchopt_lite.chain(t, torchopt_lite.sgd(0.1)))
    p.grad = torch.ones_like(p)
    value = p.detach().clone()
    with pytest.raises(ValueError, match="complex leaves are not supported"):
        opt.step()  # the torch.optim-style class trusts its state: init is where it is caught
    torch.testing.assert_close(p.detach(), value, rtol=0, atol=0)


def test_construction_errors() -> None:
    with pytest.raises(ValueError, match=r"clip_by_block_rms: threshold must be > 0; got 0\.0"):
        clip_by_block_rms(0.0)
    with pytest.raises(TypeError, match="clip_by_block_rms: threshold must be a float"):
        clip_by_block_rms("1")  # type: ignore[arg-type]  # the error under test
    with pytest.raises(ValueError, match="clip: Invalid max_delta value"):
        clip(-1.0)
    with pytest.raises(ValueError, match="clip_by_global_norm: Invalid max_norm value"):
        clip_by_global_norm(-1.0)
    with pytest.raises(ValueError, match="adaptive_grad_clip: Invalid epsilon value"):
        adaptive_grad_clip(0.1, eps=-1.0)


# -- vmap ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        lambda: clip(0.5),
        lambda: clip_by_global_norm(0.5),
        lambda: clip_by_block_rms(0.5),
        lambda: adaptive_grad_clip(0.2),
    ],
    ids=["clip", "global_norm", "block_rms", "agc"],
)
def test_vmap_matches_a_loop(make: Callable[[], Any]) -> None:
    """Out of place under torch.func.vmap (the per-leaf ops), one batch element at a time."""
    t = make()
    gs = {k: torch.stack([_tree(s)[k] for s in range(4)]) for k in _tree(0)}
    ps = {k: torch.stack([_tree(10 + s)[k] for s in range(4)]) for k in _tree(0)}

    def step(g: Tree, p: Tree) -> Tree:
        return t.update(g, t.init(g), params=p, inplace=False)[0]

    got = torch.func.vmap(step)(_clone(gs), ps)
    for i in range(4):
        one = step({k: v[i].clone() for k, v in gs.items()}, {k: v[i] for k, v in ps.items()})
        _close({k: v[i] for k, v in got.items()}, one)


# -- per-example clipping -----------------------------------------------------------------------


def _per_example(seed: int) -> list[Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(6, *s, generator=gen, dtype=F64) for s in [(3, 4), (5,), ()]]


def _global_clip_reference(grads: list[Tensor], c: float) -> tuple[list[Tensor], int]:
    sums = [torch.zeros_like(x[0]) for x in grads]
    clipped = 0
    for b in range(grads[0].shape[0]):
        norm = math.sqrt(sum(float((x[b] ** 2).sum()) for x in grads))
        m = min(1.0, c / norm) if norm > 0 else 1.0
        clipped += m < 1.0
        sums = [s + m * x[b] for s, x in zip(sums, grads, strict=True)]
    return sums, clipped


@pytest.mark.parametrize("c", [0.0, 1.0, 3.0, math.inf])
def test_per_example_global_norm_clip_reference_and_optax(c: float) -> None:
    grads = _per_example(0)
    got, count = per_example_global_norm_clip(grads, c)
    expected, n = _global_clip_reference(grads, c)
    for a, b in zip(got, expected, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-13, atol=1e-15)
    assert count.dtype == torch.int64 and int(count) == n
    optax = pytest.importorskip("optax")
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)
    theirs, their_count = optax.per_example_global_norm_clip(
        [jax.numpy.asarray(x.numpy()) for x in grads], c
    )
    for a, b in zip(got, theirs, strict=True):
        torch.testing.assert_close(
            a, torch.from_numpy(np.asarray(b).copy()), rtol=1e-13, atol=1e-15
        )
    assert int(count) == int(their_count)


@pytest.mark.parametrize("uniform", [True, False])
@pytest.mark.parametrize("c", [0.5, 2.0, math.inf])
def test_per_example_layer_norm_clip_reference_and_optax(c: float, uniform: bool) -> None:
    grads = _per_example(1)
    got, counts = per_example_layer_norm_clip(grads, c, uniform=uniform)
    sizes = [x[0].numel() for x in grads]
    for x, size, s, n in zip(grads, sizes, got, counts, strict=True):
        bound = c / math.sqrt(len(grads)) if uniform else c * math.sqrt(size / sum(sizes))
        expected, clipped = _global_clip_reference([x], bound)
        torch.testing.assert_close(s, expected[0], rtol=1e-13, atol=1e-15)
        assert int(n) == clipped
    optax = pytest.importorskip("optax")
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)
    theirs, their_counts = optax.per_example_layer_norm_clip(
        [jax.numpy.asarray(x.numpy()) for x in grads], c, uniform=uniform
    )
    for a, b, n, m in zip(got, theirs, counts, their_counts, strict=True):
        torch.testing.assert_close(
            a, torch.from_numpy(np.asarray(b).copy()), rtol=1e-13, atol=1e-15
        )
        assert int(n) == int(m)


def test_per_example_clips_keep_the_tree() -> None:
    grads = {"a": torch.ones(3, 2, dtype=F64), "b": (torch.zeros(3, dtype=F64),)}
    summed, count = per_example_global_norm_clip(grads, 1.0)
    assert summed["a"].shape == (2,) and summed["b"][0].shape == ()
    torch.testing.assert_close(summed["a"], torch.full((2,), 3 / math.sqrt(2), dtype=F64))
    assert int(count) == 3
    summed, counts = per_example_layer_norm_clip(grads, 1.0)
    assert int(counts["a"]) == 3 and int(counts["b"][0]) == 0


def test_per_example_global_norm_clip_gradcheck() -> None:
    grads = [x.requires_grad_() for x in _per_example(2)]
    bound = torch.tensor(2.0, dtype=F64, requires_grad=True)

    def f(c: Tensor, *xs: Tensor) -> tuple[Tensor, ...]:
        return tuple(per_example_global_norm_clip(list(xs), c)[0])

    def g(c: Tensor, *xs: Tensor) -> tuple[Tensor, ...]:
        return tuple(per_example_layer_norm_clip(list(xs), c, uniform=False)[0])

    assert torch.autograd.gradcheck(f, (bound, *grads))
    assert torch.autograd.gradcheck(g, (bound, *grads))


def test_per_example_zero_gradients_have_finite_derivatives() -> None:
    x = torch.zeros(3, 2, dtype=F64, requires_grad=True)
    summed, _ = per_example_global_norm_clip([x], 0.0)
    summed[0].sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


@pytest.mark.parametrize(
    "fn", [per_example_global_norm_clip, per_example_layer_norm_clip], ids=["global", "layer"]
)
def test_per_example_errors(fn: Callable[..., Any]) -> None:
    name = fn.__name__
    with pytest.raises(ValueError, match=f"{name}: every leaf of grads must have the same batch"):
        fn([torch.ones(3, 2), torch.ones(4)], 1.0)
    with pytest.raises(ValueError, match=f"{name}: every leaf of grads must have the same batch"):
        fn([torch.tensor(1.0)], 1.0)
    with pytest.raises(ValueError, match=f"{name}: grads must have at least one leaf"):
        fn([], 1.0)
    with pytest.raises(ValueError, match=f"{name}: Invalid"):
        fn([torch.ones(3)], -1.0)


# -- the ops added for these transforms, in all four renderings --------------------------------


@pytest.mark.parametrize(
    "ops_name", ["FOREACH_PURE", "FOREACH_INPLACE", "LEAF_PURE", "LEAF_INPLACE"]
)
@pytest.mark.parametrize("bound", [0.5, torch.tensor(0.5, dtype=F64)], ids=["float", "tensor"])
def test_ops_clamp_and_select(ops_name: str, bound: Any) -> None:
    from torchopt_lite import _ops

    ops = getattr(_ops, ops_name)
    xs = list(_tree(9).values())
    ys = list(_tree(10).values())
    conds = [x > y for x, y in zip(xs, ys, strict=True)]
    expected_clamp = [torch.clamp(x, -0.5, 0.5) for x in xs]
    expected_select = [torch.where(c, y, x) for x, c, y in zip(xs, conds, ys, strict=True)]
    for op, expected in (
        (lambda a: ops.clamp(a, -bound, bound), expected_clamp),
        (lambda a: ops.select(a, conds, ys), expected_select),
    ):
        inputs = [x.clone() for x in xs]
        out = op(inputs)
        for o, e, i, x in zip(out, expected, inputs, xs, strict=True):
            torch.testing.assert_close(o, e, rtol=0, atol=0)
            assert (o is i) == ops.inplace  # in place: the inputs themselves
            if not ops.inplace:
                torch.testing.assert_close(i, x, rtol=0, atol=0)


# -- tensor hyperparameters: injected, learned, batched --------------------------------------------

HYPER = [
    (clip, {"max_delta": 0.5}),
    (clip_by_global_norm, {"max_norm": 0.5}),
    (clip_by_block_rms, {"threshold": 0.5}),
    (adaptive_grad_clip, {"clipping": 0.1, "eps": 1e-3}),
]


@pytest.mark.parametrize(("factory", "kwargs"), HYPER, ids=lambda x: getattr(x, "__name__", ""))
def test_tensor_hyperparameters(factory: Callable[..., Any], kwargs: dict[str, float]) -> None:
    from torchopt_lite.transform.inject_hyperparams import inject_hyperparams

    g, p = _tree(11), _tree(12)
    expected = _run(factory(**kwargs), g, p, False)
    t = inject_hyperparams(factory)(**kwargs)
    for inplace in (True, False):
        _close(_run(t, g, p, inplace), expected)
    name, value = next(iter(kwargs.items()))
    rest = {k: v for k, v in kwargs.items() if k != name}
    values = torch.tensor([0.1 * value, value, 10 * value], dtype=F64)
    batched = torch.func.vmap(
        lambda h: factory(**{name: h}, **rest).update(g, None, params=p, inplace=False)[0]
    )(values)
    for i, h in enumerate(values.tolist()):
        one = _run(factory(**{name: h}, **rest), g, p, False)
        _close({k: v[i] for k, v in batched.items()}, one)
