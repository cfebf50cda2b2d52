"""Swap a module's parameters, buffers or meta-parameters for other tensors, by name."""

from __future__ import annotations

import contextlib
from collections.abc import Generator, Iterable

from torch import Tensor, nn

_MISSING: Tensor = object()  # type: ignore[assignment]  # sentinel for "attribute was absent"


def _as_dict(named_tensors: dict[str, Tensor] | Iterable[tuple[str, Tensor]]) -> dict[str, Tensor]:
    return named_tensors if isinstance(named_tensors, dict) else dict(named_tensors)


def swap_state(
    module: nn.Module,
    named_tensors: dict[str, Tensor] | Iterable[tuple[str, Tensor]],
    allow_missing: bool = False,
) -> dict[str, Tensor]:
    """Put tensors in place of a module's parameters/buffers/meta-parameters; return the old ones.

    Names are dotted paths as in ``named_parameters()`` (``"layer.0.weight"``); a path may go
    through meta-modules of a :class:`~torchopt_lite.nn.MetaGradientModule`. The tensors are
    stored as they are (no ``nn.Parameter`` wrapping), so a non-leaf tensor keeps its graph.

    Args:
        module: the module to modify in place.
        named_tensors: a dict or iterable of ``(name, tensor)`` pairs.
        allow_missing: create attributes that do not exist yet instead of raising
            ``AttributeError``; the returned dict then maps them to a sentinel that removes
            them again when swapped back.

    Returns:
        The previous tensors, by name (pass them back to undo the swap).

    Example:
        >>> lin = torch.nn.Linear(2, 1)
        >>> old = swap_state(lin, {"bias": torch.zeros(1)})
        >>> lin.bias
        tensor([0.])
    """
    named = _as_dict(named_tensors)
    submodules: dict[str, nn.Module] = {"": module}

    def get_submodule(path: str) -> nn.Module:
        if path not in submodules:
            prefix, _, attr = path.rpartition(".")
            submodules[path] = getattr(get_submodule(prefix), attr)
        return submodules[path]

    def set_tensor(path: str, value: Tensor) -> Tensor:
        prefix, _, attr = path.rpartition(".")
        mod = get_submodule(prefix)
        old = getattr(mod, attr, _MISSING) if allow_missing else getattr(mod, attr)
        stores = (
            mod.__dict__.get("_parameters"),
            mod.__dict__.get("_buffers"),
            mod.__dict__.get("_meta_parameters"),
        )
        if value is _MISSING:
            delattr(mod, attr)
            return old
        for store in stores:
            if store is not None and attr in store:
                store[attr] = value
                return old
        setattr(mod, attr, value)
        return old

    return {name: set_tensor(name, tensor) for name, tensor in named.items()}


@contextlib.contextmanager
def reparametrize(
    module: nn.Module,
    named_tensors: dict[str, Tensor] | Iterable[tuple[str, Tensor]],
    allow_missing: bool = False,
) -> Generator[nn.Module, None, None]:
    """Context manager: :func:`swap_state` on entry, swap back on exit (also on error).

    Example:
        >>> lin = torch.nn.Linear(1, 1, bias=False)
        >>> with reparametrize(lin, {"weight": torch.full((1, 1), 3.0)}):
        ...     lin(torch.ones(1))
        tensor([3.])
    """
    named = _as_dict(named_tensors)
    old: dict[str, Tensor] = {}
    try:
        old = swap_state(module, named, allow_missing=allow_missing)
        yield module
    finally:
        swap_state(module, old, allow_missing=allow_missing)


reparameterize = reparametrize
