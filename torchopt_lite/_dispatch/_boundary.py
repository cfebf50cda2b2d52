"""The flatten-once boundary: trees to lists of leaves, checks before writes, safe buffers.

Everything here runs before any rendering writes, so a raise leaves params and state exactly as
they were. It also puts the inputs ``torch.optim`` accepts into the form every rendering can
take: complex leaves as real views, and in-place buffers that alias nothing they should not.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import optree
import torch
from torch import Tensor

PARAMS_REQUIRED = (
    "{caller}: params must be passed to update() (update(updates, state, params=params))."
)

PLAIN_TENSOR_TYPES = (Tensor, torch.nn.Parameter)
_PLAIN_TYPES = frozenset(PLAIN_TENSOR_TYPES)
_STRIDED = frozenset([torch.strided])

_METHODS = (
    "size", "dim", "is_contiguous", "is_complex", "is_floating_point", "numel", "data_ptr",
    "get_device",
)  # fmt: skip
_GETTERS: dict[str, Callable[[Any], Any]] = {
    **{name: getattr(Tensor, name) for name in _METHODS},
    **{name: operator.attrgetter(name) for name in ("dtype", "layout", "is_cpu", "nbytes")},
}


def each(name: str, xs: Sequence[Any]) -> list[Any]:
    """``x.<name>`` (called, for a method) of every ``x``: a C-level ``map`` in eager mode, a
    comprehension under ``torch.compile`` (which evaluates it while tracing: static metadata)."""
    if torch.compiler.is_compiling():
        if name in _METHODS:
            return [getattr(x, name)() for x in xs]
        return [getattr(x, name) for x in xs]
    return list(map(_GETTERS[name], xs))


def same(name: str, xs: Sequence[Any], ys: Sequence[Any]) -> bool:
    """Whether ``x.<name> == y.<name>`` for every pair, streamed: no list of the values is kept
    (a list of 1000 shapes is 1000 live tuples for the garbage collector to walk)."""
    if torch.compiler.is_compiling():
        return all(a == b for a, b in zip(each(name, xs), each(name, ys), strict=True))
    getter = _GETTERS[name]
    return all(map(operator.eq, map(getter, xs), map(getter, ys)))


def types(xs: Sequence[Any]) -> set[type]:
    """The set of the types of ``xs``."""
    if torch.compiler.is_compiling():
        return {type(x) for x in xs}
    return set(map(type, xs))


@functools.lru_cache(maxsize=64)
def _sequence_spec(is_list: bool, n: int) -> optree.PyTreeSpec:
    template: Any = [0] * n if is_list else (0,) * n
    return optree.tree_structure(template, none_is_leaf=True)


def plain_leaves(tree: Any) -> list[Tensor] | None:
    """``tree`` as a list when it is a list or tuple of plain tensors (its own leaves), else
    ``None``."""
    kind = type(tree)
    if (kind is list or kind is tuple) and types(tree) <= _PLAIN_TYPES:
        return list(tree)
    return None


def flatten(tree: Any) -> tuple[list[Any], optree.PyTreeSpec]:
    """``optree.tree_flatten(tree, none_is_leaf=True)``, fast for a list or tuple of tensors.

    optree spends ~160 ns a leaf (0.20); a flat list of plain tensors, the common case on the
    hot path, is its own leaf list, with one cached spec per length.
    """
    leaves = plain_leaves(tree)
    if leaves is not None:
        return leaves, _sequence_spec(type(tree) is list, len(leaves))
    return optree.tree_flatten(tree, none_is_leaf=True)


def check_leaves(
    leaves: Sequence[Any], name: str, caller: str, spec: Any = None, *, sparse: bool = False
) -> bool:
    """Every leaf is ``None`` or a dense (strided) floating-point or complex tensor; sparse
    tensors too where ``sparse`` (see :func:`densified`).

    Returns:
        Whether every leaf is a real floating-point dense tensor (no ``None``, no complex).

    Raises:
        TypeError: a leaf is not a tensor, has an integer or boolean dtype, or is sparse.
    """
    try:
        if all(each("is_floating_point", leaves)) and set(each("layout", leaves)) <= _STRIDED:
            return True  # the common case, without a Python loop
    except TypeError:  # a None or non-tensor leaf: the loop below says which
        pass
    for leaf in leaves:
        if leaf is None:
            continue
        if not isinstance(leaf, Tensor):
            where = f" in {spec}" if spec is not None else ""
            raise TypeError(
                f"{caller}: every leaf of {name} must be a torch.Tensor; "
                f"got {type(leaf).__name__}{where}."
            )
        if leaf.layout is not torch.strided and not sparse:
            raise TypeError(
                f"{caller}: sparse {name} are not supported (got layout {leaf.layout}; "
                "torch.optim.Adam and its kin reject them too); pass dense tensors (.to_dense())."
            )
        if not (leaf.is_floating_point() or leaf.is_complex()):
            raise TypeError(
                f"{caller}: {name} must have floating-point (or complex) dtype; got {leaf.dtype}. "
                "Cast integer tensors with .float() before optimizing them."
            )
    return False


def densified(leaves: list[Any]) -> list[Any]:
    """Sparse leaves as dense tensors (for transformations whose math, computed densely, gives
    ``torch.optim``'s sparse results: SGD, AdaGrad)."""
    return [
        x.to_dense() if isinstance(x, Tensor) and x.layout is not torch.strided else x
        for x in leaves
    ]


def flatten_tensors(tree: Any, name: str, caller: str) -> tuple[list[Any], optree.PyTreeSpec]:
    """Flatten ``tree`` (``None`` kept as a leaf) and check every other leaf (see above)."""
    leaves, spec = flatten(tree)
    check_leaves(leaves, name, caller, spec)
    return leaves, spec


class Facts(NamedTuple):
    """What a step needs to know of its leaves, read once (each read is a pass over them)."""

    leaves: list[Tensor]
    dtypes: list[torch.dtype]
    devices: list[int]  # Tensor.get_device: -1 on the CPU, the index on an accelerator
    numels: list[int]
    on_cpu: bool  # every leaf on the CPU
    dense: bool  # every leaf contiguous
    complex: list[bool] | None  # which leaves are complex; None when none is

    @classmethod
    def of(cls, leaves: list[Tensor], *, real: bool = False) -> Facts:
        """Read the facts; ``real``: the caller knows no leaf is complex."""
        mask = None
        if not real and any(each("is_complex", leaves)):
            mask = [x.is_complex() for x in leaves]
        devices = each("get_device", leaves)
        return cls(
            leaves,
            each("dtype", leaves),
            devices,
            each("numel", leaves),
            set(devices) <= {-1} and all(each("is_cpu", leaves[:1])),
            all(each("is_contiguous", leaves)),
            mask,
        )


# -- complex leaves as real views ---------------------------------------------------------------


def as_real(xs: Sequence[Tensor], mask: list[bool]) -> list[Tensor]:
    """Complex entries as ``torch.view_as_real`` views (``torch.optim``'s handling of complex)."""
    return [
        torch.view_as_real(x) if m and x.is_complex() else x for x, m in zip(xs, mask, strict=True)
    ]


def as_complex(
    xs: Sequence[Tensor], mask: list[bool], originals: Sequence[Tensor], views: Sequence[Tensor]
) -> list[Any]:
    """Undo :func:`as_real` on results: ``originals[i]`` where the view ``views[i]`` itself came
    back (written in place), else a complex view of the new real result."""
    out: list[Any] = []
    for x, m, original, view in zip(xs, mask, originals, views, strict=True):
        if not m or x.is_complex():
            out.append(x)
        elif x is view:
            out.append(original)
        else:
            out.append(torch.view_as_complex(x if x.stride(-1) == 1 else x.contiguous()))
    return out


# -- in-place buffers ---------------------------------------------------------------------------


def _no_internal_overlap(x: Tensor) -> bool:
    """No two indices of ``x`` address one element (stride-0 expanded tensors fail)."""
    span = 0  # the largest offset reachable through the dimensions seen so far
    for stride, size in sorted(
        (st, sz) for st, sz in zip(x.stride(), x.shape, strict=True) if sz > 1
    ):
        if stride <= span:
            return False
        span += stride * (size - 1)
    return True


def _extent(x: Tensor) -> int:
    """Bytes from ``x``'s first element to one past its last (non-negative strides)."""
    if x.is_contiguous() or not x.numel():
        return x.nbytes
    last = sum(st * (sz - 1) for st, sz in zip(x.stride(), x.shape, strict=True))
    return (last + 1) * x.element_size()


def writable(facts: Facts) -> Facts:
    """Buffers an in-place step may overwrite element by element, one per leaf.

    A leaf whose own elements share memory (a stride-0 expanded gradient, as
    ``autograd.grad(w.sum(), w)`` returns) or that shares memory with an earlier leaf (one
    tensor passed for two leaves, overlapping views) is replaced by a dense copy, so each leaf's
    result depends on its own input only. Returns the facts of the buffers.
    """
    leaves, dense = facts.leaves, facts.dense
    out = leaves
    if not dense:
        out = [x if x.is_contiguous() or _no_internal_overlap(x) else x.contiguous() for x in out]
        dense = all(each("is_contiguous", out))
    return facts._replace(leaves=_distinct(out, dense), dense=dense)


def _distinct(out: list[Tensor], dense: bool) -> list[Tensor]:
    """``out`` with a leaf that shares memory with another one copied."""
    if torch.compiler.is_compiling():  # no addresses under a trace; identity is all we can see
        seen: set[int] = set()
        copies = []
        for x in out:
            copies.append(x.clone() if id(x) in seen else x)
            seen.add(id(x))
        return copies
    if len(out) < 2:
        return out
    starts = torch.tensor(each("data_ptr", out), dtype=torch.int64, device="cpu")
    sizes = each("nbytes", out) if dense else list(map(_extent, out))
    order = torch.argsort(starts)
    ends = (starts + torch.tensor(sizes, dtype=torch.int64, device="cpu"))[order]
    if bool((ends[:-1] <= starts[order][1:]).all()):  # sorted extents that never meet
        return out
    out = list(out)
    end = 0
    for i in order.tolist():
        if not out[i].numel():
            continue
        if starts[i] < end:
            out[i] = out[i].clone(memory_format=torch.contiguous_format)
        else:
            end = max(end, int(starts[i]) + sizes[i])
    return out


def check_writable(xs: Sequence[Tensor], name: str, caller: str) -> None:
    """Raise before any write if a leaf cannot be written in place (its elements overlap)."""
    if all(each("is_contiguous", xs)):
        return
    for i, x in enumerate(xs):
        if not x.is_contiguous() and not _no_internal_overlap(x):
            raise ValueError(
                f"{caller}: {name}[{i}] has elements that share memory (strides "
                f"{tuple(x.stride())}, e.g. an expand()ed tensor), so it cannot be updated in "
                "place; pass a tensor that owns its elements (x.contiguous())."
            )


def traced() -> bool:
    """Inside ``torch.compile`` or a ``torch.func`` transform (per-leaf ops only)."""
    return torch.compiler.is_compiling() or torch._C._functorch.maybe_current_level() is not None
