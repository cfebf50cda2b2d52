"""Plans: a transformation or chain as flat-list parts, with the runs the rules recognise."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

from torch import Tensor

from torchopt_lite._dispatch._boundary import Facts
from torchopt_lite._dispatch._rules import RULES, Rendering
from torchopt_lite._kinds import Flip, Identity, Scale
from torchopt_lite._ops import Ops, copies


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
    ``extra_args`` names the extra keyword arguments of ``update`` (``value`` for a step that
    reads the loss); the step passes them as keywords and raises before writing if one is
    missing.
    """

    init: Callable[[Sequence[Tensor]], Any]
    update: Callable[..., tuple[list[Tensor], Any]]
    kind: Any = None
    check: Callable[[Facts, Any], None] | None = None
    needs_params: str = ""
    sparse: bool = False
    extra_args: tuple[str, ...] = ()


class Plan:
    """A leafwise transformation (``chained=False``) or chain, with the runs the rules match."""

    def __init__(self, parts: Sequence[Leafwise], *, chained: bool) -> None:
        self.parts = tuple(parts)
        self.chained = chained
        self.needs_params = next((p.needs_params for p in self.parts if p.needs_params), "")
        self.sparse = all(p.sparse for p in self.parts)
        self.extra_args = tuple(dict.fromkeys(k for p in self.parts for k in p.extra_args))
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

    def check_extra(self, extra: Mapping[str, Any]) -> None:
        """Every extra argument a part reads is given (checked before any part writes)."""
        for name in self.extra_args:
            if extra.get(name) is None:
                raise ValueError(
                    f"update: this optimizer reads the extra argument {name}=; pass it, e.g. "
                    f"opt.update(grads, state, params=params, {name}=loss)."
                )

    def check(self, facts: Facts, state: Any) -> None:
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
        facts: Facts,
        extra: Mapping[str, Any] | None = None,
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
                part = self.parts[i]
                if part.extra_args:
                    assert extra is not None  # checked by check_extra
                    kw = {k: extra[k] for k in part.extra_args}
                    g, s = part.update(g, states[i], params, ops, **kw)
                else:
                    g, s = part.update(g, states[i], params, ops)
                new.append(s)
                i += 1
        if apply:  # in place, ops.add writes the parameters and returns them
            assert params is not None
            g = ops.add(params, g)
        return g, self._pack(new)

    def _pack(self, states: list[Any]) -> Any:
        return tuple(states) if self.chained else states[0]


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
