"""Estimator values: unbiasedness (bounds from the sample variance), closed forms, exactness."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats
import torch

from torchopt_lite.diff.zero_order import zero_order

F64 = torch.float64
A = torch.tensor([[3.0, 0.5, 0.0], [0.5, 2.0, -0.3], [0.0, -0.3, 1.0]], dtype=F64)
B = torch.tensor([1.0, -2.0, 0.5], dtype=F64)
THETA = torch.tensor([0.7, -0.4, 1.2], dtype=F64)
NORMAL = torch.distributions.Normal(0.0, 1.0)


def quadratic(x: torch.Tensor) -> torch.Tensor:
    """0.5 x^T A x + b^T x + 4 over the last dimension (batchable)."""
    return 0.5 * ((x @ A) * x).sum(-1) + x @ B + 4.0


def cubic(x: torch.Tensor) -> torch.Tensor:
    """sum x_i^3; its Gaussian smoothing has gradient 3 x^2 + 3 sigma^2."""
    return x.pow(3).sum(-1)


def grad_of(f, theta: torch.Tensor) -> torch.Tensor:
    x = theta.clone().requires_grad_(True)
    f(x).backward()
    return x.grad


def replicates(f, method: str, *, sigma: float, reps: int, num_samples: int, seed: int, **kw):
    """``reps`` independent estimates (rows), each from ``num_samples`` samples."""
    gen = torch.Generator().manual_seed(seed)
    zf = zero_order(
        NORMAL,
        method,
        num_samples=num_samples,
        sigma=sigma,
        evaluation="batched",
        generator=gen,
        **kw,
    )(f)
    return torch.stack([grad_of(zf, THETA) for _ in range(reps)])


def assert_within_5_se(estimates: torch.Tensor, exact: torch.Tensor) -> None:
    mean = estimates.mean(0)
    se = estimates.std(0) / math.sqrt(estimates.shape[0])
    # The bound must be tight enough to catch a real bias, e.g. a sigma^2 scale error.
    assert (se < 0.1 * exact.abs().clamp_min(1.0)).all(), se
    assert ((mean - exact).abs() <= 5 * se).all(), (mean, exact, se)


@pytest.mark.parametrize("method", ["naive", "forward", "antithetic"])
def test_unbiased_on_quadratic(method: str) -> None:
    # On a quadratic the Gaussian-smoothed gradient equals the exact one, A theta + b.
    est = replicates(quadratic, method, sigma=0.5, reps=250, num_samples=64, seed=1)
    assert_within_5_se(est, A @ THETA + B)


@pytest.mark.parametrize("method", ["naive", "forward", "antithetic"])
def test_unbiased_for_the_smoothed_gradient_of_a_cubic(method: str) -> None:
    sigma = 0.5
    est = replicates(cubic, method, sigma=sigma, reps=250, num_samples=64, seed=2)
    smoothed = 3 * THETA**2 + 3 * sigma**2
    assert_within_5_se(est, smoothed)
    se = est.std(0) / math.sqrt(est.shape[0])
    # ... and distinguishably not the unsmoothed gradient 3 theta^2 (off by 3 sigma^2 = 0.75).
    assert ((est.mean(0) - 3 * THETA**2).abs() > 5 * se).any()


def test_spsa_unbiased_on_quadratic_with_rademacher() -> None:
    gen = torch.Generator().manual_seed(3)
    zf = zero_order(None, "spsa", num_samples=64, sigma=0.3, evaluation="batched", generator=gen)(
        quadratic
    )
    est = torch.stack([grad_of(zf, THETA) for _ in range(250)])
    assert_within_5_se(est, A @ THETA + B)


def test_baseline_unbiased_and_reduces_variance() -> None:
    def shifted(x: torch.Tensor) -> torch.Tensor:  # a large offset: naive's worst case
        return quadratic(x) + 100.0

    plain = replicates(shifted, "naive", sigma=0.5, reps=250, num_samples=64, seed=4)
    based = replicates(shifted, "naive", sigma=0.5, reps=250, num_samples=64, seed=4, baseline=True)
    assert_within_5_se(based, A @ THETA + B)
    assert (based.std(0) < plain.std(0) / 5).all()


class Recorder:
    """A sample function that records what it returned."""

    def __init__(self, sample=torch.randn) -> None:
        self.sample_fn, self.draws = sample, []

    def __call__(self, shape: torch.Size) -> torch.Tensor:
        self.draws.append(self.sample_fn(shape, dtype=F64))
        return self.draws[-1]


def estimate_with(f, method: str, theta: torch.Tensor, sigma: float, k: int, **kw):
    rec = Recorder(kw.pop("sample", torch.randn))
    g = grad_of(zero_order(rec, method, num_samples=k, sigma=sigma, **kw)(f), theta)
    (eps,) = rec.draws
    return g, eps


@pytest.mark.parametrize("evaluation", ["sequential", "batched"])
def test_closed_forms_with_the_recorded_noise(seed: int, evaluation: str) -> None:
    sigma, k = 0.3, 7
    f0 = quadratic(THETA)
    for method, weights in {
        "naive": lambda e: quadratic(THETA + sigma * e) / sigma,
        "forward": lambda e: (quadratic(THETA + sigma * e) - f0) / sigma,
        "antithetic": lambda e: (
            (quadratic(THETA + sigma * e) - quadratic(THETA - sigma * e)) / (2 * sigma)
        ),
    }.items():
        g, eps = estimate_with(quadratic, method, THETA, sigma, k, evaluation=evaluation)
        expected = sum(weights(eps[i]) * eps[i] for i in range(k)) / k
        torch.testing.assert_close(g, expected, rtol=1e-12, atol=1e-12)

    g, delta = estimate_with(
        quadratic,
        "spsa",
        THETA,
        sigma,
        k,
        evaluation=evaluation,
        sample=lambda s, dtype: torch.randint(0, 2, s).to(dtype) * 2 - 1,
    )
    expected = (
        sum(
            (quadratic(THETA + sigma * d) - quadratic(THETA - sigma * d)) / (2 * sigma) / d
            for d in delta
        )
        / k
    )
    torch.testing.assert_close(g, expected, rtol=1e-12, atol=1e-12)


def test_baseline_closed_form(seed: int) -> None:
    sigma, k = 0.3, 5
    g, eps = estimate_with(quadratic, "naive", THETA, sigma, k, baseline=True)
    w = [quadratic(THETA + sigma * e) / (sigma * k) for e in eps]
    w_centered = [w[i] - sum(w[j] for j in range(k) if j != i) / (k - 1) for i in range(k)]
    torch.testing.assert_close(
        g, sum(wi * e for wi, e in zip(w_centered, eps, strict=True)), rtol=1e-12, atol=1e-12
    )


@pytest.mark.parametrize("method", ["naive", "antithetic"])
def test_centered_rank_shaping_matches_scipy_ranks(seed: int, method: str) -> None:
    sigma, k = 0.3, 6
    g, eps = estimate_with(cubic, method, THETA, sigma, k, fitness_shaping="centered_rank")
    points = [THETA + sigma * e for e in eps]
    if method == "antithetic":
        points += [THETA - sigma * e for e in eps]
    values = np.array([float(cubic(p)) for p in points])
    m = len(values)
    ranks = torch.tensor((scipy.stats.rankdata(values) - 1) / (m - 1) - 0.5)
    if method == "naive":
        weights = ranks / (sigma * k)
    else:
        weights = (ranks[:k] - ranks[k:]) / (2 * sigma * k)
    torch.testing.assert_close(g, weights @ eps, rtol=1e-12, atol=1e-12)


def test_centered_rank_shaping_is_invariant_to_monotone_transforms() -> None:
    def estimate(f):
        gen = torch.Generator().manual_seed(5)
        zf = zero_order(
            NORMAL,
            "antithetic",
            num_samples=8,
            sigma=0.2,
            generator=gen,
            fitness_shaping="centered_rank",
        )(f)
        return grad_of(zf, THETA)

    plain = estimate(quadratic)
    torch.testing.assert_close(estimate(lambda x: torch.exp(quadratic(x)) * 3 - 7), plain)
    assert plain.abs().sum() > 0


def test_antithetic_on_a_linear_function_is_exact() -> None:
    def linear(x: torch.Tensor) -> torch.Tensor:
        return x @ B + 123.0

    # Any noise: w_k = b^T eps_k exactly, whatever theta, sigma and the offset.
    for sigma in (1e-3, 0.5, 10.0):
        g, eps = estimate_with(linear, "antithetic", THETA * sigma, sigma, 9)
        torch.testing.assert_close(g, (eps @ B) @ eps / 9, rtol=1e-12, atol=1e-12)

    # An orthogonal design (eps_k = +-sqrt(d) e_k, so mean eps eps^T = I) recovers b exactly.
    design = math.sqrt(3) * torch.cat([torch.eye(3, dtype=F64), -torch.eye(3, dtype=F64)])
    g = grad_of(
        zero_order(lambda shape: design, "antithetic", num_samples=6, sigma=2.0)(linear), THETA
    )
    torch.testing.assert_close(g, B, rtol=1e-14, atol=1e-14)
    # naive with the same design keeps the f(theta)/sigma term of the offset: not exact
    g = grad_of(
        zero_order(lambda shape: design[:3], "naive", num_samples=3, sigma=2.0)(linear), THETA
    )
    assert (g - B).abs().max() > 1.0


def test_finite_differences_match_autograd() -> None:
    w = torch.tensor([[0.3, -1.2, 0.8], [1.1, 0.4, -0.5]], dtype=F64)

    def f(params, scale):
        m, v = params["m"], params["v"]
        return (scale * torch.sin(w @ v + m.sum())).sum() + 0.1 * (v**4).sum() + (m**2).prod()

    params = {"m": torch.tensor([[0.2, -0.7], [0.5, 1.3]], dtype=F64), "v": THETA.clone()}
    exact = torch.autograd.grad(
        f({k: p.requires_grad_() for k, p in params.items()}, 1.5), list(params.values())
    )
    for method, h in (("forward_difference", 1e-8), ("central_difference", 1e-5)):
        leaves = {k: p.detach().clone().requires_grad_() for k, p in params.items()}
        out = zero_order(None, method, sigma=h)(f)(leaves, 1.5)
        got = torch.autograd.grad(out, list(leaves.values()))
        for g, e in zip(got, exact, strict=True):
            torch.testing.assert_close(g, e, rtol=0, atol=1e-6)


def test_grad_output_scales_the_estimate() -> None:
    zf = zero_order(None, "central_difference", sigma=1e-5)(quadratic)
    x = THETA.clone().requires_grad_()
    (-2.5 * zf(x)).backward()
    torch.testing.assert_close(x.grad, -2.5 * (A @ THETA + B), rtol=0, atol=1e-8)
