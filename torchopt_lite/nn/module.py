"""``MetaGradientModule``: an ``nn.Module`` that tells its parameters from its meta-parameters."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

import optree
import torch
from torch import Tensor, nn
from typing_extensions import Self


class MetaGradientModule(nn.Module):
    r"""A module holding inner parameters :math:`x` and meta-parameters :math:`\theta`.

    Tensors that require grad and modules passed to the **constructor** are meta-inputs: when
    the constructor assigns them to attributes they become meta-parameters and meta-modules
    (``meta_parameters()``, ``meta_modules()``), not parameters. Every other tensor that
    requires grad assigned to an attribute is a parameter (``parameters()``), ``nn.Parameter``
    or not. Meta-parameters are not in ``parameters()`` and the parameters of meta-modules are
    not either, so an inner optimizer built on ``parameters()`` never updates them.

    Example:
        >>> class Inner(MetaGradientModule):
        ...     def __init__(self, meta_net):
        ...         super().__init__()
        ...         self.meta_net = meta_net                     # a meta-module
        ...         self.w = torch.zeros(2, requires_grad=True)  # a parameter
        >>> inner = Inner(torch.nn.Linear(2, 1).eval())
        >>> [n for n, _ in inner.named_parameters()], [n for n, _ in inner.named_meta_parameters()]
        (['w'], ['meta_net.weight', 'meta_net.bias'])

    Note:
        TorchOpt takes constructor modules as meta-modules only when they are in training mode,
        so a meta-network in ``.eval()`` gives no meta-parameters (upstream issue #144). Here
        the mode does not matter.
    """

    _meta_inputs: dict[int, Tensor | nn.Module]
    _meta_parameters: dict[str, Tensor | None]
    _meta_modules: dict[str, nn.Module | None]

    def __new__(cls, *args: Any, **kwargs: Any) -> Self:
        """Record the constructor's tensors that require grad and its modules as meta-inputs."""
        instance = super().__new__(cls)
        tree: Any = (args, kwargs)
        leaves: list[Any] = optree.tree_leaves(tree, is_leaf=lambda x: isinstance(x, nn.Module))
        inputs: dict[int, Tensor | nn.Module] = {}
        for leaf in leaves:
            if isinstance(leaf, Tensor) and leaf.requires_grad:
                inputs[id(leaf)] = leaf
            elif isinstance(leaf, nn.Module):
                for module in leaf.modules():
                    inputs[id(module)] = module
                for param in leaf.parameters():
                    inputs[id(param)] = param
        object.__setattr__(instance, "_meta_inputs", inputs)
        object.__setattr__(instance, "_meta_parameters", OrderedDict())
        object.__setattr__(instance, "_meta_modules", OrderedDict())
        return instance

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__()

    def _is_meta_input(self, value: object) -> bool:
        return self.__dict__["_meta_inputs"].get(id(value)) is value

    def __getattr__(self, name: str) -> Any:
        for store in ("_meta_parameters", "_meta_modules"):
            entries = self.__dict__.get(store)
            if entries is not None and name in entries:
                return entries[name]
        return super().__getattr__(name)

    def _forget(self, name: str) -> None:
        for store in (
            self.__dict__,
            self._parameters,
            self._buffers,
            self._modules,
            self._meta_parameters,
            self._meta_modules,
        ):
            store.pop(name, None)
        self._non_persistent_buffers_set.discard(name)

    def __setattr__(self, name: str, value: Any) -> None:
        if "_parameters" not in self.__dict__:
            if isinstance(value, Tensor) and value.requires_grad:  # a parameter, as below
                raise AttributeError("cannot assign parameters before Module.__init__() call")
            super().__setattr__(name, value)  # nn.Module raises its own "before __init__" error
            return
        if isinstance(value, Tensor) and value.requires_grad:
            self._forget(name)
            if self._is_meta_input(value):
                self.register_meta_parameter(name, value)
            else:
                self.register_parameter(name, value)
        elif isinstance(value, nn.Module) and self._is_meta_input(value):
            self._forget(name)
            self._meta_modules[name] = value
        elif name in self._meta_parameters:
            self.register_meta_parameter(name, value)
        elif name in self._meta_modules:
            self.add_meta_module(name, value)
        else:
            super().__setattr__(name, value)

    def __delattr__(self, name: str) -> None:
        for store in (self._meta_parameters, self._meta_modules):
            if name in store:
                del store[name]
                return
        super().__delattr__(name)

    def _check_name(self, kind: str, name: object, store: dict[str, Any]) -> None:
        if not isinstance(name, str):
            raise TypeError(f"{kind} name should be a string. Got {torch.typename(name)}")
        if "." in name:
            raise KeyError(f"{kind} name can't contain '.'; got {name!r}.")
        if name == "":
            raise KeyError(f"{kind} name can't be empty string ''.")
        if name not in store and hasattr(self, name):
            raise KeyError(f"attribute '{name}' already exists")

    def register_parameter(self, name: str, param: Tensor | None) -> None:
        """Add a parameter: any tensor that requires grad (not only ``nn.Parameter``)."""
        self._check_name("parameter", name, self._parameters)
        if param is not None:
            if not isinstance(param, Tensor):
                raise TypeError(
                    f"cannot assign '{torch.typename(param)}' object to parameter '{name}' "
                    "(torch.Tensor or None required)"
                )
            if not param.requires_grad:
                raise ValueError(
                    f"cannot assign Tensor that `requires_grad=False` to parameter '{name}'"
                )
            if self._is_meta_input(param):
                raise ValueError(
                    f"cannot assign Tensor that is a meta-parameter to parameter '{name}'. "
                    "Use self.register_meta_parameter() instead."
                )
        self._parameters[name] = param  # type: ignore[assignment]  # plain tensors allowed, as in TorchOpt

    def register_meta_parameter(self, name: str, param: Tensor | None) -> None:
        """Add a meta-parameter (a tensor that requires grad, or ``None``)."""
        self._check_name("meta-parameter", name, self._meta_parameters)
        if param is not None:
            if not isinstance(param, Tensor):
                raise TypeError(
                    f"cannot assign '{torch.typename(param)}' object to meta-parameter '{name}' "
                    "(torch.Tensor or None required)"
                )
            if not param.requires_grad:
                raise ValueError(
                    f"cannot assign Tensor that `requires_grad=False` to meta-parameter '{name}'"
                )
        self._meta_parameters[name] = param

    def add_module(self, name: str, module: nn.Module | None) -> None:
        """Add a child module (not a meta-module)."""
        if module is not None and not isinstance(module, nn.Module):
            raise TypeError(f"{torch.typename(module)} is not a Module subclass")
        self._check_name("module", name, self._modules)
        if self._is_meta_input(module):
            raise ValueError(
                f"cannot add module that is a meta-module to module '{name}'. "
                "Use self.add_meta_module() instead."
            )
        self._modules[name] = module

    def register_module(self, name: str, module: nn.Module | None) -> None:
        """Alias for :meth:`add_module`."""
        self.add_module(name, module)

    def add_meta_module(self, name: str, meta_module: nn.Module | None) -> None:
        """Add a child meta-module: its parameters are meta-parameters."""
        if meta_module is not None and not isinstance(meta_module, nn.Module):
            raise TypeError(f"{torch.typename(meta_module)} is not a Module subclass")
        self._check_name("meta-module", name, self._meta_modules)
        self._meta_modules[name] = meta_module

    def register_meta_module(self, name: str, meta_module: nn.Module | None) -> None:
        """Alias for :meth:`add_meta_module`."""
        self.add_meta_module(name, meta_module)

    def meta_parameters(self, recurse: bool = True) -> Iterator[Tensor]:
        """Iterate over the meta-parameters (those of meta-modules included)."""
        for _, param in self.named_meta_parameters(recurse=recurse):
            yield param

    def named_meta_parameters(
        self, prefix: str = "", recurse: bool = True
    ) -> Iterator[tuple[str, Tensor]]:
        """Iterate over ``(name, meta_parameter)``; meta-module parameters are dotted names."""
        memo: set[int] = set()
        for name, param in self._meta_parameters.items():
            if param is None or id(param) in memo:
                continue
            memo.add(id(param))
            yield prefix + name, param
        for name, module in self._meta_modules.items():
            if module is None:
                continue
            for sub_name, param in module.named_parameters(prefix + name, recurse):
                if id(param) not in memo:
                    memo.add(id(param))
                    yield sub_name, param

    def meta_children(self) -> Iterator[nn.Module]:
        """Iterate over the immediate meta-modules."""
        for _, module in self.named_meta_children():
            yield module

    def named_meta_children(self) -> Iterator[tuple[str, nn.Module]]:
        """Iterate over ``(name, meta_module)`` for the immediate meta-modules."""
        memo: set[int] = set()
        for name, module in self._meta_modules.items():
            if module is not None and id(module) not in memo:
                memo.add(id(module))
                yield name, module

    def meta_modules(self) -> Iterator[nn.Module]:
        """Iterate over all meta-modules and their submodules."""
        for _, module in self.named_meta_modules():
            yield module

    def named_meta_modules(
        self, memo: set[nn.Module] | None = None, prefix: str = "", remove_duplicate: bool = True
    ) -> Iterator[tuple[str, nn.Module]]:
        """Iterate over ``(name, module)`` for all meta-modules and their submodules."""
        memo = set() if memo is None else memo
        for name, module in self._meta_modules.items():
            if module is None:
                continue
            sub_prefix = prefix + ("." if prefix else "") + name
            yield from module.named_modules(memo, sub_prefix, remove_duplicate)
