"""Deep-equilibrium layer: forward solvers (plain, Anderson, Broyden) and backward rules.

T(z) = tanh(z W^T + x U^T + b), hidden 64, batch 256, float32, W symmetric with spectrum
in [-0.5, 0.97]. Forward: each solver to a relative residual of 1e-4 on the batch as one problem
(eager, early stop checked every 5 steps), and Anderson per sample under ``torch.func.vmap``
(masked, 60 steps). Backward: one training step (forward by Anderson + backward to W, U, b) with the
implicit rule (BiCGSTAB, rtol 1e-4), phantom (k = 5, damping 0.5) and JFB, and each gradient's
cosine with the implicit one solved tightly (float64, BiCGSTAB rtol 1e-10).
"""

from __future__ import annotations

import torch

from benchmarks._timing import report, single_thread, timeit
from torchopt_lite import linear_solve
from torchopt_lite.diff.implicit import anderson, broyden, fixed_point_iteration, fixed_point_layer

HIDDEN, BATCH = 64, 256


def _problem() -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(0)
    Q, _ = torch.linalg.qr(torch.randn(HIDDEN, HIDDEN, generator=g))
    W = Q @ torch.diag(torch.linspace(-0.5, 0.97, HIDDEN)) @ Q.T  # plain iteration is slow
    U = 0.1 * torch.randn(HIDDEN, 2, generator=g)
    b = 0.1 * torch.randn(HIDDEN, generator=g)
    x = torch.randn(BATCH, 2, generator=g)
    return W, U, b, x


def T(z, W, U, b, x):
    return torch.tanh(z @ W.T + x @ U.T + b)


def main() -> None:
    single_thread()
    W, U, b, x = _problem()
    z0 = torch.zeros(BATCH, HIDDEN)
    opts = dict(rtol=1e-4, maxiter=500, check_every=5)
    solvers = {
        "plain iteration": fixed_point_iteration(**opts),
        "anderson(m=5)": anderson(m=5, **opts),
        "broyden": broyden(memory=30, **opts),
    }
    times, iterations = {}, {}
    for name, solver in solvers.items():

        def run(solver=solver):
            return solver(lambda z: T(z, W, U, b, x), z0)

        times[name] = timeit(run, repeat=5, number=3)
        iterations[name] = int(run()[1].iterations)
    per_sample = anderson(m=5, rtol=1e-4, maxiter=60)

    def run_vmap():
        return torch.func.vmap(
            lambda xi: per_sample(lambda z: T(z, W, U, b, xi), torch.zeros(HIDDEN))
        )(x)

    times["anderson(m=5), vmap per sample, 60 steps"] = timeit(run_vmap, repeat=3, number=1)
    vmap_iters = run_vmap()[1].iterations
    report("forward solve to relative residual 1e-4", times, "plain iteration")
    for name, count in iterations.items():
        print(f"  iterations {name:<31s} {count}")
    print(
        f"  iterations per sample under vmap: median {int(vmap_iters.median())}, "
        f"max {int(vmap_iters.max())}"
    )

    # Backward rules: one training step each, and the gradient's cosine with a tight reference.
    params = [p.clone().requires_grad_() for p in (W, U, b)]
    forward = anderson(m=5, rtol=1e-4, maxiter=500)
    rules = {
        "implicit (bicgstab rtol 1e-4)": dict(
            backward="implicit", solve=linear_solve.solve_bicgstab(rtol=1e-4, maxiter=100)
        ),
        "phantom (k=5, damping=0.5)": dict(backward="phantom", k=5, damping=0.5),
        "jfb": dict(backward="jfb"),
    }

    def loss(layer, params, z0, x):
        z, _ = layer(z0, *params, x)
        return z.square().mean()

    exact = fixed_point_layer(
        T,
        anderson(m=5, atol=1e-12, rtol=0.0, maxiter=500),
        argnums=(1, 2, 3),
        solve=linear_solve.solve_bicgstab(rtol=1e-10),
    )
    p64 = [p.double().requires_grad_() for p in (W, U, b)]
    ref = torch.autograd.grad(loss(exact, p64, z0.double(), x.double()), p64)
    ref_flat = torch.cat([r.reshape(-1) for r in ref])
    step_times, cosines = {}, {}
    for name, options in rules.items():
        layer = fixed_point_layer(T, forward, argnums=(1, 2, 3), **options)

        def step(layer=layer):
            return torch.autograd.grad(loss(layer, params, z0, x), params)

        step_times[name] = timeit(step, repeat=5, number=3)
        flat = torch.cat([g.reshape(-1) for g in step()]).double()
        cosines[name] = float(torch.nn.functional.cosine_similarity(flat, ref_flat, dim=0))
    report("training step (Anderson forward + backward)", step_times, "jfb")
    for name, cos in cosines.items():
        print(f"  cosine with the exact gradient {name:<31s} {cos:.6f}")


if __name__ == "__main__":
    main()
