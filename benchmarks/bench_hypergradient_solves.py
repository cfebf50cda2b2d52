"""Cost vs accuracy of the linear solves behind an implicit hypergradient (issue 14, item 5).

Two problems with a per-feature L2 penalty :math:`\\lambda \\in \\mathbb{R}^p` (p = 300 features,
n = 400 training and 400 validation samples, float64, features with singular values
:math:`\\sigma_k = 1/k`, so the Gram matrix's spectrum decays like :math:`k^{-2}`, as kernel and
natural-data spectra do), hyperparameter :math:`\\lambda_i = 10^{-4}`, outer loss the validation
loss:

- ridge regression, whose hypergradient has the closed form
  :math:`-w^\\star \\odot H^{-1} \\nabla L_{val}(w^\\star)`;
- L2-regularised logistic regression (inner problem solved by Newton's method to machine
  precision), referenced by the same formula with the dense Hessian solved directly.

For each linear solve given to ``custom_root(..., solve=...)``: the relative error of the
hypergradient and its cosine with the reference, the number of matvecs (Hessian-vector
products, counted by wrapping ``matvec``; a batched call counts its batch), and the wall time
of the backward pass (solve + one VJP), as a ratio to the dense solve's. Neumann and
first-order use :math:`\\alpha = 1/\\lambda_{\\max}(H)`, given to them (its estimate is not
counted). CG counts every matvec it runs, including the masked steps up to its next convergence
check (every 10 steps); "K steps" rows use ``rtol=0`` and ``maxiter=K`` (a truncated solve).
Ridge runs again with :math:`\\lambda_i = 10^{-6}` (a worse-conditioned Hessian). Small
problems: the times are dominated by per-call overhead, the matvec counts are what scales.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch._C import _functorch as functorch  # only to read a vmapped matvec's batch size

from benchmarks._timing import generator, single_thread, timeit
from torchopt_lite import linear_solve
from torchopt_lite.diff.implicit import custom_root

D = torch.float64
N, P = 400, 300


def _features(g: torch.Generator) -> torch.Tensor:
    U, _ = torch.linalg.qr(torch.randn(N, P, generator=g, dtype=D))
    V, _ = torch.linalg.qr(torch.randn(P, P, generator=g, dtype=D))
    sigma = 1.0 / torch.arange(1, P + 1, dtype=D)
    return U @ torch.diag(sigma) @ V.T


def _data(logistic: bool) -> tuple[torch.Tensor, ...]:
    g = generator(0)
    X, X_val = _features(g), _features(g)
    w_true = torch.randn(P, generator=g, dtype=D) * 30
    if logistic:
        y, y_val = ((torch.sigmoid(Z @ w_true) > 0.5).to(D) for Z in (X, X_val))
    else:
        y = X @ w_true + 0.01 * torch.randn(N, generator=g, dtype=D)
        y_val = X_val @ w_true + 0.01 * torch.randn(N, generator=g, dtype=D)
    return X, y, X_val, y_val


def ridge_optimality(w: torch.Tensor, lam: torch.Tensor, X: torch.Tensor, y: torch.Tensor) -> Any:
    return X.T @ (X @ w - y) + lam * w


def ridge_val_loss(w: torch.Tensor, X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return 0.5 * ((X @ w - y) ** 2).sum()


def logistic_optimality(
    w: torch.Tensor, lam: torch.Tensor, X: torch.Tensor, y: torch.Tensor
) -> Any:
    return X.T @ (torch.sigmoid(X @ w) - y) + lam * w


def logistic_val_loss(w: torch.Tensor, X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.binary_cross_entropy_with_logits(X @ w, y, reduction="sum")


def _hessian(logistic: bool, w: torch.Tensor, lam: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
    if logistic:
        s = torch.sigmoid(X @ w)
        return X.T @ ((s * (1 - s))[:, None] * X) + torch.diag(lam)
    return X.T @ X + torch.diag(lam)


def _inner_solution(logistic: bool, lam: torch.Tensor, X: torch.Tensor, y: torch.Tensor):
    if not logistic:
        return torch.linalg.solve(_hessian(False, None, lam, X), X.T @ y)  # type: ignore[arg-type]
    w = torch.zeros(P, dtype=D)
    for _ in range(100):  # Newton's method, to machine precision
        grad = logistic_optimality(w, lam, X, y)
        if float(grad.norm()) < 1e-13:
            break
        w = w - torch.linalg.solve(_hessian(True, w, lam, X), grad)
    return w


def _batch_size(t: torch.Tensor) -> int:
    size = 1
    while functorch.is_batchedtensor(t):
        bdim = functorch.maybe_get_bdim(t)
        t = functorch.get_unwrapped(t)
        size *= t.shape[bdim]
    return size


def _counting(solve: Callable[..., Any], counter: list[int]) -> Callable[..., Any]:
    def counted_solve(matvec: Callable[[Any], Any], b: Any) -> Any:
        def counted_matvec(v: torch.Tensor) -> Any:
            counter[0] += _batch_size(v)
            return matvec(v)

        return solve(counted_matvec, b)

    return counted_solve


def _solves(lam_max: float) -> dict[str, Callable[..., Any]]:
    alpha = 1.0 / lam_max
    return {
        "dense (solve_inv)": linear_solve.solve_inv(),
        "cg 10 steps": linear_solve.solve_cg(rtol=0.0, maxiter=10),
        "cg 30 steps": linear_solve.solve_cg(rtol=0.0, maxiter=30),
        "cg 100 steps": linear_solve.solve_cg(rtol=0.0, maxiter=100),
        "cg rtol=1e-4": linear_solve.solve_cg(rtol=1e-4),
        "cg rtol=1e-8": linear_solve.solve_cg(rtol=1e-8),
        "nystrom-pcg rank=30 rtol=1e-4": linear_solve.solve_nystrom_pcg(rank=30, rtol=1e-4),
        "nystrom-pcg rank=10 rtol=1e-8": linear_solve.solve_nystrom_pcg(rank=10, rtol=1e-8),
        "nystrom-pcg rank=30 rtol=1e-8": linear_solve.solve_nystrom_pcg(rank=30, rtol=1e-8),
        "nystrom-pcg rank=100 rtol=1e-8": linear_solve.solve_nystrom_pcg(rank=100, rtol=1e-8),
        "nystrom-pcg rank=30, 10 steps": linear_solve.solve_nystrom_pcg(
            rank=30, rtol=0.0, maxiter=10
        ),
        "neumann K=10 (a=1/L)": linear_solve.solve_inv(ns=True, maxiter=10, alpha=alpha),
        "neumann K=100 (a=1/L)": linear_solve.solve_inv(ns=True, maxiter=100, alpha=alpha),
        "first-order identity (a=1/L)": linear_solve.solve_identity(alpha=alpha),
    }


def _table(logistic: bool, reg: float) -> None:
    X, y, X_val, y_val = _data(logistic)
    optimality = logistic_optimality if logistic else ridge_optimality
    val_loss = logistic_val_loss if logistic else ridge_val_loss
    lam = torch.full((P,), reg, dtype=D)
    w_star = _inner_solution(logistic, lam, X, y)
    H = _hessian(logistic, w_star, lam, X)
    # The reference: -w* . H^{-1} grad L_val(w*), dense, float64 (the closed form for ridge).
    w_ = w_star.clone().requires_grad_()
    (g_val,) = torch.autograd.grad(val_loss(w_, X_val, y_val), w_)
    reference = -w_star * torch.linalg.solve(H, g_val)
    eigs = torch.linalg.eigvalsh(H)
    name = "logistic regression" if logistic else "ridge regression"
    print(
        f"\n## {name}: p={P}, lambda_i={reg:g}, cond(H)={float(eigs[-1] / eigs[0]):.1e}, "
        f"|hypergradient|={float(reference.norm()):.3e}"
    )
    print(
        f"  {'solve':<32s} {'rel. error':>10s} {'cosine':>8s} {'matvecs':>8s} {'time':>10s} "
        f"{'vs dense':>9s}"
    )

    rows = []
    for label, solve in _solves(float(eigs[-1])).items():
        counter = [0]
        solver = custom_root(optimality, argnums=1, solve=_counting(solve, counter))(
            lambda w, lam, X, y: w_star
        )

        def hypergradient(solver: Callable[..., Any] = solver) -> torch.Tensor:
            lam_ = lam.clone().requires_grad_()
            (g,) = torch.autograd.grad(val_loss(solver(w_star, lam_, X, y), X_val, y_val), lam_)
            return g

        got = hypergradient()
        matvecs = counter[0]
        error = float((got - reference).norm() / reference.norm())
        cosine = float(torch.nn.functional.cosine_similarity(got, reference, dim=0))
        seconds = timeit(hypergradient, repeat=5, number=2, warmup=1)
        rows.append((label, error, cosine, matvecs, seconds))
    dense = rows[0][-1]
    for label, error, cosine, matvecs, seconds in rows:
        print(
            f"  {label:<32s} {error:10.1e} {cosine:8.4f} {matvecs:8d} {seconds * 1e3:8.2f}ms "
            f"{seconds / dense:8.2f}x"
        )


def main() -> None:
    _table(logistic=False, reg=1e-4)
    _table(logistic=False, reg=1e-6)
    _table(logistic=True, reg=1e-4)


if __name__ == "__main__":
    single_thread()
    main()
