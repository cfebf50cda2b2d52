"""The inputs torch.optim accepts, as problems: parameters and gradients in a given layout.

``make_problem(layout, dtype)`` builds, from a seed, the parameters and a gradient per step in
one of the layouts users hand us. Calling it twice with the same arguments gives equal values in
equal layouts, so a reference (torch.optim) and the code under test each get their own copy.
Parameters and gradients that are views live in storages filled with a sentinel outside the
views: ``Problem.outside()`` returns those elements, which no step may change.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

LAYOUTS = (
    "contiguous",
    "transposed",
    "strided",
    "expanded_grad",
    "aliased_grads",
    "mixed_dtype",
    "complex",
    "zero_dim",
    "empty",
    "channels_last",
)

SENTINEL = 1234.5


@dataclass
class Problem:
    """Parameters (as handed to an optimizer) and, per step, their gradients."""

    params: list[Tensor]
    grads: list[list[Tensor]]
    # (storage, mask of the elements outside the views) for every buffer holding a view
    storages: list[tuple[Tensor, Tensor]] = field(default_factory=list)
    # for "expanded_grad": the small tensors the gradients are expanded from
    sources: list[list[Tensor]] = field(default_factory=list)

    def outside(self) -> list[Tensor]:
        """Copies of every storage element outside the views (must never change)."""
        return [storage[mask].clone() for storage, mask in self.storages]


def _complex_of(dtype: torch.dtype) -> torch.dtype:
    return torch.complex128 if dtype == torch.float64 else torch.complex64


def _randn(gen: torch.Generator, shape: tuple[int, ...], dtype: torch.dtype, device: str) -> Tensor:
    if dtype.is_complex:
        return torch.randn(shape, generator=gen, dtype=dtype).to(device)
    return torch.randn(shape, generator=gen, dtype=torch.float64).to(dtype).to(device)


def _strided(problem: Problem, values: Tensor) -> Tensor:
    """``values`` as a view of every other element of a sentinel-filled storage."""
    shape = (*values.shape[:-1], 2 * values.shape[-1])
    storage = torch.full(shape, SENTINEL, dtype=values.dtype, device=values.device)
    view = storage[..., ::2]
    view.copy_(values)
    mask = torch.ones_like(storage, dtype=torch.bool)
    mask[..., ::2] = False
    problem.storages.append((storage, mask))
    return view


def make_problem(
    layout: str, dtype: torch.dtype, steps: int = 3, seed: int = 0, device: str = "cpu"
) -> Problem:
    """The problem for ``layout`` on ``device``: two or three leaves, ``steps`` gradients."""
    gen = torch.Generator().manual_seed(seed)
    problem = Problem([], [])
    if layout == "mixed_dtype":
        shapes, dtypes = [(3, 4), (5,)], [torch.float32, torch.float64]
    elif layout == "complex":
        shapes, dtypes = [(3, 4), (5,)], [_complex_of(dtype)] * 2
    elif layout == "zero_dim":
        shapes, dtypes = [(), (5,)], [dtype] * 2
    elif layout == "empty":
        shapes, dtypes = [(0,), (3, 0), (5,)], [dtype] * 3
    elif layout == "aliased_grads":
        shapes, dtypes = [(3, 4), (3, 4)], [dtype] * 2
    elif layout == "channels_last":
        shapes, dtypes = [(2, 3, 2, 2), (5,)], [dtype] * 2
    else:
        shapes, dtypes = [(3, 4), (5,)], [dtype] * 2

    def leaf(shape: tuple[int, ...], dt: torch.dtype) -> Tensor:
        values = _randn(gen, shape, dt, device)
        if layout == "transposed" and len(shape) == 2:
            return values.t().contiguous().t()  # same values, column-major strides
        if layout == "channels_last" and len(shape) == 4:
            return values.contiguous(memory_format=torch.channels_last)
        if layout == "strided":
            return _strided(problem, values)
        return values

    problem.params = [leaf(s, d) for s, d in zip(shapes, dtypes, strict=True)]
    for _ in range(steps):
        if layout == "aliased_grads":
            g = _randn(gen, shapes[0], dtypes[0], device)
            problem.grads.append([g, g])  # one tensor for both leaves
        elif layout == "expanded_grad":
            sources = [
                _randn(gen, (s[0], 1) if len(s) == 2 else (), d, device)
                for s, d in zip(shapes, dtypes, strict=True)
            ]
            problem.sources.append(sources)
            problem.grads.append([c.expand(s) for c, s in zip(sources, shapes, strict=True)])
        else:
            problem.grads.append([leaf(s, d) for s, d in zip(shapes, dtypes, strict=True)])
    return problem
