"""The input contract is torch.optim's: every optimizer x API x layout, step by step.

Each optimizer of the registry runs through the functional API in place and out of place, the
``torch.optim``-style class and a ``MetaOptimizer``, on parameters and gradients in the layouts
users hand us (``tests/_layouts.py``), and must match ``torch.optim`` (its default path) after
every step. Views live in sentinel-filled storages: no step may write outside them.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import Tensor, nn

import torchopt_lite
from tests._layouts import LAYOUTS, Problem, make_problem
from tests.alias._registry import CASES, Case

APIS = ("inplace", "pure", "class", "meta")
OOP = {
    "sgd": "SGD", "adam": "Adam", "adamw": "AdamW", "rmsprop": "RMSprop", "adagrad": "Adagrad",
    "adadelta": "Adadelta", "adamax": "Adamax", "radam": "RAdam",
}  # fmt: skip
STEPS = 3


def tolerance(expected: Tensor) -> dict[str, Any]:
    """float64: the order of roundings only.

    Lower precisions: torch.optim's own tolerance for two implementations of a step
    (``test_mixed_device_dtype`` in its test_optim.py: five times torch.testing's single-op
    ``rtol`` for the dtype, "as we are collating lots of ops together"), taken relative to each
    element and, for the absolute part, to the leaf's largest magnitude: a functional step rounds
    the update before adding it (torch.optim adds in one rounding), and where a parameter passes
    near zero that rounding of a number of the leaf's scale is all that is left.
    """
    if expected.dtype in (torch.float64, torch.complex128):
        return {"rtol": 1e-10, "atol": 1e-12}
    rtol, _ = torch.testing._comparison.get_tolerances(expected.dtype, rtol=None, atol=None)
    scale = expected.abs().max().item() if expected.numel() else 1.0
    return {"rtol": 5 * rtol, "atol": 5 * rtol * max(scale, 1e-3)}


def optimizer_run(opt: torch.optim.Optimizer, problem: Problem) -> list[list[Tensor]]:
    """Parameters after each ``step()`` of a torch.optim-style optimizer over ``problem``."""
    out = []
    for grads in problem.grads:
        for p, g in zip(problem.params, grads, strict=True):
            p.grad = g
        opt.step()
        out.append([p.detach().clone() for p in problem.params])
    return out


def torch_optim_run(case: Case, problem: Problem) -> list[list[Tensor]]:
    """The torch.optim counterpart (its default path)."""
    return optimizer_run(case.torch_cls(problem.params, **case.torch_kwargs), problem)


def functional_run(case: Case, problem: Problem, inplace: bool) -> list[list[Tensor]]:
    opt = case.make()
    params = list(problem.params)
    state = opt.init(params)
    out = []
    for grads in problem.grads:
        updates, state = opt.update(list(grads), state, params=params, inplace=inplace)
        params = torchopt_lite.apply_updates(params, updates, inplace=inplace)
        out.append([p.detach().clone() for p in params])
    return out


def class_run(case: Case, problem: Problem) -> list[list[Tensor]]:
    return optimizer_run(
        getattr(torchopt_lite, OOP[case.alias])(problem.params, **case.kwargs), problem
    )


def _loss(layout: str, params: list[Tensor], grads: list[Tensor], sources: list[Tensor]) -> Any:
    """A loss whose gradients are ``grads``, in their layout: autograd returns stride-0
    gradients for a ``sum()`` and one tensor for both terms of ``a + b``."""
    if layout == "expanded_grad":
        total = 0.0
        for p, c in zip(params, sources, strict=True):
            dims = [d for d in range(p.dim()) if c.dim() == 0 or c.shape[d] == 1]
            total = total + (p.sum(dim=dims, keepdim=True) * c).sum()
        return total
    if layout == "aliased_grads":
        return (grads[0] * (params[0] + params[1])).sum()
    return sum((g.conj() * p).real.sum() for p, g in zip(params, grads, strict=True))


def meta_run(case: Case, problem: Problem, layout: str) -> list[list[Tensor]]:
    module = nn.Module()
    for i, p in enumerate(problem.params):
        module.register_parameter(f"p{i}", nn.Parameter(p))
    meta = torchopt_lite.MetaOptimizer(module, case.make())
    out = []
    for k, grads in enumerate(problem.grads):
        params = [getattr(module, f"p{i}") for i in range(len(problem.params))]
        sources = problem.sources[k] if problem.sources else []
        meta.step(_loss(layout, params, grads, sources))
        out.append([getattr(module, f"p{i}").detach().clone() for i in range(len(params))])
    return out


def run(api: str, case: Case, problem: Problem, layout: str) -> list[list[Tensor]]:
    if api in ("inplace", "pure"):
        return functional_run(case, problem, inplace=api == "inplace")
    if api == "class":
        return class_run(case, problem)
    return meta_run(case, problem, layout)


def check(case: Case, api: str, layout: str, dtype: torch.dtype, device: str = "cpu") -> None:
    expected = torch_optim_run(case, make_problem(layout, dtype, STEPS, device=device))
    problem = make_problem(layout, dtype, STEPS, device=device)
    outside = problem.outside()
    got = run(api, case, problem, layout)
    for step, (e_step, g_step) in enumerate(zip(expected, got, strict=True)):
        for i, (e, g) in enumerate(zip(e_step, g_step, strict=True)):
            assert g.dtype == e.dtype and g.shape == e.shape
            where = f"step {step} leaf {i}"
            torch.testing.assert_close(
                g, e, equal_nan=True, **tolerance(e), msg=lambda m, where=where: f"{where}: {m}"
            )
    for before, (storage, mask) in zip(outside, problem.storages, strict=True):
        assert torch.equal(storage[mask], before), "a step wrote outside the leaves"


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_float64_layouts(case: Case, api: str, layout: str) -> None:
    check(case, api, layout, torch.float64)


LOW_PRECISION = [
    *((dtype, layout) for dtype in (torch.float32, torch.bfloat16, torch.float16)
      for layout in ("contiguous", "strided", "expanded_grad")),
    (torch.float32, "complex"),  # complex64; torch.optim has no complex32 path
]  # fmt: skip


@pytest.mark.parametrize(("dtype", "layout"), LOW_PRECISION, ids=lambda x: str(x))
@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_low_precision(case: Case, api: str, dtype: torch.dtype, layout: str) -> None:
    check(case, api, layout, dtype)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_cuda_layouts(case: Case, api: str, layout: str) -> None:
    """The same contract on CUDA (float32: the fused kernels run there, float64 is slow)."""
    check(case, api, layout, torch.float32, device="cuda")


# -- random layouts (hypothesis) ----------------------------------------------------------------

LAYOUT = st.sampled_from(["contiguous", "transposed", "strided", "expanded", "aliased"])


def _in_layout(values: Tensor, layout: str, previous: Tensor | None) -> Tensor:
    """``values`` (for a gradient) in ``layout``; "aliased" reuses the previous leaf's tensor
    when it has the same shape."""
    if layout == "transposed" and values.dim() == 2:
        return values.t().contiguous().t()
    if layout == "strided" and values.dim() >= 1:
        storage = torch.zeros((*values.shape[:-1], 3 * values.shape[-1]), dtype=values.dtype)
        view = storage[..., ::3]
        view.copy_(values)
        return view
    if layout == "expanded" and values.numel():
        return values.reshape(-1)[:1].reshape([1] * values.dim()).expand(values.shape)
    if layout == "aliased" and previous is not None and previous.shape == values.shape:
        return previous
    return values


@settings(max_examples=40, deadline=None, database=None, derandomize=True)
@given(
    case=st.sampled_from(CASES),
    shapes=st.lists(
        st.lists(st.integers(0, 3), min_size=0, max_size=2).map(tuple), min_size=1, max_size=3
    ),
    layouts=st.lists(LAYOUT, min_size=3, max_size=3),
    inplace=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_random_layouts_match_torch_optim(
    case: Case, shapes: list, layouts: list, inplace: bool, seed: int
) -> None:
    """Any mix of gradient layouts, shapes (0-d and empty included): the functional step
    equals torch.optim's, and in place it writes nothing but the leaves."""
    gen = torch.Generator().manual_seed(seed)
    params0 = [torch.randn(s, generator=gen, dtype=torch.float64) for s in shapes]
    steps = [[torch.randn(s, generator=gen, dtype=torch.float64) for s in shapes] for _ in range(2)]
    ref = [p.clone() for p in params0]
    torch_opt = case.torch_cls(ref, **case.torch_kwargs)
    opt = case.make()
    params = [p.clone() for p in params0]
    state = opt.init(params)
    for values in steps:
        grads: list[Tensor] = []
        for v, layout in zip(values, layouts, strict=False):
            grads.append(_in_layout(v, layout, grads[-1] if grads else None))
        grads += values[len(grads) :]
        expected_grads = [g.clone() for g in grads]
        for p, g in zip(ref, expected_grads, strict=True):
            p.grad = g
        torch_opt.step()
        updates, state = opt.update(grads, state, params=params, inplace=inplace)
        params = torchopt_lite.apply_updates(params, updates, inplace=inplace)
        for a, b in zip(params, ref, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
