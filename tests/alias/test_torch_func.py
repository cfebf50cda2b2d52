"""The out-of-place update composes with torch.func: vmap over tasks equals a Python loop."""

from __future__ import annotations

import pytest
import torch
from torch.func import grad, vmap

import torchopt_lite
from tests.alias._registry import CASES, Case

ONE_PER_ALIAS = list({c.alias: c for c in CASES}.values())


@pytest.mark.parametrize("case", ONE_PER_ALIAS, ids=lambda c: c.id)
def test_vmap_of_unrolled_steps_equals_loop(case: Case) -> None:
    opt = case.make()
    gen = torch.Generator().manual_seed(0)
    p0 = {
        "w": torch.randn(3, generator=gen, dtype=torch.float64),
        "b": torch.randn(2, generator=gen, dtype=torch.float64),
    }

    def loss(q: dict, x: torch.Tensor) -> torch.Tensor:
        return (q["w"] * x).sum() ** 2 + (q["b"] ** 2).sum()

    def adapt(x: torch.Tensor) -> torch.Tensor:
        p, state = p0, opt.init(p0)
        for _ in range(3):
            g = grad(loss)(p, x)
            u, state = opt.update(g, state, params=p, inplace=False)
            p = torchopt_lite.apply_updates(p, u, inplace=False)
        return loss(p, x)

    xs = torch.randn(4, 3, generator=gen, dtype=torch.float64)
    batched = vmap(adapt)(xs)
    looped = torch.stack([adapt(x) for x in xs])
    torch.testing.assert_close(batched, looped, rtol=1e-12, atol=1e-12)


def test_clip_grad_norm_under_vmap() -> None:
    clip = torchopt_lite.clip_grad_norm(max_norm=1.0)
    gs = torch.randn(5, 4, dtype=torch.float64)

    def clipped(g: torch.Tensor) -> torch.Tensor:
        return clip.update((g,), clip.init((g,)), inplace=False)[0][0]

    expected = torch.stack([clipped(g) for g in gs])
    torch.testing.assert_close(vmap(clipped)(gs), expected)
    assert torch.all(torch.linalg.vector_norm(expected, dim=1) <= 1.0 + 1e-9)
