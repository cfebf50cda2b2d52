"""Every optimizer beyond TorchOpt's eight, through the generic checks.

For each case of :data:`tests.alias._breadth.ALL`: in place equals out of place (state too);
``gradcheck`` through two out-of-place steps; the layout matrix (strided, transposed, stride-0
gradients, one tensor for two leaves, mixed dtypes, complex, 0-d, empty) through the functional,
class and meta APIs against ``torch.optim`` where it has the optimizer and otherwise against the
same alias on dense copies; the ``Meta*`` class against a hand-unrolled meta-gradient; one step
under ``torch.compile(fullgraph=True)`` and under ``vmap``. The formulas themselves are checked
against Optax, torch.optim and plain references in each group's own tests.
"""

from __future__ import annotations

from typing import Any

import optree
import pytest
import torch
from torch import Tensor, nn

import torchopt_lite
from tests._layouts import LAYOUTS, Problem, make_problem
from tests.alias._breadth import ALL, BreadthCase, class_of
from tests.test_input_contract import _loss, tolerance

STEPS = 3

# Compiling: see tests/test_compile.py (warnings from torch itself while it traces).
COMPILE_WARNINGS = [
    pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings(
        "ignore:<class 'torch.autograd.function.Function'> should not be instantiated"
        ":DeprecationWarning"
    ),
]


def _value_only(case: BreadthCase) -> bool:
    """The case needs no extra argument, or only the loss (``value``)."""
    plan = case.make().leafwise()
    extra = set(plan.extra_args) if plan is not None else set()
    return extra <= {"value"}


CASES = [c for c in ALL if _value_only(c)]
FIRST = list({c.alias: c for c in reversed(CASES)}.values())  # one case per alias


def _values(problem: Problem, layout: str, params: list[Tensor], k: int) -> Tensor:
    sources = problem.sources[k] if problem.sources else []
    with torch.no_grad():
        return torch.as_tensor(_loss(layout, params, problem.grads[k], sources)).real.abs() + 1.0


def functional_run(case: BreadthCase, problem: Problem, layout: str, inplace: bool) -> list:
    opt = case.make()
    params = list(problem.params)
    state = opt.init(params)
    out = []
    for k, grads in enumerate(problem.grads):
        value = _values(problem, layout, params, k)
        updates, state = opt.update(list(grads), state, params=params, inplace=inplace, value=value)
        params = torchopt_lite.apply_updates(params, updates, inplace=inplace)
        out.append([p.detach().clone() for p in params])
    return out


def dense_reference(case: BreadthCase, problem: Problem, layout: str) -> list:
    """The same alias, out of place, on dense contiguous copies (complex as real views)."""
    cplx = [p.is_complex() for p in problem.params]

    def real(x: Tensor, c: bool) -> Tensor:
        return torch.view_as_real(x.resolve_conj()).clone() if c else x.contiguous().clone()

    opt = case.make()
    params = [real(p, c) for p, c in zip(problem.params, cplx, strict=True)]
    state = opt.init(params)
    out = []
    out_c = list(problem.params)
    for k, grads in enumerate(problem.grads):
        value = _values(problem, layout, out_c, k)
        g = [real(x, c) for x, c in zip(grads, cplx, strict=True)]
        updates, state = opt.update(g, state, params=params, inplace=False, value=value)
        params = torchopt_lite.apply_updates(params, updates, inplace=False)
        out_c = [torch.view_as_complex(p) if c else p for p, c in zip(params, cplx, strict=True)]
        out.append([p.clone() for p in out_c])
    return out


def class_run(case: BreadthCase, problem: Problem, layout: str) -> list:
    opt = class_of(case)(problem.params, **case.kwargs)
    out = []
    for k, grads in enumerate(problem.grads):

        def closure(grads: list[Tensor] = grads, k: int = k) -> Tensor:
            for p, g in zip(problem.params, grads, strict=True):
                p.grad = g
            return _values(problem, layout, problem.params, k)

        opt.step(closure)
        out.append([p.detach().clone() for p in problem.params])
    return out


def meta_run(case: BreadthCase, problem: Problem, layout: str) -> list:
    module = nn.Module()
    for i, p in enumerate(problem.params):
        module.register_parameter(f"p{i}", nn.Parameter(p))
    meta = torchopt_lite.MetaOptimizer(module, case.make())
    out = []
    for k, grads in enumerate(problem.grads):
        params = [getattr(module, f"p{i}") for i in range(len(problem.params))]
        sources = problem.sources[k] if problem.sources else []
        loss = _loss(layout, params, grads, sources)
        # the value the other APIs see: |loss| + 1, as a function of the same parameters
        meta.step(loss + (loss.detach().abs() + 1.0 - loss.detach()))
        out.append([getattr(module, f"p{i}").detach().clone() for i in range(len(params))])
    return out


def torch_run(case: BreadthCase, problem: Problem) -> list:
    assert case.torch_cls is not None
    opt = case.torch_cls(problem.params, **(case.torch_kwargs or {}))
    out = []
    for grads in problem.grads:
        for p, g in zip(problem.params, grads, strict=True):
            p.grad = g
        opt.step()
        out.append([p.detach().clone() for p in problem.params])
    return out


def _compare(expected: list, got: list) -> None:
    for step, (e_step, g_step) in enumerate(zip(expected, got, strict=True)):
        for i, (e, g) in enumerate(zip(e_step, g_step, strict=True)):
            assert g.dtype == e.dtype and g.shape == e.shape, f"step {step} leaf {i}"
            where = f"step {step} leaf {i}"
            torch.testing.assert_close(
                g, e, equal_nan=True, **tolerance(e), msg=lambda m, where=where: f"{where}: {m}"
            )


APIS = ("inplace", "pure", "class", "meta")


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_layouts(case: BreadthCase, api: str, layout: str) -> None:
    if api == "class" and class_of(case) is None:
        pytest.skip("no class form exported yet")
    if api == "meta" and case.needs_value and layout == "aliased_grads":
        pytest.skip("the meta loss of this layout is not |loss| + 1 of the others")
    problem = make_problem(layout, torch.float64, STEPS)
    if layout == "complex" and not case.complex_ok:
        before = [p.clone() for p in problem.params]
        with pytest.raises(ValueError, match="complex"):
            functional_run(case, problem, layout, inplace=api != "pure")
        assert all(torch.equal(a, b) for a, b in zip(before, problem.params, strict=True))
        return
    if case.torch_cls is not None and not case.needs_value:
        expected = torch_run(case, make_problem(layout, torch.float64, STEPS))
    else:
        expected = dense_reference(case, make_problem(layout, torch.float64, STEPS), layout)
    outside = problem.outside()
    if api in ("inplace", "pure"):
        got = functional_run(case, problem, layout, inplace=api == "inplace")
    elif api == "class":
        got = class_run(case, problem, layout)
    else:
        got = meta_run(case, problem, layout)
    _compare(expected, got)
    for before, (storage, mask) in zip(outside, problem.storages, strict=True):
        assert torch.equal(storage[mask], before), "a step wrote outside the leaves"


def _params(seed: int = 0) -> dict[str, Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {
        "w": torch.randn(3, 4, generator=gen, dtype=torch.float64),
        "b": torch.randn(4, generator=gen, dtype=torch.float64),
        "s": torch.randn((), generator=gen, dtype=torch.float64),
    }


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_inplace_equals_pure(case: BreadthCase) -> None:
    """Same updates and same state, step after step (in place may reuse buffers)."""
    gen = torch.Generator().manual_seed(1)
    runs = []
    for inplace in (True, False):
        opt = case.make()
        params = _params()
        state = opt.init(params)
        trail = []
        for k in range(6):
            gen.manual_seed(k)
            grads = {
                n: torch.randn(p.shape, generator=gen, dtype=p.dtype) for n, p in params.items()
            }
            value = torch.tensor(1.0 + k, dtype=torch.float64)
            updates, state = opt.update(grads, state, params=params, inplace=inplace, value=value)
            params = torchopt_lite.apply_updates(params, updates, inplace=inplace)
            trail.append(optree.tree_map(torch.clone, (params, state)))
        runs.append(trail)
    for a, b in zip(*runs, strict=True):
        for x, y in zip(optree.tree_leaves(a), optree.tree_leaves(b), strict=True):
            torch.testing.assert_close(x, y, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_gradcheck_two_steps(case: BreadthCase) -> None:
    """Out of place, the params after two steps are differentiable in the params and grads."""
    gen = torch.Generator().manual_seed(3)
    shapes = [(2, 3), (3,)]
    w0, b0 = (torch.randn(s, generator=gen, dtype=torch.float64) for s in shapes)
    g = [torch.randn(s, generator=gen, dtype=torch.float64) for s in shapes * 2]

    def two_steps(w: Tensor, b: Tensor, g1: Tensor, h1: Tensor, g2: Tensor, h2: Tensor) -> Any:
        opt = case.make()
        params = {"w": w, "b": b}
        state = opt.init(params)
        for k, (gw, gb) in enumerate(((g1, h1), (g2, h2))):
            value = (w * w).sum() + 1.0 + k
            updates, state = opt.update(
                {"w": gw, "b": gb}, state, params=params, inplace=False, value=value
            )
            params = torchopt_lite.apply_updates(params, updates, inplace=False)
        return params["w"], params["b"]

    inputs = tuple(x.clone().requires_grad_(True) for x in (w0, b0, *g))
    assert torch.autograd.gradcheck(two_steps, inputs, eps=1e-6, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("case", FIRST, ids=lambda c: c.alias)
def test_meta_class_matches_hand_unrolled(case: BreadthCase) -> None:
    """``Meta<Name>(net, ...)``: the meta-gradient of 3 inner steps equals autograd through the
    same 3 out-of-place functional steps written out by hand."""
    meta_cls = class_of(case, meta=True)
    if meta_cls is None:
        pytest.skip("no Meta class exported yet")
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(6, 3, generator=gen, dtype=torch.float64)
    y = torch.randn(6, 2, generator=gen, dtype=torch.float64)
    w0 = torch.randn(2, 3, generator=gen, dtype=torch.float64)
    scale = torch.tensor(1.3, dtype=torch.float64, requires_grad=True)  # the meta-parameter

    def inner_loss(w: Tensor, b: Tensor) -> Tensor:
        return ((scale * x @ w.T + b - y) ** 2).mean()

    net = nn.Linear(3, 2).double()
    with torch.no_grad():
        net.weight.copy_(w0)
        net.bias.zero_()
    meta = meta_cls(net, **case.kwargs)
    for _ in range(3):
        meta.step(inner_loss(net.weight, net.bias))
    outer = (net(x) ** 2).mean()
    (got,) = torch.autograd.grad(outer, scale)

    opt = case.make()
    params = {"weight": w0.clone(), "bias": torch.zeros(2, dtype=torch.float64)}
    params = {k: v.requires_grad_(True) for k, v in params.items()}
    state = opt.init(params)
    for _ in range(3):
        loss = inner_loss(params["weight"], params["bias"])
        grads = torch.autograd.grad(loss, list(params.values()), create_graph=True)
        updates, state = opt.update(
            dict(zip(params, grads, strict=True)), state, params=params, inplace=False, value=loss
        )
        params = torchopt_lite.apply_updates(params, updates, inplace=False)
    outer = ((x @ params["weight"].T + params["bias"]) ** 2).mean()
    (expected,) = torch.autograd.grad(outer, scale)
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)


@COMPILE_WARNINGS[0]
@COMPILE_WARNINGS[1]
@pytest.mark.parametrize("case", FIRST, ids=lambda c: c.alias)
def test_compiled_step_matches_eager(case: BreadthCase) -> None:
    """One out-of-place step compiles with ``fullgraph=True`` and computes the eager step."""
    torch._dynamo.reset()
    opt = case.make()
    params = _params()
    grads = optree.tree_map(lambda p: torch.cos(p) + 0.5, params)
    state = opt.init(params)
    value = torch.tensor(2.0, dtype=torch.float64)

    def step(params: Any, grads: Any, state: Any) -> Any:
        updates, state = opt.update(grads, state, params=params, inplace=False, value=value)
        return torchopt_lite.apply_updates(params, updates, inplace=False), state

    expected = step(params, grads, state)
    got = torch.compile(step, fullgraph=True, backend="aot_eager")(params, grads, state)
    for e, g in zip(optree.tree_leaves(expected), optree.tree_leaves(got), strict=True):
        torch.testing.assert_close(g, e, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("case", FIRST, ids=lambda c: c.alias)
def test_vmap_over_tasks_matches_a_loop(case: BreadthCase) -> None:
    """A batch of tasks (params, grads, state) stepped under ``vmap`` equals a loop."""
    opt = case.make()
    batch = [(_params(k), optree.tree_map(torch.sin, _params(k + 10))) for k in range(3)]
    states = [opt.init(p) for p, _ in batch]
    value = torch.tensor(2.0, dtype=torch.float64)

    def step(params: Any, grads: Any, state: Any) -> Any:
        updates, state = opt.update(grads, state, params=params, inplace=False, value=value)
        return torchopt_lite.apply_updates(params, updates, inplace=False), state

    expected = [step(p, g, s) for (p, g), s in zip(batch, states, strict=True)]
    stack = lambda *xs: torch.stack(xs)  # noqa: E731
    p_b = optree.tree_map(stack, *[p for p, _ in batch])
    g_b = optree.tree_map(stack, *[g for _, g in batch])
    s_b = optree.tree_map(stack, *states)
    got = torch.func.vmap(step)(p_b, g_b, s_b)
    for k, e in enumerate(expected):
        for x, y in zip(optree.tree_leaves(e), optree.tree_leaves(got), strict=True):
            torch.testing.assert_close(y[k], x, rtol=1e-12, atol=1e-14)
