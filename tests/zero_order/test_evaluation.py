"""Batched, vmapped and sequential evaluation agree; generators make estimates reproducible."""

from __future__ import annotations

import hypothesis.strategies as st
import pytest
import torch
from hypothesis import given, settings

import torchopt_lite.diff.zero_order as zo
from torchopt_lite.diff.zero_order import zero_order

F64 = torch.float64
METHODS = ["naive", "forward", "antithetic", "spsa", "forward_difference", "central_difference"]


def make_tree(shapes: list[tuple[int, ...]], seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {f"p{i}": torch.randn(s, generator=g, dtype=F64) for i, s in enumerate(shapes)}


def objective(shapes: dict[str, tuple[int, ...]]):
    """A batchable scalar function of a dict of leaves: leading dimensions are a batch."""

    def f(tree: dict[str, torch.Tensor], scale: float) -> torch.Tensor:
        total = 0.0
        for i, (name, x) in enumerate(sorted(tree.items())):
            flat = x.reshape(*x.shape[: x.dim() - len(shapes[name])], -1)
            total = total + (torch.cos(flat * (i + 1)) * scale + flat**2).sum(-1)
        return total

    return f


def estimate(f, tree, method: str, evaluation: str, seed: int) -> list[torch.Tensor]:
    options = {"baseline": True} if method in ("naive", "forward", "antithetic", "spsa") else {}
    sigma = 1e-4 if method.endswith("difference") else 0.3
    zf = zero_order(
        torch.distributions.Normal(0.0, 1.0) if method != "spsa" else None,
        method,
        num_samples=5,
        sigma=sigma,
        evaluation=evaluation,
        generator=torch.Generator().manual_seed(seed),
        **options,
    )(f)
    leaves = {k: v.clone().requires_grad_() for k, v in tree.items()}
    return list(torch.autograd.grad(zf(leaves, 0.5), list(leaves.values())))


shapes_st = st.lists(
    st.lists(st.integers(1, 3), min_size=0, max_size=2).map(tuple), min_size=1, max_size=3
)


@settings(max_examples=15, deadline=None)
@given(shapes=shapes_st, method=st.sampled_from(METHODS), seed=st.integers(0, 2**16))
def test_batched_vmap_and_sequential_give_the_same_estimate(shapes, method, seed) -> None:
    tree = make_tree(shapes, seed)
    f = objective({k: tuple(v.shape) for k, v in tree.items()})
    reference = estimate(f, tree, method, "sequential", seed)
    for evaluation in ("batched", "vmap"):
        for got, ref in zip(estimate(f, tree, method, evaluation, seed), reference, strict=True):
            assert got.shape == ref.shape
            torch.testing.assert_close(got, ref, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("distribution", [None, torch.distributions.Normal(0.0, 1.0), torch.randn])
def test_generator_reproducible_and_leaves_global_rng_alone(distribution) -> None:
    def f(x):
        return (x**3).sum()

    def run(seed: int) -> torch.Tensor:
        zf = zero_order(
            distribution,
            "antithetic",
            num_samples=4,
            sigma=0.5,
            generator=torch.Generator().manual_seed(seed),
        )(f)
        x = torch.tensor([0.3, -1.0], requires_grad=True)
        f_value = zf(x)
        f_value.backward()
        return x.grad

    state = torch.get_rng_state()
    first, again, other = run(7), run(7), run(8)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(first, again)
    assert not torch.allclose(first, other)


def test_successive_backward_passes_draw_fresh_noise() -> None:
    zf = zero_order(None, "naive", num_samples=3, generator=torch.Generator().manual_seed(0))(
        lambda x: x.sum()
    )
    x = torch.zeros(4, requires_grad=True)
    g1 = torch.autograd.grad(zf(x), x)[0]
    g2 = torch.autograd.grad(zf(x), x)[0]
    assert not torch.equal(g1, g2)


def test_global_seed_reproduces_estimates_without_a_generator() -> None:
    zf = zero_order(torch.distributions.Normal(0.0, 1.0), "forward", num_samples=3)(
        lambda x: (x**2).sum()
    )
    x = torch.ones(3, requires_grad=True)
    torch.manual_seed(11)
    g1 = torch.autograd.grad(zf(x), x)[0]
    torch.manual_seed(11)
    g2 = torch.autograd.grad(zf(x), x)[0]
    assert torch.equal(g1, g2)


def test_argnums_kwargs_and_non_differentiated_arguments() -> None:
    # f(a, x, b, *, c) = a.x + b.x^2 + c: gradients for a (argnums=0) and b (argnums=-1) only.
    def f(a, x, b, *, c):
        return (a * x).sum() + (b * x**2).sum() + c

    a, x, b = (
        torch.tensor(v, dtype=F64, requires_grad=True)
        for v in ([1.0, 2.0], [3.0, -1.0], [0.5, 0.5])
    )
    zf = zero_order(None, "central_difference", argnums=(0, -1), sigma=1e-5)(f)
    out = zf(a, x, b, c=10.0)
    torch.testing.assert_close(out, f(a, x, b, c=10.0).detach())
    out.backward()
    torch.testing.assert_close(a.grad, x.detach(), rtol=0, atol=1e-8)
    torch.testing.assert_close(b.grad, x.detach() ** 2, rtol=0, atol=1e-8)
    assert x.grad is None  # not in argnums: no gradient, as in TorchOpt


def test_mixed_dtypes_keep_each_leaf_dtype() -> None:
    zf = zero_order(None, "central_difference", sigma=1e-3)(
        lambda t: (t[0].double() ** 2).sum() + (t[1] ** 2).sum()
    )
    t = (
        torch.tensor([1.0, 2.0], requires_grad=True),
        torch.tensor([3.0], dtype=F64, requires_grad=True),
    )
    zf(t).backward()
    assert t[0].grad.dtype == torch.float32 and t[1].grad.dtype == F64
    # float32 leaf: the perturbed point theta + h is rounded to float32, an error of about
    # eps32 * |theta| / h = 1.2e-7 * 2 / 1e-3 = 2.4e-4 in the difference quotient.
    torch.testing.assert_close(t[0].grad, torch.tensor([2.0, 4.0]), rtol=0, atol=1e-3)
    torch.testing.assert_close(t[1].grad, torch.tensor([6.0], dtype=F64), rtol=0, atol=1e-10)


def test_the_module_is_callable_like_torchopt() -> None:
    import types

    import torchopt_lite.diff

    assert isinstance(torchopt_lite.diff.zero_order, types.ModuleType)
    decorator = torchopt_lite.diff.zero_order(None, "central_difference", sigma=1e-5)
    x = torch.tensor([1.0, -2.0], dtype=F64, requires_grad=True)
    decorator(lambda v: (v**2).sum())(x).backward()
    torch.testing.assert_close(x.grad, 2 * x.detach(), rtol=0, atol=1e-8)
    assert zo.zero_order is zero_order
