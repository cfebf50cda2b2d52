"""Properties on random trees (hypothesis): modes agree, chains compose, None/empty pass."""

from __future__ import annotations

import copy
from typing import Any

import optree
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import torchopt_lite
from tests.alias._registry import CASES, Case
from tests.optim._helpers import make_oop
from torchopt_lite import transform

SETTINGS = settings(max_examples=12, deadline=None, database=None, derandomize=True)
SHAPES = st.lists(st.integers(1, 3), min_size=0, max_size=2).map(tuple)


@st.composite
def trees(draw: Any, min_leaves: int = 1) -> dict[str, torch.Tensor]:
    """A dict of 1-4 float64 tensors of random small shapes (0-d included)."""
    shapes = draw(st.lists(SHAPES, min_size=min_leaves, max_size=4))
    seed = draw(st.integers(0, 2**16))
    gen = torch.Generator().manual_seed(seed)
    return {
        f"p{i}": torch.randn(s, generator=gen, dtype=torch.float64) for i, s in enumerate(shapes)
    }


def like(tree: dict, seed: int) -> dict:
    gen = torch.Generator().manual_seed(seed)
    return {k: torch.randn(v.shape, generator=gen, dtype=v.dtype) for k, v in tree.items()}


def clone(tree: Any) -> Any:
    return optree.tree_map(lambda x: x.clone() if isinstance(x, torch.Tensor) else x, tree)


def assert_trees_close(a: Any, b: Any, rtol: float = 1e-12, atol: float = 1e-14) -> None:
    a_leaves, a_spec = optree.tree_flatten(a)
    b_leaves, b_spec = optree.tree_flatten(b)
    assert a_spec == b_spec
    for x, y in zip(a_leaves, b_leaves, strict=True):
        torch.testing.assert_close(x, y, rtol=rtol, atol=atol, check_dtype=False)


def run(opt: Any, params: dict, grads: list[dict], *, inplace: bool) -> tuple[dict, Any]:
    params = clone(params)
    state = opt.init(params)
    for g in grads:
        updates, state = opt.update(clone(g), state, params=params, inplace=inplace)
        params = torchopt_lite.apply_updates(params, updates, inplace=inplace)
    return params, state


@SETTINGS
@given(case=st.sampled_from(CASES), params=trees(), steps=st.integers(1, 3))
def test_inplace_and_out_of_place_agree(case: Case, params: dict, steps: int) -> None:
    grads = [like(params, seed) for seed in range(steps)]
    p_in, s_in = run(case.make(), params, grads, inplace=True)
    p_out, s_out = run(case.make(), params, grads, inplace=False)
    assert_trees_close(p_in, p_out)
    assert_trees_close(s_in, s_out)


STATEFUL_PARTS = [
    lambda: transform.trace(momentum=0.9),
    lambda: transform.scale_by_adam(),
    lambda: transform.scale_by_rms(alpha=0.9),
    lambda: transform.scale(-0.1),
    lambda: torchopt_lite.clip_grad_norm(max_norm=1.0),
    lambda: torchopt_lite.sgd(lr=0.1, momentum=0.5),
]


@SETTINGS
@given(index=st.integers(0, len(STATEFUL_PARTS) - 1), params=trees())
def test_chain_of_one_is_itself(index: int, params: dict) -> None:
    t = STATEFUL_PARTS[index]()
    assert torchopt_lite.chain(t) is t
    grads = [like(params, seed) for seed in range(2)]
    p1, s1 = run(torchopt_lite.chain(t), params, grads, inplace=False)
    p2, s2 = run(STATEFUL_PARTS[index](), params, grads, inplace=False)
    assert_trees_close(p1, p2, rtol=0, atol=0)
    assert_trees_close(s1, s2, rtol=0, atol=0)


@SETTINGS
@given(
    indices=st.lists(st.integers(0, len(STATEFUL_PARTS) - 1), min_size=3, max_size=3),
    params=trees(),
    inplace=st.booleans(),
)
def test_chain_flattens_associatively(indices: list[int], params: dict, inplace: bool) -> None:
    a, b, c = (STATEFUL_PARTS[i] for i in indices)
    left = torchopt_lite.chain(torchopt_lite.chain(a(), b()), c())
    right = torchopt_lite.chain(a(), torchopt_lite.chain(b(), c()))
    flat = torchopt_lite.chain(a(), b(), c())
    n = len(flat.transformations)
    assert len(left.transformations) == len(right.transformations) == n
    grads = [like(params, seed) for seed in range(3)]
    results = [run(t, params, grads, inplace=inplace) for t in (left, right, flat)]
    for p, s in results[1:]:
        assert_trees_close(p, results[0][0], rtol=0, atol=0)
        assert_trees_close(s, results[0][1], rtol=0, atol=0)
    assert isinstance(results[0][1], tuple) and len(results[0][1]) == n


@SETTINGS
@given(
    case=st.sampled_from(CASES),
    params=trees(min_leaves=2),
    data=st.data(),
    inplace=st.booleans(),
)
def test_none_gradients_pass_through(case: Case, params: dict, data: Any, inplace: bool) -> None:
    """A None leaf stays None, its state entries stay as they were, the others step as alone."""
    keys = list(params)
    absent = data.draw(st.sets(st.sampled_from(keys), min_size=1, max_size=len(keys) - 1))
    present = [k for k in keys if k not in absent]
    opt = case.make()
    state = opt.init(params)
    state_before = clone(state)
    grads = like(params, 1)
    sparse = {k: (None if k in absent else grads[k]) for k in keys}
    updates, state = opt.update(clone(sparse), state, params=params, inplace=inplace)
    assert all(updates[k] is None for k in absent)
    # the same step on the tree of present leaves alone
    sub_params = {k: params[k] for k in present}
    sub_opt = case.make()
    sub_updates, sub_state = sub_opt.update(
        {k: grads[k].clone() for k in present},
        sub_opt.init(sub_params),
        params=sub_params,
        inplace=inplace,
    )
    for k in present:
        torch.testing.assert_close(updates[k], sub_updates[k], rtol=1e-14, atol=0)
    index = {k: i for i, k in enumerate(keys)}  # dict leaves flatten in sorted key order
    assert keys == sorted(keys)
    new_fields, old_fields = per_leaf(state), per_leaf(state_before)
    sub_fields = per_leaf(sub_state)
    assert len(new_fields) == len(old_fields) == len(sub_fields)
    sub_index = {k: i for i, k in enumerate(present)}
    for new, old, sub in zip(new_fields, old_fields, sub_fields, strict=True):
        for k in absent:
            assert torch.equal(new[index[k]], old[index[k]])
        for k in present:
            torch.testing.assert_close(new[index[k]], sub[sub_index[k]], rtol=1e-14, atol=0)


def per_leaf(state: Any) -> list[tuple[torch.Tensor, ...]]:
    """The per-leaf fields of a chain state: NamedTuple fields holding a tuple of tensors."""
    out: list[tuple[torch.Tensor, ...]] = []

    def walk(x: Any) -> None:
        if isinstance(x, tuple) and hasattr(x, "_fields"):
            for v in x:
                if type(v) is tuple and v and all(isinstance(t, torch.Tensor) for t in v):
                    out.append(v)
                else:
                    walk(v)
        elif type(x) is tuple:
            for v in x:
                walk(v)

    walk(state)
    return out


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
@pytest.mark.parametrize("inplace", [True, False], ids=["inplace", "pure"])
def test_empty_trees_pass_through(case: Case, inplace: bool) -> None:
    for empty in ({}, (), []):
        opt = case.make()
        state = opt.init(empty)
        updates, new_state = opt.update(empty, state, params=empty, inplace=inplace)
        assert updates == empty
        assert new_state is state
        assert torchopt_lite.apply_updates(empty, updates, inplace=inplace) == empty
    only_none = {"a": None}
    state = case.make().init(only_none)
    updates, _ = case.make().update(only_none, state, inplace=inplace)
    assert updates == {"a": None}


@SETTINGS
@given(case=st.sampled_from(CASES), params=trees(), steps=st.integers(1, 4))
def test_oop_state_survives_state_dict(case: Case, params: dict, steps: int) -> None:
    ps = [v.clone().requires_grad_(True) for v in params.values()]
    opt = make_oop(case, ps)
    for seed in range(steps):
        for p, g in zip(ps, like(params, seed).values(), strict=True):
            p.grad = g
        opt.step()
    qs = [p.detach().clone().requires_grad_(True) for p in ps]
    other = make_oop(case, qs, lr=123.0)
    # state_dict() holds references to the live state, as in torch.optim: copy it
    other.load_state_dict(copy.deepcopy(opt.state_dict()))
    assert other.param_groups[0]["lr"] == case.kwargs["lr"]
    for p, q in zip(ps, qs, strict=True):
        assert opt.state[p].keys() == other.state[q].keys()
        for key in opt.state[p]:
            torch.testing.assert_close(
                other.state[q][key], opt.state[p][key], rtol=0, atol=0, check_dtype=False
            )
    # and both continue identically
    for o, ts in ((opt, ps), (other, qs)):
        for t, g in zip(ts, like(params, 99).values(), strict=True):
            t.grad = g
        o.step()
    for p, q in zip(ps, qs, strict=True):
        torch.testing.assert_close(p, q, rtol=1e-14, atol=0)
