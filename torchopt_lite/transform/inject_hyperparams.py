"""Hyperparameters held in the optimizer state as tensors: set, scheduled or learned."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

import optree
import torch
from torch import Tensor

from torchopt_lite.base import (
    GradientTransformation,
    check_state,
    extra_args_filter,
    register_state_type,
)


@register_state_type
class InjectHyperparamsState(NamedTuple):
    """State of :func:`inject_hyperparams`.

    Attributes:
        count: the number of updates so far (0-d int64 tensor), the argument of the schedules.
        hyperparams: name -> 0-d tensor (a tuple of them for ``betas``): the values the next
            update uses. Overwrite one in place (``state.hyperparams["lr"].fill_(1e-4)``) or
            replace it to change it between steps.
        inner_state: the state of the wrapped optimizer.
    """

    count: Tensor  # type: ignore[assignment]  # Optax's name; shadows tuple.count
    hyperparams: dict[str, Any]
    inner_state: Any


def _is_numeric(value: Any) -> bool:
    """A hyperparameter to inject: a float, a one-element float tensor, or a tuple of them.

    Integers stay static: they are sizes, seeds and step counts that pick shapes or code paths.
    """
    if isinstance(value, float):
        return True
    if isinstance(value, Tensor):
        return value.numel() == 1 and (value.is_floating_point() or value.is_complex())
    if isinstance(value, tuple) and value:
        return all(_is_numeric(v) and not isinstance(v, tuple) for v in value)
    return False


def _is_per_parameter(value: Any) -> bool:
    """A tree (dict, list, ...) of floats or float tensors: one value per parameter leaf."""
    if _is_numeric(value) or isinstance(value, Tensor) or callable(value):
        return False
    leaves, spec = optree.tree_flatten(value)
    if spec.is_leaf() or not leaves:
        return False
    return all(
        isinstance(x, float)
        or (isinstance(x, Tensor) and (x.is_floating_point() or x.is_complex()))
        for x in leaves
    )


def _as_tensor(value: Any, dtype: torch.dtype, device: torch.device | None) -> Any:
    """Numbers to 0-d tensors; tensors as they are; tuples entry by entry.

    A tensor that requires grad stays the same object, so the meta-gradient reaches it.
    """
    if isinstance(value, tuple):
        return tuple(_as_tensor(v, dtype, device) for v in value)
    if isinstance(value, Tensor):
        return value
    return torch.tensor(value, dtype=dtype, device=device)


def inject_hyperparams(
    inner_factory: Callable[..., GradientTransformation],
    static_args: str | Iterable[str] = (),
    hyperparam_dtype: torch.dtype | None = None,
) -> Callable[..., GradientTransformation]:
    r"""Wrap an optimizer factory so that its numeric hyperparameters live in the state.

    ``inject_hyperparams(adam)(lr=1e-3, betas=(0.9, 0.999))`` is Adam whose ``lr`` and betas are
    tensors in ``state.hyperparams``. Each argument given to the wrapped factory is

    - a **schedule** if it is callable (not a ``static_args`` name): evaluated on the step count
      before each update, :math:`h_t = s(t)`, and its value stored;
    - **injected** if it is a float, a one-element float tensor or a tuple of them: stored as a
      0-d tensor (a tensor you pass is stored as it is, so one that requires grad makes the
      steps differentiable in it);
    - **per parameter** if it is a tree with the structure of the params whose leaves are floats
      or one-element float tensors: stored as that tree of 0-d tensors. Each parameter leaf then
      has its own optimizer, built with its own values, and its own state (a Python loop over
      the leaves);
    - **static** otherwise (integers such as sizes and seeds, booleans, masks,
      ``static_args``): passed through unchanged. Pass ``1.0``, not ``1``, to inject a one.

    Every update rebuilds the inner optimizer from the current values, so they can be changed
    between steps (in place or by replacing the dict), scheduled, batched under ``vmap`` (a
    state per task with its own learning rate), traced by ``torch.compile``, and differentiated:
    through unrolled out-of-place steps, through an implicit fixed point of the step, and by
    zero-order estimates.

    Args:
        inner_factory: an alias (``adam``, ``sgd``, ...) or any function returning a
            :class:`~torchopt_lite.base.GradientTransformation`.
        static_args: names never injected (e.g. an integer that picks a code path).
        hyperparam_dtype: dtype of the injected numbers; default: the dtype of the first
            floating-point parameter at ``init`` (``torch.get_default_dtype()`` if none).

    Returns:
        A factory with ``inner_factory``'s parameters, returning a transformation whose state is
        :class:`InjectHyperparamsState`.

    Example:
        >>> from torchopt_lite import adam
        >>> opt = inject_hyperparams(adam)(lr=0.1)
        >>> params = {"w": torch.ones(2)}
        >>> state = opt.init(params)
        >>> state.hyperparams["lr"]
        tensor(0.1000)
        >>> _ = state.hyperparams["lr"].fill_(0.01)  # a smaller step from now on
        >>> updates, state = opt.update({"w": torch.ones(2)}, state)
        >>> updates["w"]
        tensor([-0.0100, -0.0100])

    References:
        Optax's ``inject_hyperparams``; learning hyperparameters by meta-gradient: Maclaurin et
        al., "Gradient-based Hyperparameter Optimization through Reversible Learning", ICML 2015.

    Note:
        Each alias takes tensor hyperparameters in its plain (multi-tensor or per-leaf) formula;
        a fused kernel is used only where all of an optimizer's hyperparameters are numbers.
        Values of tensors are validated where that is free (on the CPU, outside ``vmap`` and
        ``torch.compile``); elsewhere they are taken as given. With per-parameter values each
        leaf is optimized on its own: exact for the optimizers whose math is per leaf, while
        those that couple leaves (a global norm, L-BFGS's flat vector, SAM) see one leaf at a
        time.
    """
    static = {static_args} if isinstance(static_args, str) else set(static_args)
    signature = inspect.signature(inner_factory)

    def wrapped(*args: Any, **kwargs: Any) -> GradientTransformation:
        try:
            bound = signature.bind(*args, **kwargs)
        except TypeError as err:
            name = getattr(inner_factory, "__name__", "inner_factory")
            raise TypeError(f"inject_hyperparams({name}): {err}") from None
        given = dict(bound.arguments)
        unknown = static - set(signature.parameters)
        if unknown:
            raise ValueError(
                f"inject_hyperparams: static_args {sorted(unknown)} are not parameters of "
                f"{getattr(inner_factory, '__name__', 'inner_factory')}."
            )
        schedules = {k: v for k, v in given.items() if k not in static and callable(v)}
        numeric = {
            k: v for k, v in given.items() if k not in static and k not in schedules
            and _is_numeric(v)
        }  # fmt: skip
        per_param = {
            k: v for k, v in given.items() if k not in static and k not in schedules
            and k not in numeric and _is_per_parameter(v)
        }  # fmt: skip
        fixed = {
            k: v for k, v in given.items() if k not in schedules and k not in numeric
            and k not in per_param
        }  # fmt: skip
        # validate the starting values now, not at the first step (each per-parameter value)
        columns = {k: optree.tree_leaves(v) for k, v in per_param.items()}
        for j in range(max((len(c) for c in columns.values()), default=0) or 1):
            inner_factory(**fixed, **numeric, **schedules, **{k: c[j] for k, c in columns.items()})

        def values_at(count: Tensor, stored: dict[str, Any], like: Any) -> dict[str, Any]:
            dtype, device = like
            out = dict(stored)
            for k, s in schedules.items():
                out[k] = _as_tensor(s(count), dtype, device)
            return out

        def per_leaf(spec: Any, hyper: dict[str, Any]) -> list[dict[str, Any]]:
            """The values of each parameter leaf (shared ones repeated)."""
            columns = {}
            for k in per_param:
                try:
                    columns[k] = spec.flatten_up_to(hyper[k])
                except ValueError as err:
                    raise ValueError(
                        f"inject_hyperparams: {k} must have the tree structure of the params; "
                        f"params: {spec}, {k}: {optree.tree_structure(hyper[k])}."
                    ) from err
            shared = {k: v for k, v in hyper.items() if k not in per_param}
            return [
                {**shared, **{k: c[j] for k, c in columns.items()}} for j in range(spec.num_leaves)
            ]

        def init_fn(params: Any) -> InjectHyperparamsState:
            like = _dtype_and_device(params, hyperparam_dtype)
            count = torch.zeros((), dtype=torch.int64, device=like[1])
            hyper = {k: _as_tensor(v, *like) for k, v in numeric.items()}
            hyper.update(
                {
                    k: optree.tree_map(lambda x: _as_tensor(x, *like), v)
                    for k, v in per_param.items()
                }
            )
            hyper = values_at(count, hyper, like)
            if not per_param:
                inner = inner_factory(**fixed, **hyper)
                return InjectHyperparamsState(count, hyper, inner.init(params))
            leaves, spec = optree.tree_flatten(params, none_is_leaf=True)
            states = tuple(
                inner_factory(**fixed, **h).init(x)
                for x, h in zip(leaves, per_leaf(spec, hyper), strict=True)
            )
            return InjectHyperparamsState(count, hyper, states)

        def update_fn(
            updates: Any,
            state: InjectHyperparamsState,
            *,
            params: Any = None,
            inplace: bool = True,
            **extra_args: Any,
        ) -> tuple[Any, InjectHyperparamsState]:
            check_state(state)
            if not isinstance(state, InjectHyperparamsState):
                raise ValueError(
                    f"inject_hyperparams: state is {type(state).__name__}, expected "
                    "InjectHyperparamsState; pass the state returned by this optimizer's init()."
                )
            missing = set(numeric) | set(schedules)
            missing -= set(state.hyperparams)
            if missing:
                raise ValueError(
                    f"inject_hyperparams: state.hyperparams lacks {sorted(missing)}; keep every "
                    "entry of the dict returned by init() (change values, not keys)."
                )
            like = (state.count.dtype, state.count.device)
            first = next(iter(state.hyperparams.values()), None)
            if isinstance(first, tuple):
                first = first[0]
            if isinstance(first, Tensor):
                like = (first.dtype, first.device)
            hyper = values_at(state.count, state.hyperparams, like)
            if per_param:
                updates, inner_state = _update_per_leaf(
                    updates, state.inner_state, params, inplace, extra_args, hyper
                )
            else:
                inner = inner_factory(**fixed, **hyper)
                extra = extra_args_filter(inner.update)(extra_args) if extra_args else {}
                updates, inner_state = inner.update(
                    updates, state.inner_state, params=params, inplace=inplace, **extra
                )
            count = state.count.add_(1) if inplace else state.count + 1
            return updates, InjectHyperparamsState(count, hyper, inner_state)

        def _update_per_leaf(
            updates: Any,
            states: Any,
            params: Any,
            inplace: bool,
            extra_args: dict[str, Any],
            hyper: dict[str, Any],
        ) -> tuple[Any, tuple[Any, ...]]:
            leaves, spec = optree.tree_flatten(updates, none_is_leaf=True)
            if not isinstance(states, tuple) or len(states) != len(leaves):
                raise ValueError(
                    "inject_hyperparams: the state holds one optimizer state per parameter leaf; "
                    f"got {type(states).__name__} for {len(leaves)} leaves. Pass the state "
                    "returned by this optimizer's init()."
                )
            p_leaves = [None] * len(leaves) if params is None else spec.flatten_up_to(params)
            out, new_states = list(leaves), list(states)
            for j, h in enumerate(per_leaf(spec, hyper)):
                if leaves[j] is None:
                    continue  # no gradient: the state of this leaf is kept as it is
                inner = inner_factory(**fixed, **h)
                extra = extra_args_filter(inner.update)(extra_args) if extra_args else {}
                out[j], new_states[j] = inner.update(
                    leaves[j], states[j], params=p_leaves[j], inplace=inplace, **extra
                )
            return optree.tree_unflatten(spec, out), tuple(new_states)

        return GradientTransformation(init_fn, update_fn)

    wrapped.__name__ = f"inject_hyperparams({getattr(inner_factory, '__name__', 'factory')})"
    wrapped.__doc__ = inner_factory.__doc__
    return wrapped


def _dtype_and_device(
    params: Any, dtype: torch.dtype | None
) -> tuple[torch.dtype, torch.device | None]:
    leaves = [x for x in optree.tree_leaves(params) if isinstance(x, Tensor)]
    device = leaves[0].device if leaves else None
    if dtype is None:
        floats = [x.dtype for x in leaves if x.is_floating_point()]
        dtype = floats[0] if floats else torch.get_default_dtype()
    return dtype, device
