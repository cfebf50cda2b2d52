"""``torch.optim``-style optimizers built from functional transformations."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping
from functools import partial
from typing import Any

import optree
import torch
from torch import Tensor

from torchopt_lite import _dispatch
from torchopt_lite._dispatch._boundary import check_leaves
from torchopt_lite.base import GradientTransformation, extra_args_filter
from torchopt_lite.optim._param_state import ParamState, replace_entry
from torchopt_lite.optim._state_view import per_param_entries, rebuild
from torchopt_lite.update import apply_updates

__all__ = ["Optimizer"]

AliasFactory = Callable[..., GradientTransformation]


class Optimizer(torch.optim.Optimizer):
    """A ``torch.optim.Optimizer`` whose math is a :class:`GradientTransformation`.

    It is a real ``torch.optim.Optimizer``: ``param_groups`` (dicts with per-group
    hyperparameters), ``defaults``, ``state``, ``zero_grad``, ``step(closure)``,
    ``state_dict``/``load_state_dict`` and ``add_param_group`` behave as in PyTorch, so
    ``torch.optim.lr_scheduler`` and training frameworks work unchanged.

    Args:
        params: an iterable of tensors or of param-group dicts.
        impl: a transformation (shared by every group), or a factory such as
            :func:`torchopt_lite.adam` that builds one from each group's hyperparameters.
        defaults: the hyperparameters passed to ``impl`` when it is a factory.

    Example:
        >>> model = torch.nn.Linear(3, 1)
        >>> opt = torchopt_lite.Optimizer(model.parameters(), torchopt_lite.sgd(lr=0.1))
        >>> model(torch.ones(1, 3)).sum().backward()
        >>> opt.step()

    Note:
        TorchOpt 0.7.3's ``Optimizer`` is not a ``torch.optim.Optimizer``: its
        ``param_groups`` are tuples of tensors, it has no ``defaults``/``state`` (TorchOpt issue
        #203) and a step overwrites ``p.grad`` with the update. Here gradients are left as they
        were, and parameters without a gradient are skipped, as in ``torch.optim``.
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        impl: GradientTransformation | AliasFactory,
        defaults: dict[str, Any] | None = None,
    ) -> None:
        if isinstance(impl, GradientTransformation):
            self.impl: GradientTransformation | None = impl
            self._factory: AliasFactory | None = None
        elif callable(impl):
            self.impl, self._factory = None, impl
        else:
            raise TypeError(
                "Optimizer: impl must be a GradientTransformation or a factory returning one; "
                f"got {type(impl).__name__}."
            )
        # The factory's arguments; torch adds keys to ``defaults`` (e.g. "differentiable" on load).
        self._hyperparameters = tuple(defaults or {})
        self._group_states: list[Any] = []
        self._group_impls: list[tuple[tuple[Any, ...], GradientTransformation] | None] = []
        super().__init__(params, dict(defaults or {}))

    # -- state: the functional group states are the source of truth ---------------------------
    @property
    def state(self) -> defaultdict[Tensor, dict[str, Any]]:
        """Per-parameter views of the optimizer state (the tensors themselves, not copies).

        Assigning an entry, ``state[p]["mu"] = tensor``, replaces that tensor in the functional
        state (as ``torch.optim``'s state dict does; Lightning moves state between devices this
        way). The new tensor must have the old one's shape; a shared entry such as ``count`` is
        replaced for the whole group.
        """
        view: defaultdict[Tensor, dict[str, Any]] = defaultdict(dict)
        for index, (group, gstate) in enumerate(
            zip(self.param_groups, self._group_states, strict=True)
        ):
            if gstate is None:
                continue
            params = group["params"]
            n = len(params)
            for i, (p, entries) in enumerate(
                zip(params, per_param_entries(gstate, n), strict=True)
            ):
                view[p] = ParamState(entries, partial(self._write_state, index, n, i))
        return view

    @state.setter
    def state(self, value: Any) -> None:
        # torch.optim.Optimizer.__init__ assigns an empty defaultdict here; nothing to keep.
        pass

    def __getstate__(self) -> dict[str, Any]:
        # torch.optim pickles defaults, state and param_groups; here the state lives in the
        # functional group states, and the built transformations are rebuilt on first use.
        state = {k: v for k, v in super().__getstate__().items() if k != "state"}
        state.update(
            impl=self.impl,
            _factory=self._factory,
            _hyperparameters=self._hyperparameters,
            _group_states=self._group_states,
            _group_impls=[None] * len(self._group_impls),
        )
        return state

    def _write_state(self, index: int, n: int, i: int, key: str, value: Any) -> None:
        gstate = self._group_states[index]
        self._group_states[index] = replace_entry(gstate, n, i, key, value)

    def state_dict(self) -> dict[str, Any]:
        """As ``torch.optim``: ``{"state": {index: {entry: tensor}}, "param_groups": [...]}``."""
        state_dict = super().state_dict()
        state_dict["state"] = {k: dict(v) for k, v in state_dict["state"].items()}
        return state_dict

    def add_param_group(self, param_group: Any) -> None:
        """Add a group of parameters (with optional per-group hyperparameters).

        ``param_group`` is a dict with a ``"params"`` entry, as in ``torch.optim``, or (TorchOpt's
        form) the parameters themselves: a tensor, or a list, tuple, dict or other tree of them,
        which then take the optimizer's defaults.

        Non-leaf tensors are accepted, as in TorchOpt (a network's parameters after a
        :class:`~torchopt_lite.MetaOptimizer` step are the results of differentiable updates):
        they are made to retain their gradients, which is the condition ``torch.optim`` puts
        on non-leaf parameters, so ``loss.backward()`` fills their ``.grad`` for ``step()``.
        """
        group: dict[str, Any]
        if isinstance(param_group, Mapping) and "params" in param_group:
            group = dict(param_group)
        else:
            tree: Any = list(param_group) if isinstance(param_group, Iterator) else param_group
            group = {"params": optree.tree_leaves(tree)}
        params = group["params"]
        if isinstance(params, Tensor):
            group["params"] = [params]
        elif not isinstance(params, set):  # torch.optim rejects sets, with its message
            group["params"] = list(params)
        for p in group["params"]:
            if isinstance(p, Tensor) and not (p.is_leaf or p.retains_grad):
                p.retain_grad()
        super().add_param_group(group)
        self._group_states.append(None)
        self._group_impls.append(None)
        if self._factory is not None:  # validate the hyperparameters now, as torch.optim does
            try:
                self._impl_for(len(self.param_groups) - 1, self.param_groups[-1])
            except Exception:
                del self.param_groups[-1], self._group_states[-1], self._group_impls[-1]
                raise

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a ``state_dict()`` of an optimizer with the same groups and configuration.

        Every state tensor is checked against this optimizer's own state (same entries and
        shapes) and copied in its dtype and device: the step count stays an integer even when
        the parameters are float16 (``torch.optim`` would cast it to the parameters' dtype).

        Raises:
            ValueError: the groups, the hyperparameter names, the state entries or their shapes
                differ from this optimizer's; nothing is changed.
        """
        saved_groups = state_dict.get("param_groups", [{}])
        saved_keys = set().union(*(g.keys() for g in saved_groups))
        missing = [k for k in self._hyperparameters if k not in saved_keys]
        if self._factory is not None and missing:
            raise ValueError(
                f"load_state_dict: the state_dict's param_groups lack {missing}; the state_dict "
                "comes from a different optimizer configuration."
            )
        before = [dict(g) for g in self.param_groups]
        super().load_state_dict(state_dict)  # checks the groups, loads the hyperparameters
        self.__dict__.pop("state", None)  # torch's cast copies; the originals are read below
        saved = state_dict.get("state", {})
        ids = [i for g in saved_groups for i in g.get("params", [])]
        params = [p for g in self.param_groups for p in g["params"]]
        raw = {p: saved[i] for i, p in zip(ids, params, strict=False) if i in saved}
        states: list[Any] = []
        try:
            for index, group in enumerate(self.param_groups):
                ps = group["params"]
                if not any(p in raw for p in ps):
                    states.append(None)
                    continue
                template = self._init_state(self._impl_for(index, group), ps)
                states.append(rebuild(template, len(ps), [raw.get(p, {}) for p in ps]))
        except Exception:
            for group, old in zip(self.param_groups, before, strict=True):
                group.clear()
                group.update(old)
            raise
        self._group_states = states

    # -- the step ------------------------------------------------------------------------------
    def _impl_for(self, index: int, group: dict[str, Any]) -> GradientTransformation:
        if self._factory is None:
            assert self.impl is not None
            return self.impl
        key = tuple(_freeze(group[k]) for k in self._hyperparameters)
        cached = self._group_impls[index]
        if cached is None or cached[0] != key:
            impl = self._factory(**{k: group[k] for k in self._hyperparameters})
            self._group_impls[index] = cached = (key, impl)
        return cached[1]

    @staticmethod
    def _init_state(impl: GradientTransformation, params: list[Tensor]) -> Any:
        plan = impl.leafwise()
        with torch.no_grad():
            return plan.init(params) if plan is not None else impl.init(list(params))

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None, **extra_args: Any) -> Any:
        """Perform one optimization step; ``closure`` re-evaluates the loss (returned).

        The closure's loss reaches the transformations that read it as ``value=`` (Polyak steps,
        ``reduce_on_plateau``); ``extra_args`` reach those that read other extra arguments
        (e.g. Sophia's ``obj_fn=``), as in ``update(..., **extra_args)``.
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        value = loss.detach() if isinstance(loss, Tensor) else loss
        extra = dict(extra_args) if loss is None else {"value": value, **extra_args}
        for index, group in enumerate(self.param_groups):
            self._step_group(index, group, extra)
        return loss

    def _step_group(self, index: int, group: dict[str, Any], extra: dict[str, Any]) -> None:
        params: list[Tensor] = group["params"]
        grads = [p.grad for p in params]
        if all(g is None for g in grads):
            return
        impl = self._impl_for(index, group)
        state = self._group_states[index]
        if state is None:
            state = self._init_state(impl, params)
        plan = impl.leafwise()
        if plan is not None:
            _, state = _dispatch.apply(
                plan, params, grads, state, inplace=True, caller="Optimizer", extra=extra
            )
        else:  # a tree-level transformation: it may overwrite what it is given
            check_leaves(grads, "gradients", "Optimizer")
            copies = [None if g is None else g.clone() for g in grads]
            kw = extra_args_filter(impl.update)(extra) if extra else {}
            updates, state = impl.update(copies, state, params=list(params), inplace=True, **kw)
            apply_updates(list(params), updates, inplace=True)
        self._group_states[index] = state


def _freeze(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(value)
    if isinstance(value, Tensor):  # schedulers write a tensor lr in place (fill_): its version
        return id(value), value._version  # counter changes, with no host sync
    return value
