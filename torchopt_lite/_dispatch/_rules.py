"""The rules: runs of transformations recognised by kind, and the renderings that take them.

A rule is keyed by the type of its anchoring part's kind. It recognises a run of parts (one Adam
step, one SGD step) and lists renderings, best first; each rendering returns ``None`` when it
cannot take the inputs (before reading or writing anything), else the run's output leaves and
states. Every rendering computes the run's formula: torch's fused kernels (checked against the
transforms by the tests) or the one-node Adam step (whose forward calls the transforms' math).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from torch import Tensor

from torchopt_lite._dispatch._adam_node import adam_step
from torchopt_lite._dispatch._boundary import Facts, traced
from torchopt_lite._dispatch._kernels import adam_kernel, kernel_groups, sgd_kernel
from torchopt_lite._kinds import AddDecayedWeights, Flip, Identity, Scale, ScaleByAdam, Trace
from torchopt_lite._ops import Ops


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
    """Where a run anchored at ``i`` starts: it takes a preceding flip and the identities around
    it (plain SGD is ``[identity, identity, scale]``: its run then covers the whole chain)."""
    start, flip = i, _NO_FLIP
    while start > 0 and isinstance(kinds[start - 1], Identity):
        start -= 1
    if start > 0 and isinstance(kinds[start - 1], Flip):
        start, flip = start - 1, kinds[start - 1]
        while start > 0 and isinstance(kinds[start - 1], Identity):
            start -= 1
    return start, flip


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

Parts = Sequence[Any]  # the plan's Leafwise parts
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
    apply: bool, facts: Facts,
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
    apply: bool, facts: Facts,
) -> Result:  # fmt: skip
    """Out of place: one :class:`~torchopt_lite._dispatch._adam_node.AdamStep` node."""
    lr = run.lr
    if ops.inplace or traced() or (isinstance(lr, Tensor) and lr.numel() != 1):
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
    apply: bool, facts: Facts,
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
