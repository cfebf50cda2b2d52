"""numpy_function: the working dtype (float64 when the black box takes it), the automatic step."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from torchopt_lite.diff.zero_order import numpy_function

F32, F64 = torch.float32, torch.float64
EPS32, EPS64 = torch.finfo(F32).eps, torch.finfo(F64).eps
X = [-1.0, -0.3, 0.4, 1.1, 2.0]


def smooth(x: np.ndarray) -> np.ndarray:
    """exp plus a cubic, summed over the last axis (so a leading batch dimension passes)."""
    return np.sum(np.exp(x) + x**3, axis=-1)


def smooth_grad(x: torch.Tensor) -> torch.Tensor:
    return x.exp() + 3 * x**2


def grad_of(f, x: torch.Tensor) -> torch.Tensor:
    x = x.detach().requires_grad_(True)
    return torch.autograd.grad(f(x).sum(), x)[0]


def rel_error(g: torch.Tensor, expected: torch.Tensor) -> float:
    return float((g.double() - expected).abs().max() / expected.abs().max())


@pytest.mark.parametrize("method", ["central_difference", "forward_difference"])
@pytest.mark.parametrize("batched", [False, True])
def test_float32_inputs_are_differenced_in_float64(method: str, batched: bool) -> None:
    x = torch.tensor(X, dtype=F32)
    g = grad_of(numpy_function(smooth, method=method, batched=batched), x)
    assert g.dtype == F32
    # float64 differences (error ~ eps64^(1/2) at worst) leave only the float32 rounding of
    # the result: half an ulp per entry
    torch.testing.assert_close(g, smooth_grad(x.double()).float(), rtol=EPS32, atol=0)


def test_docs_example_in_float32() -> None:
    simulate = numpy_function(lambda u: np.cumsum(np.tanh(u)))
    u = torch.tensor([0.5, -1.0, 2.0, 0.3, -0.7])
    expected = torch.tensor([5.0, 4.0, 3.0, 2.0, 1.0], dtype=F64) / u.double().cosh() ** 2
    torch.testing.assert_close(grad_of(simulate, u), expected.float(), rtol=2 * EPS32, atol=0)


def test_old_default_step_in_float32_warns_and_is_inaccurate() -> None:
    # sigma=1e-6 differenced in float32 (what every float32 call did before): about 5% error
    f = numpy_function(smooth, sigma=1e-6, precision="input")
    x = torch.tensor(X, dtype=F32)
    with pytest.warns(UserWarning, match=r"numpy_function: sigma=1e-06 is below the resolution "
                                         r"of torch.float32 .*pass sigma=None"):  # fmt: skip
        g = grad_of(f, x)
    assert rel_error(g, smooth_grad(x.double())) > 1e-2


def test_float32_step_is_chosen_from_the_dtype() -> None:
    # precision='input': float32 differences with h = eps32^(1/3) max(1, |x|); the error
    # h^2 |f'''| / 6 + eps |f| / h is a small multiple of eps32^(2/3) ~ 2.4e-5
    x = torch.tensor(X, dtype=F32)
    g = grad_of(numpy_function(smooth, precision="input"), x)
    assert rel_error(g, smooth_grad(x.double())) < 20 * EPS32 ** (2 / 3)  # < 1e-3


def _only_float32(seen: list) -> object:
    def fn(x: np.ndarray) -> np.ndarray:
        seen.append(x.dtype)
        if x.dtype != np.float32:
            raise TypeError("compiled for float32 only")
        return smooth(x)

    return fn


def _computes_in_float32(seen: list) -> object:
    def fn(x: np.ndarray) -> np.ndarray:
        seen.append(x.dtype)
        return smooth(x.astype(np.float32))  # float32 values, whatever it is given

    return fn


@pytest.mark.parametrize("black_box", [_only_float32, _computes_in_float32])
def test_black_box_without_float64_falls_back_to_the_input_dtype(black_box) -> None:
    seen: list = []
    x = torch.tensor(X, dtype=F32)
    g = grad_of(numpy_function(black_box(seen)), x)
    # forward, the float64 probe, then 2d perturbed points in float32
    assert seen == [np.float32, np.float64] + [np.float32] * 2 * len(X)
    assert rel_error(g, smooth_grad(x.double())) < 20 * EPS32 ** (2 / 3)


def test_precision_input_makes_no_extra_call() -> None:
    seen: list = []
    grad_of(numpy_function(_computes_in_float32(seen), precision="input"), torch.tensor(X))
    assert seen == [np.float32] * (1 + 2 * len(X))


def test_user_step_in_float64_is_unchanged() -> None:
    # float64 inputs and an explicit sigma: the textbook central difference, to the last bit
    h = 1e-5
    x = np.array(X)
    expected = np.array([(smooth(x + h * e) - smooth(x - h * e)) / (2 * h) for e in np.eye(len(X))])
    g = grad_of(numpy_function(smooth, sigma=h), torch.tensor(X, dtype=F64))
    np.testing.assert_array_equal(g.numpy(), expected)


def test_float64_default_step_scales_with_the_input() -> None:
    # |x| ~ 1e12: h_j = eps^(1/3) |x_j| keeps the relative error near eps^(2/3) ~ 4e-11, where
    # a fixed step of 1e-6 is below the spacing of float64 (1.2e-4) and sees no difference
    x = torch.tensor([1e12, 2e12, 5e12], dtype=F64)
    g = grad_of(numpy_function(lambda v: np.sum(np.log(v))), x)
    torch.testing.assert_close(g, x.reciprocal(), rtol=1e-9, atol=0)
    with pytest.warns(UserWarning, match=r"sigma=1e-06 is below the resolution of torch\.float64"):
        g_fixed = grad_of(numpy_function(lambda v: np.sum(np.log(v)), sigma=1e-6), x)
    assert bool((g_fixed == 0).all())


def test_user_step_on_float32_inputs_is_differenced_in_float64() -> None:
    # sigma=1e-6 is fine for float64 differences (no warning) and accurate
    x = torch.tensor(X, dtype=F32)
    g = grad_of(numpy_function(smooth, sigma=1e-6), x)
    torch.testing.assert_close(g, smooth_grad(x.double()).float(), rtol=1e-6, atol=0)


@pytest.mark.parametrize(("method", "noise"), [("antithetic", "normal"), ("spsa", "rademacher")])
def test_sampling_methods_default_step_gives_directional_derivatives(method, noise) -> None:
    # with the automatic step, each antithetic pair is the exact directional derivative
    # (u . grad f) u (spsa: divided by u), so the estimate equals that sum to ~eps^(2/3)
    k, x = 6, torch.tensor(X, dtype=F32)
    f = numpy_function(smooth, method=method, num_samples=k,
                       generator=torch.Generator().manual_seed(0))  # fmt: skip
    g = grad_of(f, x)
    gen = torch.Generator().manual_seed(0)
    if noise == "normal":
        u = torch.randn((k, len(X)), dtype=F64, generator=gen)
        directions = u
    else:
        u = torch.randint(0, 2, (k, len(X)), generator=gen).to(F64) * 2 - 1
        directions = u.reciprocal()
    expected = (u @ smooth_grad(x.double())) @ directions / k
    torch.testing.assert_close(g, expected.float(), rtol=1e-5, atol=1e-5)


def test_errors() -> None:
    with pytest.raises(ValueError, match=r"numpy_function: method='naive' needs an explicit "
                                         r"sigma.*pass e\.g\. sigma=0\.1"):  # fmt: skip
        numpy_function(smooth, method="naive")
    with pytest.raises(ValueError, match=r"numpy_function: precision must be one of 'auto', "
                                         r"'input'; got 'float64'"):  # fmt: skip
        numpy_function(smooth, precision="float64")  # type: ignore[arg-type]
    # an explicit sigma makes 'naive' valid (its smoothing scale)
    naive = numpy_function(
        smooth, method="naive", sigma=0.5, num_samples=4, generator=torch.Generator().manual_seed(0)
    )
    g = grad_of(naive, torch.tensor(X))
    assert g.shape == (len(X),) and bool(torch.isfinite(g).all())


def test_float64_output_must_keep_its_shape() -> None:
    def unstable(x: np.ndarray) -> np.ndarray:
        return x if x.dtype == np.float32 else x[:1]

    x = torch.ones(2, requires_grad=True)
    out = numpy_function(unstable)(x)
    with pytest.raises(
        ValueError, match=r"the output of .*unstable at the float64 input must have shape \(2,\)"
    ):
        out.sum().backward()
    assert x.grad is None
