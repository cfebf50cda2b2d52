"""Bridges between ``torch.optim`` optimizers and functional optimizers with their state."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from torchopt_lite.base import OptState
from torchopt_lite.optim._grouped import GroupedAlias, alias_arguments, group_hyperparameters
from torchopt_lite.optim._state_view import check_state_like, per_param_entries, rebuild
from torchopt_lite.optim._torch_registry import (
    ALIAS_FLAGS,
    BY_ALIAS,
    BY_OOP_CLASS,
    REGISTRY,
    TORCH_FLAGS,
    Entry,
    supported,
)


def _torch_entry(optimizer: torch.optim.Optimizer, group: dict[str, Any], k: int) -> Entry:
    """The entry whose ``torch_only`` options this group satisfies."""
    cls = type(optimizer)
    candidates = [e for e in REGISTRY if cls in e.torch_classes]
    name = f"torch.optim.{cls.__name__}"
    known = {*TORCH_FLAGS, *candidates[0].hyperparameters, *candidates[0].torch_only}
    unknown = [key for key in optimizer.defaults if key not in known]
    if unknown:
        raise ValueError(
            f"from_torch: {name} has the option(s) {unknown}, which this bridge does not know "
            "(a newer PyTorch?); nothing was converted."
        )
    for entry in candidates:
        if all(group.get(key, v) == v for key, v in entry.torch_only.items()):
            return entry
    first = candidates[0]
    key = next(key for key, v in first.torch_only.items() if group.get(key, v) != v)
    raise ValueError(
        f"from_torch: {name} with {key}={group[key]!r} (param group {k}) has no counterpart "
        f"in torchopt_lite; only {key}={first.torch_only[key]!r} converts."
    )


def _source(optimizer: Any) -> tuple[list[Entry], list[dict[str, Any]], dict[str, str]]:
    """Each group's entry and alias arguments, and the state key map (torch key -> ours)."""
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(
            "from_torch: optimizer must be a torch.optim.Optimizer; "
            f"got {type(optimizer).__name__}."
        )
    groups = optimizer.param_groups
    if type(optimizer) in BY_OOP_CLASS:
        entry = BY_OOP_CLASS[type(optimizer)]
        hypers = [
            group_hyperparameters(entry.alias, _alias_keys(entry.alias, g), k)
            for k, g in enumerate(groups)
        ]
        return [entry] * len(groups), hypers, {}
    if not any(type(optimizer) in e.torch_classes for e in REGISTRY):
        raise TypeError(
            f"from_torch: {type(optimizer).__qualname__} has no counterpart in torchopt_lite "
            f"(a subclass may change the step); supported: {supported()}."
        )
    entries = [_torch_entry(optimizer, g, k) for k, g in enumerate(groups)]
    if len({e.alias for e in entries}) > 1:
        raise ValueError(
            "from_torch: the param groups map to different functional optimizers "
            f"{[e.alias for e in entries]}; convert optimizers whose groups agree on "
            "decoupled_weight_decay."
        )
    hypers = [
        group_hyperparameters(e.alias, {h: g[h] for h in e.hyperparameters}, k)
        for k, (e, g) in enumerate(zip(entries, groups, strict=True))
    ]
    return entries, hypers, entries[0].state


def _alias_keys(alias: str, group: dict[str, Any]) -> dict[str, Any]:
    """The keys of a torchopt_lite class's group that are arguments of its alias."""
    return {k: group[k] for k in alias_arguments(alias) if k in group}


def _step_count(state: dict[str, Any], key_map: dict[str, str]) -> int | None:
    """The step a parameter's state records (``None`` where it records none)."""
    if not key_map:  # a torchopt_lite class: the alias's own count
        return int(state["count"]) if "count" in state else None
    if "step" in key_map:
        return int(state["step"]) if "step" in state else None
    return 1  # SGD: a momentum buffer exists once a step was taken


def _group_state(
    optimizer: torch.optim.Optimizer,
    k: int,
    transformation: Any,
    key_map: dict[str, str],
    name: str,
) -> OptState:
    params = list(optimizer.param_groups[k]["params"])
    with torch.no_grad():
        template = transformation.init(tuple(params))
    n = len(params)
    fresh = per_param_entries(template, n)
    ours = set(fresh[0]) if n else set()
    entries, steps = [], set()
    for i, p in enumerate(params):
        saved = optimizer.state.get(p)
        if not saved:
            entries.append(dict(fresh[i]))
            continue
        converted = {key_map.get(key, key): v for key, v in saved.items()}
        unknown = [key for key in saved if key_map.get(key, key) not in ours]
        unknown = [key for key in unknown if key != "step" or "count" in ours]
        missing = sorted(ours - set(converted) - {"count"})
        if unknown or missing:
            raise ValueError(
                f"from_torch: the state of parameter {i} of param group {k} has the entries "
                f"{sorted(saved)}, where {name} with these hyperparameters keeps "
                f"{sorted(ours)} (unknown: {unknown}, missing: {missing}); was a "
                "hyperparameter such as momentum changed after the state was created?"
            )
        step = _step_count(saved, key_map)
        if step is not None and "count" in ours:
            steps.add(step)
        entries.append({key: converted[key] for key in ours if key != "count"})
    if len(steps) > 1:
        raise ValueError(
            f"from_torch: the parameters of param group {k} were stepped different numbers of "
            f"times {sorted(steps)}; a functional optimizer keeps one step count per group, so "
            "put parameters that are stepped separately in param groups of their own."
        )
    if "count" in ours:
        count = torch.tensor(steps.pop() if steps else 0, dtype=torch.int64)
        for e in entries:
            e["count"] = count
    return rebuild(template, n, entries)


def from_torch(optimizer: torch.optim.Optimizer) -> tuple[GroupedAlias, tuple[OptState, ...]]:
    r"""The functional optimizer and state that continue a ``torch.optim`` optimizer.

    For the parameters ``params = [g["params"] for g in optimizer.param_groups]``, stepping
    ``(transformation, state)`` with the gradients (``transformation.update(grads, state,
    params=params)``, then :func:`~torchopt_lite.apply_updates`) takes the steps ``optimizer``
    would take, from where it is: the hyperparameters of each param group and the state of each
    parameter carry over (float64 trajectories agree to rounding).

    Supported: ``torch.optim`` ``SGD``, ``Adam``, ``AdamW``, ``Adamax``, ``RAdam``, ``Adagrad``,
    ``Adadelta``, ``RMSprop`` (with ``momentum``, ``dampening``, ``nesterov``, ``maximize``,
    ``centered``, ``Adam(decoupled_weight_decay=True)`` as :func:`~torchopt_lite.adamw`; the
    flags ``foreach``, ``fused``, ``capturable`` and ``differentiable`` change how a step runs,
    not its result, and are dropped), and torchopt_lite's own classes
    (:class:`~torchopt_lite.Adam`, ...).

    Args:
        optimizer: the optimizer to convert; it is not changed.

    Returns:
        ``(transformation, state)``: a :class:`~torchopt_lite.optim.GroupedAlias` (the alias and
        each group's hyperparameters) and its state, a tuple of the groups' states holding
        copies of the optimizer's state tensors.

    Raises:
        TypeError: ``optimizer`` is not a ``torch.optim.Optimizer``, or its class has no
            functional counterpart here (for example ``torch.optim.NAdam`` or a subclass).
        ValueError: an option has no counterpart (``amsgrad=True``,
            ``RAdam(decoupled_weight_decay=True)``), or the parameters of one group were
            stepped different numbers of times.

    Example:
        >>> w = torch.nn.Parameter(torch.tensor([1.0, -1.0]))
        >>> optimizer = torch.optim.Adam([w], lr=0.1)
        >>> w.grad = torch.tensor([0.5, -2.0])
        >>> optimizer.step()
        >>> opt, state = torchopt_lite.from_torch(optimizer)
        >>> opt.alias, opt.groups[0]["lr"], int(state[0][1].count)
        ('adam', 0.1, 1)

    Note:
        A parameter without state (one ``torch.optim`` has not stepped yet, such as a frozen
        one) gets a fresh state at its group's step count. The trajectories agree for as long as
        it gets no gradient; ``torch.optim`` would count its steps from 1 once it does. The
        hyperparameters are read once: a ``torch.optim.lr_scheduler`` scheduler attached to
        ``optimizer`` does not reach the functional optimizer (use a schedule as ``lr``).
    """
    entries, hypers, key_map = _source(optimizer)
    alias = entries[0].alias
    transformation = GroupedAlias(alias, hypers)
    name = f"torchopt_lite.{alias}"
    state = tuple(
        _group_state(optimizer, k, t, key_map, name)
        for k, t in enumerate(transformation.transformations)
    )
    return transformation, state


def _scalar_dtype() -> torch.dtype:
    # The dtype torch.optim gives its "step" tensors (float32 unless float64 is the default).
    return torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32


def _target(entry: Entry, optimizer_class: Any) -> type[torch.optim.Optimizer]:
    if optimizer_class is None:
        return entry.torch_classes[0]
    if optimizer_class in entry.torch_classes or optimizer_class is entry.oop_class:
        cls: type[torch.optim.Optimizer] = optimizer_class
        return cls
    allowed = [f"torch.optim.{c.__name__}" for c in entry.torch_classes]
    allowed.append(f"torchopt_lite.{entry.oop_class.__name__}")
    raise ValueError(
        f"to_torch: optimizer_class must be one of {allowed} for torchopt_lite.{entry.alias}; "
        f"got {getattr(optimizer_class, '__qualname__', optimizer_class)!r}."
    )


def _torch_kwargs(entry: Entry, hypers: dict[str, Any], k: int, cls: type) -> dict[str, Any]:
    """The ``torch.optim`` constructor arguments of one group."""
    name = f"torch.optim.{cls.__name__}"
    for key, value in entry.alias_only.items():
        if hypers[key] is not value and hypers[key] != value:
            raise ValueError(
                f"to_torch: torchopt_lite.{entry.alias} with {key}={hypers[key]!r} (group {k}) "
                f"has no counterpart in {name}; only {key}={value!r} converts."
            )
    if callable(hypers["lr"]):
        raise TypeError(
            f"to_torch: lr of group {k} is a schedule; torch.optim takes a float or a tensor: "
            "attach a torch.optim.lr_scheduler scheduler to the result instead."
        )
    kwargs = {h: hypers[h] for h in entry.hyperparameters}
    accepted = inspect.signature(cls).parameters
    kwargs.update({key: v for key, v in entry.torch_only.items() if key in accepted})
    return kwargs


def _oop_kwargs(entry: Entry, hypers: dict[str, Any], k: int, cls: type) -> dict[str, Any]:
    """The torchopt_lite class's arguments of one group."""
    accepted = inspect.signature(cls).parameters
    defaults = alias_arguments(entry.alias)
    for key, value in hypers.items():
        if key not in accepted and key not in ALIAS_FLAGS and value != defaults[key]:
            raise ValueError(
                f"to_torch: torchopt_lite.{entry.alias} with {key}={value!r} (group {k}) has no "
                f"counterpart in torchopt_lite.{cls.__name__}."
            )
    return {key: v for key, v in hypers.items() if key in accepted}


def _torch_entries(
    entry: Entry, state: OptState, n: int, counted: bool
) -> list[dict[str, Tensor]] | None:
    """One group's per-parameter ``torch.optim`` state (``None``: as before its first step)."""
    ours = per_param_entries(state, n)
    back = {v: key for key, v in entry.state.items()}
    out = []
    for e in ours:
        count = int(e["count"]) if "count" in e else None
        if not counted and not count:
            return None  # SGD: no momentum buffer before the first step
        entries = {back[key]: v.detach().clone() for key, v in e.items() if key != "count"}
        if counted:
            step = float(count or 0)  # Adadelta, RMSprop without momentum: no count here
            entries["step"] = torch.tensor(step, dtype=_scalar_dtype())
        out.append(entries)
    return out


def to_torch(
    transformation: GroupedAlias,
    state: OptState,
    params: Sequence[Sequence[Tensor]],
    *,
    optimizer_class: type[torch.optim.Optimizer] | None = None,
) -> torch.optim.Optimizer:
    r"""The ``torch.optim`` optimizer that continues a functional optimizer from ``state``.

    The reverse of :func:`from_torch`: one param group per group of ``transformation`` with its
    hyperparameters, and each parameter's state copied from ``state``, so that
    ``optimizer.step()`` takes the steps the functional optimizer would take.

    Args:
        transformation: a :class:`~torchopt_lite.optim.GroupedAlias`: the one
            :func:`from_torch` returned, or ``GroupedAlias("adam", [{"lr": 1e-3}])`` to
            describe a functional optimizer (``torchopt_lite.adam(lr=1e-3)`` over one group).
        state: its state, as returned by its ``init``/``update``; it is not changed.
        params: the parameters, one sequence of tensors per group (leaf tensors, as
            ``torch.optim`` requires).
        optimizer_class: the class to build: by default the ``torch.optim`` class of the alias
            (``torch.optim.Adam`` for ``"adam"``); also ``torch.optim.Adam`` for ``"adamw"``
            (with ``decoupled_weight_decay=True``) and the other way round, or torchopt_lite's
            own class (:class:`~torchopt_lite.Adam` for ``"adam"``).

    Returns:
        A new optimizer over ``params`` whose state tensors are copies of ``state``'s.

    Raises:
        TypeError: ``transformation`` is not a ``GroupedAlias``, or a group's ``lr`` is a
            schedule.
        ValueError: ``params`` or ``state`` do not match the transformation, an argument has no
            counterpart in the target class (``eps_root``, ``mask``, RMSProp's ``nesterov`` or
            ``initial_scale``), or ``optimizer_class`` does not fit the alias.

    Example:
        >>> params = [[torch.nn.Parameter(torch.tensor([1.0, -1.0]))]]
        >>> opt = torchopt_lite.optim.GroupedAlias("sgd", [{"lr": 0.1, "momentum": 0.9}])
        >>> state = opt.init(params)
        >>> updates, state = opt.update([[torch.tensor([0.5, -2.0])]], state)
        >>> params = torchopt_lite.apply_updates(params, updates)
        >>> optimizer = torchopt_lite.to_torch(opt, state, params)
        >>> optimizer.state[params[0][0]]["momentum_buffer"]
        tensor([ 0.5000, -2.0000])

    Note:
        ``torch.optim.Adadelta`` and ``RMSprop`` without momentum keep a ``step`` that their
        math does not read and these functional states do not hold; it restarts at 0.
    """
    if not isinstance(transformation, GroupedAlias):
        raise TypeError(
            "to_torch: transformation must be a torchopt_lite.optim.GroupedAlias (as returned by "
            f"from_torch); got {type(transformation).__name__}. Describe a functional optimizer "
            'as GroupedAlias("adam", [{"lr": 1e-3}]).'
        )
    entry = BY_ALIAS[transformation.alias]
    cls = _target(entry, optimizer_class)
    ours = cls is entry.oop_class
    make_kwargs = _oop_kwargs if ours else _torch_kwargs
    kwargs = [make_kwargs(entry, h, k, cls) for k, h in enumerate(transformation.groups)]
    with torch.no_grad():
        expected = transformation.init(params)
    check_state_like("to_torch: state", state, expected)
    groups = [{"params": list(p), **kw} for p, kw in zip(params, kwargs, strict=True)]
    make: Callable[..., torch.optim.Optimizer] = cls  # a named class: (params, lr, ...)
    optimizer = make(groups, **kwargs[0]) if ours else make(groups)
    counted = "step" in entry.state
    index, saved = 0, {}
    for group_state, group in zip(state, params, strict=True):
        n = len(group)
        if ours:
            converted: list[dict[str, Tensor]] | None = per_param_entries(group_state, n)
        else:
            converted = _torch_entries(entry, group_state, n, counted)
        for i, e in enumerate(converted or []):
            saved[index + i] = e
        index += n
    state_dict = optimizer.state_dict()
    state_dict["state"] = saved
    optimizer.load_state_dict(state_dict)
    return optimizer
