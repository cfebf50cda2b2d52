"""``FuncOptimizer``: a differentiable, stateful wrapper for functional-style code."""

from __future__ import annotations

from typing import Any

import optree
import torch
from torch import Tensor

from torchopt_lite.base import GradientTransformation, UninitializedState, extra_args_filter
from torchopt_lite.optim._state_view import check_state_like
from torchopt_lite.update import apply_updates

__all__ = ["FuncOptimizer"]


class FuncOptimizer:
    """Hold a transformation's state and step a tree of parameters from a loss.

    ``step(loss, params)`` takes gradients with ``create_graph=True``, updates the state and
    returns new parameters; with ``inplace=False`` (the default) the whole unrolled loop stays
    differentiable.

    Args:
        impl: a transformation, e.g. ``torchopt_lite.adam(lr=0.1)``.
        inplace: the default update mode of :meth:`step`.

    Example:
        >>> w = torch.tensor([1.0, 2.0], requires_grad=True)
        >>> opt = torchopt_lite.FuncOptimizer(torchopt_lite.sgd(lr=0.5))
        >>> (new_w,) = opt.step((w**2).sum(), (w,))
        >>> new_w.detach(), new_w.requires_grad
        (tensor([0., 0.]), True)
    """

    def __init__(self, impl: GradientTransformation, *, inplace: bool = False) -> None:
        if not isinstance(impl, GradientTransformation):
            raise TypeError(
                f"FuncOptimizer: impl must be a GradientTransformation; got {type(impl).__name__}."
            )
        self.impl = impl
        self.inplace = bool(inplace)
        self.optim_state: Any = UninitializedState()

    def step(
        self, loss: Tensor, params: Any, inplace: bool | None = None, **extra_args: Any
    ) -> Any:
        """Return ``params`` after one step on ``loss`` (a scalar depending on ``params``).

        ``loss`` also reaches the transformations that read it as ``value=``; ``extra_args``
        reach those that read other extra arguments (e.g. Sophia's ``obj_fn=``).
        """
        if not isinstance(loss, Tensor) or loss.numel() != 1:
            raise ValueError(
                "FuncOptimizer.step: loss must be a scalar tensor; "
                f"got {type(loss).__name__} of shape {getattr(loss, 'shape', None)}."
            )
        inplace = self.inplace if inplace is None else bool(inplace)
        leaves, spec = optree.tree_flatten(params)
        if isinstance(self.optim_state, UninitializedState):
            self.optim_state = self.impl.init(params)
        grads = torch.autograd.grad(loss, leaves, create_graph=True, allow_unused=True)
        grads_tree = optree.tree_unflatten(spec, list(grads))
        extra = extra_args_filter(self.impl.update)({"value": loss, **extra_args})
        updates, self.optim_state = self.impl.update(
            grads_tree, self.optim_state, params=params, inplace=inplace, **extra
        )
        return apply_updates(params, updates, inplace=inplace)

    def state_dict(self) -> Any:
        """The optimizer state (the transformation's state tree)."""
        return self.optim_state

    def load_state_dict(self, state_dict: Any) -> None:
        """Replace the optimizer state, e.g. by one from :meth:`state_dict` or ``torch.load``.

        Raises:
            ValueError: this optimizer has a state already and ``state_dict`` differs from it in
                structure, shapes or dtypes (a state of other parameters or of another
                optimizer); nothing is replaced. Before the first step there is nothing to
                compare with: the first step checks the state against the parameters.
        """
        if not isinstance(self.optim_state, UninitializedState) and not isinstance(
            state_dict, UninitializedState
        ):
            check_state_like("FuncOptimizer.load_state_dict: state", state_dict, self.optim_state)
        self.optim_state = state_dict
