"""partition / multi_transform, named_chain, freeze, selective_transform, set_to_zero."""

from __future__ import annotations

import pytest
import torch

import torchopt_lite
from tests.transform._combinators import (
    INPLACE,
    assert_same_state,
    assert_trees_close,
    clone,
    grads,
    optax_run,
    params,
    run,
    save_load,
)
from torchopt_lite.base import GradientTransformation
from torchopt_lite.transform import MaskedNode, trace
from torchopt_lite.transform.freeze import freeze, selective_transform, set_to_zero
from torchopt_lite.transform.named_chain import named_chain
from torchopt_lite.transform.partition import PartitionState, multi_transform, partition

LABELS = {"w": "adam", "b": "sgd", "s": "sgd"}


def _label_fn(tree: dict) -> dict:
    return {k: "adam" if k == "w" else "sgd" for k in tree}


def _ours() -> dict:
    return {"adam": torchopt_lite.adam(0.1), "sgd": torchopt_lite.sgd(0.05, momentum=0.9)}


@INPLACE
@pytest.mark.parametrize("labels", [LABELS, _label_fn], ids=["tree", "callable"])
def test_partition_matches_optax_and_parts(labels, inplace: bool) -> None:
    t = partition(_ours(), labels)
    ups, _, state = run(t, inplace=inplace)
    ref, _, _ = optax_run(
        lambda optax: optax.partition(
            {"adam": optax.adam(0.1), "sgd": optax.sgd(0.05, momentum=0.9)}, LABELS
        )
    )
    assert_trees_close(ups, ref)
    # plain reference: each optimizer alone on its own leaves
    adam, sgd = torchopt_lite.adam(0.1), torchopt_lite.sgd(0.05, momentum=0.9)
    sa, ss = adam.init({"w": params()["w"]}), sgd.init({"b": params()["b"], "s": params()["s"]})
    for step, u in enumerate(ups):
        g = grads(step)
        ua, sa = adam.update({"w": g["w"]}, sa, inplace=inplace)
        us, ss = sgd.update({"b": g["b"], "s": g["s"]}, ss, inplace=inplace)
        torch.testing.assert_close(u["w"], ua["w"], rtol=0, atol=0)
        torch.testing.assert_close(u["b"], us["b"], rtol=0, atol=0)
        torch.testing.assert_close(u["s"], us["s"], rtol=0, atol=0)
    assert isinstance(state, PartitionState)
    assert len(state.inner_states["adam"].inner_state[1].mu) == 1  # state for its leaves only
    assert len(state.inner_states["sgd"].inner_state[1].trace) == 2
    assert multi_transform is partition


def test_partition_label_prefix_and_masked_tree() -> None:
    """A label for a whole subtree; the inner transformation sees MaskedNode elsewhere."""
    seen = []

    def spy_update(updates, state, *, params=None, inplace=True):
        seen.append(updates)
        return updates, state

    spy = GradientTransformation(lambda p: (), spy_update)
    p = {"layer": {"w": torch.ones(2), "b": torch.ones(1)}, "head": torch.ones(3)}
    t = partition({"a": spy, "b": set_to_zero()}, {"layer": "a", "head": "b"})
    u, state = t.update(clone(p), t.init(p))
    assert isinstance(seen[0]["head"], MaskedNode)
    assert set(seen[0]["layer"]) == {"w", "b"}
    torch.testing.assert_close(u["head"], torch.zeros(3))
    torch.testing.assert_close(u["layer"]["w"], torch.ones(2))
    assert_same_state(save_load(state), state)


def test_partition_state_survives_save_load() -> None:
    t = partition(_ours(), LABELS)
    _, _, state = run(t, inplace=True, steps=2)
    assert_same_state(save_load(state), state)


def test_partition_errors() -> None:
    p = params()
    with pytest.raises(TypeError, match=r"partition: transforms\['a'\] must be a Gradient"):
        partition({"a": 1.0}, LABELS)  # type: ignore[dict-item]
    with pytest.raises(ValueError, match=r"labels \['adam'\] are not keys of transforms"):
        partition({"sgd": torchopt_lite.sgd(0.1)}, LABELS).init(p)
    with pytest.raises(ValueError, match="param_labels must have the tree structure of params"):
        partition(_ours(), {"w": "adam"}).init(p)
    t = partition(_ours(), LABELS)
    state = t.init(p)
    before = clone(state)
    with pytest.raises(ValueError, match="updates must have the tree structure of params"):
        t.update(clone(p), state, params={"w": p["w"]})
    with pytest.raises(ValueError, match="call init"):
        t.update(clone(p), None)
    with pytest.raises(ValueError, match="state must be of type PartitionState; got tuple"):
        t.update(clone(p), ())
    with pytest.raises(ValueError, match=r"state has groups \['adam'\] but this partition has"):
        t.update(clone(p), PartitionState({"adam": state.inner_states["adam"]}))
    assert_same_state(state, before)
    bad = GradientTransformation(lambda q: (), lambda u, s, *, params=None, inplace=True: ((), s))
    t = partition({"x": bad}, "x")
    with pytest.raises(ValueError, match=r"transforms\['x'\] returned 0 leaves for 3 updates"):
        t.update(clone(p), t.init(p))


@INPLACE
def test_named_chain_matches_chain_and_optax(inplace: bool) -> None:
    t = named_chain(("clip", torchopt_lite.transform.trace(0.5)), ("adam", torchopt_lite.adam(0.1)))
    ups, _, state = run(t, inplace=inplace)
    chained = torchopt_lite.chain(torchopt_lite.transform.trace(0.5), torchopt_lite.adam(0.1))
    ref_ups, _, _ = run(chained, inplace=False)
    assert_trees_close(ups, [{k: v.numpy() for k, v in u.items()} for u in ref_ups])
    assert list(state) == ["clip", "adam"]
    ref, _, _ = optax_run(
        lambda optax: optax.named_chain(("clip", optax.trace(0.5)), ("adam", optax.adam(0.1)))
    )
    assert_trees_close(ups, ref)
    assert_same_state(save_load(state), state)


def test_named_chain_errors() -> None:
    with pytest.raises(TypeError, match=r"named_chain: every argument must be a \(name, "):
        named_chain(trace(0.5))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"names must be distinct; got \['a', 'a'\]"):
        named_chain(("a", trace(0.5)), ("a", trace(0.5)))
    t = named_chain(("a", trace(0.5)))
    with pytest.raises(ValueError, match=r"state must be a dict with keys \['a'\]; got \['b'\]"):
        t.update(params(), {"b": None})


@INPLACE
@pytest.mark.parametrize("mask", [{"w": True, "b": False, "s": True}, True], ids=["tree", "all"])
def test_freeze_matches_optax(mask, inplace: bool) -> None:
    t = torchopt_lite.chain(freeze(mask), torchopt_lite.sgd(0.1, momentum=0.9))
    ups, ps, _ = run(t, inplace=inplace)
    ref, _, _ = optax_run(lambda optax: optax.chain(optax.freeze(mask), optax.sgd(0.1, 0.9)))
    assert_trees_close(ups, ref)
    for k in ("w", "s"):
        torch.testing.assert_close(ps[-1][k], params()[k], rtol=0, atol=0)


@INPLACE
def test_selective_transform_matches_optax(inplace: bool) -> None:
    mask = {"w": False, "b": True, "s": True}
    t = selective_transform(torchopt_lite.adam(0.1), freeze_mask=mask)
    ups, _, state = run(t, inplace=inplace)
    ref, _, _ = optax_run(
        lambda optax: optax.transforms.selective_transform(optax.adam(0.1), freeze_mask=mask)
    )
    assert_trees_close(ups, ref)
    assert len(state.inner_states["train"].inner_state[1].mu) == 1  # no state for frozen leaves
    with pytest.raises(TypeError, match="freeze_mask must be a bool or a tree of bools"):
        selective_transform(torchopt_lite.adam(0.1), freeze_mask=lambda p: True)


@INPLACE
def test_set_to_zero(inplace: bool) -> None:
    t = set_to_zero()
    g = {"a": torch.tensor([1.0, float("nan"), float("inf")])}
    u, _ = t.update(clone(g), t.init(g), inplace=inplace)
    torch.testing.assert_close(u["a"], torch.zeros(3), rtol=0, atol=0)
    u, _ = torchopt_lite.chain(trace(0.5), set_to_zero()).update(
        clone(g), torchopt_lite.chain(trace(0.5), set_to_zero()).init(g), inplace=inplace
    )
    torch.testing.assert_close(u["a"], torch.zeros(3), rtol=0, atol=0)
