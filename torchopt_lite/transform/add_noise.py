"""Annealed Gaussian gradient noise from a counter-based generator carried in the state."""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import torch
from torch import Tensor

from torchopt_lite._checks import check_nonnegative
from torchopt_lite._dispatch import Leafwise, state_check
from torchopt_lite._moments import coefficient_dtype, next_count, zero_count
from torchopt_lite._ops import Ops
from torchopt_lite.base import LeafwiseTransformation, register_state_type

_MASK = 0xFFFFFFFF  # values live in 32 bits of an int64, so no product ever overflows
_MULTIPLIER = 0x45D9F3B  # < 2**27: a 32-bit value times it stays below 2**59
_STREAMS = (0x68E31DA4, 0xB5297A4D)  # two independent uniforms per element


@register_state_type
class AddNoiseState(NamedTuple):
    """State of :func:`add_noise`: the step count and the 0-d int64 key (the seed)."""

    count: Tensor  # type: ignore[assignment]  # TorchOpt's name; shadows tuple.count
    key: Tensor


def _mix(x: Tensor) -> Tensor:
    """A 32-bit integer hash (three xor-shifts, two odd multiplies) on int64 tensors."""
    x = (((x >> 16) ^ x) * _MULTIPLIER) & _MASK
    x = (((x >> 16) ^ x) * _MULTIPLIER) & _MASK
    return (x >> 16) ^ x


def _mix_(x: Tensor) -> Tensor:
    """:func:`_mix` in place, on a fresh buffer (full-size hashes: fewer temporaries)."""
    for _ in range(2):
        x.bitwise_xor_(x >> 16).mul_(_MULTIPLIER).bitwise_and_(_MASK)
    return x.bitwise_xor_(x >> 16)


def _fold(h: Tensor, value: Tensor | int) -> Tensor:
    """Mix the 64 bits of ``value`` into the 32-bit hash ``h``."""
    h = _mix(h ^ (value & _MASK))
    return _mix(h ^ ((value >> 32) & _MASK))


def stream_key(key: Tensor, count: Tensor, leaf: int) -> Tensor:
    """The 32-bit key of leaf ``leaf`` at step ``count`` (0-d int64 tensors in, one out)."""
    return _fold(_fold(_fold(torch.zeros_like(key), key), count), leaf)


def normal_like(x: Tensor, key: Tensor) -> Tensor:
    r"""Standard normal noise shaped like ``x``, a pure function of ``key`` and the positions.

    Element :math:`j` hashes ``(key, j)`` into two uniforms :math:`u_1, u_2 \in (0, 1)` and
    takes :math:`\sqrt{-2 \log u_1} \cos(2\pi u_2)` (Box-Muller). Only tensor arithmetic:
    reproducible, batchable under ``vmap`` (a batched key gives batched noise) and traceable
    by ``torch.compile``. In float64 where the device has it (float32 on MPS).
    """
    j = torch.arange(x.numel(), device=x.device, dtype=torch.int64).view(x.shape)
    key = key.to(x.device)
    dtype = coefficient_dtype(x.device)
    u = []
    for stream in _STREAMS:
        h = _mix(key ^ stream)
        bits = _mix_(h ^ j) if x.numel() <= _MASK else _fold(h, j)  # positions in 32 bits or 64
        u.append(bits.to(dtype).add_(0.5).mul_(2.0**-32))
    # sqrt(-2 log u1) cos(2 pi u2), on the buffers just made (the noise needs no gradient)
    return u[0].log_().mul_(-2.0).sqrt_().mul_(u[1].mul_(2.0 * math.pi).cos_())


def add_noise(eta: float = 0.01, gamma: float = 0.55, seed: int = 0) -> LeafwiseTransformation:
    r"""Add annealed Gaussian noise (see :func:`~torchopt_lite.alias.noisy_sgd.noisy_sgd`).

    .. math::
        u_t = g_t + \sigma_t\, \xi_t, \qquad \sigma_t^2 = \frac{\eta}{(1 + t)^\gamma}, \qquad
        \xi_t \sim \mathcal N(0, I)

    with :math:`t = 0, 1, \dots` the number of earlier steps. The noise is a function of the
    state (``key``, ``count``) and of each leaf's position, so the same state gives the same
    noise in place and out of place, eagerly, compiled and under ``vmap``; no
    ``torch.Generator`` and no global random state is involved.

    Example:
        >>> t = add_noise(eta=0.0)
        >>> t.update(torch.ones(2), t.init(torch.zeros(2)))[0]
        tensor([1., 1.])
    """
    check_nonnegative("add_noise", "eta", eta)
    check_nonnegative("add_noise", "gamma", gamma)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"add_noise: seed must be an int; got {type(seed).__name__}.")

    def init(leaves: Any) -> AddNoiseState:
        count = zero_count(leaves)
        return AddNoiseState(count=count, key=torch.full_like(count, seed))

    def update(
        g: list[Tensor], state: AddNoiseState, params: Any, ops: Ops
    ) -> tuple[list[Tensor], AddNoiseState]:
        t = state.count.to(coefficient_dtype(state.count.device))
        std = torch.sqrt(eta / torch.pow(1.0 + t, gamma))
        noise = [
            (normal_like(x, stream_key(state.key, state.count, i)) * std.to(x.device)).to(x.dtype)
            for i, x in enumerate(g)
        ]
        u = ops.add(g, noise)
        count = next_count(state.count, ops.inplace)
        return u, AddNoiseState(count=count, key=state.key)

    check = state_check("add_noise", AddNoiseState)
    return LeafwiseTransformation(Leafwise(init, update, check=check))
