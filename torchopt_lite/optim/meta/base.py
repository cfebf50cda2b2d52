"""MetaOptimizer: differentiable, out-of-place optimizer steps on an ``nn.Module``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import optree
import torch
from torch import Tensor, nn

from torchopt_lite import _dispatch
from torchopt_lite._dispatch._boundary import check_leaves, densified
from torchopt_lite._modules import extract_module_containers
from torchopt_lite.base import GradientTransformation, UninitializedState, extra_args_filter
from torchopt_lite.diff.explicit._checks import check_truncate_every
from torchopt_lite.optim._state_view import check_state_like
from torchopt_lite.typing import ModuleTensorContainers, OptState

_Slot = tuple[dict[str, Any], str]  # (a submodule's ``_parameters`` dict, a key in it)


def _slots(containers: ModuleTensorContainers) -> list[_Slot]:
    """Where each parameter lives, in the leaf order of ``optree.tree_flatten(containers)``."""
    return [
        (c, k)
        for c in containers
        for k in sorted(c)  # optree sorts dict keys; keep its leaf order for the state
        if isinstance(c[k], Tensor)
    ]


def _detach_keep_flag(t: Any) -> Any:
    if isinstance(t, Tensor) and t.grad_fn is not None:
        return t.detach().requires_grad_(t.requires_grad)
    return t


class MetaOptimizer:
    r"""Differentiable optimizer steps on a module: the unrolled inner loop of meta-learning.

    Each :meth:`step` replaces the module's parameters by out-of-place updated tensors,

    .. math::
        g_t = \nabla_\theta L(\theta_t), \qquad (u_t, s_{t+1}) = \mathrm{update}(g_t, s_t,
        \theta_t), \qquad \theta_{t+1} = \theta_t + u_t,

    keeping the graph of :math:`g_t` (``create_graph=True``), so a loss evaluated after the inner
    loop can be differentiated with respect to :math:`\theta_0`, the optimizer state and any
    tensor hyperparameter (a learnable learning rate).

    With ``first_order=True`` the gradients are constants (first-order MAML):
    :math:`\theta_{t+1} = \theta_t + u(\mathrm{sg}[g_t], s_t, \theta_t)`, so for SGD
    :math:`\partial\theta_T/\partial\theta_0 = I` and no second-order graph is built. With
    ``truncate_every=k`` the parameters and the optimizer state are detached (keeping
    ``requires_grad``) after every :math:`k`-th step of an unroll: the meta-gradient flows through
    the last window of at most :math:`k` steps only, and memory stays bounded in long unrolls.

    Args:
        module: the network whose parameters are optimized. Parameters with
            ``requires_grad=False`` are left as they are.
        impl: the functional optimizer, e.g. ``torchopt_lite.sgd(lr=0.1)`` or any
            :func:`~torchopt_lite.chain`.
        first_order: treat the gradients as constants (no second-order graph).
        truncate_every: cut the unrolled graph after every this many steps; steps are counted
            from the last time every parameter was a graph leaf (construction,
            :func:`~torchopt_lite.recover_state_dict`, :func:`~torchopt_lite.stop_gradient`, or
            the previous cut). ``None`` never cuts.

    Example:
        >>> net = torch.nn.Linear(1, 1)
        >>> w0 = net.weight
        >>> opt = MetaOptimizer(net, torchopt_lite.sgd(lr=0.1))
        >>> opt.step(net(torch.ones(1, 1)).sum())
        >>> net.weight.grad_fn is not None  # a function of w0, differentiable
        True
        >>> torch.allclose(net.weight, w0 - 0.1)
        True

    Note:
        Beyond TorchOpt: ``first_order``, ``truncate_every``, one ``autograd.grad`` call for all
        parameter groups, frozen parameters skipped, and clear errors that leave the module and
        state as they were (a module without parameters, a non-scalar loss, a loss that does not
        depend on the parameters, a state from another module).
    """

    impl: GradientTransformation
    param_containers_groups: list[ModuleTensorContainers]
    state_groups: list[OptState]

    def __init__(
        self,
        module: nn.Module,
        impl: GradientTransformation,
        *,
        first_order: bool = False,
        truncate_every: int | None = None,
    ) -> None:
        if not isinstance(impl, GradientTransformation):
            raise TypeError(
                "MetaOptimizer: impl must be a GradientTransformation (e.g. "
                f"torchopt_lite.sgd(lr=0.1)); got {type(impl).__name__}."
            )
        check_truncate_every("MetaOptimizer", truncate_every)
        self.impl = impl
        self._plan = impl.leafwise()
        # Plain SGD (u = scale * g, constant state): the backward pass is seeded with the scale,
        # so the gradients arrive as updates, with one multiply per step instead of one per
        # parameter (and none per parameter in the meta-backward).
        self._linear_scale = None if self._plan is None else _dispatch.linear_scale(self._plan)
        self.first_order = bool(first_order)
        self.truncate_every = truncate_every
        self.param_containers_groups = []
        self.state_groups = []
        # Structure fixed by add_param_group, so a step only reads the current tensors:
        self._slots: list[_Slot] = []  # every group's slots, group after group
        self._bounds: list[tuple[int, int]] = []  # each group's ``start, stop`` in ``_slots``
        self._unrolled = 0  # steps since the parameters were last graph leaves
        self.add_param_group(module)

    def add_param_group(self, module: nn.Module) -> None:
        """Also optimize the parameters of ``module`` (a new group with its own state).

        Raises:
            TypeError: ``module`` is not an ``nn.Module``.
            ValueError: ``module`` has no parameters, or some are already in a group.
        """
        if not isinstance(module, nn.Module):
            raise TypeError(
                f"MetaOptimizer.add_param_group: module must be an nn.Module; "
                f"got {type(module).__name__}."
            )
        containers = extract_module_containers(module, with_buffers=False)[0]
        slots = _slots(containers)
        if not slots:
            raise ValueError(
                f"MetaOptimizer: module {type(module).__name__} has no parameters to optimize."
            )
        known = {id(c) for group in self.param_containers_groups for c in group}
        if any(id(c) in known for c in containers):
            raise ValueError(
                "MetaOptimizer.add_param_group: some parameters of "
                f"{type(module).__name__} are already in a param group; add each module once."
            )
        self.param_containers_groups.append(containers)
        self._bounds.append((len(self._slots), len(self._slots) + len(slots)))
        self._slots.extend(slots)
        self.state_groups.append(UninitializedState())

    def step(self, loss: Tensor, **extra_args: Any) -> None:
        """Take one differentiable step of every parameter group on ``loss``.

        Args:
            loss: a scalar tensor computed from the module's current parameters; it also
                reaches the transformations that read the loss as ``value=``.
            extra_args: other extra arguments of ``update`` (e.g. Sophia's ``obj_fn=``).

        Raises:
            TypeError: ``loss`` is not a tensor.
            ValueError: ``loss`` is not a scalar, or does not depend on any parameter. The module
                and the optimizer state are unchanged.
        """
        if not isinstance(loss, Tensor):
            raise TypeError(
                f"MetaOptimizer.step: loss must be a Tensor; got {type(loss).__name__}."
            )
        if loss.numel() != 1:
            raise ValueError(
                "MetaOptimizer.step: loss must be a scalar (one element); got shape "
                f"{tuple(loss.shape)}. Reduce it first, e.g. loss.mean()."
            )
        flat = [c[k] for c, k in self._slots]
        wrt = [p for p in flat if p.requires_grad]
        if not loss.requires_grad or not wrt:
            raise ValueError(_NO_DEPENDENCE)
        seed = None if self._linear_scale is None else torch.full_like(loss, self._linear_scale)
        grads: list[Tensor | None] = list(
            torch.autograd.grad(
                loss, wrt, seed, create_graph=not self.first_order, allow_unused=True
            )
        )
        if len(wrt) < len(flat):
            it = iter(grads)
            grads = [next(it) if p.requires_grad else None for p in flat]
        if all(g is None for g in grads):
            raise ValueError(_NO_DEPENDENCE)

        truncate = False
        if self.truncate_every is not None:
            if all(p.grad_fn is None for p in flat):
                self._unrolled = 0
            self._unrolled += 1
            truncate = self._unrolled % self.truncate_every == 0

        if len(self._bounds) == 1:  # the usual case: no slicing and merging
            new_flat, state = self._update_group(0, flat, grads, {"value": loss, **extra_args})
            new_states = [state]
        else:
            new_flat, new_states = [], []
            for i, (start, stop) in enumerate(self._bounds):
                new, state = self._update_group(
                    i, flat[start:stop], grads[start:stop], {"value": loss, **extra_args}
                )
                new_flat += new
                new_states.append(state)
        if truncate:
            new_flat = [_detach_keep_flag(p) for p in new_flat]
            new_states = [optree.tree_map(_detach_keep_flag, s) for s in new_states]
        # Write only after every group's update succeeded.
        for (c, k), p in zip(self._slots, new_flat, strict=True):
            c[k] = p
        self.state_groups[:] = new_states

    def _update_group(
        self, i: int, params: list[Tensor], grads: list[Tensor | None], extra: dict[str, Any]
    ) -> tuple[list[Tensor], OptState]:
        """Group ``i``'s new parameters and state (nothing written)."""
        state = self.state_groups[i]
        if isinstance(state, UninitializedState):
            state = self.impl.init(tuple(params))
        if self._plan is not None and self._linear_scale is None:
            return _dispatch.apply(
                self._plan,
                params,
                grads,
                state,
                inplace=False,
                caller="MetaOptimizer.step",
                extra=extra,
            )
        if self._linear_scale is not None:  # already scale * g (see __init__); state constant
            if not check_leaves(grads, "gradients", "MetaOptimizer.step", sparse=True):
                grads = densified(grads)  # plain SGD takes sparse gradients, as torch.optim's
            updates: Sequence[Tensor | None] = grads
        else:
            picked = extra_args_filter(self.impl.update)(extra)
            updates, state = self.impl.update(
                tuple(grads), state, params=tuple(params), inplace=False, **picked
            )
        if all(u is not None for u in updates):
            return _dispatch.choose_ops(params, inplace=False).add(params, updates), state  # type: ignore[arg-type]
        return [p if u is None else p + u for p, u in zip(params, updates, strict=True)], state

    def state_dict(self) -> tuple[OptState, ...]:
        """The optimizer state of each group (references: in-place changes show in both)."""
        return tuple(self.state_groups)

    def load_state_dict(self, state_dict: Sequence[OptState]) -> None:
        """Load per-group optimizer states (references), e.g. from :meth:`state_dict`.

        Raises:
            ValueError: the number of groups, the tree structure or the tensor shapes differ
                from this optimizer's (a state from another module or optimizer); nothing is
                loaded.
        """
        states = list(state_dict)
        if len(states) != len(self.state_groups):
            raise ValueError(
                f"MetaOptimizer.load_state_dict: state_dict has {len(states)} groups but this "
                f"optimizer has {len(self.state_groups)}; pass a state from this optimizer."
            )
        for i, state in enumerate(states):
            if isinstance(state, UninitializedState):
                continue
            self._check_state(i, state)
        self.state_groups[:] = states
        self._unrolled = 0

    def _check_state(self, i: int, state: OptState) -> None:
        expected = self.state_groups[i]
        if isinstance(expected, UninitializedState):
            with torch.no_grad():
                start, stop = self._bounds[i]
                expected = self.impl.init(tuple(c[k] for c, k in self._slots[start:stop]))
        check_state_like(f"MetaOptimizer.load_state_dict: state of group {i}", state, expected)


_NO_DEPENDENCE = (
    "MetaOptimizer.step: loss does not depend on any parameter of the module (it does not "
    "require grad through them); compute it from the module's current parameters."
)
