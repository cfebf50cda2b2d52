"""Every raise in zero_order: the exception type, the message, and that nothing was modified."""

from __future__ import annotations

import pytest
import torch

from torchopt_lite.diff.zero_order import zero_order

NORMAL = torch.distributions.Normal(0.0, 1.0)


def square(x, *rest):
    return (x**2).sum()


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (
            {"method": "backward"},
            ValueError,
            r"zero_order: method must be one of 'naive'.*got 'backward'",
        ),
        (
            {"distribution": 3},
            TypeError,
            r"`distribution` must be a callable or an instance of `Samplable`.*got int",
        ),
        ({"argnums": "0"}, TypeError, r"argnums must be an int or a tuple of ints; got '0'"),
        ({"argnums": (0, 1.0)}, TypeError, r"argnums must be an int or a tuple of ints"),
        ({"argnums": ()}, ValueError, r"argnums must name at least one argument"),
        ({"num_samples": 2.0}, TypeError, r"num_samples must be an int; got 2.0"),
        ({"num_samples": 0}, ValueError, r"num_samples must be >= 1; got 0"),
        ({"sigma": 0.0}, ValueError, r"sigma must be positive and finite; got 0.0"),
        ({"sigma": -1.0}, ValueError, r"sigma must be positive and finite; got -1.0"),
        ({"sigma": float("nan")}, ValueError, r"sigma must be positive and finite; got nan"),
        ({"sigma": "1"}, TypeError, r"sigma must be a positive float; got '1'"),
        (
            {"evaluation": "parallel"},
            ValueError,
            r"evaluation must be one of 'sequential'.*got 'parallel'",
        ),
        (
            {"method": "central_difference", "baseline": True},
            ValueError,
            r"baseline=True needs a sampling method",
        ),
        ({"baseline": True, "num_samples": 1}, ValueError, r"baseline=True needs num_samples >= 2"),
        (
            {"fitness_shaping": "rank"},
            ValueError,
            r"fitness_shaping must be None or 'centered_rank'; got 'rank'",
        ),
        (
            {"method": "forward", "fitness_shaping": "centered_rank"},
            ValueError,
            r"works with 'naive', 'antithetic' and 'spsa'.*got method='forward'",
        ),
        ({"generator": 0}, TypeError, r"generator must be a torch.Generator or None; got int"),
    ],
)
def test_bad_options_fail_at_decoration(kwargs, error, match) -> None:
    options = {"distribution": NORMAL, **kwargs}
    with pytest.raises(error, match=match):
        zero_order(**options)


@pytest.mark.parametrize(
    ("argnums", "args", "error", "match"),
    [
        (
            2,
            (torch.ones(2),),
            ValueError,
            r"argnums=\(2,\) is out of range for square called with 1 positional argument",
        ),
        (-3, (torch.ones(2), 1.0), ValueError, r"argnums=\(-3,\) is out of range"),
        (
            (0, -2),
            (torch.ones(2), 1.0),
            ValueError,
            r"argnums=\(0, -2\) names the same argument twice",
        ),
        (
            1,
            (torch.ones(2), "a"),
            TypeError,
            r"must be pytrees of floating-point tensors; got a leaf of type str",
        ),
        (
            1,
            (torch.ones(2), torch.ones(2, dtype=torch.int64)),
            TypeError,
            r"got a leaf of type Tensor with dtype torch.int64",
        ),
        (1, (torch.ones(2), {}), TypeError, r"got no tensors"),
    ],
)
def test_bad_calls(argnums, args, error, match) -> None:
    with pytest.raises(error, match=match):
        zero_order(NORMAL, argnums=argnums)(square)(*args)


@pytest.mark.parametrize(
    ("fn", "match"),
    [
        (lambda x: 1.0, r"`output` must be a tensor; .* returned float"),
        (
            lambda x: x * 2,
            r"`output` must be a scalar tensor; .* returned shape \(3,\)\. Reduce it",
        ),
        (
            lambda x: (x > 0).sum(),
            r"must be a floating-point scalar tensor; .* returned dtype torch.int64",
        ),
    ],
)
def test_bad_outputs(fn, match) -> None:
    x = torch.ones(3, requires_grad=True)
    with pytest.raises(RuntimeError, match=match):
        zero_order(NORMAL)(fn)(x)


def test_non_scalar_output_of_a_perturbed_evaluation() -> None:
    calls = []

    def f(x):  # scalar at the input, not afterwards
        calls.append(1)
        return x.sum() if len(calls) == 1 else x

    x = torch.ones(3, requires_grad=True)
    out = zero_order(NORMAL, num_samples=2)(f)(x)
    with pytest.raises(RuntimeError, match=r"`output` must be a scalar tensor"):
        out.backward()
    assert x.grad is None


@pytest.mark.parametrize(
    ("distribution", "match"),
    [
        (
            torch.distributions.Normal(torch.zeros(3), 1.0),
            r"distribution.sample\(\(2, 3\)\) returned shape \(2, 3, 3\); samples must have "
            r"exactly the requested shape",
        ),
        (lambda shape: torch.randn(3), r"returned shape \(3,\)"),
        (lambda shape: [0.0, 1.0], r"returned shape \(2,\)"),
    ],
)
def test_samples_that_do_not_match_the_parameter_shape(distribution, match) -> None:
    x = torch.ones(3, requires_grad=True)
    out = zero_order(distribution, num_samples=2)(square)(x)
    with pytest.raises(ValueError, match=match):
        out.backward()
    assert x.grad is None
    assert torch.equal(x, torch.ones(3))


def test_batched_evaluation_must_return_one_value_per_row() -> None:
    x = torch.ones(3, requires_grad=True)
    out = zero_order(NORMAL, num_samples=4, evaluation="batched")(square)(x)  # sums everything
    with pytest.raises(ValueError, match=r"must return one value per row, shape \(4,\); got \(\)"):
        out.backward()
    assert x.grad is None


def test_second_order_through_an_estimate_is_refused() -> None:
    x = torch.ones(2, requires_grad=True)
    y = zero_order(None, "forward_difference", sigma=1e-3)(square)(x)
    (g,) = torch.autograd.grad(y**2, x, create_graph=True)  # grad_output 2y requires grad
    with pytest.raises(RuntimeError, match=r"once_differentiable"):
        g.sum().backward()
