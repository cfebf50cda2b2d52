"""masked, add_decayed_weights with a mask, adamw's mask, and the small stateless transforms."""

from __future__ import annotations

import pytest
import torch

import torchopt_lite
from torchopt_lite import transform
from torchopt_lite.transform import MaskedState


def _params() -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return {
        "bias": torch.randn(3, generator=gen, dtype=torch.float64),
        "weight": torch.randn(2, 3, generator=gen, dtype=torch.float64),
    }


def _grads(seed: int) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {k: torch.randn(v.shape, generator=gen, dtype=v.dtype) for k, v in _params().items()}


MASK = {"bias": False, "weight": True}


@pytest.mark.parametrize("inplace", [True, False], ids=["inplace", "pure"])
@pytest.mark.parametrize("mask", [MASK, lambda params: {k: k == "weight" for k in params}])
def test_add_decayed_weights_with_mask(mask, inplace: bool) -> None:
    params, grads = _params(), _grads(1)
    t = transform.add_decayed_weights(0.3, mask)
    state = t.init(params)
    assert isinstance(state, MaskedState)
    out, _ = t.update(
        {k: v.clone() for k, v in grads.items()}, state, params=params, inplace=inplace
    )
    torch.testing.assert_close(
        out["weight"], grads["weight"] + 0.3 * params["weight"], rtol=1e-15, atol=0
    )
    torch.testing.assert_close(out["bias"], grads["bias"], rtol=0, atol=0)


def test_add_decayed_weights_zero_is_identity() -> None:
    t = transform.add_decayed_weights(0.0)
    g = {"a": torch.ones(2)}
    assert t.update(g, t.init(g))[0] is g


@pytest.mark.parametrize("inplace", [True, False], ids=["inplace", "pure"])
def test_masked_stateful_inner(inplace: bool) -> None:
    """The inner state covers the selected leaves only; the others pass through untouched."""
    params = _params()
    t = transform.masked(transform.trace(momentum=0.5), MASK)
    state = t.init(params)
    assert len(state.inner_state.trace) == 1
    assert state.inner_state.trace[0].shape == params["weight"].shape
    g1, g2 = _grads(1), _grads(2)
    out, state = t.update({k: v.clone() for k, v in g1.items()}, state, inplace=inplace)
    out, state = t.update({k: v.clone() for k, v in g2.items()}, state, inplace=inplace)
    torch.testing.assert_close(out["weight"], 0.5 * g1["weight"] + g2["weight"], rtol=1e-15, atol=0)
    torch.testing.assert_close(out["bias"], g2["bias"], rtol=0, atol=0)
    assert int(state.inner_state.count) == 2


def test_adamw_with_mask_matches_torch_per_leaf() -> None:
    """Masked decay: decayed leaves follow AdamW(wd), the others AdamW(wd=0)."""
    params = _params()
    opt = torchopt_lite.adamw(lr=0.02, weight_decay=0.3, mask=MASK)
    p = {k: v.clone() for k, v in params.items()}
    state = opt.init(p)
    ref = {k: v.clone().requires_grad_(True) for k, v in params.items()}
    torch_opt = torch.optim.AdamW(
        [{"params": [ref["weight"]]}, {"params": [ref["bias"]], "weight_decay": 0.0}],
        lr=0.02,
        weight_decay=0.3,
    )
    for seed in range(6):
        g = _grads(seed)
        u, state = opt.update({k: v.clone() for k, v in g.items()}, state, params=p)
        p = torchopt_lite.apply_updates(p, u)
        for k, q in ref.items():
            q.grad = g[k].clone()
        torch_opt.step()
    for k in p:
        torch.testing.assert_close(p[k], ref[k].detach(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("inplace", [True, False], ids=["inplace", "pure"])
def test_nan_to_num(inplace: bool) -> None:
    t = transform.nan_to_num(nan=1.0, posinf=2.0, neginf=-3.0)
    g = {"a": torch.tensor([float("nan"), float("inf"), -float("inf"), 4.0])}
    out, _ = t.update({"a": g["a"].clone()}, t.init(g), inplace=inplace)
    torch.testing.assert_close(out["a"], torch.tensor([1.0, 2.0, -3.0, 4.0]))


@pytest.mark.parametrize("inplace", [True, False], ids=["inplace", "pure"])
def test_scale_and_scale_by_schedule(inplace: bool) -> None:
    g = {"a": torch.tensor([1.0, -2.0], dtype=torch.float64)}
    t = transform.scale(-0.5)
    out, _ = t.update({"a": g["a"].clone()}, t.init(g), inplace=inplace)
    torch.testing.assert_close(out["a"], torch.tensor([-0.5, 1.0], dtype=torch.float64))
    s = transform.scale_by_schedule(lambda count: 2.0**count)
    state = s.init(g)
    for step in range(3):
        out, state = s.update({"a": g["a"].clone()}, state, inplace=inplace)
        torch.testing.assert_close(out["a"], g["a"] * 2.0**step)
    assert int(state.count) == 3


def test_identity_passes_through() -> None:
    t = transform.identity()
    g = {"a": torch.ones(2)}
    state = t.init(g)
    out, new_state = t.update(g, state)
    assert out is g and new_state is state
