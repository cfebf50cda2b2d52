"""TorchOpt's transform utilities: tree maps over None, counts, moments."""

from __future__ import annotations

import pytest
import torch

from torchopt_lite.transform import utils


def test_tree_map_flat_keeps_none() -> None:
    tree = {"a": torch.ones(2), "b": None, "c": torch.full((1,), 3.0)}
    other = {"a": torch.ones(2), "b": torch.ones(1), "c": torch.ones(1)}
    out = utils.tree_map_flat(lambda x, y: x + y, tree, other)
    assert out["b"] is None
    torch.testing.assert_close(out["a"], torch.full((2,), 2.0))
    torch.testing.assert_close(out["c"], torch.full((1,), 4.0))


def test_tree_map_flat_inplace_returns_the_first_tree() -> None:
    tree = {"a": torch.ones(2), "b": None}
    out = utils.tree_map_flat_(lambda x: x.mul_(5.0), tree)
    assert out is tree
    torch.testing.assert_close(tree["a"], torch.full((2,), 5.0))


def test_inc_count() -> None:
    count = torch.tensor(4)
    assert int(utils.inc_count({"a": torch.ones(1)}, count)) == 5
    assert int(count) == 4  # not mutated


@pytest.mark.parametrize("inplace", [True, False])
@pytest.mark.parametrize("order", [1, 2])
def test_update_moment_closed_form(order: int, inplace: bool) -> None:
    g = {"a": torch.tensor([1.0, -2.0], dtype=torch.float64), "b": torch.tensor(3.0).double()}
    m = {"a": torch.tensor([0.5, 0.5], dtype=torch.float64), "b": torch.tensor(1.0).double()}
    expected = {k: 0.9 * m[k] + 0.1 * g[k] ** order for k in g}
    before = {k: v.clone() for k, v in m.items()}
    out = utils.update_moment(g, m, 0.9, order=order, inplace=inplace)
    for k in g:
        torch.testing.assert_close(out[k], expected[k], rtol=1e-15, atol=0)
        if inplace:
            assert out[k] is m[k]
        else:
            torch.testing.assert_close(m[k], before[k], rtol=0, atol=0)
