"""The one dispatch: which rendering runs a step, decided once per step at the flatten boundary.

A leafwise transformation (or a chain of them) is a :class:`Plan`: its parts, each a
:class:`Leafwise` with a ``kind`` (:mod:`torchopt_lite._kinds`), and the *runs* of parts
that :data:`RULES` recognise (``flip, scale_by_adam, scale(-lr)`` is one Adam step). A step

1. flattens the trees once and checks leaves, parameters and state before anything is written;
2. puts the inputs in the form every rendering takes (complex leaves as real views; in place,
   buffers that alias nothing);
3. picks the ops namespace (foreach or per leaf, in place or pure) and, for each run, the first
   rendering of its rule that accepts the inputs: torch's fused kernel in place, the one-node
   Adam step out of place; any part not covered runs its own update with the namespace.

Every rendering computes the formula of the transforms (the kernels are checked against it by
the tests); none holds a copy of the math.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import optree
import torch
from torch import Tensor

from torchopt_lite._dispatch import _boundary as b
from torchopt_lite._dispatch._adam_node import adam_step
from torchopt_lite._dispatch._kernels import adam_kernel, kernel_groups, sgd_kernel
from torchopt_lite._kinds import (
    AddDecayedWeights,
    Flip,
    Identity,
    Scale,
    ScaleByAdam,
    Trace,
)
from torchopt_lite._ops import Ops, copies, ops_for

__all__ = ["Leafwise", "Plan", "apply", "init", "linear_scale", "update"]


class Leafwise(NamedTuple):
    """A transformation written on flat lists of leaves (the internal fast-path protocol).

    ``init(leaves) -> state`` and ``update(leaves, state, params_leaves, ops) -> (leaves, state)``
    where ``ops`` is the namespace the dispatch picked (its ``inplace`` flag is the mode).
    Per-leaf state fields are tuples of tensors in the leaves' order. ``kind`` tells the
    dispatch what the transformation is (``None``: nothing to fuse); ``check(facts, state)``
    validates the state against the leaves (:class:`~torchopt_lite._dispatch._boundary.Facts`)
    before any part of a step writes; ``needs_params`` names the transformation that reads the
    parameters, for the error raised when they are missing; ``sparse`` says that its math on
    the dense form of a sparse gradient is ``torch.optim``'s on the sparse one (a chain takes
    sparse gradients when all its parts do, as ``torch.optim.SGD`` and ``Adagrad`` do).
    """

    init: Callable[[Sequence[Tensor]], Any]
    update: Callable[[list[Tensor], Any, list[Tensor] | None, Ops], tuple[list[Tensor], Any]]
    kind: Any = None
    check: Callable[[b.Facts, Any], None] | None = None
    needs_params: str = ""
    sparse: bool = False


# -- runs the rules recognise -------------------------------------------------------------------


class AdamRun(NamedTuple):
    """Parts ``start:stop`` are one Adam(W) step: ``[flip,] scale_by_adam, [decay,] scale(-lr)``."""

    start: int
    stop: int
    anchor: int
    flip: Flip
    adam: ScaleByAdam
    decay: float
    lr: Any


class SgdRun(NamedTuple):
    """Parts ``start:stop`` are one SGD step: ``[flip,] [trace,] scale(-lr)``."""

    start: int
    stop: int
    anchor: int
    flip: Flip
    trace: Trace | None
    lr: Any


_NO_FLIP = Flip(0.0, False)


def _left(kinds: Sequence[Any], i: int) -> tuple[int, Flip]:
    """Where a run anchored at ``i`` starts: it takes a directly preceding flip."""
    if i > 0 and isinstance(kinds[i - 1], Flip | Identity):
        flip = kinds[i - 1]
        return i - 1, flip if isinstance(flip, Flip) else _NO_FLIP
    return i, _NO_FLIP


def _next(kinds: Sequence[Any], j: int) -> int:
    while j < len(kinds) and isinstance(kinds[j], Identity):
        j += 1
    return j


def _adam_run(kinds: Sequence[Any], i: int) -> AdamRun | None:
    start, flip = _left(kinds, i)
    j, decay = _next(kinds, i + 1), 0.0
    if j < len(kinds) and isinstance(kinds[j], AddDecayedWeights):
        decay, j = kinds[j].weight_decay, _next(kinds, j + 1)
    if j < len(kinds) and isinstance(kinds[j], Scale):
        return AdamRun(start, j + 1, i, flip, kinds[i], decay, -kinds[j].step_size)
    return None


def _sgd_run(kinds: Sequence[Any], i: int) -> SgdRun | None:
    start, flip = _left(kinds, i)
    trace = kinds[i] if isinstance(kinds[i], Trace) else None
    j = _next(kinds, i + 1) if trace is not None else i
    if j < len(kinds) and isinstance(kinds[j], Scale) and isinstance(kinds[j].step_size, float):
        return SgdRun(start, j + 1, i, flip, trace, -kinds[j].step_size)
    return None


# -- renderings: each returns None (declined, nothing written) or (leaves, run states) ----------

Parts = Sequence[Leafwise]
Result = tuple[list[Tensor], list[Any]] | None


def _flip_first(
    run: Any, parts: Parts, g: list[Tensor], states: list[Any], params: Any, ops: Ops
) -> list[Tensor]:
    """Run the flip part of ``run`` (if any) with ``ops``."""
    if run.start < run.anchor:
        g, _ = parts[run.start].update(g, states[0], params, ops)
    return g


def _fused_adam(
    run: AdamRun, parts: Parts, g: list[Tensor], states: list[Any], params: Any, ops: Ops,
    apply: bool, facts: b.Facts,
) -> Result:  # fmt: skip
    """torch's fused Adam(W) kernel, in place (a float ``lr``, no ``eps_root``)."""
    if not ops.inplace or not isinstance(run.lr, float) or run.adam.eps_root != 0.0:
        return None
    coupled, decoupled = run.flip.weight_decay, run.decay
    if apply and coupled and decoupled:
        return None
    s = states[run.anchor - run.start]
    mu, nu = list(s.mu), list(s.nu)
    groups = kernel_groups([params, g, mu, nu] if apply else [g, mu, nu], facts)
    if groups is None:
        return None
    if not apply:
        g = _flip_first(run, parts, g, states, params, ops)
    s.count.add_(1)
    adam_kernel(
        groups, s.count, apply=apply, lr=run.lr, b1=run.adam.b1, b2=run.adam.b2,
        eps=run.adam.eps, weight_decay=decoupled or coupled, decoupled=bool(decoupled),
        maximize=run.flip.maximize if apply else False,
    )  # fmt: skip
    if decoupled and not apply:
        g = ops.add(g, params, alpha=-run.lr * decoupled)
    return (params if apply else g), states


def _adam_node(
    run: AdamRun, parts: Parts, g: list[Tensor], states: list[Any], params: Any, ops: Ops,
    apply: bool, facts: b.Facts,
) -> Result:  # fmt: skip
    """Out of place: one :class:`~torchopt_lite._dispatch._adam_node.AdamStep` node."""
    lr = run.lr
    if ops.inplace or _traced() or (isinstance(lr, Tensor) and lr.numel() != 1):
        return None
    g = _flip_first(run, parts, g, states, params, ops)
    s = states[run.anchor - run.start]
    count = s.count + 1
    adam = run.adam
    u, mu, nu = adam_step(g, s.mu, s.nu, count, lr, adam.b1, adam.b2, adam.eps, adam.eps_root)
    if run.decay:
        u = ops.add(u, ops.mul(params, -lr * run.decay))
    new = list(states)
    new[run.anchor - run.start] = type(s)(tuple(mu), tuple(nu), count)
    return (ops.add(params, u) if apply else u), new


def _fused_sgd(
    run: SgdRun, parts: Parts, g: list[Tensor], states: list[Any], params: Any, ops: Ops,
    apply: bool, facts: b.Facts,
) -> Result:  # fmt: skip
    """torch's fused SGD kernel, in place (a float ``lr``)."""
    if not ops.inplace or (not apply and run.trace is None):  # plain SGD: one multiply already
        return None
    trace = run.trace
    s = states[run.anchor - run.start] if trace is not None else None
    buffers = list(s.trace) if s is not None else []
    first = False
    if trace is not None and trace.dampening != 0.0 and s is not None:
        if not s.count.is_cpu:
            return None  # the first-step flag would need a host sync
        first = bool(s.count == 0)
    lists = [params, g] if apply else [g]
    groups = kernel_groups([*lists, buffers] if buffers else lists, facts)
    if groups is None:
        return None
    if not apply:
        g = _flip_first(run, parts, g, states, params, ops)
    if s is not None:
        s.count.add_(1)
    sgd_kernel(
        groups, first, apply=apply, with_buffers=bool(buffers), lr=run.lr,
        momentum=trace.momentum if trace else 0.0, dampening=trace.dampening if trace else 0.0,
        nesterov=trace.nesterov if trace else False,
        weight_decay=run.flip.weight_decay if apply else 0.0,
        maximize=run.flip.maximize if apply else False,
    )  # fmt: skip
    return (params if apply else g), states


Rendering = Callable[..., Result]

RULES: dict[type, tuple[Callable[[Sequence[Any], int], Any], tuple[Rendering, ...]]] = {
    ScaleByAdam: (_adam_run, (_fused_adam, _adam_node)),
    Trace: (_sgd_run, (_fused_sgd,)),
    Scale: (_sgd_run, (_fused_sgd,)),
}
"""Kind of the anchoring part -> (how its run is recognised, renderings best first)."""


# -- plans --------------------------------------------------------------------------------------


class Plan:
    """A leafwise transformation (``chained=False``) or chain, with the runs the rules match."""

    def __init__(self, parts: Sequence[Leafwise], *, chained: bool) -> None:
        self.parts = tuple(parts)
        self.chained = chained
        self.needs_params = next((p.needs_params for p in self.parts if p.needs_params), "")
        self.sparse = all(p.sparse for p in self.parts)
        kinds = [p.kind for p in self.parts]
        self.runs: dict[int, tuple[Any, tuple[Rendering, ...]]] = {}
        i = stop = 0
        while i < len(kinds):
            rule = RULES.get(type(kinds[i]))
            run = rule[0](kinds, i) if rule is not None else None
            if rule is None or run is None or run.start < stop:
                i += 1
                continue
            self.runs[run.start] = (run, rule[1])
            i = stop = run.stop

    def init(self, leaves: Sequence[Tensor]) -> Any:
        """The state for ``leaves``: one entry per part when chained."""
        states = tuple(p.init(leaves) for p in self.parts)
        return states if self.chained else states[0]

    def check(self, facts: b.Facts, state: Any) -> None:
        """Validate ``state`` for every part before any part writes."""
        if self.chained:
            n = len(self.parts)
            if not isinstance(state, tuple) or len(state) != n:
                got = f"{len(state)} entries" if isinstance(state, tuple) else type(state).__name__
                raise ValueError(
                    f"chain: state has {got} but this chain has {n} transforms; "
                    "pass the state returned by this optimizer's init()."
                )
            states = state
        else:
            states = (state,)
        for part, s in zip(self.parts, states, strict=True):
            if part.check is not None:
                part.check(facts, s)

    def run(
        self,
        g: list[Tensor],
        state: Any,
        params: list[Tensor] | None,
        ops: Ops,
        apply: bool,
        facts: b.Facts,
    ) -> tuple[list[Tensor], Any]:
        """The step on normalized leaves: the updates (or, with ``apply``, the new params)."""
        states = list(state) if self.chained else [state]
        if apply:
            whole = self.runs.get(0)
            if whole is not None and whole[0].stop == len(self.parts):
                for render in whole[1]:
                    out = render(whole[0], self.parts, g, states, params, ops, True, facts)
                    if out is not None:
                        return out[0], self._pack(out[1])
        if apply and ops.inplace:  # the gradients are only read: the parts write copies
            g = copies(g)
        new: list[Any] = []
        i = 0
        while i < len(self.parts):
            found = self.runs.get(i)
            out = None
            if found is not None:
                run, renderings = found
                sub = states[run.start : run.stop]
                for render in renderings:
                    out = render(run, self.parts, g, sub, params, ops, False, facts)
                    if out is not None:
                        g = out[0]
                        new.extend(out[1])
                        i = run.stop
                        break
            if out is None:
                g, s = self.parts[i].update(g, states[i], params, ops)
                new.append(s)
                i += 1
        if apply:
            assert params is not None
            if ops.inplace:
                torch._foreach_add_(params, g)
                g = params
            else:
                g = ops.add(params, g)
        return g, self._pack(new)

    def _pack(self, states: list[Any]) -> Any:
        return tuple(states) if self.chained else states[0]


def _traced() -> bool:
    """Inside ``torch.compile`` or a ``torch.func`` transform (per-leaf ops only)."""
    return torch.compiler.is_compiling() or torch._C._functorch.maybe_current_level() is not None


# -- entry points -------------------------------------------------------------------------------

_FOREACH_MAX_NUMEL = 65536
_FOREACH_MIN_LEAVES = 64


def choose_ops(g: list[Tensor], inplace: bool) -> Ops:
    """Per-leaf ops under ``torch.func`` transforms and ``torch.compile`` (no batching rules for
    multi-tensor ops; the compiler fuses either), and out of place for a few large leaves
    (out-of-place multi-tensor ops keep their inputs alive for backward, torch 2.13)."""
    per_leaf = _traced() or (
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
    if inplace and apply:
        b.check_writable(params or [], "params", "step")
    elif inplace:
        facts = b.writable(facts)
        g = facts.leaves
    mask = facts.complex
    if mask is None:
        return _run(plan, g, state, params, inplace, apply, facts)
    n = len(g)
    real_state = b.map_leaf_tuples(state, n, lambda field: tuple(b.as_real(field, mask)))
    real_g = b.as_real(g, mask)
    real_p = None if params is None else b.as_real(params, mask)
    out, new_state = _run(plan, real_g, real_state, real_p, inplace, apply, b.Facts.of(real_g))
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
) -> tuple[list[Tensor], Any]:
    ops = choose_ops(g, inplace)
    if inplace:
        with torch.no_grad():
            return plan.run(g, state, params, ops, apply, facts)
    return plan.run(g, state, params, ops, apply, facts)


def _restore_complex(new: Any, views: Any, originals: Any, n: int, mask: list[bool]) -> Any:
    """Complex per-leaf state entries back from their real views (see ``as_complex``)."""
    if b.is_leaf_tuple(new, n):
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
    plan: Plan, updates: Any, state: Any, *, params: Any = None, inplace: bool = True
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
    present = [i for i, leaf in enumerate(leaves) if leaf is not None]
    if not present:  # nothing to transform: an empty tree, or no gradient at all
        return updates, state
    if p_leaves is not None:
        b.check_leaves([p_leaves[i] for i in present], "params", "update")
    n = len(leaves)
    if len(present) == n:
        out, new_state = step(plan, leaves, state, p_leaves, inplace=inplace, real=real)
        return optree.tree_unflatten(spec, out), new_state
    sub_p = None if p_leaves is None else [p_leaves[i] for i in present]
    sub, sub_new = step(
        plan, [leaves[i] for i in present], b.select(state, present, n), sub_p, inplace=inplace
    )
    full: list[Any] = [None] * n
    for i, leaf in zip(present, sub, strict=True):
        full[i] = leaf
    return optree.tree_unflatten(spec, full), b.merge(state, sub_new, present, n)


def apply(
    plan: Plan,
    params: list[Tensor],
    grads: list[Tensor | None],
    state: Any,
    *,
    inplace: bool,
    caller: str = "step",
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
            plan, dense, state, params, inplace=inplace, apply=True, trusted=True, real=real
        )
    sub_p = [params[i] for i in present]
    sub_g: list[Tensor] = [grads[i] for i in present]  # type: ignore[misc]
    new_p, sub_new = step(
        plan, sub_g, b.select(state, present, n), sub_p, inplace=inplace, apply=True, trusted=True
    )
    out = list(params)
    for i, p in zip(present, new_p, strict=True):
        out[i] = p
    return out, b.merge(state, sub_new, present, n)


def linear_scale(plan: Plan) -> float | None:
    """``s`` when the plan's update is exactly ``s * g`` with a state that never changes (plain
    SGD: ``-lr``), else ``None``; meta-optimizers then seed the backward pass with ``s``."""
    scale = 1.0
    for kind in (p.kind for p in plan.parts):
        if isinstance(kind, Flip) and kind.weight_decay == 0.0:
            scale = -scale if kind.maximize else scale
        elif isinstance(kind, Scale) and isinstance(kind.step_size, float):
            scale *= kind.step_size
        elif not isinstance(kind, Identity):
            return None
    return scale
