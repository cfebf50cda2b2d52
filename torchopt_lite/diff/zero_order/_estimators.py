"""Zero-order gradient estimators on a flat parameter vector (the math, written once).

Every estimator is a pure function ``(f, theta, noise, sigma, f_theta) -> (w, directions)``:

* ``f`` maps a batch of parameter vectors ``(M, d)`` to their values ``(M,)``;
* ``theta`` is the flat parameter vector ``(d,)``, ``f_theta = f(theta)`` (already known from the
  forward pass), ``noise`` the ``(K, d)`` perturbations (``None`` for finite differences);
* the estimate is ``w @ directions``, i.e. :math:`\\hat g = \\sum_m w_m\\, u_m`.

Returning the weights separately lets one place apply the leave-one-out baseline, and wrapping
``f`` lets one place apply rank-based fitness shaping.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor

BatchFn = Callable[[Tensor], Tensor]
EstimatorFn = Callable[..., tuple[Tensor, Tensor]]  # (f, theta, noise, sigma, f_theta)


def _shifted(theta: Tensor, directions: Tensor, step: float | Tensor) -> Tensor:
    """The batch theta + step * u_m, one row per direction (``step`` a scalar or one per entry)."""
    if isinstance(step, Tensor):
        return theta + directions * step
    return torch.add(theta, directions, alpha=step)


def naive(
    f: BatchFn, theta: Tensor, noise: Tensor, sigma: float, f_theta: Tensor
) -> tuple[Tensor, Tensor]:
    """w_k = f(theta + sigma eps_k) / (K sigma); directions eps_k."""
    return f(_shifted(theta, noise, sigma)) / (sigma * noise.shape[0]), noise


def forward(
    f: BatchFn, theta: Tensor, noise: Tensor, sigma: float, f_theta: Tensor
) -> tuple[Tensor, Tensor]:
    """w_k = (f(theta + sigma eps_k) - f(theta)) / (K sigma); directions eps_k."""
    return (f(_shifted(theta, noise, sigma)) - f_theta) / (sigma * noise.shape[0]), noise


def _symmetric(f: BatchFn, theta: Tensor, noise: Tensor, sigma: float) -> Tensor:
    """(f(theta + sigma eps_k) - f(theta - sigma eps_k)) / (2 K sigma), in one batch of 2K."""
    plus, minus = f(_shifted(theta, torch.cat([noise, -noise]), sigma)).chunk(2)
    return (plus - minus) / (2.0 * sigma * noise.shape[0])


def antithetic(
    f: BatchFn, theta: Tensor, noise: Tensor, sigma: float, f_theta: Tensor
) -> tuple[Tensor, Tensor]:
    """w_k = (f(theta + sigma eps_k) - f(theta - sigma eps_k)) / (2 K sigma); directions eps_k."""
    return _symmetric(f, theta, noise, sigma), noise


def spsa(
    f: BatchFn, theta: Tensor, noise: Tensor, sigma: float, f_theta: Tensor
) -> tuple[Tensor, Tensor]:
    """Antithetic weights with directions 1 / Delta_k (Spall's simultaneous perturbation)."""
    return _symmetric(f, theta, noise, sigma), noise.reciprocal()


def forward_difference(
    f: BatchFn, theta: Tensor, noise: Tensor | None, sigma: float | Tensor, f_theta: Tensor
) -> tuple[Tensor, Tensor]:
    """w_i = (f(theta + h_i e_i) - f(theta)) / h_i; directions the coordinate axes e_i.

    ``sigma`` is the step ``h``: one float, or a ``(d,)`` tensor of per-coordinate steps.
    """
    basis = torch.eye(theta.numel(), dtype=theta.dtype, device=theta.device)
    return (f(_shifted(theta, basis, sigma)) - f_theta) / sigma, basis


def central_difference(
    f: BatchFn, theta: Tensor, noise: Tensor | None, sigma: float | Tensor, f_theta: Tensor
) -> tuple[Tensor, Tensor]:
    """w_i = (f(theta + h_i e_i) - f(theta - h_i e_i)) / (2 h_i); directions the axes e_i."""
    basis = torch.eye(theta.numel(), dtype=theta.dtype, device=theta.device)
    plus, minus = f(_shifted(theta, torch.cat([basis, -basis]), sigma)).chunk(2)
    return (plus - minus) / (2.0 * sigma), basis


class Estimator(NamedTuple):
    """An estimator and what it accepts."""

    fn: EstimatorFn
    random: bool  # draws noise from the distribution; accepts a baseline
    shapeable: bool  # every value it uses comes from one call of f (rank shaping is meaningful)


ESTIMATORS: dict[str, Estimator] = {
    "naive": Estimator(naive, random=True, shapeable=True),
    "forward": Estimator(forward, random=True, shapeable=False),
    "antithetic": Estimator(antithetic, random=True, shapeable=True),
    "spsa": Estimator(spsa, random=True, shapeable=True),
    "forward_difference": Estimator(forward_difference, random=False, shapeable=False),
    "central_difference": Estimator(central_difference, random=False, shapeable=False),
}


def centered_ranks(values: Tensor) -> Tensor:
    """Ranks of ``values`` mapped linearly onto ``[-0.5, 0.5]`` (ties broken by position)."""
    m = values.numel()
    ranks = torch.empty_like(values)
    ranks[values.argsort(stable=True)] = torch.arange(m, dtype=values.dtype, device=values.device)
    return (ranks - 0.5 * (m - 1)) / max(m - 1, 1)


def _ranked(f: BatchFn) -> BatchFn:
    def ranked(batch: Tensor) -> Tensor:
        return centered_ranks(f(batch))

    return ranked


def leave_one_out(w: Tensor) -> Tensor:
    """w_k - mean_{j != k} w_j = K / (K - 1) (w_k - mean w): a baseline independent of sample k."""
    k = w.numel()
    return (k * w - w.sum()) / (k - 1)


def estimate(
    estimator: Estimator,
    f: BatchFn,
    theta: Tensor,
    noise: Tensor | None,
    sigma: float | Tensor,
    f_theta: Tensor,
    *,
    baseline: bool,
    fitness_shaping: str | None,
) -> Tensor:
    """The flat gradient estimate ``w @ directions`` with the optional shaping and baseline."""
    if fitness_shaping == "centered_rank":
        f = _ranked(f)
    w, directions = estimator.fn(f, theta, noise, sigma, f_theta)
    if baseline:
        w = leave_one_out(w)
    return w @ directions
