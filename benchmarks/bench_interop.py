"""scipy bridge: Hessian-vector products by ``hessian_backend='autograd'`` vs ``'func'``.

Decides the default of ``interop.minimize(..., hessian_backend=...)`` (issue 11). The problem is
L2-regularised logistic regression with n = 10, 1,000 and 100,000 parameters, 1 thread:

* first call: a fresh process (torch and the problem loaded, not timed) times the first value,
  gradient and Hessian-vector product, as ``minimize`` asks for them: ``torch.func``'s
  forward-mode set-up is paid here;
* steady state, new point: one product at a point other than the last one (an outer iteration);
* steady state, same point: one more product at the last point (an inner CG iteration);
* end to end: ``minimize(..., method='trust-krylov')`` to convergence (n = 10 and 1,000).
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import time
from collections.abc import Callable

import numpy as np
import torch

from benchmarks import _timing
from benchmarks._timing import generator, report, single_thread, timeit_interleaved
from torchopt_lite.interop import minimize
from torchopt_lite.interop._flat import FlatParams
from torchopt_lite.interop._objective import Objective

SIZES = {10: 200, 1_000: 1_000, 100_000: 64}  # parameters n: samples m
BACKENDS = ("autograd", "func")
LAM = 1e-2


def _loss(n: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """Mean logistic loss of (X, y) plus (LAM / 2) |w|^2, X of shape (m, n)."""
    g = generator(0)
    m = SIZES[n]
    X = torch.randn(m, n, generator=g, dtype=torch.float64, device=_timing.DEVICE) / n**0.5
    y = (torch.rand(m, generator=g, dtype=torch.float64, device=_timing.DEVICE) < 0.5).double()

    def loss(w: torch.Tensor) -> torch.Tensor:
        z = X @ w
        return (torch.nn.functional.softplus(z) - y * z).mean() + 0.5 * LAM * (w * w).sum()

    return loss


def _objective(n: int, backend: str) -> tuple[Objective, list[np.ndarray], np.ndarray]:
    """The objective, two points and a direction."""
    w = torch.zeros(n, dtype=torch.float64, device=_timing.DEVICE)
    objective = Objective(_loss(n), FlatParams(w, "bench"), hessian_backend=backend)
    rng = np.random.default_rng(0)
    return objective, [rng.normal(size=n), rng.normal(size=n)], rng.normal(size=n)


def first_call(n: int, backend: str) -> None:
    """Run in a fresh process: print the seconds of the first value, gradient and product."""
    single_thread()
    _timing.use_device(os.environ.get("BENCH_DEVICE", "cpu"))
    objective, (x, _), p = _objective(n, backend)
    _timing.sync()
    start = time.perf_counter()
    objective.value_and_grad(x)
    objective.hessp(x, p)
    _timing.sync()
    print(time.perf_counter() - start)


def _first_call_in_subprocess(n: int, backend: str) -> float:
    code = f"from benchmarks.bench_interop import first_call; first_call({n}, {backend!r})"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "BENCH_DEVICE": str(_timing.DEVICE)}
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True, env=env
    )
    return float(out.stdout.strip().splitlines()[-1])


def _steady(n: int) -> None:
    new_point: dict[str, Callable[[], object]] = {}
    same_point: dict[str, Callable[[], object]] = {}
    for backend in BACKENDS:
        objective, points, p = _objective(n, backend)
        cycle = itertools.cycle(points)
        objective.hessp(points[0], p)  # set-up paid outside the timings
        new_point[backend] = lambda o=objective, c=cycle, p=p: o.hessp(next(c), p)
        same_point[backend] = lambda o=objective, x=points[0], p=p: o.hessp(x, p)
    rounds = 5 if n >= 100_000 else 9
    for title, fns in (("new point", new_point), ("same point", same_point)):
        times = timeit_interleaved(fns, rounds=rounds, number=3, warmup=1)
        report(
            f"Hessian-vector product, {title}, n={n:,} (m={SIZES[n]:,}): hessian_backend=",
            times,
            baseline="autograd",
        )


def _end_to_end(n: int) -> None:
    loss = _loss(n)
    w0 = torch.zeros(n, dtype=torch.float64, device=_timing.DEVICE)
    nhev = {}

    def run(backend: str) -> None:
        _, result = minimize(loss, w0, method="trust-krylov", hessian_backend=backend)
        nhev[backend] = (result.nit, result.nhev)

    times = timeit_interleaved({b: lambda b=b: run(b) for b in BACKENDS}, rounds=5, number=1)
    nit, hev = nhev["autograd"]
    report(
        f"minimize(method='trust-krylov'), n={n:,}: {nit} iterations, {hev} products; "
        "hessian_backend=",
        times,
        baseline="autograd",
    )


def main() -> None:
    single_thread()
    for n in SIZES:
        times = {b: _first_call_in_subprocess(n, b) for b in BACKENDS}
        report(
            f"first value + gradient + Hessian-vector product in a fresh process, n={n:,}: "
            "hessian_backend=",
            times,
            baseline="autograd",
        )
        _steady(n)
        if n <= 1_000:
            _end_to_end(n)


if __name__ == "__main__":
    main()
