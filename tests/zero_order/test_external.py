"""numpy_function: NumPy black boxes with user-supplied or estimated vector-Jacobian products."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from torchopt_lite.diff.zero_order import numpy_function, zero_order

F64 = torch.float64
M = np.array([[1.0, 2.0, -1.0], [0.5, -0.3, 2.0]])


def simulate(x: np.ndarray, y: np.ndarray, *, scale: float = 1.0) -> np.ndarray:
    """A nonlinear map R^3 x R^2 -> R^2 (leading batch dimensions allowed)."""
    return scale * np.sin(x @ M.T) * y + y**2


def simulate_torch(x, y, scale=1.0):
    return scale * torch.sin(x @ torch.as_tensor(M).T) * y + y**2


def inputs(dtype=F64):
    x = torch.tensor([0.3, -0.8, 1.1], dtype=dtype, requires_grad=True)
    y = torch.tensor([1.5, -0.5], dtype=dtype, requires_grad=True)
    return x, y


COT = torch.tensor([0.7, -1.3], dtype=F64)


def autograd_vjp(scale=1.0):
    x, y = inputs()
    return torch.autograd.grad(simulate_torch(x, y, scale), (x, y), COT)


def vjp_of(fn, *args, **kwargs):
    out = fn(*args, **kwargs)
    return out, torch.autograd.grad(out, args, COT)


def test_user_vjp() -> None:
    def vjp(g, x, y, *, scale):
        inner = x @ M.T
        return (scale * (g * y * np.cos(inner)) @ M, scale * g * np.sin(inner) + 2 * g * y)

    out, grads = vjp_of(numpy_function(simulate, vjp=vjp), *inputs(), scale=2.0)
    torch.testing.assert_close(out, simulate_torch(*inputs(), 2.0).detach())
    for g, e in zip(grads, autograd_vjp(2.0), strict=True):
        torch.testing.assert_close(g, e, rtol=1e-12, atol=1e-12)


def test_user_gradient_for_a_scalar_output() -> None:
    wrapped = numpy_function(lambda x: float(np.sum(x**3)), grad=lambda x: 3 * x**2)
    x = torch.tensor([1.0, -2.0], dtype=F64, requires_grad=True)
    (2.0 * wrapped(x)).backward()
    torch.testing.assert_close(x.grad, 6 * x.detach() ** 2, rtol=1e-12, atol=0)


@pytest.mark.parametrize("batched", [False, True])
def test_estimated_vjp_by_central_differences_matches_autograd(batched: bool) -> None:
    wrapped = numpy_function(simulate, sigma=1e-5, batched=batched)
    out, grads = vjp_of(wrapped, *inputs(), scale=1.0)
    assert out.dtype == F64 and out.shape == (2,)
    for g, e in zip(grads, autograd_vjp(), strict=True):
        torch.testing.assert_close(g, e, rtol=0, atol=1e-6)


def test_sampled_vjp_is_the_zero_order_gradient_of_the_cotangent_product() -> None:
    # Same generator seed and layout: numpy_function's estimate is zero_order's estimate of
    # <cot, f(x)>, the scalar whose gradient is the VJP.
    wrapped = numpy_function(
        simulate,
        method="antithetic",
        num_samples=6,
        sigma=0.1,
        batched=True,
        generator=torch.Generator().manual_seed(0),
    )
    _, grads = vjp_of(wrapped, *inputs())
    scalar = zero_order(
        None,
        "antithetic",
        argnums=(0, 1),
        num_samples=6,
        sigma=0.1,
        generator=torch.Generator().manual_seed(0),
    )(lambda x, y: (simulate_torch(x, y) * COT).sum())
    x, y = inputs()
    expected = torch.autograd.grad(scalar(x, y), (x, y))
    for g, e in zip(grads, expected, strict=True):
        torch.testing.assert_close(g, e, rtol=1e-12, atol=1e-12)


def test_dtypes_follow_the_inputs() -> None:
    wrapped = numpy_function(lambda x: x.astype(np.float64) ** 2, vjp=lambda g, x: 2 * x * g)
    x = torch.tensor([1.0, 2.0], requires_grad=True)
    out = wrapped(x)
    assert out.dtype == torch.float32
    out.sum().backward()
    assert x.grad.dtype == torch.float32
    torch.testing.assert_close(x.grad, torch.tensor([2.0, 4.0]))


def test_decorator_form() -> None:
    @numpy_function(sigma=1e-4)
    def cube(x):
        return x**3

    x = torch.tensor([2.0], dtype=F64, requires_grad=True)
    cube(x).sum().backward()
    torch.testing.assert_close(x.grad, torch.tensor([12.0], dtype=F64), rtol=0, atol=1e-7)


def test_errors() -> None:
    with pytest.raises(ValueError, match=r"numpy_function: pass vjp= or grad=, not both"):
        numpy_function(simulate, vjp=lambda *a: a, grad=lambda *a: a)
    with pytest.raises(TypeError, match=r"numpy_function: vjp must be callable; got int"):
        numpy_function(simulate, vjp=1)
    with pytest.raises(TypeError, match=r"numpy_function: fn must be callable; got str"):
        numpy_function("simulate")
    with pytest.raises(ValueError, match=r"numpy_function: sigma must be positive"):
        numpy_function(simulate, sigma=-1.0)
    wrapped = numpy_function(simulate)
    with pytest.raises(
        TypeError,
        match=r"every positional input of simulate must be a floating-point tensor .* "
        r"input 1 is ndarray",
    ):
        wrapped(torch.ones(3), np.ones(2))
    with pytest.raises(TypeError, match=r"input 0 is dtype torch.int64"):
        wrapped(torch.ones(3, dtype=torch.int64), torch.ones(2))
    with pytest.raises(
        ValueError, match=r"numpy_function: simulate needs at least one tensor input"
    ):
        wrapped()
    with pytest.raises(
        TypeError,
        match=r"the output of .*<lambda> must be a real numeric array; got dtype complex64",
    ):
        numpy_function(lambda x: x * 1j)(torch.ones(2))
    with pytest.raises(
        ValueError, match=r"grad= needs a scalar output; .*<lambda> returned shape \(2,\)"
    ):
        numpy_function(lambda x: x, grad=lambda x: x)(torch.ones(2))


@pytest.mark.parametrize(
    ("vjp", "match"),
    [
        (lambda g, x, y: g, r"vjp must return one array per input \(2\); got 1"),
        (lambda g, x, y: (x, y[:1]), r"vjp result 1 must have shape \(2,\); got \(1,\)"),
        (lambda g, x, y: (x, np.array(["a", "b"])), r"vjp result 1 must be a real numeric array"),
    ],
)
def test_bad_vjp_results(vjp, match) -> None:
    x, y = inputs()
    out = numpy_function(simulate, vjp=vjp)(x, y)
    with pytest.raises((ValueError, TypeError), match=match):
        out.sum().backward()
    assert x.grad is None and y.grad is None


def test_perturbed_output_with_a_different_shape() -> None:
    calls = []

    def unstable(x):
        calls.append(1)
        return x if len(calls) == 1 else x[:1]

    x = torch.ones(2, dtype=F64, requires_grad=True)
    out = numpy_function(unstable)(x)
    with pytest.raises(
        ValueError,
        match=r"the output of .*unstable at a perturbed input .* "
        r"must have shape \(2,\); got \(1,\)",
    ):
        out.sum().backward()
    assert x.grad is None
