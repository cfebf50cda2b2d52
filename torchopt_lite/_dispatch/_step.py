"""A step at the flatten boundary: checks, safe inputs, the ops namespace, then the plan."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import optree
import torch
from torch import Tensor

from torchopt_lite._dispatch import _boundary as b
from torchopt_lite._dispatch import _state as st
from torchopt_lite._dispatch._plan import Plan
from torchopt_lite._ops import Ops, ops_for

_FOREACH_MAX_NUMEL = 65536
_FOREACH_MIN_LEAVES = 64


def choose_ops(g: list[Tensor], inplace: bool) -> Ops:
    """Per-leaf ops under ``torch.func`` transforms and ``torch.compile`` (no batching rules for
    multi-tensor ops; the compiler fuses either), and out of place for a few large leaves
    (out-of-place multi-tensor ops keep their inputs alive for backward, torch 2.13)."""
    per_leaf = b.traced() or (
        not inplace
        and len(g) < _FOREACH_MIN_LEAVES
        and sum(b.each("numel", g)) > _FOREACH_MAX_NUMEL
    )
    return ops_for(inplace, per_leaf=per_leaf)


def step(
    plan: Plan,
    g: list[Tensor],
    state: Any,
    params: list[Tensor] | None,
    *,
    inplace: bool,
    apply: bool = False,
    trusted: bool = False,
    real: bool = False,
    extra: Mapping[str, Any] | None = None,
) -> tuple[list[Tensor], Any]:
    """One step on flat lists of present leaves (checked tensors): ``(updates, state)``, or with
    ``apply`` ``(new params, state)`` (in place: ``params`` themselves, ``g`` only read).

    ``trusted`` skips the state checks (a state the caller built with ``plan.init``); ``real``
    says no leaf is complex (the caller has read it already).
    """
    facts = b.Facts.of(g, real=real)
    if not trusted:
        plan.check(facts, state)
    if plan.needs_params and params is None:
        raise ValueError(b.PARAMS_REQUIRED.format(caller=plan.needs_params))
    extra = extra or {}
    if plan.extra_args:
        plan.check_extra(extra)
    if inplace and apply:
        b.check_writable(params or [], "params", "step")
    elif inplace:
        facts = b.writable(facts)
        g = facts.leaves
    mask = facts.complex
    if mask is None:
        return _run(plan, g, state, params, inplace, apply, facts, extra)
    n = len(g)
    real_state = st.map_leaf_tuples(state, n, lambda field: tuple(b.as_real(field, mask)))
    real_g = b.as_real(g, mask)
    real_p = None if params is None else b.as_real(params, mask)
    out, new_state = _run(
        plan, real_g, real_state, real_p, inplace, apply, b.Facts.of(real_g), extra
    )
    if apply:
        assert params is not None and real_p is not None
        out = b.as_complex(out, mask, params, real_p)
    else:
        out = b.as_complex(out, mask, g, real_g)
    return out, _restore_complex(new_state, real_state, state, n, mask)


def _run(
    plan: Plan,
    g: list[Tensor],
    state: Any,
    params: list[Tensor] | None,
    inplace: bool,
    apply: bool,
    facts: b.Facts,
    extra: Mapping[str, Any],
) -> tuple[list[Tensor], Any]:
    ops = choose_ops(g, inplace)
    if inplace:
        with torch.no_grad():
            return plan.run(g, state, params, ops, apply, facts, extra)
    return plan.run(g, state, params, ops, apply, facts, extra)


def _restore_complex(new: Any, views: Any, originals: Any, n: int, mask: list[bool]) -> Any:
    """Complex per-leaf state entries back from their real views (see ``as_complex``)."""
    if st.is_leaf_tuple(new, n):
        return tuple(b.as_complex(new, mask, originals, views))
    if isinstance(new, tuple) and hasattr(new, "_fields"):
        parts = zip(new, views, originals, strict=True)
        return type(new)(*(_restore_complex(x, v, o, n, mask) for x, v, o in parts))
    if type(new) is tuple:
        parts = zip(new, views, originals, strict=True)
        return tuple(_restore_complex(x, v, o, n, mask) for x, v, o in parts)
    return new


def init(plan: Plan, params: Any) -> Any:
    """Flatten ``params`` once and build the state."""
    leaves, _ = b.flatten_tensors(params, "params", "init")
    return plan.init([leaf for leaf in leaves if leaf is not None])


def update(
    plan: Plan,
    updates: Any,
    state: Any,
    *,
    params: Any = None,
    inplace: bool = True,
    extra: Mapping[str, Any] | None = None,
) -> tuple[Any, Any]:
    """``GradientTransformation.update`` of a plan: flatten once, step, unflatten once.

    ``None`` updates (parameters without a gradient) pass through as ``None``; the transforms
    see only the present leaves and the matching entries of per-leaf state are left unchanged.
    """
    leaves, spec = b.flatten(updates)
    real = b.check_leaves(leaves, "updates", "update", spec, sparse=plan.sparse)
    if not real and plan.sparse:
        leaves = b.densified(leaves)
    p_leaves: list[Any] | None = None
    if params is not None:
        p_leaves, p_spec = b.flatten(params)
        if p_spec != spec:
            raise ValueError(
                "update: params must have the same tree structure as updates; "
                f"updates: {spec}, params: {p_spec}."
            )
    n = len(leaves)
    present = range(n) if real else [i for i, leaf in enumerate(leaves) if leaf is not None]
    if not present:  # nothing to transform: an empty tree, or no gradient at all
        return updates, state
    if p_leaves is not None:
        b.check_leaves(p_leaves if real else [p_leaves[i] for i in present], "params", "update")
    if len(present) == n:
        out, new_state = step(
            plan, leaves, state, p_leaves, inplace=inplace, real=real, extra=extra
        )
        return optree.tree_unflatten(spec, out), new_state
    sub_p = None if p_leaves is None else [p_leaves[i] for i in present]
    sub, sub_new = step(
        plan,
        [leaves[i] for i in present],
        st.select(state, present, n),
        sub_p,
        inplace=inplace,
        extra=extra,
    )
    full: list[Any] = [None] * n
    for i, leaf in zip(present, sub, strict=True):
        full[i] = leaf
    return optree.tree_unflatten(spec, full), st.merge(state, sub_new, present, n)


def apply(
    plan: Plan,
    params: list[Tensor],
    grads: list[Tensor | None],
    state: Any,
    *,
    inplace: bool,
    caller: str = "step",
    extra: Mapping[str, Any] | None = None,
) -> tuple[list[Tensor], Any]:
    """Step ``params`` by ``grads`` (a state from ``plan.init(params)``): the parameters after
    the step (in place: the same tensors) and the new state. Parameters without a gradient are
    left as they are."""
    real = b.check_leaves(grads, "gradients", caller, sparse=plan.sparse)
    if not real and plan.sparse:
        grads = b.densified(grads)
    present = [i for i, x in enumerate(grads) if x is not None]
    n = len(grads)
    if len(present) == n:
        dense: list[Tensor] = grads  # type: ignore[assignment]  # no None: all present
        return step(
            plan,
            dense,
            state,
            params,
            inplace=inplace,
            apply=True,
            trusted=True,
            real=real,
            extra=extra,
        )
    sub_p = [params[i] for i in present]
    sub_g: list[Tensor] = [grads[i] for i in present]  # type: ignore[misc]
    new_p, sub_new = step(
        plan,
        sub_g,
        st.select(state, present, n),
        sub_p,
        inplace=inplace,
        apply=True,
        trusted=True,
        extra=extra,
    )
    out = list(params)
    for i, p in zip(present, new_p, strict=True):
        out[i] = p
    return out, st.merge(state, sub_new, present, n)
