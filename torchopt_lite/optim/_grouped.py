"""One functional optimizer over parameter groups, each group with its own hyperparameters."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from torch import Tensor

from torchopt_lite import alias as aliases
from torchopt_lite.alias.utils import flip_sign_and_add_weight_decay
from torchopt_lite.base import (
    ChainedGradientTransformation,
    GradientTransformation,
    OptState,
    Params,
    Updates,
    check_state,
)

ALIASES = ("sgd", "adam", "adamw", "adamax", "radam", "adagrad", "adadelta", "rmsprop")


def _factory(alias: str) -> Callable[..., GradientTransformation]:
    factory: Callable[..., GradientTransformation] = getattr(aliases, alias)
    return factory


def alias_arguments(alias: str) -> dict[str, Any]:
    """``alias``'s arguments and their defaults (``inspect.Parameter.empty`` where required).

    ``maximize=False`` is added for the aliases that lack it (``adadelta``, ``adamax``,
    ``radam``): :func:`build` gives them a sign flip.
    """
    signature = inspect.signature(_factory(alias)).parameters
    arguments = {name: p.default for name, p in signature.items()}
    arguments.setdefault("maximize", False)
    return arguments


def group_hyperparameters(alias: str, group: Any, index: int) -> dict[str, Any]:
    """All of ``alias``'s arguments for one group (its defaults where ``group`` has none)."""
    if not isinstance(group, Mapping):
        raise TypeError(
            f"GroupedAlias: groups[{index}] must be a dict of hyperparameters; "
            f"got {type(group).__name__}."
        )
    arguments = alias_arguments(alias)
    unknown = [k for k in group if k not in arguments]
    if unknown:
        raise TypeError(
            f"GroupedAlias: groups[{index}] has {unknown}, which torchopt_lite.{alias} does not "
            f"take; it takes {list(arguments)}."
        )
    missing = [k for k, v in arguments.items() if v is inspect.Parameter.empty and k not in group]
    if missing:
        raise TypeError(
            f"GroupedAlias: groups[{index}] lacks {missing}, which torchopt_lite.{alias} requires."
        )
    return {k: group.get(k, default) for k, default in arguments.items()}


def build(alias: str, hyperparameters: Mapping[str, Any]) -> GradientTransformation:
    """``alias(**hyperparameters)``, preceded by a sign flip for ``maximize`` where it lacks one.

    Negating first is what ``torch.optim`` does (:math:`g \\leftarrow -g + \\lambda\\theta`), and
    the alias's own first link adds the coupled weight decay after it.
    """
    factory = _factory(alias)
    if "maximize" in inspect.signature(factory).parameters:
        return factory(**hyperparameters)
    kwargs = {k: v for k, v in hyperparameters.items() if k != "maximize"}
    inner = factory(**kwargs)
    if not hyperparameters.get("maximize", False):
        return inner
    return ChainedGradientTransformation(flip_sign_and_add_weight_decay(maximize=True), inner)


def _check_groups(what: str, tree: Any, n: int) -> None:
    if not isinstance(tree, list | tuple) or isinstance(tree, Tensor):
        raise TypeError(
            f"GroupedAlias: {what} must be a sequence of groups (one sequence of tensors per "
            f"param group); got {type(tree).__name__}."
        )
    if len(tree) != n:
        raise ValueError(
            f"GroupedAlias: {what} has {len(tree)} groups but this optimizer has {n}; pass one "
            "sequence of tensors per param group."
        )
    for k, group in enumerate(tree):
        if not isinstance(group, list | tuple):
            raise TypeError(
                f"GroupedAlias: {what}[{k}] must be a list or tuple of tensors; "
                f"got {type(group).__name__}."
            )


def _per_leaf_fields(state: Any) -> list[tuple[str, tuple[Tensor, ...]]]:
    """``(field, tensors)`` for each per-leaf field of a chain state (a tuple of NamedTuples)."""
    fields = []
    for part in state if isinstance(state, tuple) else ():
        for name, value in zip(getattr(part, "_fields", ()), part, strict=False):
            if isinstance(value, tuple) and all(isinstance(x, Tensor) for x in value):
                fields.append((name, value))
    return fields


def _check_shapes(k: int, updates: Sequence[Any], state: Any, params: Any) -> None:
    """Leaf counts and shapes of group ``k`` against its state and params, before any write."""
    against = [(f"state field {name!r}", list(xs)) for name, xs in _per_leaf_fields(state)]
    if params is not None:
        against.append(("params", list(params)))
    for what, xs in against:
        if len(xs) != len(updates):
            raise ValueError(
                f"GroupedAlias: updates[{k}] has {len(updates)} leaves but {what} of group {k} "
                f"has {len(xs)}; pass the updates of this group's parameters."
            )
        for i, (u, x) in enumerate(zip(updates, xs, strict=True)):
            if isinstance(u, Tensor) and isinstance(x, Tensor) and u.shape != x.shape:
                raise ValueError(
                    f"GroupedAlias: updates[{k}][{i}] has shape {tuple(u.shape)} but {what} of "
                    f"group {k} holds {tuple(x.shape)}; pass the updates of this group's "
                    "parameters."
                )


class GroupedAlias(GradientTransformation):
    r"""One functional optimizer over parameter groups, each group with its own hyperparameters.

    The ``torch.optim`` notion of param groups, for the functional API: the parameters, the
    updates and the gradients are a sequence of groups (one list or tuple of tensors each, as
    ``[g["params"] for g in optimizer.param_groups]``), and group :math:`k` is transformed by
    its own instance of the alias,

    .. math::
        u^{(k)}_t = \mathrm{alias}(\text{groups}[k])\bigl(g^{(k)}_t\bigr),

    with the state the tuple of the groups' states. It is what :func:`~torchopt_lite.from_torch`
    returns, and it records the alias and each group's hyperparameters, so
    :func:`~torchopt_lite.to_torch` can build the ``torch.optim`` optimizer back.

    Args:
        alias: the name of a functional optimizer: ``"sgd"``, ``"adam"``, ``"adamw"``,
            ``"adamax"``, ``"radam"``, ``"adagrad"``, ``"adadelta"`` or ``"rmsprop"``.
        groups: one dict of the alias's arguments per group; missing ones take the alias's
            defaults. ``maximize`` is accepted for every alias: where the alias has none
            (``adadelta``, ``adamax``, ``radam``), the group's chain starts with a sign flip.

    Attributes:
        alias: the alias name.
        groups: each group's arguments, complete (the alias's defaults filled in).
        transformations: each group's transformation.

    Example:
        >>> opt = GroupedAlias("sgd", [{"lr": 0.1}, {"lr": 1.0}])
        >>> params = ((torch.ones(2),), (torch.zeros(1),))
        >>> state = opt.init(params)
        >>> grads = ((torch.ones(2),), (torch.ones(1),))
        >>> updates, state = opt.update(grads, state)
        >>> torchopt_lite.apply_updates(params, updates)
        ((tensor([0.9000, 0.9000]),), (tensor([-1.]),))

    Note:
        Group counts, leaf counts and shapes of every group are checked before any group is
        stepped. The groups are then stepped one after another, each by its alias, which checks
        the rest of its inputs (dtypes, devices) before writing anything of its own group.
    """

    alias: str
    groups: tuple[dict[str, Any], ...]
    transformations: tuple[GradientTransformation, ...]

    def __new__(cls, alias: str, groups: Sequence[Mapping[str, Any]]) -> GroupedAlias:
        """Build one transformation per group."""
        if alias not in ALIASES:
            raise ValueError(f"GroupedAlias: alias must be one of {list(ALIASES)}; got {alias!r}.")
        if isinstance(groups, Mapping) or not isinstance(groups, Sequence) or not groups:
            raise ValueError(
                "GroupedAlias: groups must be a non-empty list of dicts, one per param group; "
                f"got {groups!r}."
            )
        full = tuple(group_hyperparameters(alias, g, k) for k, g in enumerate(groups))
        parts = tuple(build(alias, g) for g in full)
        n = len(parts)

        def init_fn(params: Params) -> OptState:
            _check_groups("params", params, n)
            return tuple(t.init(p) for t, p in zip(parts, params, strict=True))

        def update_fn(
            updates: Updates,
            state: OptState,
            *,
            params: Params | None = None,
            inplace: bool = True,
            **extra_args: Any,
        ) -> tuple[Updates, OptState]:
            check_state(state)
            _check_groups("updates", updates, n)
            if params is not None:
                _check_groups("params", params, n)
            if not isinstance(state, tuple) or len(state) != n:
                got = f"{len(state)} entries" if isinstance(state, tuple) else type(state).__name__
                raise ValueError(
                    f"GroupedAlias: state has {got} but this optimizer has {n} groups; pass the "
                    "state returned by this optimizer's init()."
                )
            group_params = [None] * n if params is None else list(params)
            for k in range(n):
                _check_shapes(k, updates[k], state[k], group_params[k])
            new_updates, new_state = [], []
            for t, u, s, p in zip(parts, updates, state, group_params, strict=True):
                u, s = t.update(u, s, params=p, inplace=inplace, **extra_args)
                new_updates.append(u)
                new_state.append(s)
            return type(updates)(new_updates), tuple(new_state)

        self = super().__new__(cls, init_fn, update_fn)
        self.alias, self.groups, self.transformations = alias, full, parts
        return self

    def __repr__(self) -> str:
        return f"GroupedAlias({self.alias!r}, {list(self.groups)!r})"
