"""centralize and normalize_by_update_norm: plain references, Optax, gradcheck, vmap, errors."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from torch import Tensor

from torchopt_lite.transform.centralize import centralize
from torchopt_lite.transform.normalize_by_update_norm import normalize_by_update_norm

F64 = torch.float64
Tree = dict[str, Tensor]
INPLACE = pytest.mark.parametrize("inplace", [True, False], ids=["inplace", "pure"])


def _tree(seed: int) -> Tree:
    gen = torch.Generator().manual_seed(seed)
    shapes = {"w": (3, 4), "k": (2, 3, 2), "b": (5,), "s": ()}
    return {k: torch.randn(s, generator=gen, dtype=F64) for k, s in shapes.items()}


def _close(got: Tree, expected: Tree, rtol: float = 1e-13) -> None:
    assert got.keys() == expected.keys()
    for k in got:
        torch.testing.assert_close(got[k], expected[k], rtol=rtol, atol=1e-15)


def _run(t: Any, g: Tree, inplace: bool) -> Tree:
    before = {k: v.clone() for k, v in g.items()}
    out, _ = t.update({k: v.clone() for k, v in g.items()} if inplace else g, t.init(g),
                      inplace=inplace)  # fmt: skip
    _close(g, before, rtol=0)
    return out


def _optax_update(t: Any, g: Tree) -> Tree:
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)
    jg = {k: jax.numpy.asarray(v.numpy()) for k, v in g.items()}
    out, _ = t.update(jg, t.init(jg))
    return {k: torch.from_numpy(np.asarray(v).copy()) for k, v in out.items()}


# -- centralize ---------------------------------------------------------------------------------


def _centralize_reference(g: Tree) -> Tree:
    out = {}
    for k, v in g.items():
        if v.ndim > 1:  # every row (index of dim 0) minus its own mean
            rows = v.reshape(v.shape[0], -1)
            v = (rows - rows.mean(dim=1, keepdim=True)).reshape(v.shape)
        out[k] = v
    return out


@INPLACE
def test_centralize_reference(inplace: bool) -> None:
    g = _tree(0)
    out = _run(centralize(), g, inplace)
    _close(out, _centralize_reference(g))
    for k in ("w", "k"):
        torch.testing.assert_close(
            out[k].reshape(out[k].shape[0], -1).sum(1), torch.zeros(out[k].shape[0], dtype=F64)
        )


def test_centralize_matches_optax() -> None:
    optax = pytest.importorskip("optax")
    g = _tree(0)
    _close(_run(centralize(), g, False), _optax_update(optax.centralize(), g))


def test_centralize_gradcheck_and_vmap() -> None:
    g = _tree(1)
    names = list(g)

    def f(*leaves: Tensor) -> tuple[Tensor, ...]:
        out, _ = centralize().update(dict(zip(names, leaves, strict=True)), None, inplace=False)
        return tuple(out[k] for k in names)

    assert torch.autograd.gradcheck(f, tuple(v.clone().requires_grad_() for v in g.values()))
    batch = {k: torch.stack([_tree(s)[k] for s in range(3)]) for k in names}
    got = torch.func.vmap(lambda t: centralize().update(t, None, inplace=False)[0])(batch)
    for i in range(3):
        _close({k: v[i] for k, v in got.items()}, _centralize_reference(_tree(i)))


def test_centralize_rejects_complex_before_writing() -> None:
    t = centralize()
    g = {"z": torch.randn(3, 2, dtype=torch.complex128), "w": torch.randn(2, 2, dtype=F64)}
    before = {k: v.clone() for k, v in g.items()}
    with pytest.raises(ValueError, match="centralize: complex leaves are not supported"):
        t.init(g)
    state = t.init({"z": torch.zeros(3, 2, dtype=F64), "w": torch.zeros(2, 2, dtype=F64)})
    with pytest.raises(ValueError, match="centralize: complex leaves are not supported"):
        t.update(g, state, inplace=True)
    _close(g, before, rtol=0)


# -- normalize_by_update_norm -------------------------------------------------------------------


CASES = [(1.0, 1e-6), (-1.0, 1e-6), (2.5, 0.0), (0.3, 0.5)]


@INPLACE
@pytest.mark.parametrize(("scale_factor", "eps"), CASES)
def test_normalize_by_update_norm_reference(scale_factor: float, eps: float, inplace: bool) -> None:
    g = _tree(2)
    norm = torch.sqrt(sum((v * v).sum() for v in g.values()))
    expected = {k: v * scale_factor / (norm + eps) for k, v in g.items()}
    _close(_run(normalize_by_update_norm(scale_factor, eps), g, inplace), expected)


@pytest.mark.parametrize(("scale_factor", "eps"), CASES)
def test_normalize_by_update_norm_matches_optax(scale_factor: float, eps: float) -> None:
    optax = pytest.importorskip("optax")
    g = _tree(2)
    expected = _optax_update(optax.normalize_by_update_norm(scale_factor, eps), g)
    _close(_run(normalize_by_update_norm(scale_factor, eps), g, False), expected)


def test_normalize_by_update_norm_gradcheck_in_updates_and_scale() -> None:
    g = _tree(3)
    names = list(g)

    def f(scale: Tensor, *leaves: Tensor) -> tuple[Tensor, ...]:
        t = normalize_by_update_norm(scale)
        out, _ = t.update(dict(zip(names, leaves, strict=True)), None, inplace=False)
        return tuple(out[k] for k in names)

    scale = torch.tensor(0.7, dtype=F64, requires_grad=True)
    leaves = tuple(v.clone().requires_grad_() for v in g.values())
    assert torch.autograd.gradcheck(f, (scale, *leaves))


def test_normalize_by_update_norm_vmap_and_complex() -> None:
    batch = {k: torch.stack([_tree(s)[k] for s in range(3)]) for k in _tree(0)}
    t = normalize_by_update_norm(eps=0.0)
    got = torch.func.vmap(lambda x: t.update(x, None, inplace=False)[0])(batch)
    for i in range(3):
        one = {k: v[i] for k, v in got.items()}
        norm = torch.sqrt(sum((v * v).sum() for v in one.values()))
        torch.testing.assert_close(norm, torch.tensor(1.0, dtype=F64))
    z = torch.tensor([3.0 + 4.0j], dtype=torch.complex128)
    torch.testing.assert_close(t.update(z.clone(), None)[0], z / 5.0)


def test_normalize_by_update_norm_errors() -> None:
    with pytest.raises(ValueError, match="normalize_by_update_norm: Invalid epsilon value"):
        normalize_by_update_norm(eps=-1.0)
