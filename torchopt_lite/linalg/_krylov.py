"""Shared machinery of the Krylov solvers: flat leaves, masked steps, convergence policy.

Every solver runs at most ``maxiter`` steps. Each step computes its update for every problem
(a vmapped batch included) and keeps it only where the problem is still *active* (residual above
tolerance), so extra steps after convergence are no-ops and no step reads a value on the host.
In eager mode the loop reads the convergence flag once every ``CHECK_EVERY`` steps to stop early;
under ``torch.func`` transforms and ``torch.compile`` it never does and runs ``maxiter`` steps.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import optree
import torch
from torch import Tensor

from torchopt_lite.linalg.info import (
    InfoCallback,
    OnNonconvergence,
    SolveInfo,
    emit,
    listening,
    relative_residual,
)
from torchopt_lite.linalg.utils import (
    ConvergenceError,
    ConvergenceWarning,
    can_sync,
    normalize_matvec,
)

CHECK_EVERY = 10  # steps between two host reads of the convergence flag (eager mode only)

Leaves = list[Tensor]


def vdot(xs: Leaves, ys: Leaves) -> Tensor:
    """Real part of the inner product of two lists of leaves, a 0-d tensor (no host sync)."""
    terms = [
        torch.vdot(x.reshape(-1), y.reshape(-1)).real
        if x.is_complex()
        else torch.dot(x.reshape(-1), y.reshape(-1))
        for x, y in zip(xs, ys, strict=True)
    ]
    total = terms[0]
    for term in terms[1:]:
        total = total + term
    return total


def axpy(alpha: Tensor, xs: Leaves, ys: Leaves) -> Leaves:
    """``y + alpha * x`` leafwise (``alpha`` a 0-d tensor)."""
    return [y + alpha * x for x, y in zip(xs, ys, strict=True)]


def select(mask: Tensor, new: Leaves, old: Leaves) -> Leaves:
    """``new`` where ``mask`` else ``old`` (``mask`` a 0-d bool tensor)."""
    return [torch.where(mask, n, o) for n, o in zip(new, old, strict=True)]


def safe_div(num: Tensor, den: Tensor, mask: Tensor) -> Tensor:
    """``num / den`` where ``mask``, else 0 (never divides by a zero it does not need)."""
    return torch.where(mask, num / torch.where(mask, den, torch.ones_like(den)), 0.0)


class LeafProblem:
    """``A x = b`` on flat lists of leaves, with the tree structure kept for the matvecs."""

    def __init__(
        self,
        name: str,
        A: Any,
        b: Any,
        x0: Any,
        rtol: float,
        atol: float,
        maxiter: int | None,
        M: Any = None,
    ) -> None:
        check_tolerances(name, rtol, atol, maxiter)
        self.b, self.spec = optree.tree_flatten(b)
        for leaf in self.b:
            if not isinstance(leaf, Tensor) or not (leaf.is_floating_point() or leaf.is_complex()):
                got = leaf.dtype if isinstance(leaf, Tensor) else type(leaf).__name__
                raise TypeError(
                    f"{name}: every leaf of b must be a floating-point tensor; got {got} "
                    f"in {self.spec}."
                )
        self.x0: Leaves | None = None
        if x0 is not None:
            x0_leaves, x0_spec = optree.tree_flatten(x0)
            shapes = [tuple(t.shape) for t in x0_leaves]
            if x0_spec != self.spec or shapes != [tuple(t.shape) for t in self.b]:
                raise ValueError(
                    f"{name}: x0 must have the structure and shapes of b; "
                    f"b: {self.spec}, x0: {x0_spec}."
                )
            self.x0 = list(x0_leaves)
        self.tol2 = (
            torch.clamp_min(vdot(self.b, self.b) * rtol**2, atol**2) if self.b else torch.zeros(())
        )
        size = sum(t.numel() for t in self.b)
        # TorchOpt's default 10 * sum(shape) is 0 for a 0-d b (upstream #222); count elements.
        self.maxiter = max(10 * size, 1) if maxiter is None else maxiter
        self.sync = can_sync(self.b)
        tree_A = normalize_matvec(A)
        self.A = self._leafwise(tree_A, name, "A")
        self.M = None if M is None else self._leafwise(normalize_matvec(M), name, "M")

    def _leafwise(
        self, fn: Callable[[Any], Any], name: str, what: str
    ) -> Callable[[Leaves], Leaves]:
        spec = self.spec

        def apply(xs: Leaves) -> Leaves:
            out, out_spec = optree.tree_flatten(fn(optree.tree_unflatten(spec, xs)))
            if out_spec != spec:
                raise ValueError(
                    f"{name}: {what}(x) must return the structure of b; b: {spec}, "
                    f"{what}(x): {out_spec}."
                )
            return out

        return apply

    def unflatten(self, xs: Leaves) -> Any:
        return optree.tree_unflatten(self.spec, xs)


def check_tolerances(name: str, rtol: float, atol: float, maxiter: int | None) -> None:
    """Validate the tolerance arguments shared by every iterative solver."""
    if not rtol >= 0.0:
        raise ValueError(f"{name}: rtol must be >= 0; got {rtol}.")
    if not atol >= 0.0:
        raise ValueError(f"{name}: atol must be >= 0; got {atol}.")
    if maxiter is not None and (
        isinstance(maxiter, bool) or not isinstance(maxiter, int) or maxiter < 0
    ):
        raise ValueError(f"{name}: maxiter must be a non-negative int or None; got {maxiter!r}.")


def iterate(
    step: Callable[[Any], Any],
    state: Any,
    active: Callable[[Any], Tensor],
    maxiter: int,
    sync: bool,
) -> Any:
    """Run ``step`` up to ``maxiter`` times; in eager mode stop early once nothing is active."""
    done = 0
    while done < maxiter:
        chunk = min(CHECK_EVERY, maxiter - done)
        for _ in range(chunk):
            state = step(state)
        done += chunk
        if sync and done < maxiter and not bool(active(state).any()):
            break
    return state


def finish(
    name: str,
    x: Leaves,
    residual2: Tensor,
    tol2: Tensor,
    maxiter: int,
    policy: OnNonconvergence,
    sync: bool,
) -> Leaves:
    """Apply the non-convergence policy: raise or warn (eager), NaN-fill under transforms."""
    if policy == "ignore":
        return x
    converged = residual2 <= tol2
    if sync:
        if not bool(converged.all()):
            message = (
                f"{name}: did not converge in maxiter={maxiter} iterations; residual norm "
                f"{float(residual2.max().sqrt()):.3e} > tolerance {float(tol2.max().sqrt()):.3e}."
            )
            if policy == "warn":
                warnings.warn(message, ConvergenceWarning, stacklevel=4)
                return x
            raise ConvergenceError(
                f"{message} Raise maxiter, loosen rtol/atol, add a ridge or a preconditioner M, "
                "or pass on_nonconvergence='warn' or 'ignore' to accept the truncated solve."
            )
        return x
    if policy == "warn":  # values cannot be read under a transform: return the last iterate
        return x
    nan = torch.tensor(float("nan"), dtype=residual2.dtype, device=residual2.device)
    return [torch.where(converged, xi, nan.to(xi.dtype)) for xi in x]


POLICIES = ("raise", "warn", "ignore")


def resolve_policy(
    name: str,
    strict: bool | None,
    on_nonconvergence: OnNonconvergence | None,
    maxiter: int | None,
) -> OnNonconvergence:
    """The non-convergence policy from ``on_nonconvergence``, or from ``strict`` (older form).

    Neither given: ``"raise"`` when ``maxiter`` is left to its default, ``"ignore"`` otherwise.
    """
    if on_nonconvergence is None:
        return "raise" if (maxiter is None if strict is None else bool(strict)) else "ignore"
    if on_nonconvergence not in POLICIES:
        raise ValueError(
            f"{name}: on_nonconvergence must be one of 'raise', 'warn', 'ignore'; "
            f"got {on_nonconvergence!r}."
        )
    if strict is not None:
        raise ValueError(
            f"{name}: pass either strict or on_nonconvergence, not both; got strict={strict!r}, "
            f"on_nonconvergence={on_nonconvergence!r} (strict=True is 'raise', False 'ignore')."
        )
    return on_nonconvergence


def report(
    name: str,
    callback: InfoCallback | None,
    prob: LeafProblem,
    x: Leaves,
    iterations: Tensor,
    converged: Tensor,
) -> None:
    """Emit the ``SolveInfo`` of a finished eager solve (one more matvec) if anyone listens."""
    if prob.sync and listening(callback):
        emit(callback, SolveInfo(name, relative_residual(prob.A, x, prob.b), iterations, converged))
