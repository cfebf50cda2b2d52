"""Gradient transformations: the ``(init, update)`` pair every optimizer is built from."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from torch import Tensor

if TYPE_CHECKING:
    from torchopt_lite.typing import OptState, Params, Updates

__all__ = [
    "EmptyState",
    "UninitializedState",
    "TransformInitFn",
    "TransformUpdateFn",
    "GradientTransformation",
    "ChainedGradientTransformation",
    "IdentityGradientTransformation",
    "LeafwiseTransformation",
    "Leafwise",
    "identity",
]


class EmptyState(NamedTuple):
    """The state of a stateless transformation."""


class UninitializedState(NamedTuple):
    """Placeholder state of an optimizer whose ``init`` has not run yet (``FuncOptimizer``)."""


class TransformInitFn(Protocol):
    """``init(params) -> state``: build the state of a transformation from the parameters."""

    def __call__(self, params: Params) -> OptState:
        """Return the initial state for ``params``."""


class TransformUpdateFn(Protocol):
    """``update(updates, state, *, params=None, inplace=True) -> (updates, state)``."""

    def __call__(
        self,
        updates: Updates,
        state: OptState,
        *,
        params: Params | None = None,
        inplace: bool = True,
    ) -> tuple[Updates, OptState]:
        """Transform ``updates`` and advance ``state``.

        With ``inplace=True`` the buffers of ``updates`` and ``state`` may be overwritten (fast,
        not differentiable). With ``inplace=False`` nothing is mutated and the result is
        differentiable with respect to every input tensor.
        """


class Leafwise(NamedTuple):
    """A transformation written on flat lists of leaves (internal fast-path protocol).

    ``init(leaves) -> state`` and ``update(leaves, state, params_leaves, inplace) ->
    (leaves, state)``. Per-leaf state fields are tuples of tensors in the flattening order of
    the parameters, so a chain of such transformations flattens the pytree once per step.
    ``needs_params`` names the transformation whose ``update`` reads the parameters (weight
    decay), if any; the boundary then rejects a call without them before anything is written.
    """

    init: Callable[[Sequence[Tensor]], Any]
    update: Callable[
        [list[Tensor], Any, list[Tensor] | None, bool],
        tuple[list[Tensor], Any],
    ]
    needs_params: str = ""


class GradientTransformation(NamedTuple):
    """A pair of pure functions ``(init, update)`` (Optax's and TorchOpt's abstraction).

    Example:
        >>> import torch, torchopt_lite
        >>> params = {"w": torch.ones(2)}
        >>> opt = torchopt_lite.sgd(lr=0.1)
        >>> state = opt.init(params)
        >>> updates, state = opt.update({"w": torch.ones(2)}, state)
        >>> torchopt_lite.apply_updates(params, updates)["w"]
        tensor([0.9000, 0.9000])
    """

    init: TransformInitFn
    update: TransformUpdateFn

    def chain(self, next: GradientTransformation) -> ChainedGradientTransformation:
        """Return ``chain(self, next)``: apply ``self`` first, then ``next``."""
        return ChainedGradientTransformation(self, next)

    def leafwise(self) -> Leafwise | None:
        """The flat-list implementation, if this transformation has one (internal)."""
        return None


class LeafwiseTransformation(GradientTransformation):
    """A :class:`GradientTransformation` built from a :class:`Leafwise` implementation.

    ``update`` flattens ``updates`` (and ``params``) once, runs the math on lists of leaves with
    multi-tensor ops, and unflattens once.
    """

    _leafwise: Leafwise

    def __new__(cls, impl: Leafwise) -> LeafwiseTransformation:
        """Build ``init``/``update`` that flatten once around ``impl``."""
        from torchopt_lite._leaves import leafwise_init, leafwise_update

        def init_fn(params: Params) -> OptState:
            return leafwise_init(impl, params)

        def update_fn(
            updates: Updates,
            state: OptState,
            *,
            params: Params | None = None,
            inplace: bool = True,
        ) -> tuple[Updates, OptState]:
            return leafwise_update(impl, updates, state, params=params, inplace=inplace)

        self = super().__new__(cls, init_fn, update_fn)
        self._leafwise = impl
        return self

    def leafwise(self) -> Leafwise:
        """The flat-list implementation."""
        return self._leafwise


FusedSpan = tuple[int, int, "FusedStep"]
"""``(start, stop, fused)``: a fused step for the parts ``start:stop`` of a flattened chain."""


def _flatten_chain(
    transformations: Sequence[GradientTransformation],
) -> tuple[tuple[GradientTransformation, ...], list[FusedSpan]]:
    """The flattened parts, and where the fused steps of nested chains now sit."""
    flat: list[GradientTransformation] = []
    spans: list[FusedSpan] = []
    for t in transformations:
        if isinstance(t, ChainedGradientTransformation):
            offset = len(flat)
            spans.extend((offset + a, offset + b, f) for a, b, f in t._spans)
            flat.extend(t.transformations)
        elif isinstance(t, GradientTransformation):
            flat.append(t)
        else:
            raise TypeError(
                f"chain: every argument must be a GradientTransformation; got {type(t).__name__}."
            )
    return tuple(flat), spans


FusedStep = Callable[
    [list[Tensor], Any, "list[Tensor] | None", bool], "tuple[list[Tensor], Any] | None"
]
"""A fused implementation of a whole chain's step: ``(leaves, state, params, inplace) ->
(leaves, state)``, or ``None`` when it does not apply to these inputs (the transformations then
run one by one). It must give the same result as the parts, in both modes."""


FusedApply = Callable[[list[Tensor], list[Tensor], Any, bool], "tuple[list[Tensor], Any] | None"]
"""A fused step applying a whole chain to parameters: ``(params, grads, state, inplace) ->
(new_params, new_state)``, or ``None`` when it does not apply. In place it overwrites the
parameters it owns (the ``torch.optim``-style classes); out of place it returns new,
differentiable parameters (the meta-optimizers). Gradients are read only."""


class ChainedGradientTransformation(GradientTransformation):
    """Transformations applied one after the other; nested chains are flattened.

    Identities are kept, so the state has one entry per transformation given (TorchOpt 0.7.3
    drops them).

    The state is a tuple with one entry per (flattened) transformation. When every part has a
    leafwise implementation, the chain flattens the pytree once per step for all of them, and
    an optional ``fused`` implementation may replace the whole step (the aliases use one for
    Adam and SGD); it must produce the same state and updates as running the parts. A fused
    step survives nesting: ``chain(clip_grad_norm(1.0), adam(1e-3))`` clips, then runs Adam's
    fused step on its slice of the state.
    """

    transformations: tuple[GradientTransformation, ...]
    fused_apply: FusedApply | None
    linear_scale: float | None
    _leafwise: Leafwise | None
    _spans: list[FusedSpan]

    def __new__(
        cls,
        *transformations: GradientTransformation,
        fused: FusedStep | None = None,
        fused_apply: FusedApply | None = None,
        linear_scale: float | None = None,
    ) -> ChainedGradientTransformation:
        """Chain ``transformations`` (flattening nested chains, keeping their fused steps).

        ``linear_scale``, declared by an alias whose update is exactly ``linear_scale * g`` with a
        state that never changes (plain SGD: ``-lr``), lets meta-optimizers fold the scale into
        the seed of the backward pass that computes ``g``.
        """
        parts, spans = _flatten_chain(transformations)
        if fused is not None:
            spans = [(0, len(parts), fused)]  # this chain's own step covers all of it
        impls = [t.leafwise() for t in parts]
        if all(impl is not None for impl in impls):
            impl = _chain_leafwise([i for i in impls if i is not None], spans)
            lw = LeafwiseTransformation(impl)
            init_fn, update_fn = lw.init, lw.update
        else:
            impl = None
            init_fn, update_fn = _chain_trees(parts)
        self = super().__new__(cls, init_fn, update_fn)
        self.transformations = parts
        self._leafwise = impl
        self._spans = spans if impl is not None else []
        self.fused_apply = fused_apply if impl is not None else None
        self.linear_scale = linear_scale if impl is not None else None
        return self

    def leafwise(self) -> Leafwise | None:
        """The flat-list implementation, when every part has one."""
        return self._leafwise

    def __repr__(self) -> str:
        inner = ", ".join(type(t).__name__ for t in self.transformations)
        return f"ChainedGradientTransformation({inner})"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, ChainedGradientTransformation):
            return self.transformations == other.transformations
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.transformations)


def _check_chain_state(state: Any, n: int) -> None:
    if not isinstance(state, tuple) or len(state) != n:
        got = f"{len(state)} entries" if isinstance(state, tuple) else type(state).__name__
        raise ValueError(
            f"chain: state has {got} but this chain has {n} transforms; "
            "pass the state returned by this optimizer's init()."
        )


def _chain_leafwise(impls: Sequence[Leafwise], spans: Sequence[FusedSpan] = ()) -> Leafwise:
    starts = {start: (stop, fused) for start, stop, fused in spans}

    def init(leaves: Sequence[Tensor]) -> tuple[Any, ...]:
        return tuple(impl.init(leaves) for impl in impls)

    def update(
        leaves: list[Tensor], state: Any, params: list[Tensor] | None, inplace: bool
    ) -> tuple[list[Tensor], tuple[Any, ...]]:
        _check_chain_state(state, len(impls))
        new_state: list[Any] = []
        i = 0
        while i < len(impls):
            if i in starts:  # a fused step for parts i:stop (it may decline these inputs)
                stop, fused = starts[i]
                result = fused(leaves, tuple(state[i:stop]), params, inplace)
                if result is not None:
                    leaves, sub_state = result
                    new_state.extend(sub_state)
                    i = stop
                    continue
            leaves, s = impls[i].update(leaves, state[i], params, inplace)
            new_state.append(s)
            i += 1
        return leaves, tuple(new_state)

    return Leafwise(init, update, next((i.needs_params for i in impls if i.needs_params), ""))


def _chain_trees(
    parts: Sequence[GradientTransformation],
) -> tuple[TransformInitFn, TransformUpdateFn]:
    def init_fn(params: Params) -> OptState:
        return tuple(t.init(params) for t in parts)

    def update_fn(
        updates: Updates, state: OptState, *, params: Params | None = None, inplace: bool = True
    ) -> tuple[Updates, OptState]:
        _check_chain_state(state, len(parts))
        new_state = []
        for t, s in zip(parts, state, strict=True):
            updates, s = t.update(updates, s, params=params, inplace=inplace)
            new_state.append(s)
        return updates, tuple(new_state)

    return init_fn, update_fn


class IdentityGradientTransformation(GradientTransformation):
    """The transformation that returns updates unchanged (stateless: ``EmptyState``)."""

    def __new__(cls) -> IdentityGradientTransformation:
        """Build the identity."""

        def init_fn(params: Params) -> OptState:
            return EmptyState()

        def update_fn(
            updates: Updates,
            state: OptState,
            *,
            params: Params | None = None,
            inplace: bool = True,
        ) -> tuple[Updates, OptState]:
            return updates, state

        return super().__new__(cls, init_fn, update_fn)

    def leafwise(self) -> Leafwise:
        """Flat form: leaves pass through."""
        return Leafwise(lambda leaves: EmptyState(), lambda g, s, p, inplace: (g, s))


def identity() -> IdentityGradientTransformation:
    """Return the identity transformation (stateless; updates pass through)."""
    return IdentityGradientTransformation()
