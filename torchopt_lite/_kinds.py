"""What a transformation is, in the terms the dispatch reads: its type and hyperparameters.

A leafwise transformation carries one of these as ``kind``. The dispatch
(:mod:`torchopt_lite._dispatch`) keys its rules on their types and reads their fields to call a
fused kernel for a run of transformations it recognises (``flip, scale_by_adam, scale(-lr)`` is
one Adam step). A transformation without a kind always runs its own update.
"""

from __future__ import annotations

from typing import Any, NamedTuple


def constant(*values: Any) -> bool:
    """Whether every hyperparameter is a Python number (a kind is described by numbers only).

    A transformation built with a tensor hyperparameter (injected into the state, learnable, or
    batched under ``vmap``) has no kind: it runs its own formula, which is differentiable in
    the tensor, rather than a fused kernel that takes numbers.
    """
    return all(isinstance(v, int | float) for v in values)


def is_zero(value: Any) -> bool:
    """A hyperparameter that is the number 0 (a tensor never is: its value may change)."""
    return isinstance(value, int | float) and value == 0


class Identity(NamedTuple):
    """Updates pass through."""


class Flip(NamedTuple):
    r""":math:`g \leftarrow \pm g + \lambda \theta` (maximize, then coupled weight decay)."""

    weight_decay: float
    maximize: bool


class ScaleByAdam(NamedTuple):
    """Adam's bias-corrected rescaling."""

    b1: float
    b2: float
    eps: float
    eps_root: float


class AddDecayedWeights(NamedTuple):
    r""":math:`u \leftarrow u + \lambda \theta` on every leaf (decoupled weight decay)."""

    weight_decay: float


class Trace(NamedTuple):
    """Heavy-ball or Nesterov momentum with dampening, as ``torch.optim.SGD``."""

    momentum: float
    dampening: float
    nesterov: bool


class Scale(NamedTuple):
    r""":math:`u \leftarrow \alpha u` by a constant (a float or a 0-d tensor)."""

    step_size: Any
