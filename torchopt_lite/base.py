"""Gradient transformations: the ``(init, update)`` pair every optimizer is built from."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, Protocol, TypeAlias, TypeVar

import torch

from torchopt_lite import _dispatch
from torchopt_lite._dispatch import Leafwise, Plan
from torchopt_lite._kinds import Identity

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
    "register_state_type",
    "extra_args_filter",
]

Params: TypeAlias = Any  # a TensorTree of parameters
Updates: TypeAlias = Any  # a TensorTree shaped like Params: gradients or updates
OptState: TypeAlias = Any  # a TensorTree of NamedTuples holding optimizer state

UPDATE_BEFORE_INIT = (
    "update: state is {got}; call init(params) first and pass the state it returns."
)


StateType = TypeVar("StateType", bound=type)


def register_state_type(cls: StateType) -> StateType:
    """Allow ``cls`` in ``torch.load(..., weights_only=True)`` (torch's default since 2.6).

    Every optimizer state type here is a NamedTuple of tensors, tuples and other such states;
    registering it lets checkpoints of functional, ``torch.optim``-style, meta- and
    ``FuncOptimizer`` states load without ``weights_only=False``. Register the state type of a
    transformation of your own the same way.

    Example:
        >>> import io
        >>> state = torchopt_lite.adam(0.1).init({"w": torch.zeros(2)})
        >>> buffer = io.BytesIO()
        >>> torch.save(state, buffer)
        >>> _ = buffer.seek(0)
        >>> torch.load(buffer)[1].count  # weights_only=True
        tensor(0)
    """
    torch.serialization.add_safe_globals([cls])
    return cls


@register_state_type
class EmptyState(NamedTuple):
    """The state of a stateless transformation."""


@register_state_type
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
        **extra_args: Any,
    ) -> tuple[Updates, OptState]:
        """Transform ``updates`` and advance ``state``.

        With ``inplace=True`` the buffers of ``updates`` and ``state`` may be overwritten (fast,
        not differentiable). With ``inplace=False`` nothing is mutated and the result is
        differentiable with respect to every input tensor. ``extra_args`` carry what some
        transformations need besides the gradients (``value=loss`` for Polyak steps and
        ``reduce_on_plateau``, ...); transformations that need none ignore them, so one
        training loop can pass them to any optimizer (Optax's convention).
        """


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

    def leafwise(self) -> Plan | None:
        """The flat-list implementation, if this transformation has one (internal)."""
        return None


def check_state(state: Any) -> None:
    """Reject a missing state with the message that says how to fix it."""
    if state is None or isinstance(state, UninitializedState):
        raise ValueError(UPDATE_BEFORE_INIT.format(got=repr(state)))


class LeafwiseTransformation(GradientTransformation):
    """A :class:`GradientTransformation` built from a :class:`Leafwise` implementation.

    ``update`` flattens ``updates`` (and ``params``) once, runs the math on lists of leaves (the
    rendering picked by :mod:`torchopt_lite._dispatch`), and unflattens once.
    """

    _plan: Plan

    def __new__(cls, impl: Leafwise | Plan) -> LeafwiseTransformation:
        """Build ``init``/``update`` that flatten once around ``impl``."""
        plan = impl if isinstance(impl, Plan) else Plan([impl], chained=False)

        # A transform whose state is always EmptyState accepts ``state=None`` and hands it back,
        # as TorchOpt's stateless transforms (nan_to_num, hooks, clipping) do.
        stateless = not plan.chained and isinstance(plan.parts[0].init([]), EmptyState)

        def init_fn(params: Params) -> OptState:
            return _dispatch.init(plan, params)

        def update_fn(
            updates: Updates,
            state: OptState,
            *,
            params: Params | None = None,
            inplace: bool = True,
            **extra_args: Any,
        ) -> tuple[Updates, OptState]:
            if stateless and state is None:
                updates, _ = _dispatch.update(
                    plan, updates, EmptyState(), params=params, inplace=inplace, extra=extra_args
                )
                return updates, state
            check_state(state)
            return _dispatch.update(
                plan, updates, state, params=params, inplace=inplace, extra=extra_args
            )

        self = super().__new__(cls, init_fn, update_fn)
        self._plan = plan
        return self

    def leafwise(self) -> Plan:
        """The flat-list implementation."""
        return self._plan


def _flatten_chain(
    transformations: Sequence[GradientTransformation],
) -> tuple[GradientTransformation, ...]:
    flat: list[GradientTransformation] = []
    for t in transformations:
        if isinstance(t, ChainedGradientTransformation):
            flat.extend(t.transformations)
        elif isinstance(t, GradientTransformation):
            flat.append(t)
        else:
            raise TypeError(
                f"chain: every argument must be a GradientTransformation; got {type(t).__name__}."
            )
    return tuple(flat)


class ChainedGradientTransformation(GradientTransformation):
    """Transformations applied one after the other; nested chains are flattened.

    Identities are kept, so the state has one entry per transformation given (TorchOpt 0.7.3
    drops them). When every part has a flat-list implementation the chain flattens the pytree
    once per step for all of them, and the dispatch may run a recognised run of parts as one
    fused kernel: ``chain(clip_grad_norm(1.0), adam(1e-3))`` clips, then takes Adam's fused step.
    """

    transformations: tuple[GradientTransformation, ...]
    _plan: Plan | None

    def __new__(cls, *transformations: GradientTransformation) -> ChainedGradientTransformation:
        """Chain ``transformations`` (flattening nested chains)."""
        parts = _flatten_chain(transformations)
        plans = [t.leafwise() for t in parts]
        plan: Plan | None = None
        if all(p is not None and not p.chained for p in plans):
            plan = Plan([p.parts[0] for p in plans if p is not None], chained=True)
            lw = LeafwiseTransformation(plan)
            init_fn, update_fn = lw.init, lw.update
        else:
            init_fn, update_fn = _chain_trees(parts)
        self = super().__new__(cls, init_fn, update_fn)
        self.transformations = parts
        self._plan = plan
        return self

    def leafwise(self) -> Plan | None:
        """The flat-list implementation, when every part has one."""
        return self._plan

    def __repr__(self) -> str:
        inner = ", ".join(type(t).__name__ for t in self.transformations)
        return f"ChainedGradientTransformation({inner})"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, ChainedGradientTransformation):
            return self.transformations == other.transformations
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.transformations)


def extra_args_filter(update: Callable[..., Any]) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """The extra keyword arguments ``update`` takes, picked out of those a caller passes.

    A transformation written for TorchOpt (``update(updates, state, *, params, inplace)``) takes
    none; one with ``**extra_args`` takes all. Wrappers forward through this filter, so passing
    ``value=loss`` to a chain never breaks a part that does not read it.
    """
    try:
        parameters = inspect.signature(update).parameters.values()
    except (TypeError, ValueError):  # a builtin or C callable: pass nothing extra
        return lambda extra: {}
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return lambda extra: extra
    names = {p.name for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY}
    names -= {"params", "inplace"}
    return lambda extra: {k: v for k, v in extra.items() if k in names}


def _chain_trees(
    parts: Sequence[GradientTransformation],
) -> tuple[TransformInitFn, TransformUpdateFn]:
    filters = [extra_args_filter(t.update) for t in parts]

    def init_fn(params: Params) -> OptState:
        return tuple(t.init(params) for t in parts)

    def update_fn(
        updates: Updates,
        state: OptState,
        *,
        params: Params | None = None,
        inplace: bool = True,
        **extra_args: Any,
    ) -> tuple[Updates, OptState]:
        if not isinstance(state, tuple) or len(state) != len(parts):
            got = f"{len(state)} entries" if isinstance(state, tuple) else type(state).__name__
            raise ValueError(
                f"chain: state has {got} but this chain has {len(parts)} transforms; "
                "pass the state returned by this optimizer's init()."
            )
        new_state = []
        for t, s, pick in zip(parts, state, filters, strict=True):
            extra = pick(extra_args) if extra_args else {}
            updates, s = t.update(updates, s, params=params, inplace=inplace, **extra)
            new_state.append(s)
        return updates, tuple(new_state)

    return init_fn, update_fn


def _identity_leafwise() -> Leafwise:
    return Leafwise(
        lambda leaves: EmptyState(), lambda g, s, p, ops: (g, s), kind=Identity(), sparse=True
    )


def _identity_init(params: Params) -> OptState:
    return EmptyState()


def _identity_update(
    updates: Updates,
    state: OptState,
    *,
    params: Params | None = None,
    inplace: bool = True,
    **extra_args: Any,
) -> tuple[Updates, OptState]:
    return updates, state


class IdentityGradientTransformation(GradientTransformation):
    """The transformation that returns updates unchanged (stateless: ``EmptyState``)."""

    _plan: Plan

    def __new__(cls) -> IdentityGradientTransformation:
        """Build the identity: the same tree out, whatever the state.

        Its functions are module-level, so every identity equals every other (as in TorchOpt).
        """
        init_fn, update_fn = _identity_init, _identity_update
        self = super().__new__(cls, init_fn, update_fn)
        self._plan = Plan([_identity_leafwise()], chained=False)
        return self

    def leafwise(self) -> Plan:
        """The flat-list implementation (part of chains)."""
        return self._plan


def identity() -> IdentityGradientTransformation:
    """Return the identity transformation (stateless; updates pass through)."""
    return IdentityGradientTransformation()
