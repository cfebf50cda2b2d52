"""Transformations that read the loss (``value=``): Polyak steps and reduce_on_plateau."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from torch import Tensor

import torchopt_lite
from torchopt_lite.alias.polyak_sgd import polyak_sgd
from torchopt_lite.transform.reduce_on_plateau import ReduceLROnPlateauState, reduce_on_plateau


def _stream(steps: int, seed: int = 0) -> tuple[list[dict[str, Tensor]], list[float]]:
    gen = torch.Generator().manual_seed(seed)
    grads = [
        {
            "w": torch.randn(3, 2, generator=gen, dtype=torch.float64),
            "b": torch.randn(2, generator=gen, dtype=torch.float64),
        }
        for _ in range(steps)
    ]
    values = torch.rand(steps, generator=gen, dtype=torch.float64) * 3.0
    return grads, values.tolist()


# -- polyak_sgd -----------------------------------------------------------------------------------


def polyak_reference(g: dict, value: float, s: float, max_lr: float, f_min: float, eps: float,
                     variant: str) -> dict:  # fmt: skip
    """The formula: -s min((f - f*) / (|g|^2 + eps), max_lr) g (0 where |g|^2 + eps is tiny)."""
    norm_sq = sum(float((x**2).sum()) for x in g.values())
    gap = value - f_min
    if variant == "sps+":
        gap = max(gap, 0.0)
    if norm_sq + eps <= torch.finfo(torch.float64).eps:
        step = 0.0
    else:
        step = min(gap / (norm_sq + eps), max_lr)
    return {k: -s * step * x for k, x in g.items()}


POLYAK = [
    {},
    {"lr": 0.5, "max_lr": 0.3, "f_min": 0.5, "eps": 0.1},
    {"max_lr": 10.0, "f_min": 2.0, "variant": "sps+"},
    {"lr": 2.0, "f_min": 1.0, "variant": "sps"},
]


@pytest.mark.parametrize("inplace", [True, False], ids=["inplace", "pure"])
@pytest.mark.parametrize("kwargs", POLYAK, ids=str)
def test_polyak_matches_the_formula(kwargs: dict, inplace: bool) -> None:
    opt = polyak_sgd(**kwargs)
    full = {"lr": 1.0, "max_lr": 1.0, "f_min": 0.0, "eps": 0.0, "variant": "sps", **kwargs}
    grads, values = _stream(6)
    state = opt.init(grads[0])
    for g, v in zip(grads, values, strict=True):
        expected = polyak_reference(
            g, v, full["lr"], full["max_lr"], full["f_min"], full["eps"], full["variant"]
        )
        got, state = opt.update({k: x.clone() for k, x in g.items()}, state, inplace=inplace,
                                value=torch.tensor(v, dtype=torch.float64))  # fmt: skip
        for k in g:
            torch.testing.assert_close(got[k], expected[k], rtol=1e-12, atol=1e-14)


def test_polyak_zero_gradient_takes_no_step() -> None:
    opt = polyak_sgd()
    g = {"w": torch.zeros(3, dtype=torch.float64)}
    u, _ = opt.update(g, opt.init(g), value=1.0)
    assert torch.equal(u["w"], torch.zeros(3, dtype=torch.float64))


@pytest.mark.parametrize("kwargs", [k for k in POLYAK if k.get("lr", 1.0) == 1.0], ids=str)
def test_polyak_matches_optax(kwargs: dict) -> None:
    optax = pytest.importorskip("optax")
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    names = {"max_lr": "max_learning_rate", "lr": "scaling"}
    ref = optax.polyak_sgd(**{names.get(k, k): v for k, v in kwargs.items()})
    opt = polyak_sgd(**kwargs)
    grads, values = _stream(6)
    state, ref_state = (
        opt.init(grads[0]),
        ref.init({k: jnp.asarray(x.numpy()) for k, x in grads[0].items()}),
    )
    for g, v in zip(grads, values, strict=True):
        jg = {k: jnp.asarray(x.numpy()) for k, x in g.items()}
        expected, ref_state = ref.update(jg, ref_state, value=jnp.asarray(v))
        got, state = opt.update(g, state, value=v)
        for k in g:
            torch.testing.assert_close(
                got[k], torch.from_numpy(jax.device_get(expected[k]).copy()), rtol=1e-10, atol=1e-12
            )


def test_polyak_class_takes_the_closure_loss() -> None:
    """PolyakSGD-style use through Optimizer: the closure's loss is the value."""
    w = torch.nn.Parameter(torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64))
    opt = torchopt_lite.Optimizer([w], polyak_sgd())

    def closure() -> Tensor:
        opt.zero_grad()
        loss = (w**2).sum()
        loss.backward()
        return loss

    for expected in (14.0 / 4, 14.0 / 16):
        opt.step(closure)
        torch.testing.assert_close(float((w.detach() ** 2).sum()), expected)


def test_polyak_errors() -> None:
    with pytest.raises(ValueError, match="variant must be 'sps' or 'sps\\+'"):
        polyak_sgd(variant="sps++")
    with pytest.raises(ValueError, match="Invalid learning rate value: max_lr"):
        polyak_sgd(max_lr=-1.0)
    with pytest.raises(ValueError, match="Invalid epsilon value"):
        polyak_sgd(eps=-1.0)
    opt = polyak_sgd()
    g = {"w": torch.ones(2)}
    with pytest.raises(ValueError, match="reads the extra argument value="):
        opt.update(g, opt.init(g))
    assert torch.equal(g["w"], torch.ones(2))


# -- reduce_on_plateau --------------------------------------------------------------------------


def plateau_reference(values: list[float], factor: float, patience: int, rtol: float,
                      atol: float, cooldown: int, accumulation_size: int,
                      min_scale: float) -> list[float]:  # fmt: skip
    """The scale after each value, by the rule in plain Python."""
    scale, best, plateau, cool, count, avg = 1.0, math.inf, 0, 0, 0, 0.0
    out = []
    for v in values:
        avg = (count * avg + v) / (count + 1)
        count += 1
        if count == accumulation_size:
            improved = avg < (1 - rtol) * best - atol
            if improved:
                best = avg
            plateau = 0 if improved else plateau + 1
            if cool > 0:
                plateau, cool = 0, cool - 1
            elif plateau == patience:
                plateau, scale, cool = 0, max(scale * factor, min_scale), cooldown
            else:
                scale, cool = max(scale, min_scale), 0
            count, avg = 0, 0.0
        out.append(scale)
    return out


PLATEAU = [
    {"factor": 0.5, "patience": 2},
    {"factor": 0.5, "patience": 1, "cooldown": 2, "min_scale": 0.1},
    {"factor": 0.3, "patience": 1, "accumulation_size": 3, "rtol": 0.0, "atol": 0.05},
    {"factor": 0.9, "patience": 0, "rtol": 0.5},
]
DEFAULTS = {"factor": 0.1, "patience": 10, "rtol": 1e-4, "atol": 0.0, "cooldown": 0,
            "accumulation_size": 1, "min_scale": 0.0}  # fmt: skip


def _values(n: int) -> list[float]:
    """A loss that improves, stalls, improves a little, and stalls again."""
    base = [3.0, 2.0, 1.5, 1.5, 1.6, 1.49, 1.5, 1.5, 1.5, 1.2, 1.3, 1.3, 1.3, 1.3, 1.3]
    return (base * (n // len(base) + 1))[:n]


@pytest.mark.parametrize("inplace", [True, False], ids=["inplace", "pure"])
@pytest.mark.parametrize("kwargs", PLATEAU, ids=str)
def test_plateau_matches_the_rule(kwargs: dict, inplace: bool) -> None:
    values = _values(30)
    expected = plateau_reference(values, **{**DEFAULTS, **kwargs})
    opt = reduce_on_plateau(**kwargs)
    g = {"w": torch.ones(2, dtype=torch.float64)}
    state = opt.init(g)
    for v, s in zip(values, expected, strict=True):
        u, state = opt.update({"w": torch.ones(2, dtype=torch.float64)}, state, value=v,
                              inplace=inplace)  # fmt: skip
        torch.testing.assert_close(u["w"], torch.full((2,), s, dtype=torch.float64))
    assert len(set(expected)) > 1  # the stream does trigger reductions


@pytest.mark.parametrize("kwargs", PLATEAU, ids=str)
def test_plateau_matches_optax(kwargs: dict) -> None:
    pytest.importorskip("optax")
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    from optax import contrib

    ref = contrib.reduce_on_plateau(**kwargs)
    opt = reduce_on_plateau(**kwargs)
    g = {"w": torch.ones(2, dtype=torch.float64)}
    state, ref_state = opt.init(g), ref.init({"w": jnp.ones(2)})
    for v in _values(30):
        expected, ref_state = ref.update({"w": jnp.ones(2)}, ref_state, value=jnp.asarray(v))
        got, state = opt.update({"w": torch.ones(2, dtype=torch.float64)}, state, value=v)
        torch.testing.assert_close(got["w"], torch.from_numpy(jax.device_get(expected["w"]).copy()))
        assert int(state.plateau_count) == int(ref_state.plateau_count)
        assert int(state.cooldown_count) == int(ref_state.cooldown_count)


def test_plateau_in_a_chain_under_vmap_and_compile() -> None:
    opt = torchopt_lite.chain(torchopt_lite.sgd(0.1), reduce_on_plateau(factor=0.5, patience=1))
    params = {"w": torch.ones(3, dtype=torch.float64)}
    state = opt.init(params)

    def step(params: Any, state: Any, value: Tensor) -> Any:
        updates, state = opt.update(params, state, params=params, inplace=False, value=value)
        return torchopt_lite.apply_updates(params, updates, inplace=False), state

    eager = [params, state]
    for v in (2.0, 2.0, 2.0):
        eager = list(step(*eager, torch.tensor(v, dtype=torch.float64)))
    assert float(eager[1][-1].scale) == 0.25  # two steps without improvement
    batched = torch.func.vmap(step, in_dims=(None, None, 0))(
        params, state, torch.tensor([1.0, 2.0], dtype=torch.float64)
    )
    torch.testing.assert_close(batched[0]["w"][0], torch.full((3,), 0.9, dtype=torch.float64))


def test_plateau_errors() -> None:
    for kwargs, match in [
        ({"factor": 1.0}, r"factor must be in \(0, 1\)"),
        ({"rtol": -1.0}, "rtol and atol must be >= 0"),
        ({"rtol": 0.0, "atol": 0.0}, "must not both be 0"),
        ({"rtol": 2.0}, "rtol must be <= 1"),
        ({"patience": -1}, "patience must be an int >= 0"),
        ({"cooldown": 1.5}, "cooldown must be an int >= 0"),
        ({"accumulation_size": 0}, "accumulation_size must be an int >= 1"),
        ({"min_scale": -0.1}, "min_scale must be >= 0"),
    ]:
        with pytest.raises(ValueError, match=match):
            reduce_on_plateau(**kwargs)
    opt = reduce_on_plateau()
    g = {"w": torch.ones(2)}
    with pytest.raises(ValueError, match="reads the extra argument value="):
        opt.update(g, opt.init(g))
    with pytest.raises(ValueError, match="expected ReduceLROnPlateauState"):
        opt.update(g, (), value=1.0)
    state = opt.init(g)
    assert isinstance(state, ReduceLROnPlateauState)
