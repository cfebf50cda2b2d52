"""A deep-equilibrium classifier on two interleaved spirals: Anderson forward, three backwards.

The hidden state of each point x is the fixed point of one tanh layer,

    z* = tanh(W z* + U x + b),      logits = V z* + c,

found by Anderson acceleration on the whole batch as one problem (one flat vector; under
``torch.func.vmap`` the same solver runs per sample, as the residual plot below does, but in eager
mode the batch stops as soon as it has converged). The solver runs under no_grad and is never
unrolled. W is rescaled to spectral norm <= 0.9, so the layer is a
contraction and the fixed point exists. The same model is trained three times, with the three
backward rules of ``fixed_point_layer``:

    implicit  (I - J)^T u = g solved by BiCGSTAB (the exact gradient at z*),
    phantom   5 damped unrolled VJP steps (Geng et al. 2021),
    jfb       J taken as 0 (Fung et al. 2022).

Then Anderson, Broyden and plain iteration solve the trained model's fixed points, and
examples/out/deq_synthetic.png shows their residual per iteration and the training curves.

Run: python examples/deq_synthetic.py
"""

from __future__ import annotations

import math
import os
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch

import torchopt_lite as to
from torchopt_lite.diff.implicit import anderson, broyden, fixed_point_iteration, fixed_point_layer

torch.set_num_threads(1)  # small ops: threads cost more than they give (and CPUs are shared)
torch.manual_seed(0)
HIDDEN, POINTS, STEPS, LR = 24, 400, 150, 0.02


def spirals(n: int, noise: float = 0.08) -> tuple[torch.Tensor, torch.Tensor]:
    t = torch.sqrt(torch.rand(n)) * 3 * math.pi
    label = torch.randint(0, 2, (n,))
    angle = t + math.pi * label
    x = torch.stack([t * torch.cos(angle), t * torch.sin(angle)], dim=1) / (3 * math.pi)
    return x + noise * torch.randn(n, 2), label


X_train, y_train = spirals(POINTS)
X_test, y_test = spirals(POINTS)


def init_params() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return {
        "W": torch.randn(HIDDEN, HIDDEN, generator=g) / math.sqrt(HIDDEN),
        "U": 2.0 * torch.randn(HIDDEN, 2, generator=g),
        "b": 0.5 * torch.randn(HIDDEN, generator=g),
        "V": torch.randn(2, HIDDEN, generator=g) / math.sqrt(HIDDEN),
        "c": torch.zeros(2),
    }


def contractive(W: torch.Tensor) -> torch.Tensor:
    """W scaled to spectral norm <= 0.9 (differentiably)."""
    return W * (0.9 / torch.clamp_min(torch.linalg.matrix_norm(W, 2), 0.9))


def T(z, W, U, b, x):  # z: (batch, HIDDEN) or (HIDDEN,), x: (batch, 2) or (2,)
    return torch.tanh(z @ W.T + x @ U.T + b)


def forward(layer, params, x):
    W = contractive(params["W"])
    z, info = layer(torch.zeros(x.shape[0], HIDDEN), W, params["U"], params["b"], x)
    return z @ params["V"].T + params["c"], info


FORWARD = anderson(m=5, maxiter=60, rtol=1e-6)
BACKWARDS = {
    "implicit": dict(solve=to.linear_solve.solve_bicgstab(maxiter=20, rtol=1e-6)),
    "phantom": dict(k=5, damping=0.5),
    "jfb": {},
}


def train(backward: str) -> tuple[dict[str, torch.Tensor], list[float], float]:
    layer = fixed_point_layer(
        T, FORWARD, argnums=(1, 2, 3), backward=backward, **BACKWARDS[backward]
    )
    params = {k: v.requires_grad_() for k, v in init_params().items()}
    optimizer = to.Adam(params.values(), lr=LR)
    losses = []
    start = time.perf_counter()
    for step in range(STEPS):
        logits, info = forward(layer, params, X_train)
        loss = torch.nn.functional.cross_entropy(logits, y_train)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
        if step % 50 == 0 or step == STEPS - 1:
            print(
                f"  {backward:8s} step {step:3d}  loss {float(loss.detach()):.4f}  "
                f"Anderson iterations {int(info.iterations)}"
            )
    return params, losses, time.perf_counter() - start


def accuracy(params) -> float:
    layer = fixed_point_layer(T, FORWARD, argnums=(1, 2, 3))
    with torch.no_grad():
        logits, _ = forward(layer, params, X_test)
    return float((logits.argmax(1) == y_test).float().mean())


results = {}
for backward in BACKWARDS:
    params, losses, seconds = train(backward)
    results[backward] = (params, losses, seconds, accuracy(params))
    print(f"{backward:8s}: test accuracy {results[backward][3]:.3f}, {seconds:.1f} s")

# Residual per iteration of the three forward solvers on the trained (implicit) model, per test
# point (vmap) and in float64 (in float32 every solver stalls near the rounding level, ~1e-7).
params = {k: v.detach().double() for k, v in results["implicit"][0].items()}
W, U, b = contractive(params["W"]), params["U"], params["b"]
X_plot = X_test.double()
opts = dict(maxiter=60, atol=0.0, rtol=0.0, check_every=None)
z0 = torch.zeros(HIDDEN, dtype=torch.float64)
traces = {}
for name, solver in {
    "plain iteration": fixed_point_iteration(**opts),
    "Anderson (m=5)": anderson(m=5, **opts),
    "Broyden": broyden(**opts),
}.items():
    _, info = torch.func.vmap(lambda x, s=solver: s(lambda z: T(z, W, U, b, x), z0))(X_plot)
    traces[name] = info.trace.median(0).values
    print(
        f"{name:16s}: median residual after 10 / 30 steps "
        f"{float(traces[name][9]):.1e} / {float(traces[name][29]):.1e}"
    )

fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
for name, trace in traces.items():
    ax1.semilogy(range(1, len(trace) + 1), trace.clamp_min(1e-16), label=name)
ax1.set(xlabel="iteration", ylabel="median |T(z) - z| over test points", title="forward solvers")
ax1.legend()
for backward, (_, losses, seconds, acc) in results.items():
    ax2.plot(losses, label=f"{backward} ({seconds:.1f} s, test acc {acc:.2f})")
ax2.set(xlabel="step", ylabel="training cross-entropy", title="backward rules")
ax2.legend()
fig.tight_layout()
os.makedirs(os.path.join(os.path.dirname(__file__), "out"), exist_ok=True)
path = os.path.join(os.path.dirname(__file__), "out", "deq_synthetic.png")
fig.savefig(path, dpi=120)
print(f"saved {path}")
