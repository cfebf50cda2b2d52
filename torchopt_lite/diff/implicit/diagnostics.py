"""``check_hypergradient``: implicit, unrolled and finite-difference hypergradients side by side."""

from __future__ import annotations

import inspect
import math
import textwrap
from collections.abc import Callable
from typing import Any, NamedTuple

import optree
import torch
from torch import Tensor

from torchopt_lite.diff.implicit._condition import condition_estimate
from torchopt_lite.diff.implicit.decorator import _normalize_argnums, custom_root
from torchopt_lite.linalg.info import SolveInfo, record_solves
from torchopt_lite.linalg.utils import ConvergenceError
from torchopt_lite.pytree import tree_ravel
from torchopt_lite.typing import LinearSolver

METHODS = ("implicit", "unrolled", "finite_difference")
MAX_COORDINATES = 10  # finite differences on every coordinate up to this many hyperparameters


class HypergradientReport(NamedTuple):
    r"""What :func:`check_hypergradient` found; ``print(report)`` shows it as a table.

    Hypergradients are flat vectors over the leaves of the differentiated arguments, in the
    order of ``argnums`` and of each argument's leaves. ``report.ok`` is ``True`` when
    ``warnings`` is empty.

    Attributes:
        implicit: the implicit hypergradient (``None`` if it could not be computed).
        unrolled: the hypergradient by autograd through the solver (``None`` if unavailable).
        finite_difference: central differences along the columns of ``directions``.
        directions: the :math:`n \times k` matrix of unit directions :math:`d_j` (the identity
            when every coordinate is differenced).
        fd_step: the step :math:`s` of the central differences.
        agreement: ``{(a, b): relative difference}`` for each pair of available methods,
            :math:`\|D^\top (g_a - g_b)\| / \max(\|D^\top g_a\|, \|D^\top g_b\|)`.
        optimality_residual: :math:`\|F(x^\star, \theta)\|` at the solver's output.
        relative_optimality_residual: the same divided by :math:`\|F(x_0, \theta)\|`.
        solve_info: the :class:`~torchopt_lite.linalg.SolveInfo` of the implicit
            hypergradient's linear solve (``None`` for a solver that reports none).
        condition: an estimate of :math:`\kappa_2(A)`, :math:`A = \partial_x F(x^\star,
            \theta)`, a lower bound that is exact once the Lanczos iterations span the space.
        condition_iterations: the Lanczos iterations behind ``condition``.
        condition_operator: ``"A"`` when :math:`A` was found symmetric (Lanczos on :math:`A`,
            resolving :math:`\kappa` up to :math:`1/\epsilon`), else ``"A^T A"`` (up to
            :math:`1/\sqrt\epsilon`).
        unavailable: ``{method: reason}`` for each method that was not computed.
        warnings: what looks wrong, one sentence each; empty when all is well.
        rtol: the relative tolerance the warnings were judged by.
    """

    implicit: Tensor | None
    unrolled: Tensor | None
    finite_difference: Tensor
    directions: Tensor
    fd_step: float
    agreement: dict[tuple[str, str], float]
    optimality_residual: float
    relative_optimality_residual: float
    solve_info: SolveInfo | None
    condition: float
    condition_iterations: int
    condition_operator: str
    unavailable: dict[str, str]
    warnings: tuple[str, ...]
    rtol: float

    @property
    def ok(self) -> bool:
        """Whether the check found nothing to warn about."""
        return not self.warnings

    def __str__(self) -> str:
        n, k = self.directions.shape
        coords = (
            "all coordinates"
            if k == n and bool((self.directions == torch.eye(n, dtype=self.directions.dtype)).all())
            else f"{k} random directions"
        )
        rows = [
            f"Hypergradient check: {n} hyperparameter{'s' if n > 1 else ''}; finite differences "
            f"on {coords}, "
            f"step {self.fd_step:.1e}",
        ]
        for (a, b), diff in self.agreement.items():
            rows.append(f"  {a} vs {b}:".ljust(42) + f"relative difference {diff:.1e}")
        for method, reason in self.unavailable.items():
            rows.append(f"  {method}:".ljust(42) + f"not computed ({reason})")
        rows.append(
            "  inner optimality residual |F(x*)|:".ljust(42)
            + f"{self.optimality_residual:.1e} ({self.relative_optimality_residual:.1e} of "
            "|F(x0)|)"
        )
        solve = "none reported" if self.solve_info is None else str(self.solve_info)
        rows.append("  linear solve:".ljust(42) + solve)
        rows.append(
            "  condition estimate cond(A):".ljust(42)
            + f"{self.condition:.2e} (Lanczos on {self.condition_operator}, "
            f"{self.condition_iterations} iterations)"
        )
        if self.warnings:
            rows.append("  warnings:")
            rows.extend(
                textwrap.fill(w, 96, initial_indent="    - ", subsequent_indent="      ")
                for w in self.warnings
            )
        else:
            rows.append("  warnings:".ljust(42) + f"none (rtol {self.rtol:.0e})")
        return "\n".join(rows)


def check_hypergradient(
    outer_loss: Callable[..., Tensor],
    solver: Callable[..., Any],
    x0: Any,
    *args: Any,
    optimality_fn: Callable[..., Any],
    argnums: int | tuple[int, ...] = 1,
    solve: LinearSolver | None = None,
    unroll: bool | Callable[..., Any] = True,
    fd_directions: int | None = None,
    fd_step: float | None = None,
    rtol: float | None = None,
    condition_iters: int = 50,
    seed: int = 0,
) -> HypergradientReport:
    r"""Compare the implicit hypergradient of a bilevel problem with two independent ones.

    The hyper-objective is :math:`h(\theta) = L(x^\star(\theta), \theta)` with
    :math:`x^\star(\theta)` = ``solver(x0, *args)`` and :math:`L` = ``outer_loss(x, *args)``;
    :math:`\theta` are the arguments at ``argnums`` (positions in the solver call, as in
    :func:`~torchopt_lite.diff.implicit.custom_root`). Three estimates of :math:`\nabla h`:

    * **implicit**: ``custom_root(optimality_fn, argnums, solve=solve)(solver)`` under
      autograd, :math:`\nabla h = \partial_\theta L - B^\top u` with :math:`A^\top u =
      \partial_x L`, :math:`A = \partial_x F`, :math:`B = \partial_\theta F`;
    * **unrolled**: autograd through the solver's own iterations (the undecorated ``solver``,
      or the differentiable solver passed as ``unroll``);
    * **finite differences**: :math:`(h(\theta + s d_j) - h(\theta - s d_j)) / (2 s)` along
      unit directions :math:`d_j`: every coordinate when :math:`\theta` has at most 10 entries,
      else ``fd_directions`` (default 3) seeded Gaussian directions. The step is
      :math:`s = \epsilon^{1/3} \max(1, \|\theta\|_\infty)` (:math:`\epsilon` the machine
      epsilon of :math:`\theta`'s dtype), which balances the :math:`O(s^2)` truncation error
      against the :math:`O(\epsilon / s)` rounding error.

    The three are compared along the same directions. The report adds the inner optimality
    residual :math:`\|F(x^\star, \theta)\|`, the residual and iteration count of the implicit
    linear solve (its :class:`~torchopt_lite.linalg.SolveInfo`), and an estimate of
    :math:`\kappa_2(A)` from ``condition_iters`` Lanczos iterations with full
    reorthogonalisation, matvecs by VJPs of :math:`F`: on :math:`A` itself,
    :math:`\kappa = \max|\mu_i| / \min|\mu_i|` over the Ritz values :math:`\mu_i`, when a
    random probe finds :math:`A` symmetric (a gradient's Jacobian), else
    :math:`\kappa = \sqrt{\mu_{\max} / \mu_{\min}}` on :math:`A^\top A`. It warns when the
    inner problem is not solved (relative residual above :math:`\sqrt\epsilon`), when two
    estimates differ by more than ``rtol``, when the linear solve does not converge or leaves a
    residual above ``rtol``, and when :math:`\kappa > 1/\sqrt\epsilon`.

    Implicit and unrolled agree at an exact root; finite differences differentiate what the
    solver computes. So an under-solved inner problem shows as implicit against the other two,
    a wrong optimality function (or ``argnums``) as implicit against both with a small
    residual, and a loose inner tolerance as noise in the finite differences (compare with a
    larger ``fd_step``).

    Args:
        outer_loss: :math:`L(x, \ldots)`, called as ``outer_loss(x, *args)``; a scalar tensor.
        solver: the inner solver ``solver(x0, *args)``, plain or already decorated (a
            decorated one is re-decorated here with ``optimality_fn`` and ``solve``).
        x0: the initial solution.
        *args: the solver's other positional arguments.
        optimality_fn: :math:`F(x, \ldots)`, zero at the solution, called as
            ``optimality_fn(x, *args)``.
        argnums: the arguments :math:`\theta` to differentiate (tensors or trees of real
            floating tensors); 0 is ``x0``.
        solve: the linear solver of the implicit hypergradient, as in ``custom_root`` (pass
            the one your own decoration uses).
        unroll: ``True`` differentiates the undecorated ``solver`` by autograd (reported as
            unavailable when its output carries no graph); a callable with the solver's
            signature is differentiated instead; ``False`` skips it.
        fd_directions: the number of random directions; ``None`` means every coordinate up
            to 10 hyperparameters, else 3.
        fd_step: the finite-difference step :math:`s`; ``None`` means the rule above.
        rtol: the relative tolerance of the warnings; ``None`` means 1e-4 in float64, 1e-2
            otherwise.
        condition_iters: the maximum number of Lanczos iterations.
        seed: seeds the random directions and the Lanczos start vector.

    Returns:
        A :class:`HypergradientReport`.

    Example:
        >>> X, y = torch.randn(20, 3, dtype=torch.float64), torch.randn(20, dtype=torch.float64)
        >>> def F(w, lam):                          # gradient of 0.5|Xw - y|^2 + 0.5 lam |w|^2
        ...     return X.T @ (X @ w - y) + lam * w
        >>> def fit(w, lam):
        ...     return torch.linalg.solve(X.T @ X + lam * torch.eye(3, dtype=lam.dtype), X.T @ y)
        >>> report = check_hypergradient(
        ...     lambda w, lam: w.square().sum(), fit, torch.zeros(3, dtype=torch.float64),
        ...     torch.tensor(1.0, dtype=torch.float64), optimality_fn=F,
        ...     solve=torchopt_lite.linear_solve.solve_cg(rtol=1e-12))
        >>> report.ok, report.agreement[("implicit", "finite_difference")] < 1e-8
        (True, True)

    References:
        Blondel et al., "Efficient and Modular Implicit Differentiation", NeurIPS 2022.
        Golub and Van Loan, "Matrix Computations", 4th ed., section 10.1 (Lanczos).
    """
    name = "check_hypergradient"
    argnums_t = _normalize_argnums(name, argnums)
    call_args = (x0, *args)
    if argnums_t[-1] >= len(call_args):
        raise ValueError(
            f"{name}: argnums {argnums_t} is out of range for a solver call with "
            f"{len(call_args)} positional arguments (x0 and {len(args)} more)."
        )
    if not isinstance(unroll, bool) and not callable(unroll):
        raise TypeError(f"{name}: unroll must be a bool or a solver; got {type(unroll).__name__}.")
    if fd_directions is not None and (
        isinstance(fd_directions, bool) or not isinstance(fd_directions, int) or fd_directions < 1
    ):
        raise ValueError(
            f"{name}: fd_directions must be a positive int or None; got {fd_directions!r}."
        )
    if fd_step is not None and not fd_step > 0.0:
        raise ValueError(f"{name}: fd_step must be > 0 or None; got {fd_step}.")
    if (
        isinstance(condition_iters, bool)
        or not isinstance(condition_iters, int)
        or (condition_iters < 1)
    ):
        raise ValueError(
            f"{name}: condition_iters must be a positive int; got {condition_iters!r}."
        )

    specs: list[tuple[Any, int]] = []
    theta: list[Tensor] = []
    for i in argnums_t:
        leaves, spec = optree.tree_flatten(call_args[i])
        for leaf in leaves:
            if not isinstance(leaf, Tensor) or not leaf.is_floating_point():
                got = leaf.dtype if isinstance(leaf, Tensor) else type(leaf).__name__
                raise TypeError(
                    f"{name}: argument {i} is in argnums, so its leaves must be real "
                    f"floating-point tensors; got {got} in {spec}."
                )
        specs.append((spec, len(leaves)))
        theta.extend(leaf.detach() for leaf in leaves)
    if not theta:
        raise ValueError(f"{name}: the arguments at argnums {argnums_t} hold no tensors.")
    flat_theta, unravel_theta = tree_ravel(theta)
    dtype, n = flat_theta.dtype, flat_theta.numel()
    eps = torch.finfo(dtype).eps
    tol = (1e-4 if dtype == torch.float64 else 1e-2) if rtol is None else rtol

    def with_theta(leaves: list[Tensor]) -> tuple[Any, ...]:
        new = list(call_args)
        start = 0
        for i, (spec, count) in zip(argnums_t, specs, strict=True):
            new[i] = optree.tree_unflatten(spec, leaves[start : start + count])
            start += count
        return tuple(new)

    def hyper(solver_fn: Callable[..., Any], leaves: list[Tensor]) -> tuple[Any, Tensor]:
        full = with_theta(leaves)
        x = solver_fn(*full)
        loss = outer_loss(x, *full[1:])
        if not isinstance(loss, Tensor) or loss.numel() != 1:
            got = tuple(loss.shape) if isinstance(loss, Tensor) else type(loss).__name__
            raise ValueError(f"{name}: outer_loss must return a scalar tensor; got {got}.")
        return x, loss.reshape(())

    def gradient(solver_fn: Callable[..., Any]) -> tuple[Any, Tensor]:
        leaves = [t.clone().requires_grad_(True) for t in theta]
        with torch.enable_grad():
            x, loss = hyper(solver_fn, leaves)
            grads = (
                torch.autograd.grad(loss, leaves, allow_unused=True)
                if loss.requires_grad
                else [None] * len(leaves)
            )
        flat = [torch.zeros_like(t) if g is None else g for g, t in zip(grads, leaves, strict=True)]
        return x, tree_ravel(flat)[0]

    warnings: list[str] = []
    unavailable: dict[str, str] = {}
    grads: dict[str, Tensor] = {}

    # Implicit: the solver decorated here, its linear solve recorded.
    implicit_solver = custom_root(optimality_fn, argnums_t, solve=solve)(solver)
    with record_solves() as infos:
        try:
            grads["implicit"] = gradient(implicit_solver)[1]
        except ConvergenceError as error:
            unavailable["implicit"] = "the linear solve did not converge"
            warnings.append(f"the implicit hypergradient's linear solve failed: {error}")
    solve_info = infos[-1] if infos else None

    # Unrolled: autograd through the solver's own iterations.
    if unroll is False:
        unavailable["unrolled"] = "unroll=False"
    else:
        unrolled_solver = unroll if callable(unroll) else inspect.unwrap(solver)
        try:
            x_unrolled, g = gradient(unrolled_solver)
        except RuntimeError as error:
            unavailable["unrolled"] = f"autograd through the solver failed: {error}"
        else:
            if any(
                isinstance(t, Tensor) and t.requires_grad for t in optree.tree_leaves(x_unrolled)
            ):
                grads["unrolled"] = g
            else:
                unavailable["unrolled"] = (
                    "the solver's output carries no autograd graph; pass unroll=<a "
                    "differentiable solver>"
                )

    # Finite differences along unit directions.
    generator = torch.Generator().manual_seed(seed)
    if fd_directions is None and n <= MAX_COORDINATES:
        directions = torch.eye(n, dtype=dtype)
    else:
        k = 3 if fd_directions is None else fd_directions
        directions = torch.randn(n, k, generator=generator, dtype=dtype)
        directions = directions / torch.linalg.vector_norm(directions, dim=0)
    directions = directions.to(flat_theta.device)
    step = eps ** (1 / 3) * max(1.0, float(flat_theta.abs().max())) if fd_step is None else fd_step

    def h(flat: Tensor) -> Tensor:
        with torch.no_grad():
            return hyper(solver, list(unravel_theta(flat)))[1]

    fd = torch.stack(
        [
            (h(flat_theta + step * d) - h(flat_theta - step * d)) / (2 * step)
            for d in directions.unbind(1)
        ]
    ).to(dtype)

    projections = {m: directions.T @ g.to(dtype) for m, g in grads.items()}
    projections["finite_difference"] = fd
    agreement = {
        (a, b): _relative_difference(projections[a], projections[b])
        for i, a in enumerate(METHODS)
        for b in METHODS[i + 1 :]
        if a in projections and b in projections
    }

    # The inner problem: optimality residual at the solver's output, and A's conditioning.
    with torch.no_grad():
        x_star = solver(*call_args)
        res = _norm(optimality_fn(x_star, *args))
        try:
            res0 = _norm(optimality_fn(x0, *args))
        except (TypeError, ValueError, RuntimeError):  # x0 is no point F accepts
            res0 = math.nan
    rel_res = res / res0 if res0 > 0 else (0.0 if res == 0 else math.inf)
    condition, lanczos_iters, operator = condition_estimate(
        optimality_fn, x_star, args, condition_iters, generator
    )

    if not rel_res <= math.sqrt(eps):
        warnings.append(
            f"the inner problem is not solved: optimality residual |F(x*)| = {res:.1e} "
            f"({rel_res:.1e} of |F(x0)|); the implicit hypergradient assumes F(x*) = 0"
        )
    for (a, b), diff in agreement.items():
        if not diff <= tol:
            warnings.append(f"{a} and {b} disagree: relative difference {diff:.1e} > {tol:.0e}")
    if solve_info is not None:
        if solve_info.converged is not None and not bool(solve_info.converged.all()):
            warnings.append(f"the linear solve did not converge: {solve_info}")
        elif not float(solve_info.residual.max()) <= tol:
            warnings.append(f"the linear solve left a residual above {tol:.0e}: {solve_info}")
    if not condition <= 1 / math.sqrt(eps):
        warnings.append(
            f"the linear system is ill-conditioned: cond(A) ~ {condition:.1e} > 1/sqrt(eps) = "
            f"{1 / math.sqrt(eps):.1e}; the implicit hypergradient may be inaccurate (add a "
            "ridge to the solve or regularise the inner problem)"
        )
    return HypergradientReport(
        implicit=grads.get("implicit"),
        unrolled=grads.get("unrolled"),
        finite_difference=fd,
        directions=directions,
        fd_step=step,
        agreement=agreement,
        optimality_residual=res,
        relative_optimality_residual=rel_res,
        solve_info=solve_info,
        condition=condition,
        condition_iterations=lanczos_iters,
        condition_operator=operator,
        unavailable=unavailable,
        warnings=tuple(warnings),
        rtol=tol,
    )


def _norm(tree: Any) -> float:
    return float(
        torch.sqrt(sum(leaf.detach().abs().square().sum() for leaf in optree.tree_leaves(tree)))
    )


def _relative_difference(a: Tensor, b: Tensor) -> float:
    scale = max(float(torch.linalg.vector_norm(a)), float(torch.linalg.vector_norm(b)))
    diff = float(torch.linalg.vector_norm(a - b))
    return 0.0 if diff == 0.0 else diff / scale
