"""Render an autograd graph with graphviz, naming the parameters (TorchOpt's ``visual``)."""

from __future__ import annotations

from collections.abc import Generator, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import optree
import torch
from torch import Tensor

from torchopt_lite.utils import ModuleState

if TYPE_CHECKING:
    from graphviz import Digraph

SAVED_PREFIX = "_saved_"  # saved attributes of a backward node (tensors and values) start so

_NODE_ATTR = {
    "style": "filled",
    "shape": "box",
    "align": "left",
    "fontsize": "10",
    "ranksep": "0.1",
    "height": "0.2",
    "fontname": "monospace",
}

ParamsLike = (
    Mapping[str, Tensor]
    | Mapping[Tensor, str]
    | ModuleState
    | Generator
    | Iterable[Mapping[str, Tensor] | Mapping[Tensor, str] | ModuleState | Generator]
)


def get_fn_name(fn: Any, show_attrs: bool, max_attr_chars: int) -> str:
    """The label of a backward node: its class name, and its saved attributes if asked.

    Args:
        fn: a backward node (``tensor.grad_fn``).
        show_attrs: append a table of the node's saved non-tensor attributes (saved tensors
            show as ``[saved tensor]``).
        max_attr_chars: truncate each attribute value to this many characters (at least 3).

    Returns:
        The label.

    Example:
        >>> x = torch.ones(2, requires_grad=True)
        >>> get_fn_name((x * 2).grad_fn, show_attrs=False, max_attr_chars=50)
        'MulBackward0'
    """
    # Node.name() also names nodes whose Python class is the generic CppFunction (foreach ops).
    name = fn.name() if callable(getattr(fn, "name", None)) else type(fn).__name__
    if not show_attrs:
        return name
    attrs: dict[str, str] = {}
    for attr in dir(fn):
        if not attr.startswith(SAVED_PREFIX):
            continue
        try:
            val = getattr(fn, attr)
        except RuntimeError:  # freed by a backward pass without retain_graph
            val = "[freed]"
        key = attr[len(SAVED_PREFIX) :]
        if isinstance(val, Tensor):
            attrs[key] = "[saved tensor]"
        elif isinstance(val, tuple) and any(isinstance(t, Tensor) for t in val):
            attrs[key] = "[saved tensors]"
        else:
            attrs[key] = str(val)
    if not attrs:
        return name
    width = max(max_attr_chars, 3)
    col1 = max(map(len, attrs))
    col2 = min(max(len(v) for v in attrs.values()), width)

    def truncate(s: str) -> str:
        return s[: col2 - 3] + "..." if len(s) > col2 else s

    rows = "\n".join(f"{k:<{col1}s}: {truncate(v):>{col2}s}" for k, v in attrs.items())
    return f"{name}\n{'-' * max(col1 + col2 + 2, len(name))}\n{rows}"


def _name_maps(
    params: ParamsLike | None,
) -> tuple[dict[int, str], dict[Any, list[tuple[str, Tensor]]]]:
    """Names of leaf tensors (by id) and of non-leaf parameters (by their ``grad_fn``)."""
    tensor_names: dict[int, str] = {}
    fn_names: dict[Any, list[tuple[str, Tensor]]] = {}

    def add(source: Any) -> None:
        if isinstance(source, ModuleState):
            if source.visual_contents is None:
                raise ValueError(
                    "make_dot: params is a ModuleState without names; take it with "
                    "extract_state_dict(module, enable_visual=True)."
                )
            for key, value in source.visual_contents.items():
                if isinstance(key, Tensor):
                    tensor_names[id(key)] = value
                else:
                    fn_names.setdefault(key, []).extend(
                        value if isinstance(value, list) else [value]
                    )
        elif isinstance(source, Mapping):
            for key, value in source.items():
                if isinstance(key, str) and isinstance(value, Tensor):
                    add_named(key, value)
                elif isinstance(key, Tensor) and isinstance(value, str):  # {tensor: name}
                    add_named(value, key)
                else:
                    raise TypeError(
                        "make_dot: a params mapping must map names to tensors (or tensors to "
                        f"names); got {type(key).__name__} -> {type(value).__name__}."
                    )
        elif isinstance(source, Generator):
            for name, t in source:
                add_named(name, t)
        else:
            raise TypeError(
                "make_dot: params must be a Mapping[str, Tensor], a ModuleState, a generator of "
                f"(name, tensor) pairs, or an iterable of those; got {type(source).__name__}."
            )

    def add_named(name: str, t: Tensor) -> None:
        if t.grad_fn is not None:
            fn_names.setdefault(t.grad_fn, []).append((name, t))
        else:
            tensor_names[id(t)] = name

    if params is None:
        pass
    elif isinstance(params, ModuleState | Mapping | Generator):
        add(params)
    else:
        for source in params:
            add(source)
    return tensor_names, fn_names


def _size(t: Tensor) -> str:
    return "(" + ", ".join(map(str, t.size())) + ")"


def make_dot(
    var: Any,
    params: ParamsLike | None = None,
    show_attrs: bool = False,
    show_saved: bool = False,
    max_attr_chars: int = 50,
) -> Digraph:
    """Draw the autograd graph behind ``var`` as a graphviz ``Digraph``.

    Backward nodes are grey; named parameters and other leaf tensors that require grad are light
    blue (a non-leaf parameter, such as one updated by a meta-optimizer, labels the backward
    node that produced it; a node producing several parameters lists them all); outputs are
    green (their base in dark green when an output is a view); saved tensors are orange.

    Args:
        var: an output tensor or a tree of them.
        params: names for tensors: a ``{name: tensor}`` mapping (or ``{tensor: name}``, as
            TorchOpt's examples pass), ``module.named_parameters()``,
            a :class:`~torchopt_lite.utils.ModuleState` taken with ``enable_visual=True``, or an
            iterable of those.
        show_attrs: show the saved non-tensor attributes of each backward node.
        show_saved: show the tensors saved by built-in backward nodes (those of custom
            ``autograd.Function`` are always shown).
        max_attr_chars: truncate attribute values to this many characters.

    Returns:
        The graph; ``.source`` is its DOT text, ``.render(...)`` draws it.

    Example:
        >>> net = torch.nn.Linear(2, 1)
        >>> dot = make_dot(net(torch.ones(1, 2)).sum(), params=dict(net.named_parameters()))
        >>> "weight" in dot.source and "AddmmBackward0" in dot.source
        True

    Note:
        graphviz is imported when this is called, so the package imports without it. The graph
        is walked without recursion, so deep unrolled graphs do not hit Python's recursion
        limit (TorchOpt's recursive walk does).
    """
    try:
        from graphviz import Digraph
    except ImportError as err:
        raise ImportError(
            "make_dot: the graphviz Python package is required; pip install graphviz "
            "(or torchopt_lite[visual])."
        ) from err

    tensor_names, fn_names = _name_maps(params)
    dot = Digraph(node_attr=_NODE_ATTR, graph_attr={"size": "12,12"})
    seen: set[int] = set()

    def var_label(t: Tensor, name: str | None = None) -> str:
        return f"{name or tensor_names.get(id(t), '')}\n{_size(t)}"

    def tensor_node(t: Tensor, label: str, color: str) -> None:
        seen.add(id(t))
        dot.node(str(id(t)), label, fillcolor=color)

    def saved_attrs(fn: Any) -> Iterable[tuple[str, Tensor]]:
        for attr in dir(fn):
            if not attr.startswith(SAVED_PREFIX):
                continue
            try:
                val = getattr(fn, attr)
            except RuntimeError:  # freed by a backward pass without retain_graph
                continue
            key = attr[len(SAVED_PREFIX) :]
            if isinstance(val, Tensor):
                yield key, val
            elif isinstance(val, tuple):
                yield from ((f"{key}[{i}]", t) for i, t in enumerate(val) if isinstance(t, Tensor))

    def add_graph(root: Any) -> None:
        stack = [root]
        while stack:
            fn = stack.pop()
            if id(fn) in seen:
                continue
            seen.add(id(fn))
            if show_saved:
                for key, t in saved_attrs(fn):
                    dot.edge(str(id(fn)), str(id(t)), dir="none")
                    tensor_node(t, var_label(t, key), "orange")
            if hasattr(fn, "variable"):  # AccumulateGrad: the leaf tensor it feeds
                leaf = fn.variable
                tensor_node(leaf, var_label(leaf), "lightblue")
                dot.edge(str(id(leaf)), str(id(fn)))
            label = get_fn_name(fn, show_attrs, max_attr_chars)
            color = None
            if fn in fn_names:  # a node whose outputs are named parameters
                label += "".join(f"\n{name}\n{_size(t)}" for name, t in fn_names[fn])
                color = "lightblue"
            dot.node(str(id(fn)), label, fillcolor=color)
            for nxt, _ in getattr(fn, "next_functions", ()):
                if nxt is not None:
                    dot.edge(str(id(nxt)), str(id(fn)))
                    stack.append(nxt)
            try:
                custom_saved = getattr(fn, "saved_tensors", ())
            except RuntimeError:
                custom_saved = ()
            for t in custom_saved:
                dot.edge(str(id(t)), str(id(fn)))
                tensor_node(t, var_label(t), "orange")

    def add_output(t: Tensor, color: str = "darkolivegreen1") -> None:
        if id(t) in seen:
            return
        tensor_node(t, var_label(t), color)
        if t.grad_fn is not None:
            add_graph(t.grad_fn)
            dot.edge(str(id(t.grad_fn)), str(id(t)))
        if t._is_view() and t._base is not None:
            add_output(t._base, color="darkolivegreen3")
            dot.edge(str(id(t._base)), str(id(t)), style="dotted")

    for out in optree.tree_leaves(var):
        if not isinstance(out, torch.Tensor):
            raise TypeError(f"make_dot: var must be a tensor or a tree of tensors; got {out!r}.")
        add_output(out)
    resize_graph(dot)
    return dot


def resize_graph(dot: Digraph, size_per_element: float = 0.5, min_size: float = 12.0) -> None:
    """Set the drawing size from the number of DOT lines, in place.

    The size is ``max(min_size, size_per_element * len(dot.body))`` inches per side.

    Example:
        >>> import graphviz
        >>> dot = graphviz.Digraph()
        >>> resize_graph(dot, min_size=3.0)
        >>> dot.graph_attr["size"]
        '3.0,3.0'
    """
    size = max(min_size, len(dot.body) * size_per_element)
    dot.graph_attr.update(size=f"{size},{size}")
