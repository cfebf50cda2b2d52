"""The zoom line search (Nocedal and Wright's Algorithms 3.5, 3.6; Optax's semantics)."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor

ValueAndGrad = Callable[[list[Tensor]], tuple[Tensor, list[Tensor]]]


class Zoom(NamedTuple):
    """The search's constants (see :func:`~torchopt_lite.transform.scale_by_zoom_linesearch`)."""

    max_steps: int
    max_stepsize: float | None
    tol: float
    increase_factor: float
    slope_rtol: float
    curv_rtol: float
    approx_dec_rtol: float | None
    interval_threshold: float


class Search(NamedTuple):
    """The search's running state (Optax's ``ZoomLinesearchState`` less the fixed inputs)."""

    count: Tensor  # type: ignore[assignment]  # Optax's name; shadows tuple.count
    stepsize: Tensor
    value: Tensor
    grad: list[Tensor]
    slope: Tensor
    decrease_error: Tensor
    curvature_error: Tensor
    interval_found: Tensor
    done: Tensor
    failed: Tensor
    low: Tensor
    value_low: Tensor
    slope_low: Tensor
    high: Tensor
    value_high: Tensor
    slope_high: Tensor
    cubic_ref: Tensor
    value_cubic_ref: Tensor
    safe_stepsize: Tensor
    safe_value: Tensor
    safe_grad: list[Tensor]


def _where(cond: Tensor, a: list[Tensor], b: list[Tensor]) -> list[Tensor]:
    return [torch.where(cond, x, y) for x, y in zip(a, b, strict=True)]


def slope_along(grad: list[Tensor], direction: list[Tensor], like: Tensor) -> Tensor:
    r""":math:`\operatorname{Re}\langle g, d \rangle` summed over leaves."""
    total = like.new_zeros(())
    for g, d in zip(grad, direction, strict=True):
        total = total + torch.vdot(g.reshape(-1), d.reshape(-1)).real
    return total


def cubicmin(
    a: Tensor, fa: Tensor, fpa: Tensor, b: Tensor, fb: Tensor, c: Tensor, fc: Tensor
) -> Tensor:
    """Critical point of the cubic through three points with slope ``fpa`` at ``a``.

    The points are ``(a, fa)``, ``(b, fb)``, ``(c, fc)``; NaN when there is none (the caller
    then rejects it).
    """
    db, dc = b - a, c - a
    denom = (db * dc) ** 2 * (db - dc)
    rb, rc = fb - fa - fpa * db, fc - fa - fpa * dc
    cube = (dc**2 * rb - db**2 * rc) / denom
    square = (-(dc**3) * rb + db**3 * rc) / denom
    radical = square * square - 3.0 * cube * fpa
    return a + (-square + torch.sqrt(radical)) / (3.0 * cube)


def quadmin(a: Tensor, fa: Tensor, fpa: Tensor, b: Tensor, fb: Tensor) -> Tensor:
    """Critical point of the parabola through ``(a, fa)``, ``(b, fb)`` with slope ``fpa`` at a."""
    db = b - a
    square = (fb - fa - fpa * db) / (db**2)
    return a - fpa / (2.0 * square)


def _decrease_error(
    cfg: Zoom, t: Tensor, f: Tensor, slope: Tensor, f0: Tensor, slope0: Tensor
) -> Tensor:
    error = f - f0 - cfg.slope_rtol * t * slope0  # Armijo
    if cfg.approx_dec_rtol is not None:  # Hager-Zhang, once values are near f0
        approx = slope - (2 * cfg.slope_rtol - 1.0) * slope0
        approx = torch.maximum(approx, f - f0 - cfg.approx_dec_rtol * f0.abs())
        error = torch.minimum(approx, error)
    error = error.clamp(min=0.0)
    return torch.where(error.isnan(), torch.inf, error)


def _curvature_error(cfg: Zoom, slope: Tensor, slope0: Tensor) -> Tensor:
    error = (slope.abs() - cfg.curv_rtol * slope0.abs()).clamp(min=0.0)
    return torch.where(error.isnan(), torch.inf, error)


def _step(
    cfg: Zoom,
    s: Search,
    w: list[Tensor],
    u: list[Tensor],
    guess: Tensor,
    f0: Tensor,
    slope0: Tensor,
    value_and_grad: ValueAndGrad,
) -> Search:
    """One iteration: bracketing until an interval is found, then zooming.

    Both phases' bookkeeping is computed and selected with ``torch.where``; one evaluation.
    """
    # The trial step of each phase; one evaluation at the one the phase picks.
    grown = torch.where(s.count == 0, guess, cfg.increase_factor * s.stepsize)
    reached = torch.zeros_like(s.done)
    if cfg.max_stepsize is not None:
        reached = grown >= cfg.max_stepsize
        grown = grown.clamp(max=cfg.max_stepsize)
    delta = (s.high - s.low).abs()
    left, right = torch.minimum(s.high, s.low), torch.maximum(s.high, s.low)
    cubic = cubicmin(
        s.low, s.value_low, s.slope_low, s.high, s.value_high, s.cubic_ref, s.value_cubic_ref
    )
    use_cubic = (cubic > left + 0.2 * delta) & (cubic < right - 0.2 * delta)
    quad = quadmin(s.low, s.value_low, s.slope_low, s.high, s.value_high)
    use_quad = ~use_cubic & (quad > left + 0.1 * delta) & (quad < right - 0.1 * delta)
    middle = torch.where(use_cubic, cubic, s.cubic_ref)
    middle = torch.where(use_quad, quad, middle)
    middle = torch.where(~use_cubic & ~use_quad, (s.low + s.high) / 2.0, middle)
    zoom = s.interval_found
    t = torch.where(zoom, middle, grown)

    f, g = value_and_grad([wi + t * ui for wi, ui in zip(w, u, strict=True)])
    f = f.to(t.dtype)
    slope = slope_along(g, u, t)
    dec = _decrease_error(cfg, t, f, slope, f0, slope0)
    curv = _curvature_error(cfg, slope, slope0)
    met = torch.maximum(dec, curv) <= cfg.tol
    decreasing = dec <= cfg.tol
    last = s.count + 1 >= cfg.max_steps

    # Bracketing (Algorithm 3.5).
    b_high = (dec > 0.0) | ((f >= s.value) & (s.count > 0))
    b_low = (slope >= 0.0) & ~b_high
    b_safe = decreasing
    b_found = b_high | b_low | met
    b_done = met | (reached & ~b_found)
    b_failed = last & ~b_done
    b_bounds = _where(
        b_low,
        [t, f, slope, s.stepsize, s.value, s.slope],
        [s.stepsize, s.value, s.slope, t, f, slope],
    )

    # Zoom (Algorithm 3.6).
    z_safe = decreasing & (f < s.safe_value)
    z_high_mid = (dec > 0.0) | (f >= s.value_low)
    z_high_low = (slope * (s.high - s.low) >= 0.0) & ~z_high_mid
    old_low, old_high = [s.low, s.value_low, s.slope_low], [s.high, s.value_high, s.slope_high]
    new_high = _where(z_high_low, old_low, _where(z_high_mid, [t, f, slope], old_high))
    new_low = _where(~z_high_mid, [t, f, slope], old_low)
    z_cubic = _where(z_high_mid | z_high_low, old_high[:2], old_low[:2])
    safe_now = torch.where(z_safe, t, s.safe_stepsize)
    z_failed = (last | ((delta <= cfg.interval_threshold) & (safe_now > 0.0))) & ~met

    take_safe = torch.where(zoom, z_safe, b_safe)
    low, value_low, slope_low, high, value_high, slope_high = _where(
        zoom, new_low + new_high, b_bounds
    )
    cubic_ref, value_cubic_ref = _where(zoom, z_cubic, b_bounds[:2])
    safe_t, safe_f = _where(take_safe, [t, f], [s.safe_stepsize, s.safe_value])
    failed = torch.where(zoom, z_failed, b_failed)
    new = Search(
        count=s.count + 1,
        stepsize=t,
        value=f,
        grad=g,
        slope=slope,
        decrease_error=dec,
        curvature_error=curv,
        interval_found=zoom | b_found,
        done=torch.where(zoom, met, b_done),
        failed=failed,
        low=low,
        value_low=value_low,
        slope_low=slope_low,
        high=high,
        value_high=value_high,
        slope_high=slope_high,
        cubic_ref=cubic_ref,
        value_cubic_ref=value_cubic_ref,
        safe_stepsize=safe_t,
        safe_value=safe_f,
        safe_grad=_where(take_safe, g, s.safe_grad),
    )
    # On failure, fall back to the best decreasing step (or stay put outside the domain).
    fallback = failed & ((new.safe_stepsize > 0.0) | dec.isinf())
    t, f = _where(fallback, [new.safe_stepsize, new.safe_value], [t, f])
    return new._replace(stepsize=t, value=f, grad=_where(fallback, new.safe_grad, g))


def search(
    cfg: Zoom,
    w: list[Tensor],
    u: list[Tensor],
    f0: Tensor,
    g0: list[Tensor],
    guess: Tensor,
    value_and_grad: ValueAndGrad,
) -> Search:
    """Search a step along ``u`` from ``w`` (value ``f0``, gradient ``g0``); the final state.

    All values stay in tensors; the loop reads ``done | failed`` once per iteration to stop.
    """
    slope0 = slope_along(u, g0, guess)
    zero, false = guess.new_zeros(()), torch.zeros((), dtype=torch.bool, device=guess.device)
    s = Search(
        count=torch.zeros((), dtype=torch.int64, device=guess.device),
        stepsize=zero,
        value=f0,
        grad=g0,
        slope=slope0,
        decrease_error=zero + torch.inf,
        curvature_error=zero + torch.inf,
        interval_found=false,
        done=false,
        failed=false,
        low=zero,
        value_low=f0,
        slope_low=slope0,
        high=zero,
        value_high=f0,
        slope_high=slope0,
        cubic_ref=zero,
        value_cubic_ref=f0,
        safe_stepsize=zero,
        safe_value=f0,
        safe_grad=g0,
    )
    for _ in range(cfg.max_steps):
        s = _step(cfg, s, w, u, guess, f0, slope0, value_and_grad)
        if bool(s.done | s.failed):  # the one host read per iteration
            break
    return s
