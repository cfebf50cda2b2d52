"""Module and optimizer state: extract, recover, clone and detach (TorchOpt's ``utils``)."""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, TypeAlias, cast, overload

import optree
import torch
from torch import Tensor, nn

from torchopt_lite._modules import extract_module_containers
from torchopt_lite.base import register_state_type
from torchopt_lite.typing import Device, ModuleTensorContainers, OptState, TensorContainer

if TYPE_CHECKING:
    from torchopt_lite.optim.meta.base import MetaOptimizer


@register_state_type
class ModuleState(NamedTuple):
    """Parameters and buffers of a module, one dict per submodule (see :func:`extract_state_dict`).

    ``visual_contents`` maps leaf tensors to names, and the ``grad_fn`` of non-leaf tensors to
    ``(name, tensor)`` (to a list of such pairs when one node produced several parameters), for
    :func:`torchopt_lite.visual.make_dot`; ``detach_buffers`` tells
    :func:`recover_state_dict` to write detached copies of the buffers.
    """

    params: tuple[TensorContainer, ...]
    buffers: tuple[TensorContainer, ...]
    visual_contents: dict | None = None
    detach_buffers: bool = False


CopyMode: TypeAlias = Literal["reference", "copy", "deepcopy", "ref", "clone", "deepclone"]
"""How tensors are taken: ``'reference'`` (``'ref'``) the same tensors; ``'copy'`` (``'clone'``)
``clone()``, which keeps the graph (``CloneBackward``); ``'deepcopy'`` (``'deepclone'``) detached
copies that keep ``requires_grad``."""

_COPY_MODES = {
    "reference": "reference",
    "ref": "reference",
    "copy": "copy",
    "clone": "copy",
    "deepcopy": "deepcopy",
    "deepclone": "deepcopy",
}


def _normalize_mode(caller: str, by: str) -> str:
    if by not in _COPY_MODES:
        raise ValueError(f"{caller}: by must be one of {sorted(_COPY_MODES)}; got {by!r}.")
    return _COPY_MODES[by]


def _detached_copy(t: Tensor, device: torch.device | None = None) -> Tensor:
    """A detached copy of ``t`` that keeps ``requires_grad`` (and the ``Parameter`` type)."""
    out = t.detach().clone() if device is None else t.detach().to(device, copy=True)
    if isinstance(t, nn.Parameter):
        return nn.Parameter(out, requires_grad=t.requires_grad)
    return out.requires_grad_(t.requires_grad)


def _replicator(caller: str, by: str, device: Device | None) -> Callable[[Tensor], Tensor]:
    mode = _normalize_mode(caller, by)
    dev = None if device is None else torch.device(device)
    if mode == "reference":
        return (lambda t: t) if dev is None else (lambda t: t.to(dev))
    if mode == "copy":
        return (lambda t: t.clone()) if dev is None else (lambda t: t.clone().to(dev))
    return lambda t: _detached_copy(t, dev)


def _unexpected(caller: str, target: object, expected: str) -> TypeError:
    return TypeError(
        f"{caller}: Unexpected class of target; expected {expected}, got {type(target).__name__}."
    )


def _meta_optimizer() -> type[MetaOptimizer]:
    from torchopt_lite.optim.meta.base import MetaOptimizer  # imports this module

    return MetaOptimizer


@overload
def extract_state_dict(
    target: nn.Module,
    *,
    by: CopyMode = "reference",
    device: Device | None = None,
    with_buffers: bool = True,
    detach_buffers: bool = False,
    enable_visual: bool = False,
    visual_prefix: str = "",
) -> ModuleState: ...


@overload
def extract_state_dict(
    target: MetaOptimizer,
    *,
    by: CopyMode = "reference",
    device: Device | None = None,
    with_buffers: bool = True,
    detach_buffers: bool = False,
    enable_visual: bool = False,
    visual_prefix: str = "",
) -> tuple[OptState, ...]: ...


def extract_state_dict(
    target: nn.Module | MetaOptimizer,
    *,
    by: CopyMode = "reference",
    device: Device | None = None,
    with_buffers: bool = True,
    detach_buffers: bool = False,
    enable_visual: bool = False,
    visual_prefix: str = "",
) -> ModuleState | tuple[OptState, ...]:
    """Take the state of a module (its parameters and buffers) or of a meta-optimizer.

    The usual MAML loop extracts the initial state once, runs the differentiable inner loop,
    and puts the state back with :func:`recover_state_dict` after the outer backward pass.

    Args:
        target: an ``nn.Module`` or a :class:`~torchopt_lite.MetaOptimizer`.
        by: ``'reference'`` keeps the same tensors, ``'copy'`` clones them (the clones stay in
            the graph), ``'deepcopy'`` makes detached copies (see :data:`CopyMode`).
        device: move the extracted tensors to this device.
        with_buffers: also take the buffers (modules only).
        detach_buffers: take detached copies of the buffers whatever ``by`` says, and have
            :func:`recover_state_dict` write detached copies back (modules only).
        enable_visual: record names for :func:`torchopt_lite.visual.make_dot` (modules only).
        visual_prefix: prefix of those names.

    Returns:
        A :class:`ModuleState` for a module; for a meta-optimizer, the tuple of its per-group
        optimizer states.

    Example:
        >>> net = torch.nn.Linear(1, 1)
        >>> state = extract_state_dict(net, by="deepcopy")
        >>> with torch.no_grad():
        ...     net.weight.add_(1.0)
        Parameter containing:...
        >>> recover_state_dict(net, state)
        >>> bool(net.weight == state.params[0]["weight"])
        True

    Note:
        An unknown ``by`` raises ``ValueError`` (TorchOpt asserts) and a target of another type
        raises ``TypeError`` (TorchOpt raises ``RuntimeError``).
    """
    replicate = _replicator("extract_state_dict", by, device)
    if isinstance(target, nn.Module):
        visual_contents: dict | None = None
        if enable_visual:
            visual_contents = {}
            for name, v in target.named_parameters():
                if v.grad_fn is not None:
                    named = (visual_prefix + name, v)
                    # Several parameters may come out of one node (a multi-tensor update):
                    # the node then maps to the list of their (name, tensor) pairs.
                    known = visual_contents.get(v.grad_fn)
                    if known is None:
                        visual_contents[v.grad_fn] = named
                    elif isinstance(known, list):
                        known.append(named)
                    else:
                        visual_contents[v.grad_fn] = [known, named]
                else:
                    visual_contents[v] = visual_prefix + name
        dev = None if device is None else torch.device(device)
        replicate_buffer = (lambda t: _detached_copy(t, dev)) if detach_buffers else replicate
        param_containers, buffer_containers = extract_module_containers(target, with_buffers)
        return ModuleState(
            params=_replicate_containers(param_containers, replicate),
            buffers=_replicate_containers(buffer_containers, replicate_buffer),
            visual_contents=visual_contents,
            detach_buffers=detach_buffers,
        )
    if isinstance(target, _meta_optimizer()):
        states: Any = target.state_dict()
        return cast(tuple, optree.tree_map(replicate, states))
    raise _unexpected("extract_state_dict", target, "an nn.Module or a MetaOptimizer")


def _replicate_containers(
    containers: ModuleTensorContainers, replicate: Callable[[Tensor], Tensor]
) -> tuple[TensorContainer, ...]:
    return tuple(
        type(c)((k, replicate(v)) for k, v in c.items() if isinstance(v, Tensor))
        for c in containers
    )


def _holds_tensors_named(target: TensorContainer, source: TensorContainer) -> bool:
    """Whether ``target`` holds a tensor under exactly the names of ``source`` (others: None)."""
    if target.keys() == source.keys():  # the common case, without sorting
        return all(isinstance(v, Tensor) for v in target.values())
    return sorted(k for k, v in target.items() if isinstance(v, Tensor)) == sorted(source)


def _check_containers(
    kind: str, targets: ModuleTensorContainers, sources: Sequence[TensorContainer]
) -> None:
    """Raise before any write when ``sources`` does not come from a module like ``targets``."""
    prefix = f"recover_state_dict: state does not match the module's {kind}"
    if len(targets) != len(sources):
        raise ValueError(
            f"{prefix}: the module has {len(targets)} {kind} dicts, the state has "
            f"{len(sources)}; pass the state extracted from this module."
        )
    for i, (tgt, src) in enumerate(zip(targets, sources, strict=True)):
        if not _holds_tensors_named(tgt, src):
            names = sorted(k for k, v in tgt.items() if isinstance(v, Tensor))
            raise ValueError(
                f"{prefix}: dict {i} holds {names} in the module and {sorted(src)} in the state; "
                "pass the state extracted from this module."
            )
        for name, value in src.items():
            current = cast(Tensor, tgt[name])
            if not isinstance(value, Tensor) or value.shape != current.shape:
                got = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
                raise ValueError(
                    f"{prefix}: {name!r} is {tuple(current.shape)} in the module and {got} in "
                    "the state; pass the state extracted from this module."
                )


def recover_state_dict(
    target: nn.Module | MetaOptimizer,
    state: ModuleState | Sequence[OptState],
) -> None:
    """Put back a state taken by :func:`extract_state_dict` (the inverse operation).

    The tensors of ``state`` are written into the module's parameter and buffer dicts (the old
    tensors are replaced, not modified), or loaded into the meta-optimizer.

    Args:
        target: the module or meta-optimizer the state was taken from.
        state: a :class:`ModuleState` (module) or a sequence of optimizer states (meta-optimizer).

    Example:
        >>> net = torch.nn.Linear(1, 1)
        >>> state = extract_state_dict(net)
        >>> recover_state_dict(net, state)
        >>> net.weight is state.params[0]["weight"]
        True

    Note:
        Unlike TorchOpt, a state taken from a differently shaped module raises ``ValueError``
        before anything is written (TorchOpt writes the dicts that happen to line up).
    """
    if isinstance(target, nn.Module):
        if not isinstance(state, ModuleState):
            raise TypeError(
                "recover_state_dict: state for an nn.Module must be a ModuleState from "
                f"extract_state_dict; got {type(state).__name__}."
            )
        param_containers, buffer_containers = extract_module_containers(target, True)
        _check_containers("parameter", param_containers, state.params)
        buffers: Sequence[TensorContainer] = state.buffers
        if buffers:  # a state extracted with with_buffers=False leaves the buffers alone
            _check_containers("buffer", buffer_containers, buffers)
            if state.detach_buffers:
                buffers = [
                    type(c)((k, _detached_copy(cast(Tensor, v))) for k, v in c.items())
                    for c in buffers
                ]
        for tgt, src in zip(param_containers, state.params, strict=True):
            tgt.update(src)
        for tgt, src in zip(buffer_containers if buffers else (), buffers, strict=True):
            tgt.update(src)
        return
    if isinstance(target, _meta_optimizer()):
        target.load_state_dict(cast(Sequence[OptState], state))
        return
    raise _unexpected("recover_state_dict", target, "an nn.Module or a MetaOptimizer")


def _detach_in_place(t: Any) -> None:
    if isinstance(t, Tensor):
        requires_grad = t.requires_grad
        t.detach_().requires_grad_(requires_grad)


def stop_gradient(target: ModuleState | nn.Module | MetaOptimizer | Any) -> None:
    """Cut every tensor of ``target`` from its graph, in place (``detach_()``).

    Each tensor keeps its ``requires_grad`` flag, so a module's parameters become leaves again
    and the next inner step builds a fresh graph.

    Args:
        target: a :class:`ModuleState`, an ``nn.Module`` (its parameters), a
            :class:`~torchopt_lite.MetaOptimizer` (its state) or a tree of tensors.

    Example:
        >>> w = torch.ones(2, requires_grad=True)
        >>> v = w * 2
        >>> stop_gradient(v)
        >>> v.grad_fn is None, v.requires_grad
        (True, True)
    """
    if isinstance(target, ModuleState):
        tree: Any = (target.params, target.buffers)
    elif isinstance(target, nn.Module):
        tree = tuple(target.parameters())
    elif isinstance(target, _meta_optimizer()):
        tree = target.state_dict()
    else:
        tree = target
    for leaf in optree.tree_leaves(tree):
        _detach_in_place(leaf)


@overload
def module_clone(
    target: nn.Module,
    *,
    by: CopyMode = "reference",
    detach_buffers: bool = False,
    device: Device | None = None,
) -> nn.Module: ...


@overload
def module_clone(
    target: MetaOptimizer,
    *,
    by: CopyMode = "reference",
    detach_buffers: bool = False,
    device: Device | None = None,
) -> MetaOptimizer: ...


@overload
def module_clone(
    target: Any,
    *,
    by: CopyMode = "reference",
    detach_buffers: bool = False,
    device: Device | None = None,
) -> Any: ...


def module_clone(
    target: nn.Module | MetaOptimizer | Any,
    *,
    by: CopyMode = "reference",
    detach_buffers: bool = False,
    device: Device | None = None,
) -> nn.Module | MetaOptimizer | Any:
    """Clone a module, a meta-optimizer or a tree of tensors.

    The Python object is deep-copied; its tensors are taken as ``by`` says (see
    :func:`extract_state_dict`), so ``by='copy'`` gives a clone that stays in the graph and
    ``by='deepcopy'`` a detached one.

    Args:
        target: an ``nn.Module``, a :class:`~torchopt_lite.MetaOptimizer` or a tree of tensors.
        by: ``'reference'``, ``'copy'`` or ``'deepcopy'`` (see :data:`CopyMode`).
        detach_buffers: take detached copies of the buffers (modules only).
        device: move the tensors to this device.

    Returns:
        The clone.

    Example:
        >>> net = torch.nn.Linear(1, 1)
        >>> twin = module_clone(net, by="deepcopy")
        >>> twin is net, bool(twin.weight == net.weight), twin.weight is net.weight
        (False, True, False)
    """
    replicate = _replicator("module_clone", by, device)
    if isinstance(target, nn.Module | _meta_optimizer()):
        shared: Any
        if isinstance(target, nn.Module):
            shared = extract_module_containers(target, with_buffers=True)
        else:
            shared = (target.state_dict(), target.param_containers_groups)
        # Share the tensors during the deep copy (non-leaf tensors cannot be deep-copied), then
        # write the replicated ones into the copy.
        memo: dict[int, Any] = {id(t): t for t in optree.tree_leaves(shared)}
        if not isinstance(target, nn.Module):  # a transformation is immutable: share it
            memo[id(target.impl)] = target.impl
        cloned = copy.deepcopy(target, memo=memo)
        state = extract_state_dict(
            target, by=by, device=device, with_buffers=True, detach_buffers=detach_buffers
        )
        recover_state_dict(cloned, state)
        return cloned
    tree: Any = target
    return optree.tree_map(replicate, tree)


@overload
def module_detach_(target: ModuleState) -> ModuleState: ...


@overload
def module_detach_(target: nn.Module) -> nn.Module: ...


@overload
def module_detach_(target: MetaOptimizer) -> MetaOptimizer: ...


@overload
def module_detach_(target: Any) -> Any: ...


def module_detach_(
    target: ModuleState | nn.Module | MetaOptimizer | Any,
) -> ModuleState | nn.Module | MetaOptimizer | Any:
    """Detach ``target`` in place (:func:`stop_gradient`) and return it.

    Example:
        >>> net = module_detach_(torch.nn.Linear(1, 1))
        >>> net.weight.grad_fn is None
        True
    """
    stop_gradient(target)
    return target
