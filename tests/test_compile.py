"""torch.compile(fullgraph=True): functional steps and an unrolled MAML inner loop, no graph break.

Under a trace the dispatch takes per-leaf ops (the compiler fuses them) and skips the kernels
and the address checks; these tests hold the results to the eager ones.
"""

from __future__ import annotations

import pytest
import torch
from torch.func import functional_call, grad

import torchopt_lite

# torch 2.13's inductor calls a deprecated torch.jit helper while compiling, and dynamo
# instantiates every autograd.Function it traces (here the out-of-place sqrt of torchopt_lite._ops,
# whose derivative is 0 at 0), which warns; neither is ours to fix.
pytestmark = [
    pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings(
        "ignore:<class 'torch.autograd.function.Function'> should not be instantiated"
        ":DeprecationWarning"
    ),
]

OPTIMIZERS = {
    "sgd": lambda: torchopt_lite.sgd(0.1, momentum=0.9, weight_decay=0.01),
    "adam": lambda: torchopt_lite.adam(0.05),
    "adamw": lambda: torchopt_lite.adamw(0.05, weight_decay=0.1),
}


@pytest.fixture(autouse=True)
def _fresh_dynamo() -> None:
    torch._dynamo.reset()


def _params(seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {"w": torch.randn(4, 3, generator=gen), "b": torch.randn(3, generator=gen)}


@pytest.mark.parametrize("inplace", [True, False], ids=["inplace", "pure"])
@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_functional_step_compiles_without_graph_break(name: str, inplace: bool) -> None:
    opt = OPTIMIZERS[name]()

    def step(params: dict, grads: dict, state: object) -> tuple[dict, object]:
        updates, state = opt.update(grads, state, params=params, inplace=inplace)
        return torchopt_lite.apply_updates(params, updates, inplace=inplace), state

    compiled = torch.compile(step, fullgraph=True)
    eager_params, traced_params = _params(), _params()
    eager_state, traced_state = opt.init(eager_params), opt.init(traced_params)
    for k in range(3):
        grads = {key: v * (k + 1) for key, v in _params(k + 1).items()}
        eager_grads = {key: v.clone() for key, v in grads.items()}
        eager_params, eager_state = step(eager_params, eager_grads, eager_state)
        traced_params, traced_state = compiled(
            traced_params, {key: v.clone() for key, v in grads.items()}, traced_state
        )
        for key in eager_params:
            torch.testing.assert_close(traced_params[key], eager_params[key])


@pytest.mark.parametrize("name", ["sgd-momentum", "adam"])
def test_maml_inner_loop_compiles_and_matches_eager(name: str) -> None:
    """Five out-of-place steps with torch.func.grad, and the meta-gradient through them."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(1, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    x = torch.randn(10, 1)
    y = torch.sin(x)
    opt = (
        torchopt_lite.sgd(0.1, momentum=0.9) if name == "sgd-momentum" else torchopt_lite.adam(0.1)
    )

    def loss_fn(p: dict) -> torch.Tensor:
        return ((functional_call(net, p, (x,)) - y) ** 2).mean()

    def adapted_loss(params: dict) -> torch.Tensor:
        state = opt.init(params)
        for _ in range(5):
            updates, state = opt.update(grad(loss_fn)(params), state, params=params, inplace=False)
            params = torchopt_lite.apply_updates(params, updates, inplace=False)
        return loss_fn(params)

    params = {k: v.detach().requires_grad_() for k, v in net.named_parameters()}
    eager = adapted_loss(params)
    traced = torch.compile(adapted_loss, fullgraph=True)(params)
    torch.testing.assert_close(traced, eager, rtol=1e-5, atol=1e-6)
    eager_meta = torch.autograd.grad(eager, list(params.values()))
    traced_meta = torch.autograd.grad(traced, list(params.values()))
    for a, b in zip(traced_meta, eager_meta, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
