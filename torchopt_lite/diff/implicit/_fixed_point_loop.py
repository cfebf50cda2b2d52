"""The loop shared by the fixed-point solvers: flat vectors, masked steps, the best iterate.

A solver is a pair ``propose(state, k) -> x`` and ``update(state, x, T(x), k) -> state`` on one
flat vector per problem. The loop evaluates :math:`T` once per step and moves a problem's best
iterate, residual and step count only while the problem is active (best residual above
tolerance), so steps after convergence change nothing that is returned and a ``vmap``-ped batch
runs as one; it returns the iterate with the smallest residual.
No step reads a value on the host; in eager mode the loop may read the convergence flag once every
``check_every`` steps to stop early (never under ``torch.func`` transforms or ``torch.compile``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import optree
import torch
from torch import Tensor

from torchopt_lite.linalg.utils import can_sync


class FixedPointInfo(NamedTuple):
    r"""What a fixed-point solver reports besides the solution (all tensors, on device).

    Attributes:
        iterations: steps (evaluations of :math:`T` after the first) taken while the problem
            was above tolerance, a 0-d int64 tensor.
        residual: :math:`\|T(x) - x\|_2` at the returned :math:`x`, over all leaves.
        converged: whether ``residual`` is within tolerance, a 0-d bool tensor.
        trace: the residual of each step's iterate, shape ``(steps,)``; after convergence the
            entries repeat the final residual. Its length is the number of steps run
            (``maxiter``, or fewer when the eager check stopped the loop early).
    """

    iterations: Tensor
    residual: Tensor
    converged: Tensor
    trace: Tensor


def check_options(
    name: str, maxiter: int, rtol: float, atol: float, check_every: int | None
) -> None:
    """Validate the options every fixed-point solver takes."""
    if isinstance(maxiter, bool) or not isinstance(maxiter, int) or maxiter < 0:
        raise ValueError(f"{name}: maxiter must be a non-negative int; got {maxiter!r}.")
    if not rtol >= 0.0:
        raise ValueError(f"{name}: rtol must be >= 0; got {rtol}.")
    if not atol >= 0.0:
        raise ValueError(f"{name}: atol must be >= 0; got {atol}.")
    if check_every is not None and (
        isinstance(check_every, bool) or not isinstance(check_every, int) or check_every < 1
    ):
        raise ValueError(
            f"{name}: check_every must be a positive int or None; got {check_every!r}."
        )


class FlatProblem:
    """:math:`x = T(x)` on one flat vector: the tree's leaves concatenated in one dtype."""

    def __init__(self, name: str, fn: Callable[[Any], Any], x0: Any) -> None:
        if not callable(fn):
            raise TypeError(f"{name}: fn must be callable; got {type(fn).__name__}.")
        leaves, self.spec = optree.tree_flatten(x0)
        if not leaves:
            raise TypeError(f"{name}: x0 must be a tensor or a non-empty tree of tensors.")
        for leaf in leaves:
            if not isinstance(leaf, Tensor) or not leaf.is_floating_point():
                got = leaf.dtype if isinstance(leaf, Tensor) else type(leaf).__name__
                raise TypeError(
                    f"{name}: every leaf of x0 must be a floating-point tensor; got {got} "
                    f"in {self.spec}."
                )
        self.name, self.fn = name, fn
        self.shapes = [tuple(t.shape) for t in leaves]
        self.dtypes = [t.dtype for t in leaves]
        self.sizes = [t.numel() for t in leaves]
        self.dtype = functools.reduce(torch.promote_types, self.dtypes)
        self.x0 = self.flat(leaves)

    def flat(self, leaves: list[Tensor]) -> Tensor:
        if len(leaves) == 1:
            return leaves[0].reshape(-1).to(self.dtype)
        return torch.cat([t.reshape(-1).to(self.dtype) for t in leaves])

    def unflat(self, v: Tensor) -> Any:
        parts = torch.split(v, self.sizes) if len(self.sizes) > 1 else (v,)
        leaves = [
            p.reshape(s).to(d) for p, s, d in zip(parts, self.shapes, self.dtypes, strict=True)
        ]
        return optree.tree_unflatten(self.spec, leaves)

    def T(self, v: Tensor) -> Tensor:
        out_leaves, out_spec = optree.tree_flatten(self.fn(self.unflat(v)))
        if (
            out_spec != self.spec
            or [tuple(t.shape) if isinstance(t, Tensor) else None for t in out_leaves]
            != self.shapes
        ):
            raise ValueError(
                f"{self.name}: fn(x) must return a tree of tensors with the structure and shapes "
                f"of x0; x0: {self.spec} with shapes {self.shapes}, fn(x): {out_spec}."
            )
        return self.flat(out_leaves)


Propose = Callable[[Any, int], Tensor]
Update = Callable[[Any, Tensor, Tensor, int], Any]


def run(
    problem: FlatProblem,
    init: Callable[[Tensor, Tensor], Any],
    propose: Propose,
    update: Update,
    *,
    maxiter: int,
    rtol: float,
    atol: float,
    check_every: int | None,
) -> tuple[Any, FixedPointInfo]:
    """Iterate up to ``maxiter`` masked steps; return the best iterate and its report."""
    x = problem.x0
    fx = problem.T(x)

    def measure(x: Tensor, fx: Tensor) -> tuple[Tensor, Tensor]:
        res = torch.linalg.vector_norm(fx - x)
        return res, res <= torch.clamp_min(rtol * torch.linalg.vector_norm(fx), atol)

    state = init(x, fx)
    best_x = x
    best_res, best_ok = measure(x, fx)
    iterations = torch.zeros((), dtype=torch.int64, device=x.device)
    trace: list[Tensor] = []
    sync = check_every is not None and can_sync([x, fx])  # fx: batched when T's inputs are
    for k in range(maxiter):
        active = ~best_ok
        x_new = propose(state, k)
        fx_new = problem.T(x_new)
        res, ok = measure(x_new, fx_new)
        # Not masked: a converged problem's steps go on (cheaper than copying every buffer), but
        # neither its best iterate nor its count moves any more.
        state = update(state, x_new, fx_new, k)
        better = active & (res < best_res)
        best_x = torch.where(better, x_new, best_x)
        best_res = torch.where(better, res, best_res)
        best_ok = torch.where(better, ok, best_ok)
        iterations = iterations + active.to(torch.int64)
        trace.append(torch.where(active, res, best_res))
        # The documented host read, once every check_every steps (eager mode only).
        if sync and check_every is not None and (k + 1) % check_every == 0 and bool(best_ok.all()):
            break
    info = FixedPointInfo(
        iterations=iterations,
        residual=best_res,
        converged=best_ok,
        trace=torch.stack(trace) if trace else best_res.new_zeros((0,)),
    )
    return problem.unflat(best_x), info
