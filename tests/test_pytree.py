"""Pytree helpers: inner products, ravel round trip, arithmetic on trees."""

from __future__ import annotations

import pytest
import torch

from torchopt_lite import pytree


def _tree(seed: int, dtype: torch.dtype = torch.float64) -> dict:
    gen = torch.Generator().manual_seed(seed)
    return {
        "a": torch.randn(2, 3, generator=gen, dtype=dtype),
        "b": (
            torch.randn(4, generator=gen, dtype=dtype),
            torch.randn((), generator=gen, dtype=dtype),
        ),
    }


def _flat(tree: dict) -> torch.Tensor:
    return torch.cat([x.reshape(-1) for x in pytree.tree_leaves(tree)])


def test_tree_vdot_is_the_dot_of_the_flat_vectors() -> None:
    x, y = _tree(0), _tree(1)
    got = pytree.tree_vdot(x, y)
    assert got.shape == ()
    torch.testing.assert_close(got, torch.dot(_flat(x), _flat(y)), rtol=1e-14, atol=0)
    assert pytree.tree_vdot_real(x, y) == pytest.approx(float(got), rel=1e-15)
    assert float(pytree.tree_vdot({}, {})) == 0.0
    single = pytree.tree_vdot({"a": torch.ones(3)}, {"a": torch.arange(3.0)})
    assert float(single) == 3.0


def test_tree_vdot_complex_takes_the_real_part() -> None:
    gen = torch.Generator().manual_seed(0)
    x = {"z": torch.randn(4, generator=gen, dtype=torch.complex128)}
    y = {"z": torch.randn(4, generator=gen, dtype=torch.complex128)}
    expected = torch.vdot(x["z"], y["z"]).real
    torch.testing.assert_close(pytree.tree_vdot(x, y), expected, rtol=1e-14, atol=0)


def test_tree_vdot_is_differentiable() -> None:
    x = {k: v for k, v in _tree(0).items()}
    xs = pytree.tree_map(lambda t: t.requires_grad_(True), x)
    y = _tree(1)
    grads = torch.autograd.grad(pytree.tree_vdot(xs, y), pytree.tree_leaves(xs))
    for g, e in zip(grads, pytree.tree_leaves(y), strict=True):
        torch.testing.assert_close(g, e, rtol=0, atol=0)


def test_tree_ravel_round_trip() -> None:
    tree = {
        "w": torch.randn(2, 2, dtype=torch.float32),
        "n": [torch.arange(3, dtype=torch.float64), torch.tensor(5.0, dtype=torch.float16)],
    }
    flat, unravel = pytree.tree_ravel(tree)
    assert flat.shape == (8,) and flat.dtype == torch.float64  # the promoted dtype
    torch.testing.assert_close(flat[:3], torch.arange(3, dtype=torch.float64))  # sorted: "n" first
    back = unravel(flat)
    assert pytree.tree_structure(back) == pytree.tree_structure(tree)
    for a, b in zip(pytree.tree_leaves(back), pytree.tree_leaves(tree), strict=True):
        assert a.dtype == b.dtype and a.shape == b.shape
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    moved = unravel(flat + 1.0)
    torch.testing.assert_close(moved["w"], tree["w"] + 1.0, rtol=0, atol=0)


def test_tree_ravel_empty() -> None:
    flat, unravel = pytree.tree_ravel({})
    assert flat.shape == (0,)
    assert unravel(flat) == {}


def test_arithmetic_helpers() -> None:
    x, y, z = _tree(0), _tree(1), _tree(2)
    fx, fy, fz = _flat(x), _flat(y), _flat(z)
    checks = {
        "add": (pytree.tree_add(x, y, z), fx + fy + fz),
        "add_scalar_mul": (pytree.tree_add_scalar_mul(x, y, 0.5), fx + 0.5 * fy),
        "add_scalar_mul-none": (pytree.tree_add_scalar_mul(x, y), fx + fy),
        "sub": (pytree.tree_sub(x, y), fx - fy),
        "sub_scalar_mul": (pytree.tree_sub_scalar_mul(x, y, 2.0), fx - 2.0 * fy),
        "sub_scalar_mul-none": (pytree.tree_sub_scalar_mul(x, y), fx - fy),
        "mul": (pytree.tree_mul(x, y, z), fx * fy * fz),
        "scalar_mul": (pytree.tree_scalar_mul(3.0, x), 3.0 * fx),
        "truediv": (pytree.tree_truediv(x, y), fx / fy),
        "neg": (pytree.tree_neg(x), -fx),
        "pos": (pytree.tree_pos(x), fx),
    }
    for name, (got, expected) in checks.items():
        assert pytree.tree_structure(got) == pytree.tree_structure(x), name
        torch.testing.assert_close(_flat(got), expected, rtol=1e-15, atol=0, msg=name)


def test_tree_matmul() -> None:
    gen = torch.Generator().manual_seed(0)
    a = {"m": torch.randn(2, 3, generator=gen), "v": torch.randn(3, generator=gen)}
    b = {"m": torch.randn(3, 4, generator=gen), "v": torch.randn(3, generator=gen)}
    c = torch.randn(4, 2, generator=gen)
    got = pytree.tree_matmul(a, b)
    torch.testing.assert_close(got["m"], a["m"] @ b["m"])
    torch.testing.assert_close(got["v"], a["v"] @ b["v"])
    three = pytree.tree_matmul({"m": a["m"]}, {"m": b["m"]}, {"m": c})
    torch.testing.assert_close(three["m"], a["m"] @ b["m"] @ c)


def test_binary_helpers_reject_other_structures() -> None:
    with pytest.raises(ValueError):
        pytree.tree_add({"a": torch.ones(1)}, {"b": torch.ones(1)})
    with pytest.raises(ValueError, match="tree_vdot: trees must have the same structure"):
        pytree.tree_vdot({"a": torch.ones(1)}, [torch.ones(1)])


def test_none_is_an_empty_subtree() -> None:
    tree = {"a": torch.ones(2), "b": None}
    assert pytree.tree_leaves(tree) == [tree["a"]]
    out = pytree.tree_scalar_mul(2.0, tree)
    assert out["b"] is None
    torch.testing.assert_close(out["a"], torch.full((2,), 2.0))


def test_tree_flatten_as_tuple_and_wait() -> None:
    tree = {"a": torch.ones(1), "b": [torch.zeros(2)]}
    leaves, spec = pytree.tree_flatten_as_tuple(tree)
    assert isinstance(leaves, tuple) and len(leaves) == 2
    assert pytree.tree_unflatten(spec, leaves)["b"][0] is tree["b"][0]
    futures = {"x": torch.futures.Future(), "y": [torch.futures.Future()]}
    futures["x"].set_result(torch.ones(1))
    futures["y"][0].set_result(torch.zeros(1))
    done = pytree.tree_wait(futures)
    torch.testing.assert_close(done["x"], torch.ones(1))
    torch.testing.assert_close(done["y"][0], torch.zeros(1))
