"""make_dot: the DOT text of autograd graphs, with parameter names."""

from __future__ import annotations

import importlib
import re
import sys

import graphviz
import pytest
import torch
from torch import nn

import torchopt_lite.visual
from torchopt_lite.optim.meta import MetaSGD
from torchopt_lite.utils import extract_state_dict
from torchopt_lite.visual import get_fn_name, make_dot, resize_graph


def labels(dot: graphviz.Digraph) -> list[str]:
    return re.findall(r'label="?([^"\]]*)"?', dot.source)


def make_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(2, 3), nn.Tanh(), nn.Linear(3, 1))


def test_named_parameters_from_mapping_generator_and_list() -> None:
    net = make_net()
    out = net(torch.ones(4, 2)).sum()
    for params in (
        dict(net.named_parameters()),
        net.named_parameters(),
        [dict(net[0].named_parameters(prefix="first")), net[2].named_parameters(prefix="last")],
    ):
        text = make_dot(out, params=params).source
        names = ("0.weight", "2.bias") if isinstance(params, dict) else ("weight", "bias")
        assert all(n in text for n in names)
        assert "AccumulateGrad" in text and "AddmmBackward0" in text and "TanhBackward0" in text
    text = make_dot(out, params=[dict(net[0].named_parameters(prefix="first"))]).source
    assert "first.weight\n(3, 2)" in text and "fillcolor=lightblue" in text
    assert "fillcolor=darkolivegreen1" in text  # the output


def test_meta_updated_parameters_are_named_through_module_state() -> None:
    net = make_net()
    opt = MetaSGD(net, lr=0.1)
    opt.step(net(torch.ones(4, 2)).pow(2).mean())
    state = extract_state_dict(net, enable_visual=True, visual_prefix="step1.")
    text = make_dot(net(torch.ones(4, 2)).sum(), params=state).source
    # The updated parameters are non-leaves; the node of the update that produced them (one
    # multi-tensor add for the group) carries their names.
    names = r"step1\.0\.weight\n\(3, 2\)\nstep1\.0\.bias\n\(3\)\nstep1\.2\.weight"
    assert re.search(r'label="ForeachAddBackward0List\n' + names, text)
    assert "fillcolor=lightblue" in text
    assert text.count("step1.") == 4
    # A mapping of non-leaf tensors names them the same way.
    text = make_dot(net(torch.ones(4, 2)).sum(), params=dict(net.named_parameters())).source
    assert "\n2.weight\n(1, 3)" in text


def test_show_attrs_and_show_saved() -> None:
    x = torch.ones(3, requires_grad=True)
    y = (x * 2).pow(3).sum()
    plain = make_dot(y)
    assert "exponent" not in plain.source
    with_attrs = make_dot(y, show_attrs=True, max_attr_chars=3)
    assert re.search(r"PowBackward0\n-+\nexponent: *3", with_attrs.source)
    with_saved = make_dot(y, show_saved=True)
    assert "fillcolor=orange" in with_saved.source and "dir=none" in with_saved.source
    assert "self\n(3)" in with_saved.source


def test_custom_function_saved_tensors_and_views() -> None:
    class Square(torch.autograd.Function):
        @staticmethod
        def forward(x: torch.Tensor) -> torch.Tensor:
            return x * x

        @staticmethod
        def setup_context(ctx, inputs, output):  # type: ignore[no-untyped-def]
            ctx.save_for_backward(inputs[0])

        @staticmethod
        def backward(ctx, g):  # type: ignore[no-untyped-def]
            (x,) = ctx.saved_tensors
            return 2 * x * g

    x = torch.ones(4, requires_grad=True)
    y = Square.apply(x)[:2]  # a view of the function's output
    text = make_dot(y, params={"x": x}).source
    assert "SquareBackward" in text and "fillcolor=orange" in text
    assert "style=dotted" in text and "fillcolor=darkolivegreen3" in text
    assert "x\n(4)" in text


def test_deep_unrolled_graph_does_not_recurse() -> None:
    x = torch.ones(2, requires_grad=True)
    y = x
    for _ in range(3 * sys.getrecursionlimit()):
        y = y * 1.0
    dot = make_dot(y.sum())
    assert dot.source.count("MulBackward0") == 3 * sys.getrecursionlimit()


def test_resize_graph_and_fn_name() -> None:
    dot = graphviz.Digraph()
    for i in range(40):
        dot.node(str(i))
    resize_graph(dot, size_per_element=0.5, min_size=12.0)
    assert dot.graph_attr["size"] == "20.0,20.0"
    resize_graph(dot, size_per_element=0.1, min_size=12.0)
    assert dot.graph_attr["size"] == "12.0,12.0"
    x = torch.ones(2, requires_grad=True)
    fn = (x.sum(dim=0, keepdim=True)).grad_fn
    assert get_fn_name(fn, show_attrs=False, max_attr_chars=10) == "SumBackward1"
    assert get_fn_name(fn, show_attrs=True, max_attr_chars=50).startswith("SumBackward1\n---")
    assert "keepdim" in get_fn_name(fn, show_attrs=True, max_attr_chars=50)


def test_tensor_to_name_mapping_labels_the_tensor() -> None:
    """TorchOpt's visualize example passes ``[..., {meta_param: "meta_param"}]``."""
    net = make_net()
    meta_param = torch.ones(1, requires_grad=True)
    out = (net(torch.ones(1, 2)) * meta_param).sum()
    text = make_dot(out, params=[{meta_param: "meta_param"}, dict(net.named_parameters())]).source
    assert "meta_param\n(1)" in text and "0.weight" in text


def test_errors() -> None:
    net = make_net()
    out = net(torch.ones(1, 2)).sum()
    with pytest.raises(ValueError, match=r"ModuleState without names.*enable_visual=True"):
        make_dot(out, params=extract_state_dict(net))
    with pytest.raises(TypeError, match=r"make_dot: params must be a Mapping.*got int"):
        make_dot(out, params=[3])  # type: ignore[list-item]
    with pytest.raises(TypeError, match=r"must map names to tensors .* got int -> str"):
        make_dot(out, params={3: "three"})  # type: ignore[dict-item]
    with pytest.raises(TypeError, match="make_dot: var must be a tensor"):
        make_dot([out, "loss"])


def test_missing_graphviz_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "graphviz", None)
    importlib.reload(torchopt_lite.visual)  # the module itself imports without graphviz
    with pytest.raises(ImportError, match="make_dot: the graphviz Python package is required"):
        make_dot(torch.ones(1, requires_grad=True).sum())
