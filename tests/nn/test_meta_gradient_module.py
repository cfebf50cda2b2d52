"""MetaGradientModule bookkeeping and the stateless helpers."""

from __future__ import annotations

import pytest
import torch

from torchopt_lite.nn import MetaGradientModule, reparameterize, reparametrize, swap_state


class Holder(MetaGradientModule):
    def __init__(self, meta_tensor, meta_module):
        super().__init__()
        self.meta_tensor = meta_tensor
        self.meta_module = meta_module
        self.param = torch.zeros(2, requires_grad=True)
        self.child = torch.nn.Linear(2, 2)
        self.register_buffer("buf", torch.ones(1))


@pytest.fixture
def holder() -> Holder:
    return Holder(torch.ones(3, requires_grad=True), torch.nn.Linear(2, 1).eval())


def test_parameters_and_meta_parameters_are_separate(holder: Holder) -> None:
    assert [n for n, _ in holder.named_parameters()] == ["param", "child.weight", "child.bias"]
    assert [n for n, _ in holder.named_meta_parameters()] == [
        "meta_tensor",
        "meta_module.weight",
        "meta_module.bias",
    ]
    assert [n for n, _ in holder.named_meta_children()] == ["meta_module"]
    assert list(holder.meta_modules()) == [holder.meta_module]
    assert list(holder.meta_children()) == [holder.meta_module]
    assert len(list(holder.meta_parameters())) == 3
    assert holder.meta_tensor is holder._meta_parameters["meta_tensor"]
    torch.testing.assert_close(holder.buf, torch.ones(1))
    del holder.meta_tensor
    assert [n for n, _ in holder.named_meta_parameters()] == [
        "meta_module.weight",
        "meta_module.bias",
    ]


def test_registration_errors(holder: Holder) -> None:
    with pytest.raises(
        ValueError, match="cannot assign Tensor that `requires_grad=False` to parameter 'p'"
    ):
        holder.register_parameter("p", torch.zeros(1))
    with pytest.raises(ValueError, match="is a meta-parameter to parameter 'q'"):
        holder.register_parameter("q", holder.meta_tensor)
    with pytest.raises(TypeError, match="cannot assign 'int' object to meta-parameter 'm'"):
        holder.register_meta_parameter("m", 3)  # type: ignore[arg-type]
    with pytest.raises(KeyError, match=r"can't contain '\.'"):
        holder.register_meta_parameter("a.b", torch.zeros(1, requires_grad=True))
    with pytest.raises(KeyError, match="attribute 'buf' already exists"):
        holder.register_parameter("buf", torch.zeros(1, requires_grad=True))
    with pytest.raises(ValueError, match="is a meta-module to module 'mm'"):
        holder.add_module("mm", holder.meta_module)
    with pytest.raises(TypeError, match="is not a Module subclass"):
        holder.add_meta_module("x", 3)  # type: ignore[arg-type]
    assert [n for n, _ in holder.named_parameters()] == ["param", "child.weight", "child.bias"]


def test_swap_state_and_reparametrize(holder: Holder) -> None:
    new = torch.full((2,), 5.0)
    old = swap_state(holder, {"param": new, "meta_module.bias": torch.zeros(1)})
    assert holder.param is new
    torch.testing.assert_close(holder.meta_module.bias, torch.zeros(1))
    swap_state(holder, old)
    torch.testing.assert_close(holder.param, torch.zeros(2))
    x = torch.ones(2)
    with reparametrize(holder, [("child.weight", torch.eye(2)), ("child.bias", torch.zeros(2))]):
        torch.testing.assert_close(holder.child(x), x)
    assert isinstance(holder.child.weight, torch.nn.Parameter)
    with reparameterize(holder, {"extra": torch.ones(1)}, allow_missing=True):
        torch.testing.assert_close(holder.extra, torch.ones(1))
    assert not hasattr(holder, "extra")
    with pytest.raises(AttributeError):
        swap_state(holder, {"missing": torch.ones(1)})


def test_nn_reexports_the_differentiation_modules() -> None:
    import torchopt_lite.nn as tnn
    from torchopt_lite.diff.implicit import ImplicitMetaGradientModule
    from torchopt_lite.diff.zero_order import ZeroOrderGradientModule

    assert tnn.ImplicitMetaGradientModule is ImplicitMetaGradientModule
    assert tnn.ZeroOrderGradientModule is ZeroOrderGradientModule
    assert issubclass(ImplicitMetaGradientModule, MetaGradientModule)
    assert set(tnn.__all__) == {
        "MetaGradientModule",
        "ImplicitMetaGradientModule",
        "ZeroOrderGradientModule",
        "reparametrize",
        "reparameterize",
        "swap_state",
    }
    with pytest.raises(AttributeError, match="has no attribute 'Missing'"):
        tnn.Missing  # noqa: B018
